package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/btrstore/btrstore/internal/beneath"
	"golang.org/x/sys/unix"
)

// dir is a directory of the store open as fd, with its path relative to
// the root ("." for the root) to name it and its entries in errors and logs.
type dir struct {
	fd   int
	path string
}

// join is the path of entry name of d, its middle elided past maxDisplay
// bytes.
func (d dir) join(name string) string {
	if d.path == "." {
		return name
	}
	p := d.path + "/" + name
	if len(p) <= maxDisplay {
		return p
	}
	const keep = maxDisplay/2 - 2
	return p[:keep] + "/.../" + p[len(p)-keep:]
}

// maxDisplay bounds the length of a path in an error or log line: a
// deep tree's would otherwise fill kilobytes.
const maxDisplay = 256

// openDirAt opens name in dirFd as a directory without following a
// symlink, crossing a mount or leaving dirFd (beneath.OpenDir: never
// through a symlink, a build step may plant one anywhere it can write;
// never out of dirFd; never across a mount, a step may leave one, of /
// even; crossing into a btrfs subvolume is not crossing a mount), so that
// a build step that replaces an entry with a link or a mount cannot
// redirect the store outside its root (the error is then ELOOP or EXDEV).
// name may have several components. With dirFd AT_FDCWD (the root itself)
// it only refuses a symlink as the last component.
func openDirAt(dirFd int, name string) (int, error) {
	if dirFd == unix.AT_FDCWD {
		fd, err := beneath.Openat(dirFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			return -1, &fs.PathError{Op: "openat", Path: name, Err: err}
		}
		return fd, nil
	}
	return openBeneath(dirFd, name, unix.O_RDONLY|unix.O_DIRECTORY)
}

// openBeneath is beneath.Open with its error naming path.
func openBeneath(dirFd int, path string, flags int) (int, error) {
	fd, err := beneath.Open(dirFd, path, flags)
	if err != nil {
		return -1, &fs.PathError{Op: "openat", Path: path, Err: err}
	}
	return fd, nil
}

// openatMode is openat(2) with O_CLOEXEC and O_NOFOLLOW and the mode of a
// file that O_CREAT creates, retried on EINTR.
func openatMode(dirFd int, name string, flags int, mode uint32) (int, error) {
	return beneath.Retry2(func() (int, error) {
		return unix.Openat(dirFd, name, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode)
	})
}

// mkdirOpen creates directory name in dirFd and opens it.
func mkdirOpen(dirFd int, name string) (int, error) {
	if err := unix.Mkdirat(dirFd, name, 0o755); err != nil {
		return -1, &fs.PathError{Op: "mkdirat", Path: name, Err: err}
	}
	return openDirAt(dirFd, name)
}

// maxNameTries bounds the fresh names tried when a temporary name is
// taken: only a build step that plants entries in the store's temporary
// directories makes one collide.
const maxNameTries = 16

// mkdirOpenTmp creates and opens a fresh directory prefix<n> in dirFd,
// taking the next name while one exists.
func (s *Store) mkdirOpenTmp(dirFd int, prefix string) (name string, fd int, err error) {
	for range maxNameTries {
		name = s.tmpName(prefix)
		fd, err = mkdirOpen(dirFd, name)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	return name, fd, err
}

// moveToTmp renames from in fromFd to a fresh name prefix<n> in toFd,
// taking the next name while one exists.
func (s *Store) moveToTmp(fromFd int, from string, toFd int, prefix string) (string, error) {
	var err error
	for range maxNameTries {
		to := s.tmpName(prefix)
		if err = moveNoReplace(fromFd, from, toFd, to); !errors.Is(err, fs.ErrExist) {
			return to, err
		}
	}
	return "", err
}

// exchange atomically swaps two entries of one directory (both may be
// subvolumes, read-only ones included).
func exchange(dirFd int, a, b string) error {
	if err := unix.Renameat2(dirFd, a, dirFd, b, unix.RENAME_EXCHANGE); err != nil {
		return &os.LinkError{Op: "renameat2 exchange", Old: a, New: b, Err: err}
	}
	return nil
}

// holds reports whether the entry name of dirFd (not followed) is the
// file open as fd: the same device and inode.
func holds(dirFd int, name string, fd int) bool {
	var have, want unix.Stat_t
	return unix.Fstat(fd, &want) == nil && unix.Fstatat(dirFd, name, &have, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		have.Dev == want.Dev && have.Ino == want.Ino
}

// moveNoReplace renames, failing with EEXIST rather than replacing.
func moveNoReplace(fromFd int, from string, toFd int, to string) error {
	if err := unix.Renameat2(fromFd, from, toFd, to, unix.RENAME_NOREPLACE); err != nil {
		return &os.LinkError{Op: "renameat2", Old: from, New: to, Err: err}
	}
	return nil
}

// describeEntry says what is at name in dirFd where a directory was
// expected; only called on failures.
func describeEntry(dirFd int, name string) string {
	var stx unix.Statx_t
	switch err := unix.Statx(dirFd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &stx); {
	case err == unix.ENOENT:
		return "is gone"
	case err != nil:
		return "cannot be looked at"
	case stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0:
		return "has a mount on it"
	case stx.Mode&unix.S_IFMT == unix.S_IFLNK:
		target, _ := beneath.Readlinkat(dirFd, name)
		return fmt.Sprintf("is a symbolic link now (to %q)", target)
	case stx.Mode&unix.S_IFMT != unix.S_IFDIR:
		return "is not a directory any more"
	}
	return "cannot be opened"
}

// readDirNames lists a directory open as fd without consuming fd.
func readDirNames(fd int) ([]string, error) {
	dup, err := beneath.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

// fdPath returns the path the kernel has for fd (through /proc), with ok
// false when it cannot tell or fd's file was deleted.
//
// The kernel appends " (deleted)" to the path of a deleted file, but a
// live file may have a name ending so too (a build step can rename its
// work directory to that): a path with that suffix is taken as the name
// only if it still leads to fd's inode (device and inode compared, the
// last component not followed), else fd's file is deleted.
func fdPath(fd int) (path string, ok bool) {
	p, err := beneath.FdPath(fd)
	if err != nil || !strings.HasPrefix(p, "/") {
		return "", false
	}
	if strings.HasSuffix(p, deletedSuffix) {
		var at, of unix.Stat_t
		if unix.Fstat(fd, &of) != nil || unix.Lstat(p, &at) != nil || at.Dev != of.Dev || at.Ino != of.Ino {
			return "", false
		}
	}
	return p, true
}

// deletedSuffix is what d_path appends to the path of a deleted file.
const deletedSuffix = " (deleted)"
