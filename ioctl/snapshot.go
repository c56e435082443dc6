package ioctl

import (
	"golang.org/x/sys/unix"
)

// SnapshotFlags modify Snapshot.
type SnapshotFlags uint64

const (
	// SnapshotReadOnly makes the snapshot read-only (BTRFS_SUBVOL_RDONLY).
	SnapshotReadOnly SnapshotFlags = BTRFS_SUBVOL_RDONLY

	// SnapshotFlagsMask is every flag Snapshot knows.
	SnapshotFlagsMask = SnapshotReadOnly
)

// Snapshot creates dst as a snapshot of the subvolume src: writable, or
// read-only with SnapshotReadOnly. Nested subvolumes of src are not
// included (they appear as empty directories). Unknown flags give EINVAL
// before anything is issued.
//
// Privilege: read access to src and write and search permission on dst's
// parent; no capability (since 4.18 the kernel checks only that the caller
// owns or can read src). Kernel: any supported. Concurrency: safe; each
// snapshot commits a transaction while holding dst's parent directory lock,
// so snapshots into one directory serialize and snapshots into different
// directories share commits.
//
// Errors are *fs.PathError with Op "BTRFS_IOC_SNAP_CREATE_V2" and Path dst
// (EEXIST, EXDEV for src on another filesystem, EROFS for a read-only
// parent), or with Path src and ErrNotSubvolume.
func Snapshot(src, dst string, flags SnapshotFlags) error {
	const op = "BTRFS_IOC_SNAP_CREATE_V2"
	if flags&^SnapshotFlagsMask != 0 {
		return pathErr(op, dst, unix.EINVAL)
	}
	srcFd, err := openDir(unix.AT_FDCWD, src)
	if err != nil {
		return pathErr("open", src, err)
	}
	defer unix.Close(srcFd)
	dir, name := splitPath(dst)
	dirFd, err := openDir(unix.AT_FDCWD, dir)
	if err != nil {
		return pathErr("open", dir, err)
	}
	defer unix.Close(dirFd)
	return snapshotAt(srcFd, dirFd, name, flags, src, dst)
}

// SnapshotAt is Snapshot with the source open as srcFd and the destination
// the entry name in the directory open as dstParentFd.
func SnapshotAt(srcFd, dstParentFd int, name string, flags SnapshotFlags) error {
	if flags&^SnapshotFlagsMask != 0 {
		return pathErr("BTRFS_IOC_SNAP_CREATE_V2", name, unix.EINVAL)
	}
	return snapshotAt(srcFd, dstParentFd, name, flags, "", name)
}

func snapshotAt(srcFd, dirFd int, name string, flags SnapshotFlags, src, dst string) error {
	const op = "BTRFS_IOC_SNAP_CREATE_V2"
	if err := checkSubvolume(srcFd); err != nil {
		return pathErr(op, src, err)
	}
	if err := CheckBtrfs(dirFd); err != nil {
		return pathErr(op, dst, err)
	}
	var args VolArgsV2
	if err := setName(args.Name[:], name); err != nil {
		return pathErr(op, dst, err)
	}
	args.Fd = int64(srcFd)
	args.Flags = uint64(flags)
	if err := SnapCreateV2(dirFd, &args); err != nil {
		return pathErr(op, dst, err)
	}
	return verifyCreated(dirFd, name, dst, op)
}
