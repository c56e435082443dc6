package ioctl

// Request numbers, constants and argument structs of the btrfs ioctl
// interface, transcribed from the kernel's include/uapi/linux/btrfs.h and
// btrfs_tree.h. Field names keep the kernel's (as x/sys/unix does). What
// differs per architecture is in small files chosen by build tag: the _IOC
// encoding (ioc_generic.go, ioc_powerpc.go) and the layouts that change on
// 386 (layout_386.go, layout_not386.go). abi_test.go pins every request
// number, size and moving offset per architecture family on any GOARCH;
// headers_test.go (cgo) pins them against linux/btrfs.h on the host.

// The kernel's _IOC encoding of a request number: nr in bits 0-7, the type
// (BTRFS_IOCTL_MAGIC) in bits 8-15, the argument's size from bit 16,
// iocSizeBits wide, and the direction above it. The direction values and
// iocSizeBits differ per architecture family (include/uapi/asm-generic/
// ioctl.h against arch/{powerpc,mips,sparc,alpha}/include/uapi/asm/
// ioctl.h): ioc_generic.go and ioc_powerpc.go define them by build tag.
const (
	iocSizeShift = 16
	iocDirShift  = iocSizeShift + iocSizeBits
	iocBtrfs     = BTRFS_IOCTL_MAGIC << 8

	iocIO  = iocNone << iocDirShift              // _IO
	iocR   = iocRead << iocDirShift              // _IOR
	iocW   = iocWrite << iocDirShift             // _IOW
	iocWR  = (iocRead | iocWrite) << iocDirShift // _IOWR
	iocMax = 1<<iocSizeBits - 1                  // the largest argument size

	// ptrSize is the size of a C pointer and unsigned long, 4 or 8, as an
	// untyped constant (unsafe.Sizeof would be a typed one).
	ptrSize = (32 << (^uint(0) >> 63)) / 8
)

// The kernel rejects an argument size that does not fit _IOC_SIZEBITS at
// compile time (_IOC_TYPECHECK); so does this, for the largest one.
var _ [iocMax - SizeofVolArgs]struct{}

