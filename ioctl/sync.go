package ioctl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/btrstore/btrstore/internal/beneath"
	"golang.org/x/sys/unix"
)

// Sync commits the current transaction of the filesystem holding path (any
// path on it: a directory, a file) and waits for it (BTRFS_IOC_SYNC, which also flushes delayed allocation and
// wakes the cleaner thread that frees deleted subvolumes).
//
// Privilege: none. Kernel: any. Concurrency: safe; concurrent calls share
// commits.
func Sync(path string) error {
	fd, err := openOnFS(path)
	if err != nil {
		return pathErr("open", path, err)
	}
	defer unix.Close(fd)
	return syncFd(fd, path)
}

// SyncFd is Sync for an open file or directory on the filesystem.
func SyncFd(fd int) error { return syncFd(fd, "") }

func syncFd(fd int, display string) error {
	const op = "BTRFS_IOC_SYNC"
	if err := CheckBtrfs(fd); err != nil {
		return pathErr(op, display, err)
	}
	if err := SyncFS(fd); err != nil {
		return pathErr(op, display, err)
	}
	return nil
}

// SyncStart starts committing the current transaction of the filesystem
// holding path (any path on it) and returns its transaction id without
// waiting (BTRFS_IOC_START_SYNC, libbtrfsutil's btrfs_util_start_sync);
// SyncWait waits for it. Unlike Sync it does not flush delayed allocation
// first.
//
// Privilege: none. Kernel: any. Concurrency: safe; concurrent calls may
// share one commit and get the same id.
func SyncStart(path string) (transid uint64, err error) {
	fd, err := openOnFS(path)
	if err != nil {
		return 0, pathErr("open", path, err)
	}
	defer unix.Close(fd)
	return syncStartFd(fd, path)
}

// SyncStartFd is SyncStart for an open file or directory.
func SyncStartFd(fd int) (transid uint64, err error) { return syncStartFd(fd, "") }

func syncStartFd(fd int, display string) (uint64, error) {
	const op = "BTRFS_IOC_START_SYNC"
	if err := CheckBtrfs(fd); err != nil {
		return 0, pathErr(op, display, err)
	}
	transid, err := StartSync(fd)
	if err != nil {
		return 0, pathErr(op, display, err)
	}
	return transid, nil
}

// SyncWait waits until transaction transid of the filesystem holding path
// (any path on it) is committed (BTRFS_IOC_WAIT_SYNC, libbtrfsutil's
// btrfs_util_wait_sync); transid 0 waits for the current transaction. A
// transid that was committed long ago returns at once; one beyond the
// running transaction gives EINVAL (fs.ErrInvalid).
//
// Privilege: none. Kernel: any. Concurrency: safe.
func SyncWait(path string, transid uint64) error {
	fd, err := openOnFS(path)
	if err != nil {
		return pathErr("open", path, err)
	}
	defer unix.Close(fd)
	return syncWaitFd(fd, transid, path)
}

// SyncWaitFd is SyncWait for an open file or directory.
func SyncWaitFd(fd int, transid uint64) error { return syncWaitFd(fd, transid, "") }

func syncWaitFd(fd int, transid uint64, display string) error {
	const op = "BTRFS_IOC_WAIT_SYNC"
	if err := CheckBtrfs(fd); err != nil {
		return pathErr(op, display, err)
	}
	if err := beneath.Retry(func() error { return WaitSync(fd, transid) }); err != nil {
		return pathErr(op, display, err)
	}
	return nil
}

