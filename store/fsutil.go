package store

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// How paths below the root are resolved: never through a symlink (a
// build step may plant one anywhere it can write), never out of the
// directory they start from, never across a mount (a step may leave one,
// of / even). Crossing into a btrfs subvolume is not crossing a mount.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openat2Missing is set once openat2 has returned ENOSYS (Linux < 5.6, or
// a seccomp filter that does not know it): from then on openBeneath opens
// one component at a time.
var openat2Missing atomic.Bool

// openDirAt opens name in dirFd as a directory without following a
// symlink, crossing a mount or leaving dirFd, so that a build step that
// replaces an entry with a link or a mount cannot redirect the store
// outside its root (the error is then ELOOP or EXDEV). name may have
// several components. With dirFd AT_FDCWD (the root itself) it only
// refuses a symlink as the last component.
func openDirAt(dirFd int, name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY
	if dirFd == unix.AT_FDCWD {
		fd, err := openat(dirFd, name, flags)
		if err != nil {
			return -1, &fs.PathError{Op: "openat", Path: name, Err: err}
		}
		return fd, nil
	}
	return openBeneath(dirFd, name, flags)
}

// openBeneath opens path below dirFd with flags (O_CLOEXEC and O_NOFOLLOW
// are added) as resolveBeneath says: by openat2, or on kernels without it
// one component at a time with O_NOFOLLOW, comparing mount ids.
func openBeneath(dirFd int, path string, flags int) (int, error) {
	if !openat2Missing.Load() {
		how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW), Resolve: resolveBeneath}
		for {
			fd, err := unix.Openat2(dirFd, path, &how)
			switch err {
			case nil:
				return fd, nil
			case unix.EINTR, unix.EAGAIN: // EAGAIN: a concurrent rename; try again
				continue
			case unix.ENOSYS:
				openat2Missing.Store(true)
			default:
				return -1, &fs.PathError{Op: "openat2", Path: path, Err: err}
			}
			break
		}
	}
	fd, err := openComponents(dirFd, path, flags)
	if err != nil {
		return -1, &fs.PathError{Op: "openat", Path: path, Err: err}
	}
	return fd, nil
}

// openComponents is openBeneath without openat2: each component is opened
// with O_NOFOLLOW (a symlink gives ELOOP), ".." and absolute paths give
// EXDEV, and so does a component on another mount than dirFd.
func openComponents(dirFd int, path string, flags int) (int, error) {
	if strings.HasPrefix(path, "/") {
		return -1, unix.EXDEV
	}
	parts := strings.Split(path, "/")
	var keep []string
	for _, p := range parts {
		switch p {
		case "", ".":
		case "..":
			return -1, unix.EXDEV
		default:
			keep = append(keep, p)
		}
	}
	if len(keep) == 0 {
		return openat(dirFd, ".", flags)
	}
	mnt, err := mountID(dirFd)
	if err != nil {
		return -1, err
	}
	cur := dirFd
	for i, p := range keep {
		f := unix.O_RDONLY | unix.O_DIRECTORY
		if i == len(keep)-1 {
			f = flags
		}
		fd, err := openat(cur, p, f)
		if cur != dirFd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		id, err := mountID(fd)
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

// openat is openat(2) with O_CLOEXEC and O_NOFOLLOW, retried on EINTR.
func openat(dirFd int, name string, flags int) (int, error) {
	return openatMode(dirFd, name, flags, 0)
}

// openatMode is openat with the mode of a file that O_CREAT creates.
func openatMode(dirFd int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirFd, name, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// mountID returns the id of the mount that fd is on: from statx (Linux
// 5.8), else from name_to_handle_at.
func mountID(fd int) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx); err == nil && stx.Mask&unix.STATX_MNT_ID != 0 {
		return stx.Mnt_id, nil
	}
	_, id, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return 0, err
	}
	return uint64(id), nil
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

// moveNoReplace renames, failing with EEXIST rather than replacing.
func moveNoReplace(fromFd int, from string, toFd int, to string) error {
	if err := unix.Renameat2(fromFd, from, toFd, to, unix.RENAME_NOREPLACE); err != nil {
		return &os.LinkError{Op: "renameat2", Old: from, New: to, Err: err}
	}
	return nil
}

// readDirNames lists a directory open as fd without consuming fd.
func readDirNames(fd int) ([]string, error) {
	dup, err := openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY)
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
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
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
