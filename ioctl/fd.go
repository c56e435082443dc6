package ioctl

import (
	"strings"

	"github.com/btrstore/btrstore/internal/beneath"
	"golang.org/x/sys/unix"
)

// openDir opens a directory for issuing ioctls on it. path is the
// caller's, resolved as open(2) does (with dirfd AT_FDCWD), or one name
// (or a path the kernel reported) below dirfd; to resolve a path below a
// directory that must not be left, use beneath.OpenDir.
func openDir(dirfd int, path string) (int, error) {
	return beneath.Openat(dirfd, path, unix.O_RDONLY|unix.O_DIRECTORY)
}

// openOnFS opens path, which may be any file or directory, for issuing
// filesystem-wide ioctls (SYNC, FS_INFO, TREE_SEARCH, SNAP_DESTROY_V2 by
// id): a directory itself, anything else through its parent directory, so
// that neither read permission on a file nor opening a FIFO or a device is
// needed. The parent must be on the same filesystem and subvolume as the
// file (same st_dev); a file mounted over another gives ErrMountPoint.
func openOnFS(path string) (int, error) {
	pathFd, err := beneath.Openat(unix.AT_FDCWD, path, unix.O_PATH)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pathFd)
	var st unix.Stat_t
	if err := unix.Fstat(pathFd, &st); err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return openDir(unix.AT_FDCWD, path)
	}
	dir, _ := beneath.Split(path)
	fd, err := openDir(unix.AT_FDCWD, dir)
	if err != nil {
		return -1, err
	}
	var pst unix.Stat_t
	if err := unix.Fstat(fd, &pst); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if pst.Dev != st.Dev {
		unix.Close(fd)
		return -1, ErrMountPoint
	}
	return fd, nil
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
// libbtrfsutil does (see beneath.Split): "a/b/" is ("a", "b").
func splitPath(path string) (dir, name string) { return beneath.Split(path) }

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
