package receive

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"
)

// This file is receive's own small path resolver. A shared one for the
// whole module is being built in internal/ (branch ioctl-trust); this one
// should move onto it once it lands.

// ErrUnsafePath: the stream names a path that is absolute, empty where a
// name is needed, or has an empty, "." or ".." component. Matches
// fs.ErrInvalid.
var ErrUnsafePath = fmt.Errorf("unsafe path in send stream: %w", fs.ErrInvalid)

// checkPath accepts the relative paths the kernel writes: components
// separated by single slashes, none empty, "." or "..". The empty path (the
// subvolume's root) is accepted only when root is true.
func checkPath(p string, root bool) error {
	if p == "" {
		if root {
			return nil
		}
		return fmt.Errorf("%w: empty path", ErrUnsafePath)
	}
	for rest := p; ; {
		comp, tail, more := strings.Cut(rest, "/")
		if comp == "" || comp == "." || comp == ".." {
			return fmt.Errorf("%w: %q", ErrUnsafePath, p)
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openBeneath opens p below dirfd without following any symlink (the last
// component included: with O_PATH|O_NOFOLLOW a trailing symlink is opened
// itself, otherwise ELOOP), crossing a mount or leaving dirfd. Where
// openat2 is missing (Linux < 5.6, or refused by a seccomp filter with
// ENOSYS) it walks the path one component at a time with O_NOFOLLOW, which
// refuses symlinks but does not detect mount points.
func openBeneath(dirfd int, p string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW), Mode: uint64(mode), Resolve: resolveFlags}
	for {
		fd, err := unix.Openat2(dirfd, p, &how)
		switch err {
		case nil:
			return fd, nil
		case unix.EINTR, unix.EAGAIN:
			continue
		case unix.ENOSYS:
			return openWalk(dirfd, p, flags, mode)
		case unix.EXDEV:
			return -1, fmt.Errorf("%w: %q crosses a mount point or leaves the subvolume", ErrUnsafePath, p)
		case unix.ELOOP:
			return -1, fmt.Errorf("%w: %q goes through a symlink", ErrUnsafePath, p)
		}
		return -1, err
	}
}

// openWalk is openBeneath without openat2.
func openWalk(dirfd int, p string, flags int, mode uint32) (int, error) {
	if err := checkPath(p, false); err != nil {
		return -1, err
	}
	cur := dirfd
	comps := strings.Split(p, "/")
	for i, c := range comps {
		f := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		var m uint32
		if i == len(comps)-1 {
			f, m = flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode
		}
		fd, err := unix.Openat(cur, c, f, m)
		for err == unix.EINTR {
			fd, err = unix.Openat(cur, c, f, m)
		}
		if cur != dirfd {
			unix.Close(cur)
		}
		if err == unix.ELOOP || (err == unix.ENOTDIR && i < len(comps)-1) {
			return -1, fmt.Errorf("%w: %q goes through a symlink or a file", ErrUnsafePath, p)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// dirCache holds the directories resolved so far, so that the runs of
// commands on entries of the same directories (create, rename, attributes,
// utimes: the kernel goes through inodes, not directories) resolve each one
// once. An entry stays right until its path, or a parent of it, is renamed
// away, replaced by a rename or removed: invalidate drops those.
type dirCache struct {
	fds map[string]int // directory path below the subvolume -> O_PATH fd
}

// maxCachedDirs bounds the open fds; trim empties the cache beyond it.
const maxCachedDirs = 256

func (c *dirCache) drop() {
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	clear(c.fds)
}

// trim empties a full cache. Called between commands only, so that an fd
// returned by parentOf stays open for the whole command.
func (c *dirCache) trim() {
	if len(c.fds) >= maxCachedDirs {
		c.drop()
	}
}

// invalidate forgets p and every directory below it.
func (c *dirCache) invalidate(p string) {
	for k, fd := range c.fds {
		if k == p || (len(k) > len(p) && k[len(p)] == '/' && k[:len(p)] == p) {
			unix.Close(fd)
			delete(c.fds, k)
		}
	}
}

// parentOf returns a directory fd and the last component for path p below
// root: the fd is root itself for a top-level entry, or an O_PATH fd owned
// by the cache (do not close either). The root path "" gives (root, ".")
// when allowed.
func (c *dirCache) parentOf(root int, p string, allowRoot bool) (int, string, error) {
	if err := checkPath(p, allowRoot); err != nil {
		return -1, "", err
	}
	if p == "" {
		return root, ".", nil
	}
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return root, p, nil
	}
	dir, name := p[:i], p[i+1:]
	if fd, ok := c.fds[dir]; ok {
		return fd, name, nil
	}
	fd, err := openBeneath(root, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, "", pathError("resolve", dir, err)
	}
	if c.fds == nil {
		c.fds = make(map[string]int)
	}
	c.fds[dir] = fd
	return fd, name, nil
}

func pathError(op, p string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}
