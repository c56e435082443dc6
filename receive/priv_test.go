package receive

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

func init() {
	// applyFile applies a stream file below a directory and prints the
	// outcome.
	btrfstest.Register("applyFile", func(args []string) error {
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = Apply(context.Background(), f, args[1], Options{})
		switch {
		case errors.Is(err, ErrNeedsPrivilege) && errors.Is(err, fs.ErrPermission):
			os.Stdout.WriteString("needs privilege")
		case err != nil:
			return err
		default:
			os.Stdout.WriteString("received")
		}
		return nil
	})
}

// TestApplyWithoutCapSysAdmin: without CAP_SYS_ADMIN, Apply says so and
// leaves dir untouched (it cannot mark a subvolume received); with it and
// the file capabilities btrfs receive also needs, but not as full root,
// the stream is received.
func TestApplyWithoutCapSysAdmin(t *testing.T) {
	s := newScene(t)
	f := filepath.Join(t.TempDir(), "stream")
	must(t, os.WriteFile(f, send(t, s.s1, ioctl.SendOptions{}), 0o644))
	must(t, os.Chmod(filepath.Dir(f), 0o755))
	out, err := btrfstest.RunAs(t, btrfstest.Cred{UID: 0, GID: 0}, "applyFile", f, s.recv)
	if err != nil || strings.TrimSpace(out) != "needs privilege" {
		t.Errorf("without capabilities: %q, %v", out, err)
	}
	assertEmpty(t, s.recv)
	out, err = btrfstest.RunAs(t, btrfstest.Cred{UID: 0, GID: 0, Caps: []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_MKNOD,
		unix.CAP_CHOWN, unix.CAP_FOWNER, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID}}, "applyFile", f, s.recv)
	if err != nil || strings.TrimSpace(out) != "received" {
		t.Errorf("with CAP_SYS_ADMIN: %q, %v", out, err)
	}
}
