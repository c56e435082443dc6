package ioctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SendOptions chooses what Send puts in the stream. The zero value is a full
// stream of the highest version the kernel offers, without compressed
// pass-through.
type SendOptions struct {
	Parent       string   // read-only subvolume the stream is relative to; "" = full stream
	CloneSources []string // read-only subvolumes whose extents the stream may share
	Version      uint32   // stream version; 0 = the highest the kernel offers
	Compressed   bool     // pass compressed extents through as encoded writes (v2)
}

// sendStreamVersionFile is where the kernel (6.0 and later) says which
// stream version it can produce; older kernels have only version 1.
const sendStreamVersionFile = "/sys/fs/btrfs/features/send_stream_version"

// SendStreamVersion returns the highest send stream version the running
// kernel offers: the content of /sys/fs/btrfs/features/send_stream_version,
// or 1 when the file is absent (kernels before 6.0). Kernels offer 2 from
// 6.0 on (6.1 and 6.12 included); 3 (fs-verity) only when built with
// CONFIG_BTRFS_DEBUG (CONFIG_BTRFS_EXPERIMENTAL in newer kernels). No
// privilege; safe for concurrent use.
func SendStreamVersion() uint32 {
	b, err := os.ReadFile(sendStreamVersionFile)
	if err != nil {
		return 1
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil || v == 0 {
		return 1
	}
	return uint32(v)
}

// sendError is an errno with the reason Send found for it.
type sendError struct {
	errno  unix.Errno
	reason string
}

func (e *sendError) Error() string { return e.errno.Error() + " (" + e.reason + ")" }
func (e *sendError) Unwrap() []error {
	if e.errno == unix.EINVAL {
		return []error{e.errno, fs.ErrInvalid}
	}
	return []error{e.errno}
}

// Send writes the send stream of the read-only subvolume at path to w. An
// error from w ends the send and is returned wrapped (errors.Is finds it);
// so is ctx's: cancelling closes the pipe the kernel writes into, which
// ends the kernel's send with EPIPE.
//
// The stream is drained from a pipe into w by a second goroutine while the
// kernel produces it, so w sees the stream as it is made and nothing is
// buffered beyond the pipe. w is called from that goroutine only.
//
// The subvolume, the parent and every clone source must be read-only
// subvolumes of the same filesystem: otherwise Send returns EPERM (or
// ErrNotSubvolume) with the reason, before the kernel is asked. The kernel
// returns EAGAIN while a balance or a deduplication runs on the
// filesystem: Send returns it wrapped, with that reason; retry later.
//
// Version 0 chooses the highest version the kernel offers (see
// SendStreamVersion); a version the kernel does not offer, or Compressed
// with version 1, is an error matching fs.ErrInvalid. Compressed passes
// compressed extents through as encoded writes (stream version 2, kernel
// 6.0), which the receiver writes back without decompressing when it can.
//
// Privilege: CAP_SYS_ADMIN (the kernel refuses BTRFS_IOC_SEND without it).
// Kernel: 3.12 for version 1; 6.0 for version 2 and Compressed; version
// 3 (verity) only on debug/experimental builds. Concurrency: safe; several
// sends of the same subvolume may run at once. A Write blocked in w delays
// the return after a cancel until it returns.
func Send(ctx context.Context, w io.Writer, path string, opts SendOptions) error {
	maxVersion := SendStreamVersion()
	version := opts.Version
	if version == 0 {
		version = maxVersion
	}
	if version > maxVersion {
		return pathErr("BTRFS_IOC_SEND", path, &sendError{unix.EINVAL,
			fmt.Sprintf("stream version %d requested, the kernel offers up to %d", version, maxVersion)})
	}
	if opts.Compressed && version < 2 {
		return pathErr("BTRFS_IOC_SEND", path, &sendError{unix.EINVAL,
			"compressed pass-through needs stream version 2"})
	}
	fd, err := openSendSource(path, "subvolume to send")
	if err != nil {
		return err
	}
	defer unix.Close(fd)

	args := SendArgs{}
	if version > 1 {
		args.Flags |= BTRFS_SEND_FLAG_VERSION
		args.Version = version
	}
	if opts.Compressed {
		args.Flags |= BTRFS_SEND_FLAG_COMPRESSED
	}
	var clones []uint64
	if opts.Parent != "" {
		id, err := sendSourceID(opts.Parent, "parent")
		if err != nil {
			return err
		}
		args.Parent_root = id
		clones = append(clones, id) // as btrfs send does
	}
	for _, c := range opts.CloneSources {
		id, err := sendSourceID(c, "clone source")
		if err != nil {
			return err
		}
		clones = append(clones, id)
	}
	if len(clones) > 0 {
		args.Clone_sources_count = uint64(len(clones))
		args.Clone_sources = uintptr(unsafe.Pointer(&clones[0]))
	}

	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return pathErr("pipe2", path, err)
	}
	// The read end is non-blocking, so that closing it (on cancel or a
	// failed write) interrupts a pending read at once.
	if err := unix.SetNonblock(p[0], true); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return pathErr("pipe2", path, err)
	}
	rf := os.NewFile(uintptr(p[0]), "send-pipe")
	var (
		once     sync.Once
		closeErr error
	)
	closeRead := func() { once.Do(func() { closeErr = rf.Close() }) }
	stop := context.AfterFunc(ctx, closeRead)
	defer stop()

	copyDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(w, rf)
		if err != nil {
			closeRead() // the kernel's next write fails with EPIPE
		}
		copyDone <- err
	}()

	args.Send_fd = int64(p[1])
	sendErr := sendSignalsBlocked(fd, &args)
	runtime.KeepAlive(clones)
	unix.Close(p[1]) // the reader sees EOF after the last byte
	copyErr := <-copyDone
	closeRead()
	_ = closeErr

	if err := ctx.Err(); err != nil {
		return pathErr("BTRFS_IOC_SEND", path, fmt.Errorf("send cancelled: %w", err))
	}
	if copyErr != nil && !errors.Is(copyErr, os.ErrClosed) {
		return pathErr("BTRFS_IOC_SEND", path, fmt.Errorf("writing the stream: %w", copyErr))
	}
	switch sendErr {
	case nil:
		return nil
	case unix.EAGAIN:
		return pathErr("BTRFS_IOC_SEND", path, &sendError{unix.EAGAIN,
			"a balance or deduplication is running on the filesystem; retry when it ends"})
	case unix.EPERM:
		return pathErr("BTRFS_IOC_SEND", path, &sendError{unix.EPERM,
			"send needs CAP_SYS_ADMIN and read-only subvolumes"})
	}
	return pathErr("BTRFS_IOC_SEND", path, sendErr)
}

