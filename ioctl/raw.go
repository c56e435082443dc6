package ioctl

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// One function per ioctl on an open file descriptor. They return the bare
// unix.Errno, as x/sys/unix does; the path-level functions wrap it in an
// *fs.PathError naming the ioctl. None of them checks the filesystem type:
// callers that did not open fd themselves on a known btrfs should call
// CheckBtrfs first, because other drivers reuse these request numbers.

func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if e != 0 {
		return e
	}
	return nil
}

// SubvolCreateV2 issues BTRFS_IOC_SUBVOL_CREATE_V2 on the parent directory fd.
func SubvolCreateV2(fd int, args *VolArgsV2) error {
	return ioctlPtr(fd, BTRFS_IOC_SUBVOL_CREATE_V2, unsafe.Pointer(args))
}

// SnapCreateV2 issues BTRFS_IOC_SNAP_CREATE_V2 on the destination's parent
// directory fd; args.Fd is the source subvolume.
func SnapCreateV2(fd int, args *VolArgsV2) error {
	return ioctlPtr(fd, BTRFS_IOC_SNAP_CREATE_V2, unsafe.Pointer(args))
}

// SnapDestroy issues BTRFS_IOC_SNAP_DESTROY on the parent directory fd.
func SnapDestroy(fd int, args *VolArgs) error {
	return ioctlPtr(fd, BTRFS_IOC_SNAP_DESTROY, unsafe.Pointer(args))
}

// SnapDestroyV2 issues BTRFS_IOC_SNAP_DESTROY_V2 (kernel 5.7 for deletion
// by id).
func SnapDestroyV2(fd int, args *VolArgsV2) error {
	return ioctlPtr(fd, BTRFS_IOC_SNAP_DESTROY_V2, unsafe.Pointer(args))
}

// SyncFS issues BTRFS_IOC_SYNC: commit the running transaction and wait.
func SyncFS(fd int) error {
	return ioctlPtr(fd, BTRFS_IOC_SYNC, nil)
}

// StartSync issues BTRFS_IOC_START_SYNC: start a commit, return its transid.
func StartSync(fd int) (transid uint64, err error) {
	err = ioctlPtr(fd, BTRFS_IOC_START_SYNC, unsafe.Pointer(&transid))
	return transid, err
}

// WaitSync issues BTRFS_IOC_WAIT_SYNC: wait for transaction transid (0: the
// current one) to be committed.
func WaitSync(fd int, transid uint64) error {
	return ioctlPtr(fd, BTRFS_IOC_WAIT_SYNC, unsafe.Pointer(&transid))
}

// SubvolSyncWait issues BTRFS_IOC_SUBVOL_SYNC_WAIT (kernel 6.13).
func SubvolSyncWait(fd int, args *SubvolWait) error {
	return ioctlPtr(fd, BTRFS_IOC_SUBVOL_SYNC_WAIT, unsafe.Pointer(args))
}

// TreeSearch issues BTRFS_IOC_TREE_SEARCH (needs CAP_SYS_ADMIN).
func TreeSearch(fd int, args *SearchArgs) error {
	return ioctlPtr(fd, BTRFS_IOC_TREE_SEARCH, unsafe.Pointer(args))
}

// TreeSearchV2 issues BTRFS_IOC_TREE_SEARCH_V2 (needs CAP_SYS_ADMIN) with
// buf as the result buffer: buf must start with a SearchArgsV2 (see
// NewSearchBufferV2); Buf_size is set from len(buf).
func TreeSearchV2(fd int, buf []byte) error {
	if len(buf) < SizeofSearchArgsV2 {
		return unix.EINVAL
	}
	head := (*SearchArgsV2)(unsafe.Pointer(&buf[0]))
	head.Buf_size = uint64(len(buf) - SizeofSearchArgsV2)
	return ioctlPtr(fd, BTRFS_IOC_TREE_SEARCH_V2, unsafe.Pointer(&buf[0]))
}

// NewSearchBufferV2 returns a TREE_SEARCH_V2 argument with room for bufSize
// bytes of results, and its key to fill in.
func NewSearchBufferV2(bufSize int) ([]byte, *SearchKey) {
	// Allocated as uint64s so that the header is 8-byte aligned.
	words := make([]uint64, (SizeofSearchArgsV2+bufSize+7)/8)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), SizeofSearchArgsV2+bufSize)
	return buf, &(*SearchArgsV2)(unsafe.Pointer(&buf[0])).Key
}

// InoLookup issues BTRFS_IOC_INO_LOOKUP (needs CAP_SYS_ADMIN unless it only
// asks for the fd's own subvolume id: Treeid 0, Objectid 256).
func InoLookup(fd int, args *InoLookupArgs) error {
	return ioctlPtr(fd, BTRFS_IOC_INO_LOOKUP, unsafe.Pointer(args))
}

