package ioctl

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/btrstore/btrstore/internal/beneath"
	"github.com/btrstore/btrstore/internal/kversion"
	"golang.org/x/sys/unix"
)

// A ChangeMark records the state of a writable subvolume (a cache clone)
// so that [ChangedSinceFd] can later tell, exactly and without a
// transaction commit, whether anything in it changed since: the test that
// lets a cache release skip the read-only snapshot (and its commit) of a
// clone nobody changed.
//
// # Mechanism
//
// Every change to an inode of a subvolume ends in btrfs_update_inode,
// which first calls btrfs_update_root_times: that stamps the in-memory
// root item of the subvolume with the running transaction (ctransid) and
// the current time to the nanosecond (ctime), before the inode item itself
// is queued as a delayed item. BTRFS_IOC_GET_SUBVOL_INFO reads that
// in-memory root item, so it sees the change at once, committed or not.
// A mark is the pair (ctransid, ctime); any difference means a change.
// (Only a change stamped in the marked transaction with the very
// nanosecond of the marked ctime, which takes the wall clock stepped back
// to it, could go unseen.)
// That covers create, mknod, unlink, rename, mkdir, rmdir, link, symlink,
// chmod, chown, utimes, truncate, fallocate, set/remove xattr and ACL,
// chattr, reflink, mmap writes and O_DIRECT writes: each updates at least
// one inode (the file, or its directory for a name change), anywhere in
// the tree.
//
// Buffered writes (write, pwrite, append, copy_file_range that copies) are
// the exception: btrfs sets the new times and size in the VFS inode only,
// and updates the inode item when the data is written back (at the end of
// the ordered extent), up to 30 s later. So before it compares,
// ChangedSinceFd writes back the subvolume's dirty data and waits for it,
// without committing: it issues BTRFS_IOC_SNAP_CREATE_V2 of the subvolume
// into itself under a 256-byte name. Since Linux 5.10 (btrfs_mksnapshot)
// the kernel first flushes the source's delalloc and waits for its ordered
// extents, exactly as before a real snapshot, and only then looks the name
// up, which fails with ENAMETOOLONG: no snapshot, no transaction. With
// nothing dirty that costs a few microseconds; with dirty data, its
// writeback, which the snapshot that saves the clone would pay anyway.
//
// A tree search of the clone's tree for items newer than its creation
// (what `btrfs subvolume find-new` does) is not exact, even after that
// flush, and needs CAP_SYS_ADMIN: it sees at once what is inserted into
// the tree directly (directory entries, inode refs, xattrs, new inodes:
// create, unlink, rename, mkdir, setxattr), sees written data only after
// writeback, and sees chmod, chown and utimes only after the next commit,
// since inode item updates are delayed items (measured on 6.18). syncfs or
// BTRFS_IOC_SYNC would flush everything, but they write back the whole
// filesystem and commit a transaction if one is running: the very cost to
// save. The root item's generation, which GET_SUBVOL_INFO also reports,
// moves only at a commit.
//
// # What counts as a change
//
// Reading counts when it updates an access time: with the default
// relatime mount option, the first read of a file (or listing of a
// directory) whose atime is not newer than its mtime and ctime, or is a day
// old, updates it. noatime, or O_NOATIME, avoids that; the store cannot
// choose mount options, so a clone that was only read may be saved. The
// error is always in that direction: a change is never missed. A chown
// or chmod of a directory after the mark, even an accepted one, makes its
// ctime newer than its atime, so the first listing of it counts: a store
// should not chown a clone's top directory that already has the right
// owner (a no-op chown is a change too).
// Changes inside a nested subvolume are not changes of the clone (a
// snapshot does not include them either); creating or deleting one is.
type ChangeMark struct {
	id       uint64
	uuid     UUID
	ctransid uint64
	ctime    Timespec // root item ctime, as GET_SUBVOL_INFO reports it
}

// String describes the mark for logs.
func (m ChangeMark) String() string {
	return fmt.Sprintf("subvolume %d ctransid %d ctime %d.%09d", m.id, m.ctransid, m.ctime.Sec, m.ctime.Nsec)
}