// sendSignalsBlocked issues BTRFS_IOC_SEND with every signal blocked on
// its thread. A signal that interrupts the kernel's write into the pipe
// makes the ioctl return ERESTARTSYS, and as Go installs its handlers with
// SA_RESTART the kernel then restarts the send from the beginning, writing
// the stream's start into the pipe a second time (btrfs-progs #719; with
// the runtime's own preemption signals it can restart again and again).
// Blocked, a signal waits until the send is done; the kernel still ends
// the send when the pipe's reader goes away (EPIPE).
func sendSignalsBlocked(fd int, args *SendArgs) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^all.Val[i]
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, &old); err != nil {
		return err
	}
	err := SendIoctl(fd, args)
	if merr := unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil); merr != nil && err == nil {
		err = merr
	}
	return err
}

// openSendSource opens path and checks that it is a read-only subvolume.
func openSendSource(path, role string) (int, error) {
	fd, err := openDir(unix.AT_FDCWD, path)
	if err != nil {
		return -1, pathErr("open", path, err)
	}
	if err := checkSubvolume(fd); err != nil {
		unix.Close(fd)
		return -1, pathErr("BTRFS_IOC_SEND", path, fmt.Errorf("%s: %w", role, err))
	}
	flags, err := SubvolGetflags(fd)
	if err != nil {
		unix.Close(fd)
		return -1, pathErr("BTRFS_IOC_SUBVOL_GETFLAGS", path, err)
	}
	if flags&BTRFS_SUBVOL_RDONLY == 0 {
		unix.Close(fd)
		return -1, pathErr("BTRFS_IOC_SEND", path, &sendError{unix.EPERM, role + " is not read-only"})
	}
	return fd, nil
}

// sendSourceID returns the subvolume id of the read-only subvolume at path.
func sendSourceID(path, role string) (uint64, error) {
	fd, err := openSendSource(path, role)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	id, err := subvolumeID(fd)
	if err != nil {
		return 0, pathErr("BTRFS_IOC_INO_LOOKUP", path, err)
	}
	return id, nil
}
