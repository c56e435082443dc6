package ioctl

// Layouts for 386, whose C ABI (i386 System V) aligns a __u64 in a struct
// to 4 bytes, as Go does there: struct btrfs_ioctl_timespec is 12 bytes with
// no tail padding, and every struct that holds one is smaller than on
// amd64. These are what an i386 kernel expects; a 64-bit kernel running
// i386 binaries has _32 variants only of SEND, SET_RECEIVED_SUBVOL and
// ENCODED_READ/WRITE (fs/btrfs/ioctl.c), whose sizes these match.

// Timespec is struct btrfs_ioctl_timespec.
type Timespec struct {
	Sec  uint64
	Nsec uint32
}

const (
	SizeofTimespec          = 12
	SizeofGetSubvolInfoArgs = 488

	// Of the send and receive structs, which hold a user pointer.
	sizeofReceivedSubvolArgs = 192 // two Timespecs
	sizeofSendArgs           = 68  // a 4-byte pointer, no padding
	sizeofEncodedIOArgs      = 120 // 4-byte iov pointer and iovcnt
)
