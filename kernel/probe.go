package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/btrstore/btrstore/internal/beneath"
	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// ErrNotSupported is what the probes' errors match when the running kernel
// lacks an ioctl. It is ioctl.ErrNotSupported, so errors from both packages
// match either name.
var ErrNotSupported = ioctl.ErrNotSupported

// ProbeSnapDestroyV2 reports whether the kernel has BTRFS_IOC_SNAP_DESTROY_V2
// with BTRFS_SUBVOL_SPEC_BY_ID (deletion by subvolume id, Linux 5.7).
//
// It issues the ioctl with SPEC_BY_ID and subvolume id 0, which a kernel
// that has it rejects with EINVAL before it looks anything up, checks any
// permission or takes write access to the mount: it deletes nothing and
// works unprivileged and on read-only mounts. Older kernels answer ENOTTY.
//
// See [ProbeGetSubvolInfo] for the results, privilege and concurrency.
func ProbeSnapDestroyV2(path string) error { return snapDestroyV2.probe(path) }

// ProbeSubvolSyncWait reports whether the kernel has
// BTRFS_IOC_SUBVOL_SYNC_WAIT (Linux 6.13), by asking it in
// BTRFS_SUBVOL_SYNC_COUNT mode how many deleted subvolumes await cleaning,
// which changes nothing.
//
// See [ProbeGetSubvolInfo] for the results, privilege and concurrency.
func ProbeSubvolSyncWait(path string) error { return subvolSyncWait.probe(path) }

// ProbeGetSubvolInfo reports whether the kernel has BTRFS_IOC_GET_SUBVOL_INFO
// (Linux 4.18), by calling it on path.
//
// Like the other probes it returns nil when the kernel has the ioctl; an
// error matching [ErrNotSupported] whose message names the ioctl and the
// first Linux version that has it when the kernel lacks it; and another
// error when it cannot tell: path missing or unreadable (a *fs.PathError),
// path not on btrfs (matches ioctl.ErrNotBtrfs; no btrfs ioctl is issued,
// as other drivers reuse the numbers), or an unexpected errno.
//
// The answer depends on the kernel only, so the first nil or ErrNotSupported
// is cached for the process and later calls skip the ioctl (but still check
// that path is on btrfs). Errors of the third kind are not cached.
//
// Privilege: none beyond opening path for reading. Concurrency: safe.
func ProbeGetSubvolInfo(path string) error { return getSubvolInfo.probe(path) }

var (
	snapDestroyV2 = &probe{
		op:  "BTRFS_IOC_SNAP_DESTROY_V2",
		min: Version{5, 7, 0},
		ioctl: func(fd int) error {
			// The subvolume id is the first 8 bytes of the name union: 0.
			args := ioctl.VolArgsV2{Flags: ioctl.BTRFS_SUBVOL_SPEC_BY_ID}
			switch err := ioctl.SnapDestroyV2(fd, &args); err {
			case unix.EINVAL:
				return nil // rejected id 0: the kernel knows SPEC_BY_ID
			case nil:
				return errors.New("kernel accepted subvolume id 0")
			default:
				// EOPNOTSUPP: the kernel has it, but not for this filesystem
				// (extent-tree-v2) or mount (idmapped, 5.12-5.14).
				return err
			}
		},
	}
	subvolSyncWait = &probe{
		op:  "BTRFS_IOC_SUBVOL_SYNC_WAIT",
		min: Version{6, 13, 0},
		ioctl: func(fd int) error {
			args := ioctl.SubvolWait{Mode: ioctl.BTRFS_SUBVOL_SYNC_COUNT}
			return ioctl.SubvolSyncWait(fd, &args)
		},
	}
	getSubvolInfo = &probe{
		op:  "BTRFS_IOC_GET_SUBVOL_INFO",
		min: Version{4, 18, 0},
		ioctl: func(fd int) error {
			var args ioctl.GetSubvolInfoArgs
			return ioctl.GetSubvolInfo(fd, &args)
		},
	}
)

// probe is one feature probe and its cached answer.
type probe struct {
	op    string             // the ioctl's name
	min   Version            // first kernel that has it
	ioctl func(fd int) error // nil: supported; ENOTTY: not; anything else: cannot tell

	mu     sync.Mutex // guards done and result
	done   bool
	result error // nil or a *notSupportedError
}

func (p *probe) probe(path string) error {
	fd, err := openForIoctl(path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := ioctl.CheckBtrfs(fd); err != nil {
		return &fs.PathError{Op: p.op, Path: path, Err: err}
	}

	// Holding the lock across the ioctl makes concurrent first calls issue
	// it once; the ioctls are quick and do not block.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return p.result
	}
	switch err := p.ioctl(fd); err {
	case nil:
		p.done, p.result = true, nil
	case unix.ENOTTY:
		running, _ := Running()
		p.done, p.result = true, &notSupportedError{op: p.op, min: p.min, running: running}
	default:
		return &fs.PathError{Op: p.op, Path: path, Err: err}
	}
	return p.result
}

// reset forgets the cached answer (for tests).
func (p *probe) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.result = false, nil
}

// openForIoctl opens path for issuing an ioctl. It refuses anything but a
// directory or regular file: the ioctl of a device or FIFO goes to its
// driver even on btrfs, and ENOTTY from there would look like an old kernel.
func openForIoctl(path string) (int, error) {
	// Check before opening too: opening a device can have effects.
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return -1, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if !dirOrRegular(st.Mode) {
		return -1, &fs.PathError{Op: "open", Path: path, Err: errNotDirOrFile}
	}
	fd, err := beneath.Openat(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if !dirOrRegular(st.Mode) { // replaced since the Stat
		unix.Close(fd)
		return -1, &fs.PathError{Op: "open", Path: path, Err: errNotDirOrFile}
	}
	return fd, nil
}

var errNotDirOrFile = errors.New("neither a directory nor a regular file")

func dirOrRegular(mode uint32) bool {
	t := mode & unix.S_IFMT
	return t == unix.S_IFDIR || t == unix.S_IFREG
}

// notSupportedError says which ioctl the kernel lacks and since when Linux
// has it. It matches ErrNotSupported and unix.ENOTTY.
type notSupportedError struct {
	op      string
	min     Version
	running Version // zero if unknown
}

func (e *notSupportedError) Error() string {
	s := fmt.Sprintf("%s needs Linux %d.%d", e.op, e.min.Major, e.min.Minor)
	if e.running != (Version{}) {
		s += fmt.Sprintf(" (running %s)", e.running)
	}
	return s + ": " + ErrNotSupported.Error()
}

func (e *notSupportedError) Unwrap() []error { return []error{ErrNotSupported, unix.ENOTTY} }