// WaitDeleted returns once the deleted subvolumes with the given ids, or all
// deleted subvolumes if no id is given, have been cleaned by the kernel, so
// that their space is free. path is any path on the filesystem (a
// directory, a file); DeleteSubvolumeIDs gives the ids a delete removed. It forces a transaction commit first: cleanup
// starts only after the commit that records the deletion, which would
// otherwise come with the periodic commit (30 s by default).
//
// An id whose subvolume is gone (or never existed) is done at once; an id
// whose subvolume exists and is not deleted gives an error matching
// fs.ErrExist, since waiting for it would never end. It returns ctx.Err()
// when ctx ends first.
//
// How it waits: with CAP_SYS_ADMIN it polls the root tree for the
// subvolumes' root items (tree search), with a back-off from 0.5 ms to
// 50 ms, which notices the end of a cleanup within milliseconds. Without it,
// on kernel 6.13 or later it uses BTRFS_IOC_SUBVOL_SYNC_WAIT, which needs no
// privilege but on its own answers only after the next periodic commit; it
// is driven with commits and short deadlines instead (see subvolSyncOne).
// Without either it returns an error matching fs.ErrPermission. A final
// commit releases the cleaned subvolumes' space.
//
// Concurrency: safe; deletions made while it waits are not waited for
// unless their ids were given (and, unprivileged without ids, may be).
func WaitDeleted(ctx context.Context, path string, ids ...uint64) error {
	fd, err := openOnFS(path)
	if err != nil {
		return pathErr("open", path, err)
	}
	defer unix.Close(fd)
	return waitDeletedFd(ctx, fd, ids, path)
}

// WaitDeletedFd is WaitDeleted for an open file or directory on the
// filesystem.
func WaitDeletedFd(ctx context.Context, fd int, ids ...uint64) error {
	return waitDeletedFd(ctx, fd, ids, "")
}

func waitDeletedFd(ctx context.Context, fd int, ids []uint64, path string) error {
	if err := CheckBtrfs(fd); err != nil {
		return pathErr("BTRFS_IOC_SYNC", path, err)
	}
	if err := SyncFS(fd); err != nil {
		return pathErr("BTRFS_IOC_SYNC", path, err)
	}
	err := waitTreeSearch(ctx, fd, ids)
	if errors.Is(err, unix.EPERM) {
		err = waitSubvolSync(ctx, fd, ids)
		if errors.Is(err, ErrNotSupported) {
			err = fmt.Errorf("waiting needs CAP_SYS_ADMIN (tree search) or kernel 6.13 (SUBVOL_SYNC_WAIT): %w", unix.EPERM)
		}
	}
	if err == nil {
		// Space of a cleaned subvolume is released by the next commit.
		err = SyncFS(fd)
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return err
	}
	return pathErr("wait deleted", path, err)
}

// deletedIDs lists the subvolumes deleted but not yet cleaned: the orphan
// items of the root tree (CAP_SYS_ADMIN).
func deletedIDs(fd int) ([]uint64, error) {
	var ids []uint64
	err := searchAll(fd, nil, rootTreeKey(BTRFS_ORPHAN_OBJECTID, BTRFS_ORPHAN_ITEM_KEY), func(h *SearchHeader, _ []byte) bool {
		ids = append(ids, h.Offset)
		return true
	})
	return ids, err
}

// rootRefs returns the refs count of subvolume id's root item, or found
// false when the root item is gone.
func rootRefs(fd int, args *SearchArgs, id uint64) (refs uint32, found bool, err error) {
	err = searchAll(fd, args, rootTreeKey(id, BTRFS_ROOT_ITEM_KEY), func(h *SearchHeader, data []byte) bool {
		found = true
		if len(data) >= rootItemRefs+4 {
			refs = binary.LittleEndian.Uint32(data[rootItemRefs:])
		}
		return false
	})
	return refs, found, err
}

