package store

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/kernel"
	"golang.org/x/sys/unix"
)

// A store with no privilege at all (no capability, a plain mount, Linux
// 4.18 or later) works, more slowly: the kernel lets the owner of an
// empty subvolume rmdir it (4.18), and the owner may clear a subvolume's
// read-only flag, so a subvolume is deleted by clearing the flag,
// removing its contents as any directory tree is removed (bounded
// descriptors, no symlink followed, no mount crossed), then rmdir of the
// empty subvolume: O(files) instead of the one ioctl that CAP_SYS_ADMIN
// or user_subvol_rm_allowed allow. Open chooses the fastest mechanism
// that works and logs which.
//
// Limit: a subvolume holding what this user may not remove (files in a
// directory another uid owns, which a build step with CAP_CHOWN or a
// setuid helper could leave; a subvolume root another uid owns, whose
// read-only flag only that uid may clear) cannot be deleted this way:
// the error says so and names the fix (CAP_SYS_ADMIN, or
// user_subvol_rm_allowed with write permission on those directories).
//
// Waiting for cleanup: with BTRFS_IOC_SUBVOL_SYNC_WAIT (Linux 6.13) or
// CAP_SYS_ADMIN, CompleteDeletes waits for the kernel's cleaner as usual.
// Without either (an unprivileged store on Linux 4.18 to 6.12) it cannot
// see the cleaner: it commits the transaction (BTRFS_IOC_SYNC, which
// also wakes the cleaner) and then once more, and returns. What it
// promises then: every subvolume this store deleted was emptied file by
// file before its rmdir, and the extents of those files are released by
// the first commit, so FreeSpace counts them as free (extents still
// shared with other subvolumes, as in a build on a base, were never the
// deleted subvolume's to free). What it does not promise: that the
// kernel has dropped the emptied subvolumes' own trees (a leaf each,
// cleaned in the background, usually by the second commit), nor
// anything about subvolumes that another program deleted with
// SNAP_DESTROY.

// deleteMechanism is how the store deletes subvolumes.
type deleteMechanism int

const (
	deleteIoctl deleteMechanism = iota // BTRFS_IOC_SNAP_DESTROY(_V2): CAP_SYS_ADMIN or user_subvol_rm_allowed
	deleteRmdir                        // empty it, rmdir: no privilege, Linux 4.18
)

// mechanisms are how a store deletes subvolumes and waits for their
// cleanup.
type mechanisms struct {
	deletes        deleteMechanism
	commitOnlyWait bool
}

// mechanismsFor picks, from Check's report, the fastest mechanisms that
// work; the error says what is missing when none does (a kernel before
// 4.18 without the privileges to delete by ioctl, say).
func mechanismsFor(r *kernel.Report) (mechanisms, error) {
	var m mechanisms
	var errs []error
	switch err := r.CanDeleteSubvolumes(); {
	case err == nil:
		m.deletes = deleteIoctl
	case errors.Is(err, kernel.ErrMissingPrivilege) && r.CanDeleteByRmdir() == nil:
		m.deletes = deleteRmdir
	default:
		errs = append(errs, err)
	}
	switch err := r.CanWaitDeleted(); {
	case err == nil:
	case errors.Is(err, kernel.ErrMissingPrivilege):
		m.commitOnlyWait = true
	default:
		errs = append(errs, err)
	}
	return m, errors.Join(errs...)
}

// logMechanisms says which mechanisms Open chose: at V(0) when they are
// the slow ones, which an operator may want to fix, else at V(1).
func (s *Store) logMechanisms(r *kernel.Report) {
	wait := "tree search (CAP_SYS_ADMIN)"
	switch {
	case s.commitOnlyWait:
		wait = "transaction commits only: no CAP_SYS_ADMIN and no BTRFS_IOC_SUBVOL_SYNC_WAIT (Linux 6.13); CompleteDeletes cannot see the kernel's cleaner"
	case r.SubvolSyncWait == nil:
		wait = "BTRFS_IOC_SUBVOL_SYNC_WAIT"
	}
	if s.deletes == deleteRmdir {
		s.log.Info("no privilege to delete subvolumes by ioctl: deleting them by emptying them and rmdir, which costs O(files); "+
			"grant CAP_SYS_ADMIN or mount with user_subvol_rm_allowed for O(1) deletes",
			"delete", "rmdir", "wait", wait)
		return
	}
	del := "BTRFS_IOC_SNAP_DESTROY (CAP_SYS_ADMIN)"
	if !r.CapSysAdmin || r.UserNamespace {
		del = "BTRFS_IOC_SNAP_DESTROY (user_subvol_rm_allowed)"
	}
	if s.commitOnlyWait {
		s.log.Info("no way to wait for the kernel's cleanup of deleted subvolumes: CompleteDeletes commits and returns",
			"delete", del, "wait", wait)
		return
	}
	s.log.V(1).Info("store mechanisms", "delete", del, "wait", wait)
}

// deleteByRmdir deletes subvolume name in dirFd without privilege: clears
// its read-only flag (the owner may), removes its contents and rmdirs
// the empty subvolume (removeDir does both; nested subvolumes come back
// here).
func (s *Store) deleteByRmdir(d dir, name string) (mountHit bool, err error) {
	if fd, err := openDirAt(d.fd, name); err == nil {
		err = makeWritable(dir{fd, d.join(name)})
		var st unix.Stat_t
		if err != nil && unix.Fstat(fd, &st) == nil && int(st.Uid) != os.Geteuid() {
			err = fmt.Errorf("%w: %s is owned by uid %d, and only its owner may clear its read-only flag (this store runs as uid %d "+
				"without CAP_SYS_ADMIN or user_subvol_rm_allowed, deleting subvolumes by emptying them): delete it with CAP_SYS_ADMIN",
				err, d.join(name), st.Uid, os.Geteuid())
		}
		unix.Close(fd)
		if err != nil {
			return false, err
		}
	}
	mountHit, err = s.removeDir(d, name)
	if err != nil && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) {
		err = fmt.Errorf("%w (this store runs as uid %d without CAP_SYS_ADMIN or user_subvol_rm_allowed, so it deletes a subvolume "+
			"by removing its files, which needs write permission on their directories: a build step that gave files to another "+
			"user left a subvolume only CAP_SYS_ADMIN can delete)", err, os.Geteuid())
	}
	return mountHit, err
}

// completeDeletesCommitOnly is CompleteDeletes without a way to see the
// cleaner (see the comment at the top of this file): two commits.
func (s *Store) completeDeletesCommitOnly(ctx context.Context) error {
	for range 2 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := ioctl.SyncFd(s.rootFd); err != nil {
			return err
		}
	}
	return nil
}
