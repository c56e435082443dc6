//go:build cgo

// Package cheader is the test oracle for ioctl's kernel ABI: it exposes the
// request numbers, constants, struct types and offsets as the C compiler
// computes them from linux/btrfs.h and linux/btrfs_tree.h. Only tests import
// it; the library itself has no cgo.
package cheader

/*
#include <stddef.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/magic.h>

// SUBVOL_SYNC_WAIT is from Linux 6.13, newer than the headers of Debian 12
// (6.1) and of the 6.12 kernel packages. Where the installed header lacks
// it, these definitions are copied verbatim from the 6.13 uapi header, so
// at least the request number is computed by the real _IOW macro.
#ifndef BTRFS_IOC_SUBVOL_SYNC_WAIT
struct btrfs_ioctl_subvol_wait {
	__u64 subvolid;
	__u32 mode;
	__u32 count;
};
#define BTRFS_SUBVOL_SYNC_WAIT_FOR_ONE		(0)
#define BTRFS_SUBVOL_SYNC_WAIT_FOR_QUEUED	(1)
#define BTRFS_SUBVOL_SYNC_COUNT			(2)
#define BTRFS_SUBVOL_SYNC_PEEK_FIRST		(3)
#define BTRFS_SUBVOL_SYNC_PEEK_LAST		(4)
#define BTRFS_IOC_SUBVOL_SYNC_WAIT _IOW(BTRFS_IOCTL_MAGIC, 65, \
					struct btrfs_ioctl_subvol_wait)
#define CHEADER_SYNC_WAIT_FROM_COPY 1
#else
#define CHEADER_SYNC_WAIT_FROM_COPY 0
#endif

enum { root_item_off_generation = offsetof(struct btrfs_root_item, generation) };
enum { root_item_off_flags = offsetof(struct btrfs_root_item, flags) };
enum { root_item_off_refs = offsetof(struct btrfs_root_item, refs) };
enum { root_item_off_generation_v2 = offsetof(struct btrfs_root_item, generation_v2) };
enum { root_item_off_uuid = offsetof(struct btrfs_root_item, uuid) };
enum { root_item_off_parent_uuid = offsetof(struct btrfs_root_item, parent_uuid) };
enum { root_item_off_received_uuid = offsetof(struct btrfs_root_item, received_uuid) };
enum { root_item_off_ctransid = offsetof(struct btrfs_root_item, ctransid) };
enum { root_item_off_ctime = offsetof(struct btrfs_root_item, ctime) };
*/
import "C"

// SyncWaitFromCopy reports whether SUBVOL_SYNC_WAIT came from the copied
// 6.13 definitions rather than the installed header.
const SyncWaitFromCopy = C.CHEADER_SYNC_WAIT_FROM_COPY == 1

