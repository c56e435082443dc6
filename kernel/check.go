package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// ErrMissingPrivilege is matched by the errors of the Report requirement
// checks when a capability or mount option is missing. Those errors match
// fs.ErrPermission too.
var ErrMissingPrivilege = errors.New("missing privilege")

// Report is what [Check] found out about a path and the calling process.
// Its methods only read it: they make no system calls, need no privilege
// and are safe for concurrent use.
type Report struct {
	Path   string
	Kernel Version
	Btrfs  bool  // Path is on btrfs
	Mount  Mount // the mount holding Path

	UID, GID int   // effective uid and gid
	Groups   []int // supplementary groups

	// Effective capabilities. CAP_SYS_ADMIN counts for btrfs only outside a
	// user namespace, see UserNamespace.
	CapSysAdmin, CapChown, CapDacOverride, CapFowner bool
	// UserNamespace is true in a user namespace other than the initial one
	// (a rootless container): btrfs checks CAP_SYS_ADMIN in the initial
	// namespace, so CapSysAdmin does not let this process delete subvolumes
	// or search trees.
	UserNamespace bool

	UserSubvolRmAllowed bool // Path's filesystem is mounted with user_subvol_rm_allowed

	// Probe results: nil, an error matching ErrNotSupported, or another
	// error (ioctl.ErrNotBtrfs when Path is not on btrfs).
	SnapDestroyV2, SubvolSyncWait, GetSubvolInfo error

	// Err is the first problem that kept Check from finding something out
	// (path missing, /proc not mounted...). The requirement checks return it.
	Err error
}

// Check finds out what works and what is missing for keeping btrfs
// subvolumes at path: kernel version, filesystem and mount, the process's
// identity and capabilities, and the ioctl probes. It does not stop at the
// first problem: a fact it could not find is left zero and the first such
// failure is in Err. See Report.String for a human-readable summary and the
// Can methods for the requirements.
//
// Privilege: none beyond reading path; it creates and deletes nothing.
// Concurrency: safe.
func Check(path string) *Report {
	r := &Report{Path: path}
	fail := func(err error) {
		if r.Err == nil {
			r.Err = err
		}
	}
	var err error
	if r.Kernel, err = Running(); err != nil {
		fail(err)
	}
	r.UID, r.GID = os.Geteuid(), os.Getegid()
	if r.Groups, err = os.Getgroups(); err != nil {
		fail(fmt.Errorf("kernel: getgroups: %w", err))
	}
	for _, c := range []struct {
		cap uintptr
		has *bool
	}{
		{unix.CAP_SYS_ADMIN, &r.CapSysAdmin},
		{unix.CAP_CHOWN, &r.CapChown},
		{unix.CAP_DAC_OVERRIDE, &r.CapDacOverride},
		{unix.CAP_FOWNER, &r.CapFowner},
	} {
		if *c.has, err = HasCapability(c.cap); err != nil {
			fail(err)
		}
	}
	if r.UserNamespace, err = inUserNamespace(); err != nil {
		fail(err)
	}

	if r.Btrfs, err = IsBtrfs(path); err != nil {
		fail(err)
		return r
	}
	if r.Mount, err = MountOf(path); err != nil {
		fail(err)
	}
	r.UserSubvolRmAllowed = r.Btrfs && r.Mount.HasOption("user_subvol_rm_allowed")
	r.GetSubvolInfo = ProbeGetSubvolInfo(path)
	r.SnapDestroyV2 = ProbeSnapDestroyV2(path)
	r.SubvolSyncWait = ProbeSubvolSyncWait(path)
	return r
}

// procUserInitIno is PROC_USER_INIT_INO, the inode number of the initial
// user namespace in /proc/<pid>/ns/user.
const procUserInitIno = 0xEFFFFFFD

func inUserNamespace() (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &st); err != nil {
		return false, &fs.PathError{Op: "stat", Path: "/proc/self/ns/user", Err: err}
	}
	return st.Ino != procUserInitIno, nil
}

// privilegeError is a missing capability or mount option, with the fix.
type privilegeError struct {
	msg string
	err error // optional further cause, e.g. a not-supported probe result
}

