package kernel

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
)

func TestMain(m *testing.M) { btrfstest.Main(m) }

func init() {
	btrfstest.Register("check", runCheckChild)
}

// errResult is an error as a child reports it: its text ("" for nil) and
// the sentinels it matches.
type errResult struct {
	Msg              string
	Permission       bool // fs.ErrPermission
	MissingPrivilege bool // ErrMissingPrivilege
	NotSupported     bool // ErrNotSupported
	NotBtrfs         bool // ioctl.ErrNotBtrfs
}

func toResult(err error) errResult {
	if err == nil {
		return errResult{}
	}
	return errResult{
		Msg:              err.Error(),
		Permission:       errors.Is(err, fs.ErrPermission),
		MissingPrivilege: errors.Is(err, ErrMissingPrivilege),
		NotSupported:     errors.Is(err, ErrNotSupported),
		NotBtrfs:         errors.Is(err, ioctl.ErrNotBtrfs),
	}
}

func (r errResult) ok() bool { return r.Msg == "" }

// checkResult is what the "check" child prints as JSON.
type checkResult struct {
	Report      string // Report.String()
	UID         int
	CapSysAdmin bool
	CapChown    bool
	Probes      map[string]errResult

	CanUseBtrfs, CanDeleteSubvolumes, CanWaitDeleted errResult
	CanChownOther                                    errResult // CanChown(123, 456)
	CanChownSelf                                     errResult // CanChown(own uid, own gid)

	// What the kernel said when the child did the things themselves.
	Delete     errResult // ioctl.DeleteSubvolume(-delete)
	ChownOther errResult // os.Lchown(-chown, 123, 456)
}

// runCheckChild runs Check on -path and prints a checkResult. With -delete
// it then deletes that subvolume, with -chown it chowns that file to
// 123:456, to show what the kernel thinks of the report.
func runCheckChild(args []string) error {
	flags := flag.NewFlagSet("check", flag.ContinueOnError)
	path := flags.String("path", "", "path to check")
	del := flags.String("delete", "", "subvolume to delete after the check")
	chown := flags.String("chown", "", "file to chown to 123:456 after the check")
	if err := flags.Parse(args); err != nil {
		return err
	}
	r := Check(*path)
	res := checkResult{
		Report:      r.String(),
		UID:         r.UID,
		CapSysAdmin: r.CapSysAdmin,
		CapChown:    r.CapChown,
		Probes: map[string]errResult{
			"SnapDestroyV2":  toResult(r.SnapDestroyV2),
			"SubvolSyncWait": toResult(r.SubvolSyncWait),
			"GetSubvolInfo":  toResult(r.GetSubvolInfo),
		},
		CanUseBtrfs:         toResult(r.CanUseBtrfs()),
		CanDeleteSubvolumes: toResult(r.CanDeleteSubvolumes()),
		CanWaitDeleted:      toResult(r.CanWaitDeleted()),
		CanChownOther:       toResult(r.CanChown(123, 456)),
		CanChownSelf:        toResult(r.CanChown(r.UID, r.GID)),
	}
	if *del != "" {
		res.Delete = toResult(ioctl.DeleteSubvolume(*del, 0))
	}
	if *chown != "" {
		res.ChownOther = toResult(os.Lchown(*chown, 123, 456))
	}
	out, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Print(string(out))
	return err
}
