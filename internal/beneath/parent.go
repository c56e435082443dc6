package beneath

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Split splits path into its parent directory and last name as libbtrfsutil
// does: trailing slashes are ignored and nothing is cleaned, so "a/b/" is
// ("a", "b"), "b" is (".", "b"), "/b" is ("/", "b"), and "a/." is ("a", ".")
// — check the name with [CheckName] before acting on it. "/" is ("/", "/")
// and "" is (".", ""), names no operation accepts.
func Split(path string) (dir, name string) {
	p := strings.TrimRight(path, "/")
	if p == "" {
		if path == "" {
			return ".", ""
		}
		return "/", "/"
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

// CheckName returns EINVAL unless name is one entry of a directory: not
// empty, ".", or "..", and without "/" or NUL. An operation that creates,
// deletes or replaces an entry checks its name first, so that "x/." or
// "x/sub/.." cannot make it act on a different directory than the one named.
func CheckName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return unix.EINVAL
	}
	return nil
}

// OpenParent opens the directory that holds the last element of path and
// returns its fd and that element's name, checked with [CheckName] (EINVAL
// otherwise, before anything is opened). This is libbtrfsutil's
// openat_parent_and_name and os.Root's doInRoot: every operation that acts on
// an entry (create, snapshot, delete, rename) resolves its path once, here,
// and then works on (parentFd, name).
//
// With dirFd AT_FDCWD the directory part is the caller's own path and is
// resolved as open(2) does (symlinks followed, mounts crossed): the caller
// named it. With a directory fd it is resolved by [Open], below dirFd. In both
// cases the name itself is never resolved here: whether it is a symlink or a
// mount point is for the caller to check (see [OpenEntry]).
//
// Privilege: search permission on the way. Concurrency: safe.
func OpenParent(dirFd int, path string) (parentFd int, name string, err error) {
	dir, name := Split(path)
	if err := CheckName(name); err != nil {
		return -1, name, err
	}
	if dirFd == unix.AT_FDCWD {
		parentFd, err = Openat(unix.AT_FDCWD, dir, unix.O_RDONLY|unix.O_DIRECTORY)
	} else {
		parentFd, err = OpenDir(dirFd, dir)
	}
	if err != nil {
		return -1, name, err
	}
	return parentFd, name, nil
}

// OpenEntry opens the directory name in parentFd for an operation on that
// very entry: never through a symlink (ELOOP, or ENOTDIR), and never into a
// mount mounted on it (EXDEV): that would act on the mounted filesystem
// instead of the entry. name is checked with [CheckName].
//
// Privilege: search permission on parentFd. Concurrency: safe.
func OpenEntry(parentFd int, name string) (int, error) {
	if err := CheckName(name); err != nil {
		return -1, err
	}
	return OpenDir(parentFd, name)
}