func (e *privilegeError) Error() string { return e.msg }
func (e *privilegeError) Unwrap() error { return e.err }
func (e *privilegeError) Is(target error) bool {
	return target == ErrMissingPrivilege || target == fs.ErrPermission
}

// explainedError is an error with a message of its own that still matches
// its cause.
type explainedError struct {
	msg string
	err error
}

func (e *explainedError) Error() string { return e.msg }
func (e *explainedError) Unwrap() error { return e.err }

const (
	grantSysAdmin = "grant CAP_SYS_ADMIN (run as root, `setpriv --inh-caps=+sys_admin --ambient-caps=+sys_admin ...`, or `docker run --cap-add SYS_ADMIN`)"
	grantChown    = "grant CAP_CHOWN (run as root, `setpriv --inh-caps=+chown --ambient-caps=+chown ...`, or `docker run --cap-add CHOWN`, a Docker default)"
	userNSNote    = " (CAP_SYS_ADMIN is held, but only in a user namespace, and btrfs checks it in the initial one)"
)

// sysAdmin reports whether the process has CAP_SYS_ADMIN as btrfs sees it.
func (r *Report) sysAdmin() bool { return r.CapSysAdmin && !r.UserNamespace }

func (r *Report) mountPoint() string {
	if r.Mount.MountPoint != "" {
		return r.Mount.MountPoint
	}
	return "<mountpoint>"
}

// onBtrfs returns r.Err, or an error matching ioctl.ErrNotBtrfs when Path is
// not on btrfs.
func (r *Report) onBtrfs() error {
	if r.Err != nil {
		return r.Err
	}
	if !r.Btrfs {
		fstype := r.Mount.FSType
		if fstype == "" {
			fstype = "another filesystem"
		}
		return &explainedError{
			msg: fmt.Sprintf("%s is on %s, not btrfs", r.Path, fstype),
			err: ioctl.ErrNotBtrfs,
		}
	}
	return nil
}

// CanUseBtrfs returns nil if subvolumes can be kept at Path: it is on btrfs,
// mounted read-write, and the kernel has BTRFS_IOC_GET_SUBVOL_INFO (4.18) and
// BTRFS_IOC_SNAP_DESTROY_V2 (5.7). Otherwise it returns every problem
// (errors.Join), each saying how to fix it: matching ioctl.ErrNotBtrfs,
// unix.EROFS, ErrNotSupported, or Err.
func (r *Report) CanUseBtrfs() error {
	if err := r.onBtrfs(); err != nil {
		return err
	}
	var errs []error
	if r.Mount.HasOption("ro") {
		errs = append(errs, &explainedError{
			msg: fmt.Sprintf("%s is mounted read-only: remount with `mount -o remount,rw %s`", r.Path, r.mountPoint()),
			err: unix.EROFS,
		})
	}
	for _, p := range []error{r.GetSubvolInfo, r.SnapDestroyV2} {
		if errors.Is(p, ErrNotSupported) {
			errs = append(errs, fmt.Errorf("%w: upgrade the kernel", p))
		} else if p != nil {
			errs = append(errs, p)
		}
	}
	return errors.Join(errs...)
}

// CanDeleteSubvolumes returns nil if the process may delete subvolumes at
// Path: with CAP_SYS_ADMIN (outside a user namespace), or on a mount with
// user_subvol_rm_allowed, where the kernel also wants write and search
// permission on the subvolume's root directory and its parent, as for
// rmdir(2). Otherwise the error matches ErrMissingPrivilege and
// fs.ErrPermission and names both ways to get there.
func (r *Report) CanDeleteSubvolumes() error {
	if err := r.onBtrfs(); err != nil {
		return err
	}
	if r.sysAdmin() || r.UserSubvolRmAllowed {
		return nil
	}
	msg := "deleting subvolumes needs CAP_SYS_ADMIN or the user_subvol_rm_allowed mount option"
	if r.CapSysAdmin {
		msg += userNSNote
	}
	return &privilegeError{msg: fmt.Sprintf("%s: %s or remount with `mount -o remount,user_subvol_rm_allowed %s`",
		msg, grantSysAdmin, r.mountPoint())}
}

