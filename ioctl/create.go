package ioctl

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// CreateSubvolume creates an empty subvolume at path, whose parent must be a
// directory on btrfs.
//
// Privilege: write and search permission on the parent directory; no
// capability. Kernel: any supported (SUBVOL_CREATE_V2 is from 3.6).
// Concurrency: safe; creates in one parent directory serialize in the
// kernel on that directory's lock.
//
// Errors are *fs.PathError with Op "BTRFS_IOC_SUBVOL_CREATE_V2" wrapping the
// errno (EEXIST: errors.Is(err, fs.ErrExist)), or ErrNotBtrfs.
func CreateSubvolume(path string) error {
	return createPath(path, nil)
}

// CreateSubvolumeAt is CreateSubvolume for the entry name in the directory
// open as parentFd. name must be a single path element.
func CreateSubvolumeAt(parentFd int, name string) error {
	return createAt(parentFd, name, name, nil)
}

// createPath is the path forms, CreateSubvolume and CreateSubvolumeWith:
// createAt in path's parent directory.
func createPath(path string, inherit *QgroupInherit) error {
	dir, name := splitPath(path)
	fd, err := openDir(unix.AT_FDCWD, dir)
	if err != nil {
		return pathErr("open", dir, err)
	}
	defer unix.Close(fd)
	return createAt(fd, name, path, inherit)
}

// createAt creates the subvolume name in parentFd, in the qgroups inherit
// names if it is not nil; path is name as errors show it.
func createAt(parentFd int, name, path string, inherit *QgroupInherit) error {
	const op = "BTRFS_IOC_SUBVOL_CREATE_V2"
	if err := CheckBtrfs(parentFd); err != nil {
		return pathErr(op, path, err)
	}
	var args VolArgsV2
	if err := setName(args.Name[:], name); err != nil {
		return pathErr(op, path, err)
	}
	var buf []uint64
	if inherit != nil {
		buf = inherit.raw()
		setQgroupInherit(&args, buf)
	}
	err := SubvolCreateV2(parentFd, &args)
	runtime.KeepAlive(buf)
	if err != nil {
		return pathErr(op, path, err)
	}
	return verifyCreated(parentFd, name, path, op)
}

// verifyCreated checks that name in parentFd is now a subvolume. The kernel
// returns success without creating anything when the parent directory is
// unlinked concurrently (its subvolume is being deleted).
func verifyCreated(parentFd int, name, path, op string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(parentFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return pathErr(op, path, ErrNotCreated)
		}
		return pathErr("stat", path, err)
	}
	if st.Ino != BTRFS_FIRST_FREE_OBJECTID {
		return pathErr(op, path, ErrNotCreated)
	}
	return nil
}
