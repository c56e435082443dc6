package store

import (
	"errors"
	"io/fs"
	"os"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// openDirAt opens name in dirFd as a directory without following a
// symlink, so that a build step that replaces an entry with a link cannot
// redirect the store outside its root.
func openDirAt(dirFd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			if err != nil {
				return -1, &fs.PathError{Op: "openat", Path: name, Err: err}
			}
			return fd, nil
		}
	}
}

// mkdirOpen creates directory name in dirFd and opens it.
func mkdirOpen(dirFd int, name string) (int, error) {
	if err := unix.Mkdirat(dirFd, name, 0o755); err != nil {
		return -1, &fs.PathError{Op: "mkdirat", Path: name, Err: err}
	}
	return openDirAt(dirFd, name)
}

// exchange atomically swaps two entries of one directory (both may be
// subvolumes, read-only ones included).
func exchange(dirFd int, a, b string) error {
	if err := unix.Renameat2(dirFd, a, dirFd, b, unix.RENAME_EXCHANGE); err != nil {
		return &os.LinkError{Op: "renameat2 exchange", Old: a, New: b, Err: err}
	}
	return nil
}

// moveNoReplace renames, failing with EEXIST rather than replacing.
func moveNoReplace(fromFd int, from string, toFd int, to string) error {
	if err := unix.Renameat2(fromFd, from, toFd, to, unix.RENAME_NOREPLACE); err != nil {
		return &os.LinkError{Op: "renameat2", Old: from, New: to, Err: err}
	}
	return nil
}

// removeEntry removes name from dirFd whatever it is: a file, a plain
// directory tree, or a subvolume with nested subvolumes (read-only ones
// included). An absent entry is not an error.
func removeEntry(dirFd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return &fs.PathError{Op: "fstatat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unlinkAt(dirFd, name, 0)
	}
	if st.Ino == ioctl.BTRFS_FIRST_FREE_OBJECTID {
		return deleteSubvolume(dirFd, name)
	}
	fd, err := openDirAt(dirFd, name)
	if err != nil {
		return err
	}
	dir := os.NewFile(uintptr(fd), name)
	entries, err := dir.ReadDir(-1)
	for _, e := range entries {
		if rerr := removeEntry(fd, e.Name()); rerr != nil && err == nil {
			err = rerr
		}
	}
	dir.Close()
	if err != nil {
		return err
	}
	return unlinkAt(dirFd, name, unix.AT_REMOVEDIR)
}

func unlinkAt(dirFd int, name string, flags int) error {
	if err := unix.Unlinkat(dirFd, name, flags); err != nil && err != unix.ENOENT {
		return &fs.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	return nil
}

// deleteSubvolume deletes a subvolume and every subvolume nested in it.
// Without CAP_SYS_ADMIN (on a user_subvol_rm_allowed mount) the kernel
// refuses to delete read-only subvolumes, so their owner first makes them
// writable, the top one and every nested one, and tries again.
func deleteSubvolume(dirFd int, name string) error {
	// A plain delete first: the kernel refuses with ENOTEMPTY when there
	// are nested subvolumes, which are rare, and only then is the tree
	// searched for them.
	err := ioctl.DeleteSubvolumeAt(dirFd, name, 0)
	if errors.Is(err, unix.ENOTEMPTY) {
		err = ioctl.DeleteSubvolumeAt(dirFd, name, ioctl.DeleteRecursive)
	}
	if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EROFS) {
		return err
	}
	fd, oerr := openDirAt(dirFd, name)
	if oerr != nil {
		return err
	}
	defer unix.Close(fd)
	if ioctl.SetReadOnlyFd(fd, false) != nil {
		return err
	}
	for info, lerr := range ioctl.SubvolumesAt(fd, ".") {
		if lerr != nil {
			return err
		}
		if !info.ReadOnly {
			continue
		}
		nfd, oerr := openDirAt(fd, info.Path)
		if oerr != nil {
			return err
		}
		serr := ioctl.SetReadOnlyFd(nfd, false)
		unix.Close(nfd)
		if serr != nil {
			return err
		}
	}
	return ioctl.DeleteSubvolumeAt(dirFd, name, ioctl.DeleteRecursive)
}