// Request numbers, as the kernel's _IO/_IOR/_IOW/_IOWR macros compute them
// on the architecture being built for. The sizes are the Sizeof constants,
// which abi_test.go pins against unsafe.Sizeof of the Go structs, and the
// values are pinned per architecture family by TestRequestNumbers (and on
// amd64 against linux/btrfs.h by TestHeaderConstants). The comments give
// the amd64 value.
const (
	BTRFS_IOC_SYNC               = iocIO | iocBtrfs | 8                                             // 0x9408: _IO(0x94, 8)
	BTRFS_IOC_SNAP_DESTROY       = iocW | SizeofVolArgs<<iocSizeShift | iocBtrfs | 15               // 0x5000940f: _IOW(0x94, 15, struct btrfs_ioctl_vol_args)
	BTRFS_IOC_TREE_SEARCH        = iocWR | SizeofSearchArgs<<iocSizeShift | iocBtrfs | 17           // 0xd0009411: _IOWR(0x94, 17, struct btrfs_ioctl_search_args)
	BTRFS_IOC_TREE_SEARCH_V2     = iocWR | SizeofSearchArgsV2<<iocSizeShift | iocBtrfs | 17         // 0xc0709411: _IOWR(0x94, 17, struct btrfs_ioctl_search_args_v2)
	BTRFS_IOC_INO_LOOKUP         = iocWR | SizeofInoLookupArgs<<iocSizeShift | iocBtrfs | 18        // 0xd0009412: _IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)
	BTRFS_IOC_DEFAULT_SUBVOL     = iocW | 8<<iocSizeShift | iocBtrfs | 19                           // 0x40089413: _IOW(0x94, 19, __u64)
	BTRFS_IOC_SPACE_INFO         = iocWR | SizeofSpaceArgs<<iocSizeShift | iocBtrfs | 20            // 0xc0109414: _IOWR(0x94, 20, struct btrfs_ioctl_space_args)
	BTRFS_IOC_WAIT_SYNC          = iocW | 8<<iocSizeShift | iocBtrfs | 22                           // 0x40089416: _IOW(0x94, 22, __u64)
	BTRFS_IOC_SNAP_CREATE_V2     = iocW | SizeofVolArgsV2<<iocSizeShift | iocBtrfs | 23             // 0x50009417: _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)
	BTRFS_IOC_START_SYNC         = iocR | 8<<iocSizeShift | iocBtrfs | 24                           // 0x80089418: _IOR(0x94, 24, __u64)
	BTRFS_IOC_SUBVOL_CREATE_V2   = iocW | SizeofVolArgsV2<<iocSizeShift | iocBtrfs | 24             // 0x50009418: _IOW(0x94, 24, struct btrfs_ioctl_vol_args_v2)
	BTRFS_IOC_SUBVOL_GETFLAGS    = iocR | 8<<iocSizeShift | iocBtrfs | 25                           // 0x80089419: _IOR(0x94, 25, __u64)
	BTRFS_IOC_SUBVOL_SETFLAGS    = iocW | 8<<iocSizeShift | iocBtrfs | 26                           // 0x4008941a: _IOW(0x94, 26, __u64)
	BTRFS_IOC_DEV_INFO           = iocWR | SizeofDevInfoArgs<<iocSizeShift | iocBtrfs | 30          // 0xd000941e: _IOWR(0x94, 30, struct btrfs_ioctl_dev_info_args)
	BTRFS_IOC_FS_INFO            = iocR | SizeofFsInfoArgs<<iocSizeShift | iocBtrfs | 31            // 0x8400941f: _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args)
	BTRFS_IOC_GET_SUBVOL_INFO    = iocR | SizeofGetSubvolInfoArgs<<iocSizeShift | iocBtrfs | 60     // 0x81f8943c: _IOR(0x94, 60, struct btrfs_ioctl_get_subvol_info_args)
	BTRFS_IOC_GET_SUBVOL_ROOTREF = iocWR | SizeofGetSubvolRootrefArgs<<iocSizeShift | iocBtrfs | 61 // 0xd000943d: _IOWR(0x94, 61, struct btrfs_ioctl_get_subvol_rootref_args)
	BTRFS_IOC_INO_LOOKUP_USER    = iocWR | SizeofInoLookupUserArgs<<iocSizeShift | iocBtrfs | 62    // 0xd000943e: _IOWR(0x94, 62, struct btrfs_ioctl_ino_lookup_user_args)
	BTRFS_IOC_SNAP_DESTROY_V2    = iocW | SizeofVolArgsV2<<iocSizeShift | iocBtrfs | 63             // 0x5000943f: _IOW(0x94, 63, struct btrfs_ioctl_vol_args_v2)
	BTRFS_IOC_SUBVOL_SYNC_WAIT   = iocW | SizeofSubvolWait<<iocSizeShift | iocBtrfs | 65            // 0x40109441: _IOW(0x94, 65, struct btrfs_ioctl_subvol_wait), kernel 6.13

	// Send and receive. The argument structs hold pointers, so their
	// sizes differ on 32-bit architectures: sizeofSendArgs and friends are
	// in layout_386.go and layout_not386.go.
	BTRFS_IOC_SET_RECEIVED_SUBVOL = iocWR | sizeofReceivedSubvolArgs<<iocSizeShift | iocBtrfs | 37 // 0xc0c89425: _IOWR(0x94, 37, struct btrfs_ioctl_received_subvol_args)
	BTRFS_IOC_SEND                = iocW | sizeofSendArgs<<iocSizeShift | iocBtrfs | 38            // 0x40489426: _IOW(0x94, 38, struct btrfs_ioctl_send_args)
	BTRFS_IOC_ENCODED_WRITE       = iocW | sizeofEncodedIOArgs<<iocSizeShift | iocBtrfs | 64       // 0x40809440: _IOW(0x94, 64, struct btrfs_ioctl_encoded_io_args), kernel 5.18
)