// CanDeleteByRmdir returns nil if the process can delete the subvolumes
// it owns at Path without any privilege, the slow way: clear the
// read-only flag (the owner may), remove the contents, then rmdir(2) the
// empty subvolume, which Linux 4.18 allows its owner. Deletes then cost
// O(files) instead of one ioctl; a subvolume holding files this process
// may not remove (another user's) cannot be deleted so. The store uses
// it when CanDeleteSubvolumes fails. Otherwise the error matches
// ErrNotSupported (an older kernel), or is onBtrfs's.
func (r *Report) CanDeleteByRmdir() error {
	if err := r.onBtrfs(); err != nil {
		return err
	}
	if r.Kernel.AtLeast(4, 18) {
		return nil
	}
	return fmt.Errorf("deleting an empty subvolume by rmdir needs Linux 4.18 (running %s): upgrade the kernel: %w", r.Kernel, ErrNotSupported)
}

// CanChown returns nil if the process may give files it created to uid and
// gid (-1 leaves one unchanged): always for its own effective uid and one of
// its groups, else with CAP_CHOWN. Otherwise the error matches
// ErrMissingPrivilege and fs.ErrPermission and names CAP_CHOWN.
func (r *Report) CanChown(uid, gid int) error {
	if r.Err != nil {
		return r.Err
	}
	ownUID := uid == -1 || uid == r.UID
	ownGID := gid == -1 || gid == r.GID || slices.Contains(r.Groups, gid)
	if (ownUID && ownGID) || r.CapChown {
		return nil
	}
	return &privilegeError{msg: fmt.Sprintf(
		"giving files to uid %d gid %d needs CAP_CHOWN (running as uid %d gid %d): %s, or use the caller's own uid and gid",
		uid, gid, r.UID, r.GID, grantChown)}
}

// CanWaitDeleted returns nil if the process can wait for deleted subvolumes
// to be cleaned: with BTRFS_IOC_SUBVOL_SYNC_WAIT (Linux 6.13, no privilege),
// or with CAP_SYS_ADMIN for tree search. Otherwise the error matches
// ErrMissingPrivilege, fs.ErrPermission and ErrNotSupported and names both
// fixes.
func (r *Report) CanWaitDeleted() error {
	if err := r.onBtrfs(); err != nil {
		return err
	}
	if r.SubvolSyncWait == nil || r.sysAdmin() {
		return nil
	}
	if !errors.Is(r.SubvolSyncWait, ErrNotSupported) {
		return r.SubvolSyncWait // could not tell
	}
	msg := fmt.Sprintf("waiting for deleted subvolumes to be cleaned needs BTRFS_IOC_SUBVOL_SYNC_WAIT (Linux 6.13, running %s) or CAP_SYS_ADMIN (tree search)", r.Kernel)
	if r.CapSysAdmin {
		msg += userNSNote
	}
	return &privilegeError{msg: msg + ": " + grantSysAdmin + " or upgrade the kernel to 6.13 or later", err: r.SubvolSyncWait}
}

