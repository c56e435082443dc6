package kernel

import (
	"encoding/json"
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

func TestCheckRoot(t *testing.T) {
	btrfstest.RequireRoot(t)
	fsys := btrfstest.New(t)
	r := Check(fsys.Path)
	t.Logf("report:\n%s", r)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if !r.Btrfs || r.Mount.MountPoint != fsys.Path || r.Mount.FSType != "btrfs" || r.UID != 0 || r.UserNamespace {
		t.Errorf("report %+v", r)
	}
	if v, _ := Running(); r.Kernel != v {
		t.Errorf("Kernel = %v, want %v", r.Kernel, v)
	}
	if r.UserSubvolRmAllowed {
		t.Error("UserSubvolRmAllowed on a mount without it")
	}
	if !r.CapSysAdmin || !r.CapChown || !r.CapDacOverride || !r.CapFowner {
		t.Skipf("root without CAP_SYS_ADMIN, CAP_CHOWN, CAP_DAC_OVERRIDE or CAP_FOWNER: %+v", r)
	}
	for name, err := range map[string]error{
		"CanUseBtrfs":         r.CanUseBtrfs(),
		"CanDeleteSubvolumes": r.CanDeleteSubvolumes(),
		"CanWaitDeleted":      r.CanWaitDeleted(),
		"CanChown(123, 456)":  r.CanChown(123, 456),
		"CanChown(-1, -1)":    r.CanChown(-1, -1),
		"CanChown(0, 0)":      r.CanChown(0, 0),
		"ProbeGetSubvolInfo":  r.GetSubvolInfo,
		"ProbeSnapDestroyV2":  r.SnapDestroyV2,
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Depends on the kernel; root waits by tree search without it.
	checkProbeResult(t, subvolSyncWait, r.SubvolSyncWait)
	s := r.String()
	if r.SubvolSyncWait != nil {
		s = strings.Replace(s, "missing  BTRFS_IOC_SUBVOL_SYNC_WAIT", "", 1)
	}
	if strings.Contains(s, "missing") {
		t.Errorf("report for root has missing items:\n%s", s)
	}
}

func TestCheckNotBtrfs(t *testing.T) {
	dir := t.TempDir()
	r := Check(dir)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r.Btrfs {
		t.Skipf("%s is on btrfs", dir)
	}
	for name, err := range map[string]error{
		"CanUseBtrfs":         r.CanUseBtrfs(),
		"CanDeleteSubvolumes": r.CanDeleteSubvolumes(),
		"CanWaitDeleted":      r.CanWaitDeleted(),
		"SnapDestroyV2":       r.SnapDestroyV2,
	} {
		if !errors.Is(err, ioctl.ErrNotBtrfs) {
			t.Errorf("%s = %v, want ioctl.ErrNotBtrfs", name, err)
		}
	}
	s := r.String()
	if !strings.Contains(s, "not btrfs") || !strings.Contains(s, r.Mount.FSType) {
		t.Errorf("report does not say the filesystem is %s, not btrfs:\n%s", r.Mount.FSType, s)
	}
	t.Logf("report:\n%s", s)
}

func TestCheckMissingPath(t *testing.T) {
	r := Check(filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(r.Err, fs.ErrNotExist) {
		t.Fatalf("Err = %v, want fs.ErrNotExist", r.Err)
	}
	for name, err := range map[string]error{
		"CanUseBtrfs":         r.CanUseBtrfs(),
		"CanDeleteSubvolumes": r.CanDeleteSubvolumes(),
		"CanWaitDeleted":      r.CanWaitDeleted(),
		"CanChown":            r.CanChown(-1, -1),
	} {
		if err != r.Err {
			t.Errorf("%s = %v, want Err %v", name, err, r.Err)
		}
	}
	if s := r.String(); !strings.Contains(s, "missing  check") {
		t.Errorf("report does not show the error:\n%s", s)
	}
}

// TestReportRequirements checks the requirement logic on reports made up
// for situations this machine may not be in.
func TestReportRequirements(t *testing.T) {
	old := &notSupportedError{op: "BTRFS_IOC_SUBVOL_SYNC_WAIT", min: Version{6, 13, 0}, running: Version{6, 1, 0}}
	base := Report{
		Path: "/store", Kernel: Version{6, 1, 0}, Btrfs: true, UID: 1000, GID: 1000, Groups: []int{1000, 27},
		Mount:          Mount{MountPoint: "/srv", FSType: "btrfs", Options: []string{"rw"}, SuperOptions: []string{"rw"}},
		SubvolSyncWait: old,
	}
	t.Run("no privilege, old kernel", func(t *testing.T) {
		r := base
		err := r.CanDeleteSubvolumes()
		wantPrivilegeError(t, err, "CAP_SYS_ADMIN", "user_subvol_rm_allowed", "mount -o remount,user_subvol_rm_allowed /srv")
		err = r.CanWaitDeleted()
		wantPrivilegeError(t, err, "CAP_SYS_ADMIN", "6.13", "running 6.1.0")
		if !errors.Is(err, ErrNotSupported) {
			t.Errorf("CanWaitDeleted error %v does not match ErrNotSupported", err)
		}
		if err := r.CanChown(1000, 27); err != nil {
			t.Errorf("CanChown to own uid and a supplementary group: %v", err)
		}
		if err := r.CanChown(-1, 1000); err != nil {
			t.Errorf("CanChown(-1, own gid): %v", err)
		}
		wantPrivilegeError(t, r.CanChown(1000, 5), "CAP_CHOWN", "gid 5")
		wantPrivilegeError(t, r.CanChown(0, -1), "CAP_CHOWN", "uid 0")
	})
	t.Run("user_subvol_rm_allowed", func(t *testing.T) {
		r := base
		r.UserSubvolRmAllowed = true
		if err := r.CanDeleteSubvolumes(); err != nil {
			t.Error(err)
		}
	})
	t.Run("CAP_SYS_ADMIN", func(t *testing.T) {
		r := base
		r.CapSysAdmin = true
		if err := r.CanDeleteSubvolumes(); err != nil {
			t.Error(err)
		}
		if err := r.CanWaitDeleted(); err != nil {
			t.Error(err)
		}
	})
	t.Run("CAP_SYS_ADMIN in a user namespace", func(t *testing.T) {
		r := base
		r.CapSysAdmin, r.UserNamespace = true, true
		wantPrivilegeError(t, r.CanDeleteSubvolumes(), "user namespace")
		wantPrivilegeError(t, r.CanWaitDeleted(), "user namespace")
		if s := r.String(); !strings.Contains(s, "missing  CAP_SYS_ADMIN") || !strings.Contains(s, "user namespace") {
			t.Errorf("report does not explain the user namespace:\n%s", s)
		}
	})
	t.Run("CAP_CHOWN", func(t *testing.T) {
		r := base
		r.CapChown = true
		if err := r.CanChown(123, 456); err != nil {
			t.Error(err)
		}
	})
	t.Run("read-only and old kernel", func(t *testing.T) {
		r := base
		r.Mount.Options = []string{"ro"}
		r.SnapDestroyV2 = &notSupportedError{op: "BTRFS_IOC_SNAP_DESTROY_V2", min: Version{5, 7, 0}}
		err := r.CanUseBtrfs()
		if !errors.Is(err, unix.EROFS) || !errors.Is(err, ErrNotSupported) {
			t.Errorf("CanUseBtrfs = %v, want EROFS and ErrNotSupported", err)
		}
		for _, want := range []string{"mount -o remount,rw /srv", "BTRFS_IOC_SNAP_DESTROY_V2 needs Linux 5.7", "upgrade the kernel"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("CanUseBtrfs error %v does not say %q", err, want)
			}
		}
	})
}

func wantPrivilegeError(t *testing.T, err error, mention ...string) {
	t.Helper()
	if !errors.Is(err, ErrMissingPrivilege) || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("error %v does not match ErrMissingPrivilege and fs.ErrPermission", err)
		return
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

// userTree makes, as root, a directory u owned by uid 1000 holding a
// subvolume u/sv and a file u/f, also owned by 1000, so that the kernel's
// permission checks other than capabilities pass for that user.
func userTree(t *testing.T, fsys *btrfstest.FS) (sv, file string) {
	t.Helper()
	u := filepath.Join(fsys.Path, "u")
	sv, file = filepath.Join(u, "sv"), filepath.Join(u, "f")
	if err := os.Mkdir(u, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ioctl.CreateSubvolume(sv); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{u, sv, file} {
		if err := os.Lchown(p, 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	return sv, file
}

// runCheck runs the "check" child with cred on fsys and decodes its result.
func runCheck(t *testing.T, cred btrfstest.Cred, fsys *btrfstest.FS) checkResult {
	t.Helper()
	sv, file := userTree(t, fsys)
	out, err := btrfstest.RunAs(t, cred, "check", "-path", fsys.Path, "-delete", sv, "-chown", file)
	if err != nil {
		t.Fatal(err)
	}
	var res checkResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	t.Logf("report of uid %d:\n%s", res.UID, res.Report)
	if res.UID != int(cred.UID) {
		t.Errorf("child ran as uid %d, want %d", res.UID, cred.UID)
	}
	if !res.CanUseBtrfs.ok() {
		t.Errorf("CanUseBtrfs: %s", res.CanUseBtrfs.Msg)
	}
	for name, p := range map[string]*probe{"SnapDestroyV2": snapDestroyV2, "SubvolSyncWait": subvolSyncWait, "GetSubvolInfo": getSubvolInfo} {
		if r := res.Probes[name]; r.ok() {
			checkProbeResult(t, p, nil)
		} else if r.NotSupported {
			checkProbeResult(t, p, &notSupportedError{op: p.op, min: p.min})
		} else {
			t.Errorf("unprivileged probe %s: %s", name, r.Msg)
		}
	}
	if !res.CanChownSelf.ok() {
		t.Errorf("CanChown(own uid, own gid): %s", res.CanChownSelf.Msg)
	}
	// The report agrees with the kernel.
	if res.CanDeleteSubvolumes.ok() != res.Delete.ok() {
		t.Errorf("CanDeleteSubvolumes says %q, deleting says %q", res.CanDeleteSubvolumes.Msg, res.Delete.Msg)
	}
	if res.CanChownOther.ok() != res.ChownOther.ok() {
		t.Errorf("CanChown(123, 456) says %q, chown says %q", res.CanChownOther.Msg, res.ChownOther.Msg)
	}
	return res
}

func wantPermission(t *testing.T, name string, r errResult, mention ...string) {
	t.Helper()
	if r.ok() || !r.Permission || !r.MissingPrivilege {
		t.Errorf("%s = %+v, want an error matching fs.ErrPermission and ErrMissingPrivilege", name, r)
		return
	}
	for _, m := range mention {
		if !strings.Contains(r.Msg, m) {
			t.Errorf("%s error %q does not mention %q", name, r.Msg, m)
		}
	}
}

func TestCheckUnprivileged(t *testing.T) {
	user := btrfstest.Cred{UID: 1000, GID: 1000}
	v, err := Running()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("no caps, plain mount", func(t *testing.T) {
		res := runCheck(t, user, btrfstest.New(t))
		wantPermission(t, "CanDeleteSubvolumes", res.CanDeleteSubvolumes, "CAP_SYS_ADMIN", "user_subvol_rm_allowed", "mount -o remount,user_subvol_rm_allowed")
		if !res.Delete.Permission {
			t.Errorf("deleting without privilege: %+v, want EPERM", res.Delete)
		}
		wantPermission(t, "CanChown(123, 456)", res.CanChownOther, "CAP_CHOWN")
		if v.AtLeast(6, 13) {
			if !res.CanWaitDeleted.ok() {
				t.Errorf("CanWaitDeleted on %s: %s", v, res.CanWaitDeleted.Msg)
			}
		} else {
			wantPermission(t, "CanWaitDeleted", res.CanWaitDeleted, "CAP_SYS_ADMIN", "6.13")
		}
	})

	t.Run("no caps, user_subvol_rm_allowed", func(t *testing.T) {
		res := runCheck(t, user, btrfstest.New(t, btrfstest.MountOptions("user_subvol_rm_allowed")))
		if !res.CanDeleteSubvolumes.ok() || !res.Delete.ok() {
			t.Errorf("CanDeleteSubvolumes %q, deleting %q; want both nil", res.CanDeleteSubvolumes.Msg, res.Delete.Msg)
		}
	})

	t.Run("no caps, remounted with user_subvol_rm_allowed", func(t *testing.T) {
		fsys := btrfstest.New(t)
		fsys.Remount(t, 0, "user_subvol_rm_allowed")
		res := runCheck(t, user, fsys)
		if !res.CanDeleteSubvolumes.ok() || !res.Delete.ok() {
			t.Errorf("CanDeleteSubvolumes %q, deleting %q; want both nil", res.CanDeleteSubvolumes.Msg, res.Delete.Msg)
		}
	})

	t.Run("CAP_SYS_ADMIN and CAP_CHOWN", func(t *testing.T) {
		cred := user
		cred.Caps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_CHOWN}
		res := runCheck(t, cred, btrfstest.New(t))
		if !res.CapSysAdmin || !res.CapChown {
			t.Errorf("child has CAP_SYS_ADMIN %v, CAP_CHOWN %v; want both", res.CapSysAdmin, res.CapChown)
		}
		for name, r := range map[string]errResult{
			"CanDeleteSubvolumes": res.CanDeleteSubvolumes, "delete": res.Delete,
			"CanChown(123, 456)": res.CanChownOther, "chown": res.ChownOther,
			"CanWaitDeleted": res.CanWaitDeleted,
		} {
			if !r.ok() {
				t.Errorf("%s: %s", name, r.Msg)
			}
		}
	})

	t.Run("CAP_SYS_ADMIN only", func(t *testing.T) {
		cred := user
		cred.Caps = []uintptr{unix.CAP_SYS_ADMIN}
		res := runCheck(t, cred, btrfstest.New(t))
		if !res.CanDeleteSubvolumes.ok() || !res.Delete.ok() {
			t.Errorf("CanDeleteSubvolumes %q, deleting %q; want both nil", res.CanDeleteSubvolumes.Msg, res.Delete.Msg)
		}
		wantPermission(t, "CanChown(123, 456)", res.CanChownOther, "CAP_CHOWN")
		if !res.ChownOther.Permission {
			t.Errorf("chown without CAP_CHOWN: %+v, want EPERM", res.ChownOther)
		}
	})
}

// The rootless column: without any privilege, deleting by rmdir works on
// Linux 4.18 and later, and the report says so and what it costs.
func TestReportRootless(t *testing.T) {
	r := Report{
		Path: "/store", Kernel: Version{6, 1, 0}, Btrfs: true, UID: 1000, GID: 1000,
		Mount:          Mount{MountPoint: "/srv", FSType: "btrfs", Options: []string{"rw"}, SuperOptions: []string{"rw"}},
		SubvolSyncWait: &notSupportedError{op: "BTRFS_IOC_SUBVOL_SYNC_WAIT", min: Version{6, 13, 0}, running: Version{6, 1, 0}},
	}
	if err := r.CanDeleteByRmdir(); err != nil {
		t.Errorf("CanDeleteByRmdir on 6.1: %v", err)
	}
	s := r.String()
	for _, want := range []string{"rootless", "O(files)", "cannot see the kernel's cleaner"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	old := r
	old.Kernel = Version{4, 17, 0}
	if err := old.CanDeleteByRmdir(); !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "4.18") {
		t.Errorf("CanDeleteByRmdir on 4.17 = %v, want ErrNotSupported naming 4.18", err)
	}
	other := r
	other.Btrfs = false
	if err := other.CanDeleteByRmdir(); err == nil {
		t.Error("CanDeleteByRmdir off btrfs = nil")
	}
}
