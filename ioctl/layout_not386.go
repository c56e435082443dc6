//go:build !386

package ioctl

// Layouts for every architecture but 386: the C ABIs align a __u64 in a
// struct to 8 bytes (x86-64, arm64, riscv64, ppc64, s390x, loong64, mips64,
// and the 32-bit arm EABI and mips o32 too), so struct btrfs_ioctl_timespec
// has 4 bytes of tail padding, written out here because Go aligns uint64 to
// only 4 bytes on 32-bit arm and mips.

// Timespec is struct btrfs_ioctl_timespec.
type Timespec struct {
	Sec  uint64
	Nsec uint32
	_    uint32
}

const (
	SizeofTimespec          = 16
	SizeofGetSubvolInfoArgs = 504

	// Of the send and receive structs, which hold a user pointer.
	sizeofReceivedSubvolArgs = 200             // two Timespecs
	sizeofSendArgs           = 72              // 32-bit: a 4-byte pointer, then 4 bytes of padding
	sizeofEncodedIOArgs      = 112 + 2*ptrSize // iov pointer and unsigned long iovcnt
)
