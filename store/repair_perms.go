package store

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/btrstore/btrstore/kernel"
	"golang.org/x/sys/unix"
)

// Inode flags of FS_IOC_GETFLAGS/SETFLAGS (linux/fs.h; x/sys lacks them):
// an immutable inode cannot be changed, renamed or unlinked, an
// append-only one only appended to, and in an immutable or append-only
// directory no entry can be removed. Both survive snapshots.
const (
	fsImmutableFl = 0x00000010 // FS_IMMUTABLE_FL, chattr +i
	fsAppendFl    = 0x00000020 // FS_APPEND_FL, chattr +a
)

// clearProtection clears the immutable and append-only flags of the file
// or directory open as fd, if set, and reports whether it changed
// anything. Clearing them needs CAP_LINUX_IMMUTABLE; without it the error
// says so. path names fd in errors.
func clearProtection(fd int, path string) (changed bool, err error) {
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		if err == unix.ENOTTY || err == unix.EOPNOTSUPP || err == unix.EINVAL {
			return false, nil // no such flags here
		}
		return false, &fs.PathError{Op: "FS_IOC_GETFLAGS", Path: path, Err: err}
	}
	if flags&(fsImmutableFl|fsAppendFl) == 0 {
		return false, nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags&^(fsImmutableFl|fsAppendFl))); err != nil {
		return false, protectedError(path, err)
	}
	return true, nil
}

// protectedError explains a failure to clear the immutable or append-only
// flag of path.
func protectedError(path string, err error) error {
	if err == unix.EPERM {
		if has, cerr := kernel.HasCapability(unix.CAP_LINUX_IMMUTABLE); cerr == nil && !has {
			return fmt.Errorf("%s is immutable or append-only (chattr +i or +a), and clearing that needs CAP_LINUX_IMMUTABLE, which this process lacks: %w",
				path, &fs.PathError{Op: "FS_IOC_SETFLAGS", Path: path, Err: err})
		}
	}
	return fmt.Errorf("%s is immutable or append-only (chattr +i or +a), and clearing that failed: %w",
		path, &fs.PathError{Op: "FS_IOC_SETFLAGS", Path: path, Err: err})
}

// isProtected reports whether the inode open as fd is immutable or
// append-only.
func isProtected(fd int) bool {
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	return err == nil && flags&(fsImmutableFl|fsAppendFl) != 0
}

// explainEPERM adds to err, when it is EPERM from an operation in the
// directory open as dirFd (what names it), that the directory is immutable
// or append-only, if it is. Only called on failures.
func explainEPERM(err error, dirFd int, what string) error {
	if errors.Is(err, unix.EPERM) && isProtected(dirFd) {
		return fmt.Errorf("%w (%s is immutable or append-only: a build step set chattr +i or +a on it; "+
			"Open clears it on the store's own directories)", err, what)
	}
	return err
}

// addOwnerPerms adds the owner permission bits perm to directory d if it
// lacks any: the kernel wants write and search permission on a directory
// to remove entries from it (without CAP_DAC_OVERRIDE), and on a
// subvolume's root to delete it (without CAP_SYS_ADMIN). A build step may
// have left its directories 0555. Changing the mode needs owning the
// directory or CAP_FOWNER.
func addOwnerPerms(d dir, perm uint32) (changed bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return false, &fs.PathError{Op: "fstat", Path: d.path, Err: err}
	}
	if st.Mode&perm == perm {
		return false, nil
	}
	mode := st.Mode&0o7777 | perm
	if err := unix.Fchmod(d.fd, mode); err != nil {
		return false, &fs.PathError{Op: "chmod " + strconv.FormatUint(uint64(mode), 8), Path: d.path, Err: err}
	}
	return true, nil
}