// Constants of the btrfs uapi headers.
const (
	BTRFS_IOCTL_MAGIC              = 0x94
	BTRFS_SUPER_MAGIC              = 0x9123683e
	BTRFS_FIRST_FREE_OBJECTID      = 256 // inode number of every subvolume's root directory
	BTRFS_LAST_FREE_OBJECTID       = 0xffffffffffffff00
	BTRFS_FS_TREE_OBJECTID         = 5 // the top-level subvolume
	BTRFS_ROOT_TREE_OBJECTID       = 1
	BTRFS_ORPHAN_OBJECTID          = 0xfffffffffffffffb // -5ULL
	BTRFS_ORPHAN_ITEM_KEY          = 48
	BTRFS_ROOT_ITEM_KEY            = 132
	BTRFS_ROOT_BACKREF_KEY         = 144
	BTRFS_ROOT_REF_KEY             = 156
	BTRFS_VOL_NAME_MAX             = 255
	BTRFS_PATH_NAME_MAX            = 4087
	BTRFS_SUBVOL_NAME_MAX          = 4039
	BTRFS_INO_LOOKUP_PATH_MAX      = 4080
	BTRFS_INO_LOOKUP_USER_PATH_MAX = 4080 - BTRFS_VOL_NAME_MAX - 1
	BTRFS_SEARCH_ARGS_BUFSIZE      = 4096 - SizeofSearchKey
	BTRFS_MAX_ROOTREF_BUFFER_NUM   = 255
	BTRFS_UUID_SIZE                = 16
	BTRFS_FSID_SIZE                = 16
	BTRFS_DEVICE_PATH_NAME_MAX     = 1024

	BTRFS_SUBVOL_RDONLY           = 1 << 1
	BTRFS_SUBVOL_QGROUP_INHERIT   = 1 << 2
	BTRFS_SUBVOL_SPEC_BY_ID       = 1 << 4
	BTRFS_SUBVOL_CREATE_ARGS_MASK = BTRFS_SUBVOL_RDONLY | BTRFS_SUBVOL_QGROUP_INHERIT
	BTRFS_SUBVOL_DELETE_ARGS_MASK = BTRFS_SUBVOL_SPEC_BY_ID

	BTRFS_SUBVOL_SYNC_WAIT_FOR_ONE    = 0
	BTRFS_SUBVOL_SYNC_WAIT_FOR_QUEUED = 1
	BTRFS_SUBVOL_SYNC_COUNT           = 2
	BTRFS_SUBVOL_SYNC_PEEK_FIRST      = 3
	BTRFS_SUBVOL_SYNC_PEEK_LAST       = 4

	// The type and profile bits of a block group (btrfs_tree.h), as
	// SPACE_INFO reports them; the profile gives the raw-to-logical ratio.
	BTRFS_BLOCK_GROUP_DATA      = 1 << 0
	BTRFS_BLOCK_GROUP_SYSTEM    = 1 << 1
	BTRFS_BLOCK_GROUP_METADATA  = 1 << 2
	BTRFS_BLOCK_GROUP_RAID0     = 1 << 3
	BTRFS_BLOCK_GROUP_RAID1     = 1 << 4
	BTRFS_BLOCK_GROUP_DUP       = 1 << 5
	BTRFS_BLOCK_GROUP_RAID10    = 1 << 6
	BTRFS_BLOCK_GROUP_RAID5     = 1 << 7
	BTRFS_BLOCK_GROUP_RAID6     = 1 << 8
	BTRFS_BLOCK_GROUP_RAID1C3   = 1 << 9
	BTRFS_BLOCK_GROUP_RAID1C4   = 1 << 10
	BTRFS_SPACE_INFO_GLOBAL_RSV = 1 << 49

	// BTRFS_ROOT_SUBVOL_RDONLY is the read-only bit of a root item's flags
	// (as GET_SUBVOL_INFO reports them); SUBVOL_GETFLAGS uses
	// BTRFS_SUBVOL_RDONLY.
	BTRFS_ROOT_SUBVOL_RDONLY = 1 << 0
)

// Offsets in the packed on-disk struct btrfs_root_item (btrfs_tree.h).
// Tree search returns item bodies as they are on disk, little-endian on
// every architecture (read them with binary.LittleEndian: parseRootItem,
// parseRootRef); the SearchHeader before each is in native byte order.
const (
	rootItemFlags        = 208
	rootItemUUID         = 247
	rootItemParentUUID   = 263
	rootItemReceivedUUID = 279
	rootItemCtransid     = 295
	rootItemCtime        = 327 // 4 packed btrfs_timespec of 12 bytes
	rootItemGeneration   = 160
	rootItemGenerationV2 = 239
	sizeofRootItem       = 439
)

// (rootItemRefs, the offset of the u32 refs field, is in sync.go.)

// Struct sizes, the same on every architecture; pinned against unsafe.Sizeof
// by TestStructLayout and against the kernel header by TestHeaderStructs.
// SizeofTimespec and SizeofGetSubvolInfoArgs, which differ on 386, are in
// layout_386.go and layout_not386.go.
const (
	SizeofVolArgs              = 4096
	SizeofVolArgsV2            = 4096
	SizeofSearchKey            = 104
	SizeofSearchHeader         = 32
	SizeofSearchArgs           = 4096
	SizeofSearchArgsV2         = 112 // without the flexible buffer
	SizeofInoLookupArgs        = 4096
	SizeofInoLookupUserArgs    = 4096
	SizeofGetSubvolRootrefArgs = 4096
	SizeofSpaceArgs            = 16 // without the flexible array
	SizeofSpaceInfo            = 24
	SizeofDevInfoArgs          = 4096
	SizeofFsInfoArgs           = 1024
	SizeofSubvolWait           = 16
	SizeofRootRef              = 18 // struct btrfs_root_ref, packed
)

// VolArgs is struct btrfs_ioctl_vol_args (SNAP_DESTROY).
type VolArgs struct {
	Fd   int64
	Name [BTRFS_PATH_NAME_MAX + 1]byte
}

// VolArgsV2 is struct btrfs_ioctl_vol_args_v2 (SUBVOL_CREATE_V2,
// SNAP_CREATE_V2, SNAP_DESTROY_V2). The kernel's trailing union of name,
// devid and subvolid is Name; a subvolid goes into its first 8 bytes in
// native byte order (see DeleteSubvolumeByID).
type VolArgsV2 struct {
	Fd      int64
	Transid uint64
	Flags   uint64
	Unused  [4]uint64 // union { struct { size; qgroup_inherit* }; unused[4] }
	Name    [BTRFS_SUBVOL_NAME_MAX + 1]byte
}