// Values maps each constant's name to its value as C computes it.
var Values = map[string]uint64{
	"BTRFS_IOC_SYNC":                    C.BTRFS_IOC_SYNC,
	"BTRFS_IOC_SNAP_DESTROY":            C.BTRFS_IOC_SNAP_DESTROY,
	"BTRFS_IOC_TREE_SEARCH":             C.BTRFS_IOC_TREE_SEARCH,
	"BTRFS_IOC_TREE_SEARCH_V2":          C.BTRFS_IOC_TREE_SEARCH_V2,
	"BTRFS_IOC_INO_LOOKUP":              C.BTRFS_IOC_INO_LOOKUP,
	"BTRFS_IOC_DEFAULT_SUBVOL":          C.BTRFS_IOC_DEFAULT_SUBVOL,
	"BTRFS_IOC_SPACE_INFO":              C.BTRFS_IOC_SPACE_INFO,
	"BTRFS_IOC_WAIT_SYNC":               C.BTRFS_IOC_WAIT_SYNC,
	"BTRFS_IOC_SNAP_CREATE_V2":          C.BTRFS_IOC_SNAP_CREATE_V2,
	"BTRFS_IOC_START_SYNC":              C.BTRFS_IOC_START_SYNC,
	"BTRFS_IOC_SUBVOL_CREATE_V2":        C.BTRFS_IOC_SUBVOL_CREATE_V2,
	"BTRFS_IOC_SUBVOL_GETFLAGS":         C.BTRFS_IOC_SUBVOL_GETFLAGS,
	"BTRFS_IOC_SUBVOL_SETFLAGS":         C.BTRFS_IOC_SUBVOL_SETFLAGS,
	"BTRFS_IOC_DEV_INFO":                C.BTRFS_IOC_DEV_INFO,
	"BTRFS_IOC_FS_INFO":                 C.BTRFS_IOC_FS_INFO,
	"BTRFS_IOC_GET_SUBVOL_INFO":         C.BTRFS_IOC_GET_SUBVOL_INFO,
	"BTRFS_IOC_GET_SUBVOL_ROOTREF":      C.BTRFS_IOC_GET_SUBVOL_ROOTREF,
	"BTRFS_IOC_INO_LOOKUP_USER":         C.BTRFS_IOC_INO_LOOKUP_USER,
	"BTRFS_IOC_SNAP_DESTROY_V2":         C.BTRFS_IOC_SNAP_DESTROY_V2,
	"BTRFS_IOC_SUBVOL_SYNC_WAIT":        C.BTRFS_IOC_SUBVOL_SYNC_WAIT,
	"BTRFS_IOCTL_MAGIC":                 C.BTRFS_IOCTL_MAGIC,
	"BTRFS_SUPER_MAGIC":                 C.BTRFS_SUPER_MAGIC,
	"BTRFS_FIRST_FREE_OBJECTID":         C.BTRFS_FIRST_FREE_OBJECTID,
	"BTRFS_LAST_FREE_OBJECTID":          C.BTRFS_LAST_FREE_OBJECTID,
	"BTRFS_FS_TREE_OBJECTID":            C.BTRFS_FS_TREE_OBJECTID,
	"BTRFS_ROOT_TREE_OBJECTID":          C.BTRFS_ROOT_TREE_OBJECTID,
	"BTRFS_ORPHAN_OBJECTID":             C.BTRFS_ORPHAN_OBJECTID,
	"BTRFS_ORPHAN_ITEM_KEY":             C.BTRFS_ORPHAN_ITEM_KEY,
	"BTRFS_ROOT_ITEM_KEY":               C.BTRFS_ROOT_ITEM_KEY,
	"BTRFS_ROOT_BACKREF_KEY":            C.BTRFS_ROOT_BACKREF_KEY,
	"BTRFS_ROOT_REF_KEY":                C.BTRFS_ROOT_REF_KEY,
	"BTRFS_VOL_NAME_MAX":                C.BTRFS_VOL_NAME_MAX,
	"BTRFS_PATH_NAME_MAX":               C.BTRFS_PATH_NAME_MAX,
	"BTRFS_SUBVOL_NAME_MAX":             C.BTRFS_SUBVOL_NAME_MAX,
	"BTRFS_INO_LOOKUP_PATH_MAX":         C.BTRFS_INO_LOOKUP_PATH_MAX,
	"BTRFS_INO_LOOKUP_USER_PATH_MAX":    C.BTRFS_INO_LOOKUP_USER_PATH_MAX,
	"BTRFS_SEARCH_ARGS_BUFSIZE":         C.BTRFS_SEARCH_ARGS_BUFSIZE,
	"BTRFS_MAX_ROOTREF_BUFFER_NUM":      C.BTRFS_MAX_ROOTREF_BUFFER_NUM,
	"BTRFS_UUID_SIZE":                   C.BTRFS_UUID_SIZE,
	"BTRFS_FSID_SIZE":                   C.BTRFS_FSID_SIZE,
	"BTRFS_DEVICE_PATH_NAME_MAX":        C.BTRFS_DEVICE_PATH_NAME_MAX,
	"BTRFS_SUBVOL_RDONLY":               C.BTRFS_SUBVOL_RDONLY,
	"BTRFS_SUBVOL_QGROUP_INHERIT":       C.BTRFS_SUBVOL_QGROUP_INHERIT,
	"BTRFS_SUBVOL_SPEC_BY_ID":           C.BTRFS_SUBVOL_SPEC_BY_ID,
	"BTRFS_SUBVOL_CREATE_ARGS_MASK":     C.BTRFS_SUBVOL_CREATE_ARGS_MASK,
	"BTRFS_SUBVOL_DELETE_ARGS_MASK":     C.BTRFS_SUBVOL_DELETE_ARGS_MASK,
	"BTRFS_SUBVOL_SYNC_WAIT_FOR_ONE":    C.BTRFS_SUBVOL_SYNC_WAIT_FOR_ONE,
	"BTRFS_SUBVOL_SYNC_WAIT_FOR_QUEUED": C.BTRFS_SUBVOL_SYNC_WAIT_FOR_QUEUED,
	"BTRFS_SUBVOL_SYNC_COUNT":           C.BTRFS_SUBVOL_SYNC_COUNT,
	"BTRFS_SUBVOL_SYNC_PEEK_FIRST":      C.BTRFS_SUBVOL_SYNC_PEEK_FIRST,
	"BTRFS_SUBVOL_SYNC_PEEK_LAST":       C.BTRFS_SUBVOL_SYNC_PEEK_LAST,
	"BTRFS_BLOCK_GROUP_DATA":            C.BTRFS_BLOCK_GROUP_DATA,
	"BTRFS_BLOCK_GROUP_SYSTEM":          C.BTRFS_BLOCK_GROUP_SYSTEM,
	"BTRFS_BLOCK_GROUP_METADATA":        C.BTRFS_BLOCK_GROUP_METADATA,
	"BTRFS_BLOCK_GROUP_RAID0":           C.BTRFS_BLOCK_GROUP_RAID0,
	"BTRFS_BLOCK_GROUP_RAID1":           C.BTRFS_BLOCK_GROUP_RAID1,
	"BTRFS_BLOCK_GROUP_DUP":             C.BTRFS_BLOCK_GROUP_DUP,
	"BTRFS_BLOCK_GROUP_RAID10":          C.BTRFS_BLOCK_GROUP_RAID10,
	"BTRFS_BLOCK_GROUP_RAID5":           C.BTRFS_BLOCK_GROUP_RAID5,
	"BTRFS_BLOCK_GROUP_RAID6":           C.BTRFS_BLOCK_GROUP_RAID6,
	"BTRFS_BLOCK_GROUP_RAID1C3":         C.BTRFS_BLOCK_GROUP_RAID1C3,
	"BTRFS_BLOCK_GROUP_RAID1C4":         C.BTRFS_BLOCK_GROUP_RAID1C4,
	"BTRFS_SPACE_INFO_GLOBAL_RSV":       C.BTRFS_SPACE_INFO_GLOBAL_RSV,
	"BTRFS_ROOT_SUBVOL_RDONLY":          C.BTRFS_ROOT_SUBVOL_RDONLY,

	// Send and receive.
	"BTRFS_IOC_SET_RECEIVED_SUBVOL": C.BTRFS_IOC_SET_RECEIVED_SUBVOL,
	"BTRFS_IOC_SEND":                C.BTRFS_IOC_SEND,
	"BTRFS_IOC_ENCODED_WRITE":       C.BTRFS_IOC_ENCODED_WRITE,

	"SizeofRootRef":        C.sizeof_struct_btrfs_root_ref,
	"sizeofRootItem":       C.sizeof_struct_btrfs_root_item,
	"rootItemGeneration":   uint64(C.root_item_off_generation),
	"rootItemFlags":        uint64(C.root_item_off_flags),
	"rootItemRefs":         uint64(C.root_item_off_refs),
	"rootItemGenerationV2": uint64(C.root_item_off_generation_v2),
	"rootItemUUID":         uint64(C.root_item_off_uuid),
	"rootItemParentUUID":   uint64(C.root_item_off_parent_uuid),
	"rootItemReceivedUUID": uint64(C.root_item_off_received_uuid),
	"rootItemCtransid":     uint64(C.root_item_off_ctransid),
	"rootItemCtime":        uint64(C.root_item_off_ctime),
	"SizeofTimespecPacked": C.sizeof_struct_btrfs_timespec,
}

