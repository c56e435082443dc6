package ioctl

import (
	"strings"

	"golang.org/x/sys/unix"
)

// openDir opens a directory for issuing ioctls on it.
func openDir(dirfd int, path string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// openDirBeneath opens path below dirfd as a directory without following
// a symlink, crossing a mount or leaving dirfd (openat2, Linux 5.6; on
// older kernels, or where a seccomp filter refuses openat2 with ENOSYS,
// only the last component is guarded, by O_NOFOLLOW).
func openDirBeneath(dirfd int, path string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	for {
		fd, err := unix.Openat2(dirfd, path, &how)
		switch err {
		case unix.EINTR, unix.EAGAIN:
			continue
		case unix.ENOSYS:
			for {
				fd, err := unix.Openat(dirfd, path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
				if err != unix.EINTR {
					return fd, err
				}
			}
		}
		return fd, err
	}
}

// CheckBtrfs returns ErrNotBtrfs unless fd is on a btrfs filesystem, and the
// fstatfs error if there is one. Every path-level function calls it before
// its first btrfs ioctl.
func CheckBtrfs(fd int) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return err
	}
	if uint32(st.Type) != BTRFS_SUPER_MAGIC { // Type is int32 on 32-bit arches, uint32 on s390x
		return ErrNotBtrfs
	}
	return nil
}

// checkSubvolume returns ErrNotSubvolume unless fd is the root directory of
// a subvolume (inode 256), after CheckBtrfs.
func checkSubvolume(fd int) error {
	if err := CheckBtrfs(fd); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Ino != BTRFS_FIRST_FREE_OBJECTID || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return ErrNotSubvolume
	}
	return nil
}

// splitPath splits path into its parent directory and last element, as
// libbtrfsutil does: trailing slashes are ignored and nothing is cleaned,
// so "a/b/" is ("a", "b") and "b" is (".", "b").
func splitPath(path string) (dir, name string) {
	p := strings.TrimRight(path, "/")
	if p == "" {
		if path == "" {
			return ".", ""
		}
		return "/", "/" // the root itself: the kernel rejects the name
	}
	i := strings.LastIndexByte(p, '/')
	switch {
	case i < 0:
		return ".", p
	case i == 0:
		return "/", p[1:]
	}
	return p[:i], p[i+1:]
}

// setName copies name into a NUL-terminated kernel name field. Names that do
// not fit give ENAMETOOLONG, names with a NUL byte EINVAL: both before any
// ioctl, so nothing changes on disk.
func setName(dst []byte, name string) error {
	if len(name) >= len(dst) {
		return unix.ENAMETOOLONG
	}
	if strings.IndexByte(name, 0) >= 0 {
		return unix.EINVAL
	}
	n := copy(dst, name)
	dst[n] = 0
	return nil
}

// cstring returns the NUL-terminated string at the start of b.
func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