// InoLookupUser issues BTRFS_IOC_INO_LOOKUP_USER (kernel 4.18, no privilege;
// fd must be the root of the subvolume holding Dirid).
func InoLookupUser(fd int, args *InoLookupUserArgs) error {
	return ioctlPtr(fd, BTRFS_IOC_INO_LOOKUP_USER, unsafe.Pointer(args))
}

// GetSubvolInfo issues BTRFS_IOC_GET_SUBVOL_INFO (kernel 4.18, no privilege).
func GetSubvolInfo(fd int, args *GetSubvolInfoArgs) error {
	return ioctlPtr(fd, BTRFS_IOC_GET_SUBVOL_INFO, unsafe.Pointer(args))
}

// GetSubvolRootref issues BTRFS_IOC_GET_SUBVOL_ROOTREF (kernel 4.18, no
// privilege). It returns EOVERFLOW when more entries remain: call again with
// Min_treeid past the last one.
func GetSubvolRootref(fd int, args *GetSubvolRootrefArgs) error {
	return ioctlPtr(fd, BTRFS_IOC_GET_SUBVOL_ROOTREF, unsafe.Pointer(args))
}

// SubvolGetflags issues BTRFS_IOC_SUBVOL_GETFLAGS.
func SubvolGetflags(fd int) (flags uint64, err error) {
	err = ioctlPtr(fd, BTRFS_IOC_SUBVOL_GETFLAGS, unsafe.Pointer(&flags))
	return flags, err
}

// SubvolSetflags issues BTRFS_IOC_SUBVOL_SETFLAGS (owner or CAP_FOWNER).
func SubvolSetflags(fd int, flags uint64) error {
	return ioctlPtr(fd, BTRFS_IOC_SUBVOL_SETFLAGS, unsafe.Pointer(&flags))
}

// DefaultSubvol issues BTRFS_IOC_DEFAULT_SUBVOL (needs CAP_SYS_ADMIN).
func DefaultSubvol(fd int, id uint64) error {
	return ioctlPtr(fd, BTRFS_IOC_DEFAULT_SUBVOL, unsafe.Pointer(&id))
}

// FsInfo issues BTRFS_IOC_FS_INFO.
func FsInfo(fd int, args *FsInfoArgs) error {
	return ioctlPtr(fd, BTRFS_IOC_FS_INFO, unsafe.Pointer(args))
}

// DevInfo issues BTRFS_IOC_DEV_INFO (needs CAP_SYS_ADMIN).
func DevInfo(fd int, args *DevInfoArgs) error {
	return ioctlPtr(fd, BTRFS_IOC_DEV_INFO, unsafe.Pointer(args))
}

// SpaceInfos issues BTRFS_IOC_SPACE_INFO twice, first to count the space
// infos and then to read them.
func SpaceInfos(fd int) ([]SpaceInfo, error) {
	var head SpaceArgs
	if err := ioctlPtr(fd, BTRFS_IOC_SPACE_INFO, unsafe.Pointer(&head)); err != nil {
		return nil, err
	}
	for {
		n := head.Total_spaces
		if n == 0 {
			return nil, nil
		}
		// One allocation: the head followed by n entries.
		words := make([]uint64, (SizeofSpaceArgs+int(n)*SizeofSpaceInfo)/8)
		args := (*SpaceArgs)(unsafe.Pointer(&words[0]))
		args.Space_slots = n
		if err := ioctlPtr(fd, BTRFS_IOC_SPACE_INFO, unsafe.Pointer(&words[0])); err != nil {
			return nil, err
		}
		if args.Total_spaces > n { // grew between the two calls
			head.Total_spaces = args.Total_spaces
			continue
		}
		infos := unsafe.Slice((*SpaceInfo)(unsafe.Pointer(&words[SizeofSpaceArgs/8])), args.Total_spaces)
		return infos, nil
	}
}

// Send and receive.

// SendIoctl issues BTRFS_IOC_SEND on the open subvolume fd (needs
// CAP_SYS_ADMIN); it returns when the kernel has written the whole stream to
// args.Send_fd. The caller keeps the clone source array alive.
func SendIoctl(fd int, args *SendArgs) error {
	return ioctlPtr(fd, BTRFS_IOC_SEND, unsafe.Pointer(args))
}

// SetReceivedSubvol issues BTRFS_IOC_SET_RECEIVED_SUBVOL on a writable
// subvolume (needs CAP_SYS_ADMIN).
func SetReceivedSubvol(fd int, args *ReceivedSubvolArgs) error {
	return ioctlPtr(fd, BTRFS_IOC_SET_RECEIVED_SUBVOL, unsafe.Pointer(args))
}

// EncodedWrite issues BTRFS_IOC_ENCODED_WRITE on a file open for writing
// (kernel 5.18, needs CAP_SYS_ADMIN). It returns the bytes written.
func EncodedWrite(fd int, args *EncodedIOArgs) (int, error) {
	n, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), BTRFS_IOC_ENCODED_WRITE, uintptr(unsafe.Pointer(args)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