// The kernel's structs, for comparing layouts field by field.
type (
	VolArgs              C.struct_btrfs_ioctl_vol_args
	VolArgsV2            C.struct_btrfs_ioctl_vol_args_v2
	SearchKey            C.struct_btrfs_ioctl_search_key
	SearchHeader         C.struct_btrfs_ioctl_search_header
	SearchArgs           C.struct_btrfs_ioctl_search_args
	SearchArgsV2         C.struct_btrfs_ioctl_search_args_v2
	InoLookupArgs        C.struct_btrfs_ioctl_ino_lookup_args
	InoLookupUserArgs    C.struct_btrfs_ioctl_ino_lookup_user_args
	Timespec             C.struct_btrfs_ioctl_timespec
	GetSubvolInfoArgs    C.struct_btrfs_ioctl_get_subvol_info_args
	GetSubvolRootrefArgs C.struct_btrfs_ioctl_get_subvol_rootref_args
	SpaceArgs            C.struct_btrfs_ioctl_space_args
	SpaceInfo            C.struct_btrfs_ioctl_space_info
	DevInfoArgs          C.struct_btrfs_ioctl_dev_info_args
	FsInfoArgs           C.struct_btrfs_ioctl_fs_info_args
	SubvolWait           C.struct_btrfs_ioctl_subvol_wait
)
