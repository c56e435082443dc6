package ioctl

import (
	"golang.org/x/sys/unix"
)

// ReadOnly reports whether the subvolume at path is read-only.
//
// Privilege: none. Kernel: any. Concurrency: safe.
func ReadOnly(path string) (bool, error) {
	const op = "BTRFS_IOC_SUBVOL_GETFLAGS"
	fd, err := openDir(unix.AT_FDCWD, path)
	if err != nil {
		return false, pathErr("open", path, err)
	}
	defer unix.Close(fd)
	if err := checkSubvolume(fd); err != nil {
		return false, pathErr(op, path, err)
	}
	flags, err := SubvolGetflags(fd)
	if err != nil {
		return false, pathErr(op, path, err)
	}
	return flags&BTRFS_SUBVOL_RDONLY != 0, nil
}

// SetReadOnly makes the subvolume at path read-only or writable. Making a
// received subvolume writable clears its received UUID (kernel behaviour).
//
// Privilege: owner of the subvolume's root directory, or CAP_FOWNER.
// Kernel: any. Concurrency: safe, but concurrent SetReadOnly calls on one
// subvolume race: the last one wins.
func SetReadOnly(path string, readOnly bool) error {
	fd, err := openDir(unix.AT_FDCWD, path)
	if err != nil {
		return pathErr("open", path, err)
	}
	defer unix.Close(fd)
	return setReadOnlyFd(fd, readOnly, path)
}

// SetReadOnlyFd is SetReadOnly for an open subvolume.
func SetReadOnlyFd(fd int, readOnly bool) error {
	return setReadOnlyFd(fd, readOnly, "")
}

func setReadOnlyFd(fd int, readOnly bool, path string) error {
	const op = "BTRFS_IOC_SUBVOL_SETFLAGS"
	if err := checkSubvolume(fd); err != nil {
		return pathErr(op, path, err)
	}
	flags, err := SubvolGetflags(fd)
	if err != nil {
		return pathErr("BTRFS_IOC_SUBVOL_GETFLAGS", path, err)
	}
	if readOnly {
		flags |= BTRFS_SUBVOL_RDONLY
	} else {
		flags &^= BTRFS_SUBVOL_RDONLY
	}
	if err := SubvolSetflags(fd, flags); err != nil {
		return pathErr(op, path, err)
	}
	return nil
}

// ReadOnlyFd is ReadOnly for the subvolume open as fd (its root
// directory; anything else gives ErrNotSubvolume).
func ReadOnlyFd(fd int) (bool, error) {
	const op = "BTRFS_IOC_SUBVOL_GETFLAGS"
	if err := checkSubvolume(fd); err != nil {
		return false, pathErr(op, "", err)
	}
	flags, err := SubvolGetflags(fd)
	if err != nil {
		return false, pathErr(op, "", err)
	}
	return flags&BTRFS_SUBVOL_RDONLY != 0, nil
}