// MarkChanges is [MarkChangesFd] on the subvolume at path.
//
// Privilege: none. Kernel: 4.18. Concurrency: as MarkChangesFd.
func MarkChanges(path string) (ChangeMark, error) {
	fd, err := openDir(unix.AT_FDCWD, path)
	if err != nil {
		return ChangeMark{}, pathErr("open", path, err)
	}
	defer unix.Close(fd)
	m, err := MarkChangesFd(fd)
	if err != nil {
		return m, pathErr("BTRFS_IOC_GET_SUBVOL_INFO", path, err)
	}
	return m, nil
}

// MarkChangesFd records the state of the subvolume whose root directory is
// open at fd, for [ChangedSinceFd]. Call it once the subvolume is as the
// caller wants to compare against: for a clone, right after the snapshot
// and the caller's own preparation (or mark first and [ChangeMark.Accept]
// the preparation).
//
// Its error is the bare cause: ErrNotBtrfs, ErrNotSubvolume,
// ErrNotSupported (kernel before 4.18: no GET_SUBVOL_INFO), or an errno.
// Callers that cannot mark should save the clone as if it had changed.
//
// Privilege: none (GET_SUBVOL_INFO). Kernel: 4.18. Concurrency: safe; the
// mark is meaningful only if nothing else changes the subvolume while it
// is taken.
func MarkChangesFd(fd int) (ChangeMark, error) {
	if err := checkSubvolume(fd); err != nil {
		return ChangeMark{}, err
	}
	var args GetSubvolInfoArgs
	if err := getSubvolInfo(fd, &args); err != nil {
		return ChangeMark{}, err
	}
	return ChangeMark{id: args.Treeid, uuid: args.Uuid, ctransid: args.Ctransid, ctime: args.Ctime}, nil
}

// Accept takes every change made to the subvolume open at fd since the
// mark (or the last Accept) into the mark, so that [ChangedSinceFd] no
// longer counts them: for the caller's own preparation of a fresh clone,
// such as the chown of its top directory that hands it to its user. It
// does not flush buffered writes: the preparation must not write file data
// through the page cache (or must fsync it first), else that write may
// show up later as a change.
//
// fd must be open on the marked subvolume (else an error matching
// fs.ErrInvalid, and m is unchanged).
//
// Privilege: none. Kernel: 4.18. Concurrency: not safe on one mark; as
// MarkChangesFd for the subvolume.
func (m *ChangeMark) Accept(fd int) error {
	if err := CheckBtrfs(fd); err != nil {
		return err
	}
	var args GetSubvolInfoArgs
	if err := m.read(fd, &args); err != nil {
		return err
	}
	m.ctransid = args.Ctransid
	m.ctime = args.Ctime
	return nil
}

// ChangedSince is [ChangedSinceFd] on the subvolume at path.
//
// Privilege, kernel, concurrency: as ChangedSinceFd.
func ChangedSince(path string, m ChangeMark) (bool, error) {
	fd, err := openDir(unix.AT_FDCWD, path)
	if err != nil {
		return true, pathErr("open", path, err)
	}
	defer unix.Close(fd)
	changed, err := ChangedSinceFd(fd, m)
	if err != nil {
		return true, pathErr("BTRFS_IOC_GET_SUBVOL_INFO", path, err)
	}
	return changed, nil
}

