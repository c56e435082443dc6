package beneath

import (
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Resolve is how Open resolves: below the starting directory, through no
// symlink (magic links of /proc included) and across no mount.
const Resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openat2Missing is set once openat2 has returned ENOSYS: from then on Open
// resolves one component at a time.
var openat2Missing atomic.Bool

// Open opens path, relative to the directory open as dirFd, with flags
// (O_CLOEXEC and O_NOFOLLOW are always added), resolving it as [Resolve] says:
// a symlink anywhere on the way gives ELOOP, an absolute path, a ".." that
// leaves dirFd or a mount crossed gives EXDEV. path "" gives ENOENT, "." opens
// dirFd's directory again. dirFd must be a directory fd, not AT_FDCWD.
//
// Kernel: openat2 (5.6); earlier, the per-component fallback described in the
// package documentation, which needs statx's mount id (5.8) or
// name_to_handle_at. Privilege: search permission on every directory on the
// way, as for openat. Concurrency: safe.
func Open(dirFd int, path string, flags int) (int, error) {
	if !openat2Missing.Load() {
		how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW), Resolve: Resolve}
		for {
			fd, err := unix.Openat2(dirFd, path, &how)
			switch err {
			case nil:
				return fd, nil
			case unix.EINTR, unix.EAGAIN: // EAGAIN: a concurrent rename somewhere; the kernel asks to retry
				continue
			case unix.ENOSYS:
				openat2Missing.Store(true)
			default:
				return -1, err
			}
			break
		}
	}
	return openComponents(dirFd, path, flags)
}

// OpenDir is Open for a directory, read-only: the fd to issue ioctls on or
// to resolve further names below.
func OpenDir(dirFd int, path string) (int, error) {
	return Open(dirFd, path, unix.O_RDONLY|unix.O_DIRECTORY)
}

// openComponents is Open without openat2: each component is opened with
// O_NOFOLLOW from the previous one, and its mount id compared with dirFd's.
// At most two fds are open at a time.
func openComponents(dirFd int, path string, flags int) (int, error) {
	if path == "" {
		return -1, unix.ENOENT
	}
	if strings.HasPrefix(path, "/") {
		return -1, unix.EXDEV
	}
	var parts []string
	for p := range strings.SplitSeq(path, "/") {
		switch p {
		case "", ".":
		case "..":
			return -1, unix.EXDEV
		default:
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return Openat(dirFd, ".", flags)
	}
	mnt, err := MountID(dirFd)
	if err != nil {
		return -1, err
	}
	cur := dirFd
	for i, p := range parts {
		f := unix.O_RDONLY | unix.O_DIRECTORY
		if i == len(parts)-1 {
			f = flags
		}
		fd, err := Openat(cur, p, f|unix.O_NOFOLLOW)
		if cur != dirFd {
			unix.Close(cur)
		}
		if err != nil {
			// A symlink gives ELOOP, or ENOTDIR with O_DIRECTORY:
			// refused either way.
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK { // O_PATH|O_NOFOLLOW opens the link itself
			unix.Close(fd)
			return -1, unix.ELOOP
		}
		id, err := MountID(fd)
		if err == nil && id != mnt {
			err = unix.EXDEV
		}
		if err != nil {
			unix.Close(fd)
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// Openat is openat(2) of one name in dirFd with O_CLOEXEC added, retried on
// EINTR. It does not add O_NOFOLLOW: pass it where the last component must
// not be a symlink. Use it where resolution is the caller's (a path the user
// gave); use Open below a directory the program must not leave.
func Openat(dirFd int, name string, flags int) (int, error) {
	return Retry2(func() (int, error) {
		return unix.Openat(dirFd, name, flags|unix.O_CLOEXEC, 0)
	})
}

// DisableOpenat2 makes Open resolve with its per-component fallback from
// now on, as on a kernel without openat2, and returns a function that
// restores the previous state. It is for tests of callers, which must pass
// both ways; it affects the whole process.
func DisableOpenat2() (restore func()) {
	old := openat2Missing.Swap(true)
	return func() { openat2Missing.Store(old) }
}
