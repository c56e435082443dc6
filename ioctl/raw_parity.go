package ioctl

import "unsafe"

// Constants and argument structs for the libbtrfsutil-parity operations
// (default subvolume, qgroup inheritance, recursive snapshots), transcribed
// from the kernel's include/uapi/linux/btrfs.h and btrfs_tree.h as in
// btrfs.go. No new request number is needed: these use DEFAULT_SUBVOL,
// SUBVOL_CREATE_V2, SNAP_CREATE_V2 and TREE_SEARCH from btrfs.go.
const (
	BTRFS_ROOT_TREE_DIR_OBJECTID    = 6  // the root tree's directory, holding the "default" entry
	BTRFS_EMPTY_SUBVOL_DIR_OBJECTID = 2  // inode of the placeholder a snapshot holds for a nested subvolume
	BTRFS_DIR_ITEM_KEY              = 84 // struct btrfs_dir_item, keyed by name hash
	BTRFS_QGROUP_LEVEL_SHIFT        = 48 // qgroupid = level<<48 | id

	SizeofQgroupLimit   = 40
	SizeofQgroupInherit = 72 // without the flexible qgroups array
	SizeofDirItem       = 30 // struct btrfs_dir_item, packed, without the name
)

// QgroupLimit is struct btrfs_qgroup_limit.
type QgroupLimit struct {
	Flags    uint64
	Max_rfer uint64
	Max_excl uint64
	Rsv_rfer uint64
	Rsv_excl uint64
}

// RawQgroupInherit is the fixed head of struct btrfs_qgroup_inherit;
// Num_qgroups uint64 qgroup ids follow it (then, on kernels before 6.7,
// Num_ref_copies and Num_excl_copies pairs, which 6.7 rejects). See
// QgroupInherit for the Go form.
type RawQgroupInherit struct {
	Flags           uint64
	Num_qgroups     uint64
	Num_ref_copies  uint64
	Num_excl_copies uint64
	Lim             QgroupLimit
}

// setQgroupInherit points args at the struct btrfs_qgroup_inherit in buf
// (its head then its qgroup ids, as words) and sets
// BTRFS_SUBVOL_QGROUP_INHERIT. The kernel's union overlays Unused with
// { __u64 size; struct btrfs_qgroup_inherit *qgroup_inherit; }: the size
// in the first word, the pointer at the start of the second (a C pointer,
// 4 or 8 bytes, native order). buf must stay alive until the ioctl
// returns (runtime.KeepAlive).
func setQgroupInherit(args *VolArgsV2, buf []uint64) {
	args.Flags |= BTRFS_SUBVOL_QGROUP_INHERIT
	args.Unused[0] = uint64(len(buf) * 8)
	*(*uintptr)(unsafe.Pointer(&args.Unused[1])) = uintptr(unsafe.Pointer(&buf[0]))
}
