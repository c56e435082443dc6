package beneath

import (
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MountID returns the id of the mount fd is on (the mount_id of
// /proc/self/mountinfo): from statx (Linux 5.8), else from
// name_to_handle_at. Two fds on one filesystem but different mounts (a bind
// mount) have different ids; two subvolumes of one btrfs mount share one.
//
// Privilege: none. Concurrency: safe.
func MountID(fd int) (uint64, error) {
	var stx unix.Statx_t
	err := StatxFd(fd, unix.STATX_MNT_ID, &stx)
	if err == nil && stx.Mask&unix.STATX_MNT_ID != 0 {
		return stx.Mnt_id, nil
	}
	_, id, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return 0, err
	}
	return uint64(id), nil
}

// emptyPath is the "" that statx takes with AT_EMPTY_PATH, made once so
// that StatxFd allocates nothing (x/sys copies every string it passes).
var emptyPath = [1]byte{0}

// StatxFd is statx(fd, "", AT_EMPTY_PATH, mask, stx), retried on EINTR,
// without allocating: for the fields fstat lacks (mount id, STATX_SUBVOL's
// subvolume id on Linux 6.10). fd may be an O_PATH fd.
func StatxFd(fd int, mask int, stx *unix.Statx_t) error {
	for {
		_, _, errno := unix.Syscall6(unix.SYS_STATX, uintptr(fd), uintptr(unsafe.Pointer(&emptyPath[0])),
			unix.AT_EMPTY_PATH, uintptr(mask), uintptr(unsafe.Pointer(stx)), 0)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return errno
	}
}

// FdPath returns the path the kernel has for fd, from /proc/self/fd, for
// messages and logs only: it is not a path to resolve again (it may have
// been renamed since, and a file renamed to a name ending in " (deleted)"
// reads exactly like a deleted file — so it says nothing about deletion;
// use fstat's link count for that).
//
// Privilege: none; needs /proc. Concurrency: safe.
func FdPath(fd int) (string, error) {
	return Readlinkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd))
}

// Readlinkat returns the target of the symlink name in dirFd, however long
// it is, retried on EINTR.
func Readlinkat(dirFd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := Retry2(func() (int, error) { return unix.Readlinkat(dirFd, name, buf) })
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// SameFile reports whether the fds a and b are open on the same object
// (device and inode).
func SameFile(a, b int) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Fstat(a, &sa); err != nil {
		return false, err
	}
	if err := unix.Fstat(b, &sb); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}
