package ioctl

import (
	"fmt"
	"unsafe"
)

// QgroupInherit says which qgroups a new subvolume or snapshot joins
// (BTRFS_SUBVOL_QGROUP_INHERIT with a struct btrfs_qgroup_inherit), as
// libbtrfsutil's btrfs_util_qgroup_inherit does: the new subvolume's own
// level-0 qgroup 0/<id> becomes a member of each of Qgroups, so that its
// usage counts towards their limits.
//
// Cost: with full qgroup accounting (`btrfs quota enable`), every snapshot
// and every delete makes the kernel rescan the shared extents of the
// subvolumes involved at the next commit, which grows with the number of
// snapshots and can stall commits for seconds on a snapshot-heavy
// filesystem (as a build store is). Simple quotas (`btrfs quota enable
// --simple`, kernel 6.7) account only the extents a subvolume creates,
// cheaply and without rescans, and are the mode to prefer here; inheritance
// works the same in both modes.
type QgroupInherit struct {
	// Qgroups are the qgroup ids (QgroupID(level, id)) the new subvolume's
	// qgroup is added to. Each must exist and be of level 1 or above:
	// kernel 6.7 and later refuse a missing qgroup with ENOENT
	// (fs.ErrNotExist) and a level-0 one with EINVAL (fs.ErrInvalid), and
	// create nothing; older kernels skip a missing one.
	Qgroups []uint64
}

// QgroupID returns the qgroup id level/id as the kernel encodes it
// (level<<48 | id): QgroupID(1, 100) is the qgroup `btrfs qgroup show`
// prints as 1/100.
func QgroupID(level uint16, id uint64) uint64 {
	return uint64(level)<<BTRFS_QGROUP_LEVEL_SHIFT | id&(1<<BTRFS_QGROUP_LEVEL_SHIFT-1)
}

// raw returns the struct btrfs_qgroup_inherit for q, as words, or nil for
// a nil q.
func (q *QgroupInherit) raw() []uint64 {
	if q == nil {
		return nil
	}
	buf := make([]uint64, SizeofQgroupInherit/8+len(q.Qgroups))
	head := (*RawQgroupInherit)(unsafe.Pointer(&buf[0]))
	head.Num_qgroups = uint64(len(q.Qgroups))
	copy(buf[SizeofQgroupInherit/8:], q.Qgroups)
	return buf
}

// CreateOptions modify CreateSubvolumeWith. The zero value creates as
// CreateSubvolume does.
type CreateOptions struct {
	// QgroupInherit, if not nil, adds the new subvolume to qgroups (see
	// QgroupInherit for what that costs).
	QgroupInherit *QgroupInherit
}

// CreateSubvolumeWith is CreateSubvolume with options.
//
// Privilege: as CreateSubvolume; QgroupInherit needs no more (the kernel
// checks only that the qgroups exist). Kernel: any supported; 6.7 checks
// QgroupInherit strictly (see QgroupInherit.Qgroups). With quotas
// disabled the kernel ignores QgroupInherit. Concurrency: as
// CreateSubvolume.
func CreateSubvolumeWith(path string, opts CreateOptions) error {
	return createPath(path, opts.QgroupInherit)
}

// CreateSubvolumeAtWith is CreateSubvolumeWith for the entry name in the
// directory open as parentFd. name must be a single path element.
func CreateSubvolumeAtWith(parentFd int, name string, opts CreateOptions) error {
	return createAt(parentFd, name, name, opts.QgroupInherit)
}

// String formats a qgroup id as `btrfs qgroup show` does: "level/id".
func qgroupString(q uint64) string {
	return fmt.Sprintf("%d/%d", q>>BTRFS_QGROUP_LEVEL_SHIFT, q&(1<<BTRFS_QGROUP_LEVEL_SHIFT-1))
}

// setQgroupInherit points args at the struct btrfs_qgroup_inherit in buf
// (its head then its qgroup ids, as words) and sets
// BTRFS_SUBVOL_QGROUP_INHERIT. The kernel's union overlays VolArgsV2.Unused
// with { __u64 size; struct btrfs_qgroup_inherit *qgroup_inherit; }: the
// size in the first word, the pointer at the start of the second (a C
// pointer, 4 or 8 bytes, native order). buf must stay alive until the
// ioctl returns (runtime.KeepAlive).
func setQgroupInherit(args *VolArgsV2, buf []uint64) {
	args.Flags |= BTRFS_SUBVOL_QGROUP_INHERIT
	args.Unused[0] = uint64(len(buf) * 8)
	*(*uintptr)(unsafe.Pointer(&args.Unused[1])) = uintptr(unsafe.Pointer(&buf[0]))
}
