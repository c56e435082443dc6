package ioctl

import (
	"encoding/binary"
	"path"

	"golang.org/x/sys/unix"
)

// DeleteFlags modify DeleteSubvolume.
type DeleteFlags uint64

const (
	// DeleteRecursive deletes the subvolumes nested below the target
	// first, deepest first, as libbtrfsutil does.
	DeleteRecursive DeleteFlags = 1 << 0

	// DeleteFlagsMask is every flag DeleteSubvolume knows.
	DeleteFlagsMask = DeleteRecursive
)

// DeleteSubvolume deletes the subvolume at path. The kernel unlinks it at
// once and frees its space in the background, after the next transaction
// commit; WaitDeleted waits for that. Without DeleteRecursive, a subvolume
// that holds other subvolumes gives ENOTEMPTY. Unknown flags give EINVAL
// before anything is deleted.
//
// Privilege: CAP_SYS_ADMIN, or a mount with user_subvol_rm_allowed and
// write and search permission on the subvolume's root directory and its
// parent (EPERM otherwise). DeleteRecursive finds nested subvolumes by tree
// search with CAP_SYS_ADMIN and with the unprivileged listing ioctls (4.18)
// otherwise. Kernel: any supported. Concurrency: safe; a recursive delete
// racing creates below the target can fail with ENOTEMPTY.
//
// Errors are *fs.PathError with Op "BTRFS_IOC_SNAP_DESTROY" (ENOTEMPTY,
// EPERM: errors.Is(err, fs.ErrPermission), EINVAL for a plain directory).
func DeleteSubvolume(path string, flags DeleteFlags) error {
	const op = "BTRFS_IOC_SNAP_DESTROY"
	if flags&^DeleteFlagsMask != 0 {
		return pathErr(op, path, unix.EINVAL)
	}
	dir, name := splitPath(path)
	fd, err := openDir(unix.AT_FDCWD, dir)
	if err != nil {
		return pathErr("open", dir, err)
	}
	defer unix.Close(fd)
	return deleteAt(fd, name, flags, path)
}

// DeleteSubvolumeAt is DeleteSubvolume for the entry name in the directory
// open as parentFd.
func DeleteSubvolumeAt(parentFd int, name string, flags DeleteFlags) error {
	if flags&^DeleteFlagsMask != 0 {
		return pathErr("BTRFS_IOC_SNAP_DESTROY", name, unix.EINVAL)
	}
	return deleteAt(parentFd, name, flags, name)
}

func deleteAt(parentFd int, name string, flags DeleteFlags, display string) error {
	const op = "BTRFS_IOC_SNAP_DESTROY"
	if err := CheckBtrfs(parentFd); err != nil {
		return pathErr(op, display, err)
	}
	if flags&DeleteRecursive != 0 {
		if err := deleteChildren(parentFd, name, display); err != nil {
			return err
		}
	}
	var args VolArgs
	if err := setName(args.Name[:], name); err != nil {
		return pathErr(op, display, err)
	}
	if err := SnapDestroy(parentFd, &args); err != nil {
		return pathErr(op, display, err)
	}
	return nil
}

// deleteChildren deletes every subvolume nested below parentFd/name,
// deepest first, so that each is empty when it is deleted.
func deleteChildren(parentFd int, name, display string) error {
	fd, err := openDir(parentFd, name)
	if err != nil {
		return pathErr("open", display, err)
	}
	defer unix.Close(fd)
	// Collect first: deleting while iterating would invalidate the walk.
	var nested []string
	var walkErr error
	walk(fd, display, listAuto, func(info SubvolInfo, err error) bool {
		walkErr = err
		nested = append(nested, info.Path)
		return err == nil
	})
	if walkErr != nil {
		return walkErr
	}
	// Pre-order lists parents before children: delete in reverse.
	for i := len(nested) - 1; i >= 0; i-- {
		p := nested[i]
		// The path comes from the kernel, but another process may have
		// put a symlink or a mount in its way since: never follow one.
		dfd, err := openDirBeneath(fd, path.Dir(p))
		if err != nil {
			return pathErr("open", path.Join(display, path.Dir(p)), err)
		}
		var args VolArgs
		err = setName(args.Name[:], path.Base(p))
		if err == nil {
			err = SnapDestroy(dfd, &args)
		}
		unix.Close(dfd)
		if err != nil && err != unix.ENOENT {
			return pathErr("BTRFS_IOC_SNAP_DESTROY", path.Join(display, p), err)
		}
	}
	return nil
}

// DeleteSubvolumeByID deletes the subvolume with the given id on the
// filesystem holding fsPath (any path on it).
//
// Privilege: CAP_SYS_ADMIN (or user_subvol_rm_allowed with permissions as
// for DeleteSubvolume). Kernel: 5.7 (SNAP_DESTROY_V2 with
// BTRFS_SUBVOL_SPEC_BY_ID); older kernels give ErrNotSupported (ENOTTY).
// Concurrency: safe.
func DeleteSubvolumeByID(fsPath string, id uint64) error {
	const op = "BTRFS_IOC_SNAP_DESTROY_V2"
	fd, err := openDir(unix.AT_FDCWD, fsPath)
	if err != nil {
		return pathErr("open", fsPath, err)
	}
	defer unix.Close(fd)
	if err := CheckBtrfs(fd); err != nil {
		return pathErr(op, fsPath, err)
	}
	var args VolArgsV2
	args.Flags = BTRFS_SUBVOL_SPEC_BY_ID
	binary.NativeEndian.PutUint64(args.Name[:8], id) // the union's subvolid
	if err := SnapDestroyV2(fd, &args); err != nil {
		return pathErr(op, fsPath, err)
	}
	return nil
}
