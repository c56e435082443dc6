package ioctl

import (
	"errors"
	"io/fs"

	"golang.org/x/sys/unix"
)

var (
	// ErrNotBtrfs: the path is not on a btrfs filesystem, so no btrfs
	// ioctl was issued (other drivers reuse the request numbers).
	ErrNotBtrfs = errors.New("not on a btrfs filesystem")
	// ErrNotSubvolume: the path is on btrfs but is not the root directory
	// of a subvolume.
	ErrNotSubvolume = errors.New("not a btrfs subvolume")
	// ErrNotCreated: the kernel reported success for a create or snapshot
	// but the new subvolume is not there, which happens when the parent
	// directory is being deleted concurrently.
	ErrNotCreated = errors.New("subvolume not created (parent deleted concurrently?)")
	// ErrNotSupported: the running kernel lacks the ioctl.
	ErrNotSupported = errors.New("not supported by this kernel")
	// ErrMountPoint: the path is a mount point (or a file mounted over
	// another), where an operation on the entry itself was asked for, such
	// as deleting the subvolume there: what is mounted is not what the
	// directory holds. Delete errors with it also match fs.ErrInvalid.
	ErrMountPoint = errors.New("is a mount point")
)

// invalid wraps a sentinel so that errors.Is also matches fs.ErrInvalid (and
// EINVAL, what the kernel answers for the same mistake), with the
// sentinel's message alone.
func invalid(sentinel error) error { return &invalidErr{sentinel} }

type invalidErr struct{ sentinel error }

func (e *invalidErr) Error() string   { return e.sentinel.Error() }
func (e *invalidErr) Unwrap() []error { return []error{e.sentinel, fs.ErrInvalid, unix.EINVAL} }

// pathErr wraps a non-nil error as *fs.PathError{Op, Path}. Two errnos
// also match a sentinel that syscall.Errno alone does not: EINVAL matches
// fs.ErrInvalid, and ENOTTY (the kernel does not know the request) matches
// ErrNotSupported.
func pathErr(op, path string, err error) error {
	switch err {
	case unix.EINVAL:
		err = &errnoAlso{unix.EINVAL, fs.ErrInvalid}
	case unix.ENOTTY:
		err = &errnoAlso{unix.ENOTTY, ErrNotSupported}
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// errnoAlso is an errno that errors.Is also matches with another sentinel.
type errnoAlso struct {
	errno unix.Errno
	also  error
}

func (e *errnoAlso) Error() string   { return e.errno.Error() + " (" + e.also.Error() + ")" }
func (e *errnoAlso) Unwrap() []error { return []error{e.errno, e.also} }
