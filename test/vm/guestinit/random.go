package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// seedRandom credits the host's random bytes to the kernel's entropy pool
// (RNDADDENTROPY), which initializes the CRNG at once: a TCG guest has no
// RDRAND and little interrupt entropy.
func seedRandom(seed []byte) error {
	if len(seed) == 0 {
		return nil
	}
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(seed))
	binary.NativeEndian.PutUint32(info[0:], uint32(8*len(seed))) // bits
	binary.NativeEndian.PutUint32(info[4:], uint32(len(seed)))   // bytes
	copy(info[8:], seed)
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0])))
	if errno != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", errno)
	}
	return nil
}