// String describes the report in plain words, one item a line, each "ok"
// or "missing" and, if missing, how to fix it.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "btrstore check of %s\n", r.Path)
	item := func(ok bool, name, detail string) {
		status := "ok"
		if !ok {
			status = "missing"
		}
		fmt.Fprintf(&b, "  %-8s %-27s %s\n", status, name, detail)
	}
	errText := func(err error) string {
		return strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	if r.Err != nil {
		item(false, "check", "could not check everything: "+errText(r.Err))
	}

	item(r.Kernel != (Version{}), "kernel", "Linux "+r.Kernel.String())
	groups := "none"
	if len(r.Groups) > 0 {
		groups = strings.Trim(fmt.Sprint(r.Groups), "[]")
	}
	id := fmt.Sprintf("uid %d, gid %d, groups %s", r.UID, r.GID, groups)
	if r.UserNamespace {
		id += ", in a user namespace"
	}
	item(true, "user", id)
	if r.Mount.MountPoint != "" {
		item(true, "mount", fmt.Sprintf("%s on %s (%s), root %s, options %s; %s",
			r.Mount.FSType, r.Mount.MountPoint, r.Mount.Source, r.Mount.Root,
			strings.Join(r.Mount.Options, ","), strings.Join(r.Mount.SuperOptions, ",")))
	}

	if err := r.CanUseBtrfs(); err != nil {
		item(false, "btrfs", errText(err))
	} else {
		item(true, "btrfs", "on btrfs, read-write; kernel has GET_SUBVOL_INFO (4.18) and SNAP_DESTROY_V2 (5.7)")
	}
	if r.Err == nil && !r.Btrfs {
		return b.String() // the rest is about btrfs
	}

	// CAP_SYS_ADMIN is not needed where user_subvol_rm_allowed and
	// SUBVOL_SYNC_WAIT cover deletion and waiting.
	switch {
	case r.sysAdmin():
		item(true, "CAP_SYS_ADMIN", "present")
	case r.UserSubvolRmAllowed && r.SubvolSyncWait == nil:
		item(true, "CAP_SYS_ADMIN", "absent; not needed: user_subvol_rm_allowed and SUBVOL_SYNC_WAIT stand in for it")
	case r.CapSysAdmin:
		item(false, "CAP_SYS_ADMIN", "held in a user namespace only, where btrfs does not count it")
	default:
		item(false, "CAP_SYS_ADMIN", "absent; needed to delete subvolumes without user_subvol_rm_allowed, and to wait for cleaning before Linux 6.13")
	}
	switch {
	case r.UserSubvolRmAllowed:
		item(true, "user_subvol_rm_allowed", "mount option set")
	case r.sysAdmin():
		item(true, "user_subvol_rm_allowed", "mount option not set; not needed with CAP_SYS_ADMIN")
	default:
		item(false, "user_subvol_rm_allowed", "mount option not set; deletion without CAP_SYS_ADMIN needs it")
	}
	optional := func(has bool, name, use string) {
		if has {
			item(true, name, "present")
		} else {
			item(false, name, "absent (optional): "+use)
		}
	}
	optional(r.CapChown, "CAP_CHOWN", "needed to give files to other users")
	optional(r.CapDacOverride, "CAP_DAC_OVERRIDE", "lets deletion get into directories that other users made unwritable")
	optional(r.CapFowner, "CAP_FOWNER", "lets the process change the read-only flag of subvolumes owned by other users")
	probeItem := func(name string, err error) {
		if err == nil {
			item(true, name, "supported")
			return
		}
		item(false, name, errText(err))
	}
	probeItem("BTRFS_IOC_GET_SUBVOL_INFO", r.GetSubvolInfo)
	probeItem("BTRFS_IOC_SNAP_DESTROY_V2", r.SnapDestroyV2)
	probeItem("BTRFS_IOC_SUBVOL_SYNC_WAIT", r.SubvolSyncWait)

	need := func(name string, err error, how string) {
		if err != nil {
			item(false, name, errText(err))
			return
		}
		item(true, name, how)
	}
	deleteHow := "with CAP_SYS_ADMIN"
	if !r.sysAdmin() {
		deleteHow = "with user_subvol_rm_allowed (and write permission on the subvolume and its parent)"
	}
	if err := r.CanDeleteSubvolumes(); err != nil && r.CanDeleteByRmdir() == nil {
		item(true, "delete subvolumes", "rootless: works without privilege by emptying a subvolume and rmdir (Linux 4.18); deletes cost O(files). "+
			"For O(1) deletes: "+errText(err))
	} else {
		need("delete subvolumes", err, deleteHow)
	}
	// As ioctl.WaitDeleted: tree search when allowed, as it notices the end
	// of a cleanup sooner.
	waitHow := "with tree search (CAP_SYS_ADMIN)"
	if !r.sysAdmin() {
		waitHow = "with BTRFS_IOC_SUBVOL_SYNC_WAIT"
	}
	if err := r.CanWaitDeleted(); err != nil && errors.Is(err, ErrMissingPrivilege) {
		item(false, "wait for deleted subvolumes", "rootless: a store commits and cannot see the kernel's cleaner "+
			"(files it deleted are freed; emptied subvolumes' trees are cleaned in the background). "+errText(err))
	} else {
		need("wait for deleted subvolumes", err, waitHow)
	}
	if r.CapChown {
		item(true, "chown to other users", "with CAP_CHOWN")
	} else {
		item(false, "chown to other users", fmt.Sprintf(
			"needs CAP_CHOWN; without it files can only be given to uid %d and its groups: %s", r.UID, grantChown))
	}
	return b.String()
}