// ChangedSinceFd reports whether anything in the subvolume whose root
// directory is open at fd changed since mark m was taken (or last
// accepted): false means exactly nothing did, including changes not yet
// committed and data still only in the page cache. See [ChangeMark] for
// the mechanism and for what counts as a change (a read may, through the
// access time).
//
// It costs one GET_SUBVOL_INFO when something other than file data
// changed; otherwise it also writes back the subvolume's dirty data and
// waits for it (no transaction commit, no other subvolume's data), then
// reads GET_SUBVOL_INFO again: a few microseconds when nothing is dirty.
//
// On error changed is true, so that a caller that ignores the error saves.
// The error is the bare cause: ErrNotBtrfs, ErrNotSubvolume,
// ErrNotSupported (kernel before 5.10, where the flush cannot be had
// without a commit, or before 4.18), one matching fs.ErrPermission (the
// flush needs the caller to own the subvolume's root directory or to hold
// CAP_FOWNER, as a snapshot of it does), one matching fs.ErrInvalid when
// fd is not the marked subvolume or m is the zero mark, or another errno
// (EROFS on a read-only mount).
//
// Privilege: owner of the subvolume's root directory, or CAP_FOWNER; no
// CAP_SYS_ADMIN. Kernel: 5.10 (the kernel side, root times stamped by
// every inode update and delalloc flushed before the snapshot's name
// lookup, is the same in 5.10, 6.1, 6.12 and 6.18). Concurrency: safe; the
// answer is as of the call, so the caller must have stopped writers (a
// released lease) for "unchanged" to stay true.
func ChangedSinceFd(fd int, m ChangeMark) (changed bool, err error) {
	if !flushSupported() {
		return true, fmt.Errorf("flushing a subvolume's data without a commit needs kernel 5.10: %w", ErrNotSupported)
	}
	if err := checkSubvolume(fd); err != nil {
		return true, err
	}
	var args GetSubvolInfoArgs
	if err := m.read(fd, &args); err != nil {
		return true, err
	}
	if args.Ctransid != m.ctransid || args.Ctime != m.ctime {
		return true, nil
	}
	if err := flushDelalloc(fd); err != nil {
		return true, err
	}
	if err := m.read(fd, &args); err != nil {
		return true, err
	}
	return args.Ctransid != m.ctransid || args.Ctime != m.ctime, nil
}

// read issues GET_SUBVOL_INFO on fd, which the caller has checked is on
// btrfs, and checks that it is m's subvolume.
func (m *ChangeMark) read(fd int, args *GetSubvolInfoArgs) error {
	if m.id == 0 {
		return fmt.Errorf("zero ChangeMark: %w", fs.ErrInvalid)
	}
	if err := getSubvolInfo(fd, args); err != nil {
		return err
	}
	if args.Treeid != m.id || args.Uuid != m.uuid {
		return fmt.Errorf("fd is in subvolume %d, the mark is of subvolume %d: %w",
			args.Treeid, m.id, fs.ErrInvalid)
	}
	return nil
}

// getSubvolInfo is GetSubvolInfo with ENOTTY (kernel before 4.18) as
// ErrNotSupported and EINTR retried.
func getSubvolInfo(fd int, args *GetSubvolInfoArgs) error {
	err := beneath.Retry(func() error { return GetSubvolInfo(fd, args) })
	if err == unix.ENOTTY {
		return fmt.Errorf("BTRFS_IOC_GET_SUBVOL_INFO needs kernel 4.18: %w", ErrNotSupported)
	}
	return err
}

// flushNameLen is one byte over BTRFS_NAME_LEN (255): a snapshot name the
// kernel's lookup refuses with ENAMETOOLONG.
const flushNameLen = 256

// errFlushCreated: the flush's snapshot was created after all, which no
// kernel does (no directory entry can be that long).
var errFlushCreated = errors.New("BTRFS_IOC_SNAP_CREATE_V2 with a 256-byte name succeeded")

// flushDelalloc writes back the dirty data of the subvolume whose root
// directory is open at fd, and waits until its ordered extents have
// completed (and so updated their inodes), without a transaction: a
// BTRFS_IOC_SNAP_CREATE_V2 of the subvolume into its own root directory
// under a name too long for any directory entry. btrfs_mksnapshot (5.9+)
// runs btrfs_start_delalloc_snapshot and btrfs_wait_ordered_extents on
// the source before btrfs_mksubvol looks the name up and fails.
func flushDelalloc(fd int) error {
	var args VolArgsV2
	args.Fd = int64(fd)
	for i := range flushNameLen {
		args.Name[i] = 'f'
	}
	switch err := beneath.Retry(func() error { return SnapCreateV2(fd, &args) }); err {
	case unix.ENAMETOOLONG:
		return nil
	case nil:
		return errFlushCreated
	default:
		return err
	}
}

// flushSupported reports whether the running kernel flushes a snapshot's
// source before looking its name up. "btrfs: reduce lock contention when
// create snapshot" (2020) moved the flush from create_snapshot, after the
// lookup, into btrfs_mksnapshot, before it; 5.10 is the first long-term
// kernel with it (read in the 5.10-era, 6.1-era and 6.18 sources).
var flushSupported = func() bool {
	v, err := kversion.Running() // computed once
	return err == nil && v.AtLeast(5, 10)
}