// SearchKey is struct btrfs_ioctl_search_key.
type SearchKey struct {
	Tree_id      uint64
	Min_objectid uint64
	Max_objectid uint64
	Min_offset   uint64
	Max_offset   uint64
	Min_transid  uint64
	Max_transid  uint64
	Min_type     uint32
	Max_type     uint32
	Nr_items     uint32
	Unused       uint32
	Unused1      uint64
	Unused2      uint64
	Unused3      uint64
	Unused4      uint64
}

// SearchHeader is struct btrfs_ioctl_search_header, which precedes every
// item in a tree search result buffer.
type SearchHeader struct {
	Transid  uint64
	Objectid uint64
	Offset   uint64
	Type     uint32
	Len      uint32
}

// SearchArgs is struct btrfs_ioctl_search_args (TREE_SEARCH).
type SearchArgs struct {
	Key SearchKey
	Buf [BTRFS_SEARCH_ARGS_BUFSIZE]byte
}

// SearchArgsV2 is the fixed head of struct btrfs_ioctl_search_args_v2; the
// kernel reads Buf_size bytes of result buffer directly after it.
type SearchArgsV2 struct {
	Key      SearchKey
	Buf_size uint64
}

// InoLookupArgs is struct btrfs_ioctl_ino_lookup_args.
type InoLookupArgs struct {
	Treeid   uint64
	Objectid uint64
	Name     [BTRFS_INO_LOOKUP_PATH_MAX]byte
}

// InoLookupUserArgs is struct btrfs_ioctl_ino_lookup_user_args.
type InoLookupUserArgs struct {
	Dirid  uint64
	Treeid uint64
	Name   [BTRFS_VOL_NAME_MAX + 1]byte
	Path   [BTRFS_INO_LOOKUP_USER_PATH_MAX]byte
}

// GetSubvolInfoArgs is struct btrfs_ioctl_get_subvol_info_args.
type GetSubvolInfoArgs struct {
	Treeid        uint64
	Name          [BTRFS_VOL_NAME_MAX + 1]byte
	Parent_id     uint64
	Dirid         uint64
	Generation    uint64
	Flags         uint64
	Uuid          [BTRFS_UUID_SIZE]byte
	Parent_uuid   [BTRFS_UUID_SIZE]byte
	Received_uuid [BTRFS_UUID_SIZE]byte
	Ctransid      uint64
	Otransid      uint64
	Stransid      uint64
	Rtransid      uint64
	Ctime         Timespec
	Otime         Timespec
	Stime         Timespec
	Rtime         Timespec
	Reserved      [8]uint64
}

// Rootref is one entry of GetSubvolRootrefArgs.
type Rootref struct {
	Treeid uint64
	Dirid  uint64
}

// GetSubvolRootrefArgs is struct btrfs_ioctl_get_subvol_rootref_args.
type GetSubvolRootrefArgs struct {
	Min_treeid uint64
	Rootref    [BTRFS_MAX_ROOTREF_BUFFER_NUM]Rootref
	Num_items  uint8
	Align      [7]uint8
}

// SpaceArgs is the fixed head of struct btrfs_ioctl_space_args; Space_slots
// SpaceInfo entries follow it.
type SpaceArgs struct {
	Space_slots  uint64
	Total_spaces uint64
}

// SpaceInfo is struct btrfs_ioctl_space_info.
type SpaceInfo struct {
	Flags       uint64
	Total_bytes uint64
	Used_bytes  uint64
}

// DevInfoArgs is struct btrfs_ioctl_dev_info_args.
type DevInfoArgs struct {
	Devid       uint64
	Uuid        [BTRFS_UUID_SIZE]byte
	Bytes_used  uint64
	Total_bytes uint64
	Unused      [379]uint64
	Path        [BTRFS_DEVICE_PATH_NAME_MAX]byte
}

// FsInfoArgs is struct btrfs_ioctl_fs_info_args.
type FsInfoArgs struct {
	Max_id          uint64
	Num_devices     uint64
	Fsid            [BTRFS_FSID_SIZE]byte
	Nodesize        uint32
	Sectorsize      uint32
	Clone_alignment uint32
	Csum_type       uint16
	Csum_size       uint16
	Flags           uint64
	Generation      uint64
	Metadata_uuid   [BTRFS_FSID_SIZE]byte
	Reserved        [944]byte
}

// SubvolWait is struct btrfs_ioctl_subvol_wait (SUBVOL_SYNC_WAIT, 6.13).
type SubvolWait struct {
	Subvolid uint64
	Mode     uint32
	Count    uint32
}
