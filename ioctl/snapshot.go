package ioctl

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// SnapshotFlags modify Snapshot.
type SnapshotFlags uint64

const (
	// SnapshotReadOnly makes the snapshot read-only (BTRFS_SUBVOL_RDONLY).
	SnapshotReadOnly SnapshotFlags = BTRFS_SUBVOL_RDONLY

	// SnapshotRecursive also snapshots the subvolumes nested below the
	// source, into the places their empty placeholders hold in the new
	// snapshot, as libbtrfsutil's BTRFS_UTIL_CREATE_SNAPSHOT_RECURSIVE
	// does (see SnapshotWith). It is not a kernel flag.
	SnapshotRecursive SnapshotFlags = 1 << 32

	// SnapshotFlagsMask is every flag Snapshot knows.
	SnapshotFlagsMask = SnapshotReadOnly | SnapshotRecursive
)

// SnapshotOptions modify SnapshotWith. The zero value makes a writable
// snapshot of the source alone, as Snapshot(src, dst, 0).
type SnapshotOptions struct {
	Flags SnapshotFlags // SnapshotReadOnly, SnapshotRecursive

	// QgroupInherit, if not nil, adds the new snapshot to qgroups (see
	// QgroupInherit for what that costs). With SnapshotRecursive it
	// applies to the top snapshot only, as in libbtrfsutil.
	QgroupInherit *QgroupInherit
}

// Snapshot creates dst as a snapshot of the subvolume src: writable, or
// read-only with SnapshotReadOnly. Nested subvolumes of src are not
// included (they appear as empty directories) unless SnapshotRecursive is
// given (see SnapshotWith). Unknown flags give EINVAL before anything is
// issued.
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
	return SnapshotWith(src, dst, SnapshotOptions{Flags: flags})
}

// SnapshotWith is Snapshot with options: flags and qgroup inheritance.
//
// With SnapshotRecursive, the nested subvolumes of src are snapshotted
// too, parents before children, each into the place its placeholder holds
// in the new snapshot (the placeholder is removed first). They are found
// as Subvolumes finds them, before the top snapshot is taken, and reached
// by file descriptors below src and dst, never through a symlink or a
// mount; a nested subvolume that is gone by the time its turn comes, or
// whose placeholder is not an empty placeholder any more, is left out,
// and so is one the caller cannot reach (without CAP_SYS_ADMIN: see
// Subvolumes), whose placeholder stays. With SnapshotReadOnly as well,
// every snapshot is taken writable (a placeholder inside a read-only
// snapshot could not be replaced) and made read-only once all are in
// place, children first and the top last: until then the new snapshots
// are writable, and making them read-only needs ownership of their root
// directories (which they take from their sources) or CAP_FOWNER.
// libbtrfsutil refuses read-only recursive snapshots (EINVAL) for that
// reason; here they are allowed, with that window. If a step fails, what
// was created is deleted again (best effort: deleting needs CAP_SYS_ADMIN
// or user_subvol_rm_allowed, and the returned error says if the cleanup
// failed too).
//
// Privilege: as Snapshot; SnapshotRecursive needs search permission on
// the directories holding the nested subvolumes, and see above for
// read-only. Kernel: any supported; SnapshotRecursive 4.18 (unprivileged
// listing). Concurrency: as Snapshot; a recursive snapshot is not atomic:
// each nested subvolume is snapshotted at its own moment.
func SnapshotWith(src, dst string, opts SnapshotOptions) error {
	const op = "BTRFS_IOC_SNAP_CREATE_V2"
	if opts.Flags&^SnapshotFlagsMask != 0 {
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
	return snapshotWith(srcFd, dirFd, name, opts, src, dst)
}

// SnapshotAt is Snapshot with the source open as srcFd and the destination
// the entry name in the directory open as dstParentFd.
func SnapshotAt(srcFd, dstParentFd int, name string, flags SnapshotFlags) error {
	return SnapshotAtWith(srcFd, dstParentFd, name, SnapshotOptions{Flags: flags})
}

// SnapshotAtWith is SnapshotWith with the source open as srcFd and the
// destination the entry name in the directory open as dstParentFd.
func SnapshotAtWith(srcFd, dstParentFd int, name string, opts SnapshotOptions) error {
	if opts.Flags&^SnapshotFlagsMask != 0 {
		return pathErr("BTRFS_IOC_SNAP_CREATE_V2", name, unix.EINVAL)
	}
	return snapshotWith(srcFd, dstParentFd, name, opts, "", name)
}

func snapshotWith(srcFd, dirFd int, name string, opts SnapshotOptions, src, dst string) error {
	if opts.Flags&SnapshotRecursive != 0 {
		return snapshotRecursive(srcFd, dirFd, name, opts, src, dst)
	}
	return snapshotOne(srcFd, dirFd, name, opts.Flags, opts.QgroupInherit, src, dst)
}

// snapshotOne issues one SNAP_CREATE_V2 (flags without SnapshotRecursive)
// and checks that the snapshot is there.
func snapshotOne(srcFd, dirFd int, name string, flags SnapshotFlags, inherit *QgroupInherit, src, dst string) error {
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
	args.Flags = uint64(flags &^ SnapshotRecursive)
	var raw []uint64
	if inherit != nil {
		raw = inherit.raw()
		setQgroupInherit(&args, raw)
	}
	err := SnapCreateV2(dirFd, &args)
	runtime.KeepAlive(raw)
	if err != nil {
		return pathErr(op, dst, err)
	}
	return verifyCreated(dirFd, name, dst, op)
}