func waitTreeSearch(ctx context.Context, fd int, ids []uint64) error {
	orphans := len(ids) == 0
	if orphans {
		var err error
		if ids, err = deletedIDs(fd); err != nil {
			return err
		}
	}
	delay := 500 * time.Microsecond
	var timer *time.Timer
	args := new(SearchArgs) // reused by every poll
	for _, id := range ids {
		for {
			refs, found, err := rootRefs(fd, args, id)
			if err != nil {
				return err
			}
			if !found {
				break
			}
			if refs > 0 && orphans {
				// Deleted after our commit: its orphan item is there,
				// but its refs drop only with the next commit. Not
				// ours to wait for.
				break
			}
			if refs > 0 {
				return fmt.Errorf("subvolume %d is not deleted: %w", id, unix.EEXIST)
			}
			if err := checkWritable(fd); err != nil {
				return err
			}
			if timer == nil {
				timer = time.NewTimer(delay)
				defer timer.Stop()
			} else {
				timer.Reset(delay)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
			delay = min(2*delay, 50*time.Millisecond)
		}
	}
	return nil
}

// checkWritable returns an error matching EROFS when the filesystem of fd
// is read-only: the kernel cleans deleted subvolumes only on a read-write
// filesystem, so waiting for one would never end.
func checkWritable(fd int) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return err
	}
	if st.Flags&unix.ST_RDONLY != 0 {
		return fmt.Errorf("the filesystem is read-only, and deleted subvolumes are cleaned only once it is remounted read-write: %w", unix.EROFS)
	}
	return nil
}

// waitSubvolSync waits with BTRFS_IOC_SUBVOL_SYNC_WAIT (6.13, no privilege).
func waitSubvolSync(ctx context.Context, fd int, ids []uint64) error {
	if len(ids) > 0 {
		for _, id := range ids {
			if err := subvolSyncOne(ctx, fd, id); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		// PEEK_LAST: the subvolume queued last, cleaned after the others.
		args := SubvolWait{Mode: BTRFS_SUBVOL_SYNC_PEEK_LAST}
		if err := SubvolSyncWait(fd, &args); err != nil {
			if err == unix.ENOTTY {
				return ErrNotSupported
			}
			return err
		}
		if args.Subvolid == 0 {
			return nil
		}
		if err := subvolSyncOne(ctx, fd, args.Subvolid); err != nil {
			return err
		}
	}
}

// subvolSyncOne waits for one id with SUBVOL_SYNC_WAIT. The kernel drops
// a cleaned subvolume from its lookup table only at the next transaction
// commit and rechecks only once a second, so left alone it would answer
// up to 30 s late. Instead: commit, then ask with a deadline after which
// the sleeping thread is signalled (the ioctl then returns EINTR), and
// repeat with a growing deadline.
func subvolSyncOne(ctx context.Context, fd int, id uint64) error {
	limit := time.Millisecond
	for {
		if err := SyncFS(fd); err != nil {
			return err
		}
		args := SubvolWait{Subvolid: id, Mode: BTRFS_SUBVOL_SYNC_WAIT_FOR_ONE}
		err := interruptAfter(ctx, limit, func() error { return SubvolSyncWait(fd, &args) })
		switch err {
		case nil, unix.ENOENT: // cleaned now, or already gone
			return nil
		case unix.EINTR:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := checkWritable(fd); err != nil {
				return err
			}
			limit = min(2*limit, time.Second)
		case unix.EEXIST:
			return fmt.Errorf("subvolume %d is not deleted: %w", id, unix.EEXIST)
		case unix.ENOTTY:
			return ErrNotSupported
		default:
			return err
		}
	}
}

// interruptAfter runs a blocking, interruptible system call on a locked OS
// thread, and from limit on (or once ctx ends) signals that thread with
// SIGURG, which the Go runtime ignores, until the call returns. The signal
// is repeated because the first may land before the thread sleeps.
func interruptAfter(ctx context.Context, limit time.Duration, call func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid, tid := unix.Getpid(), unix.Gettid()
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		timer := time.NewTimer(limit)
		defer timer.Stop()
		select {
		case <-done:
			return
		case <-ctx.Done():
		case <-timer.C:
		}
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			unix.Tgkill(pid, tid, unix.SIGURG)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	err := call()
	close(done)
	<-exited // no signal is sent after the thread is unlocked
	return err
}
