package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// Build builds result id: it hands fn a writable directory that starts
// empty (base "") or as a snapshot of result base, and if fn returns nil,
// freezes that directory as the read-only result id. If fn fails, nothing
// is recorded and fn's error is returned wrapped (errors.Is finds it); if
// fn panics, the directory is removed and the panic goes on. In every case
// the work directory is gone when Build returns.
//
// Errors: id or base not one path component: fs.ErrInvalid, before
// anything touches the disk; result id exists: fs.ErrExist; base has no
// result: fs.ErrNotExist.
//
// Concurrency: builds of different ids run in parallel, each in its own
// directory so that their snapshots share transaction commits. A second
// Build of an id that is being built waits for the first (or for ctx) and
// then fails with fs.ErrExist if the first succeeded, or builds if it
// failed: never two writers. Delete of base waits for the base snapshot.
func (s *Store) Build(ctx context.Context, id, base string, fn func(ctx context.Context, dir string) error) error {
	if err := validID(id); err != nil {
		return err
	}
	if base != "" {
		if err := validID(base); err != nil {
			return err
		}
	}
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	held, err := s.builds.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer held.Unlock()
	if _, err := s.result(id); err == nil {
		return fmt.Errorf("btrstore: build %s: result exists: %w", id, fs.ErrExist)
	}

	tmp := s.tmpName("b")
	tmpFd, err := mkdirOpen(s.resultTmpFd, tmp)
	if err != nil {
		return fmt.Errorf("btrstore: build %s: %w", id, err)
	}
	work := filepath.Join(s.root, resultTmpDir, tmp, workName)
	defer func() {
		// Runs on success, failure and panic alike.
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
		// The usual leftovers are the work subvolume and the empty
		// directory; anything else (a failed publish) goes the long way.
		err := removeEntry(tmpFd, workName)
		unix.Close(tmpFd)
		if err == nil {
			err = unix.Unlinkat(s.resultTmpFd, tmp, unix.AT_REMOVEDIR)
		}
		if err != nil {
			err = removeEntry(s.resultTmpFd, tmp)
		}
		if err != nil {
			s.log.Error(err, "removing build directory failed; Open retries", "id", id, "dir", tmp)
		}
	}()
	if err := s.startWork(tmpFd, base); err != nil {
		return fmt.Errorf("btrstore: build %s: %w", id, err)
	}
	s.mu.Lock()
	s.running[id] = work
	s.mu.Unlock()
	s.log.V(1).Info("build started", "id", id, "base", base)

	if err := fn(ctx, work); err != nil {
		s.log.V(1).Info("build failed", "id", id, "err", err.Error())
		return fmt.Errorf("btrstore: build %s: %w", id, err)
	}
	if err := s.publish(tmpFd, id); err != nil {
		return fmt.Errorf("btrstore: build %s: %w", id, err)
	}
	s.log.V(1).Info("build done", "id", id)
	return nil
}

// startWork creates the work subvolume in the build's directory: empty, or
// a writable snapshot of result base taken under base's shared lock.
func (s *Store) startWork(tmpFd int, base string) error {
	if base == "" {
		return ioctl.CreateSubvolumeAt(tmpFd, workName)
	}
	unlock := s.results.lock(base, true)
	defer unlock()
	baseFd, err := openDirAt(s.resultFd, base+"/"+snapshotName)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("base %s has no result: %w", base, fs.ErrNotExist)
		}
		return err
	}
	defer unix.Close(baseFd)
	return ioctl.SnapshotAt(baseFd, tmpFd, workName, 0)
}

// publish freezes the work subvolume as a read-only snapshot in a fresh
// plain directory "out" and renames that directory to result/<id>: the
// result appears at once, complete and read-only. (A read-only subvolume
// cannot itself move to another directory; a directory holding one can.)
func (s *Store) publish(tmpFd int, id string) error {
	workFd, err := openDirAt(tmpFd, workName)
	if err != nil {
		return err
	}
	defer unix.Close(workFd)
	outFd, err := mkdirOpen(tmpFd, "out")
	if err != nil {
		return err
	}
	defer unix.Close(outFd)
	if err := ioctl.SnapshotAt(workFd, outFd, snapshotName, ioctl.SnapshotReadOnly); err != nil {
		return err
	}
	if err := moveNoReplace(tmpFd, "out", s.resultFd, id); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("result appeared meanwhile: %w", fs.ErrExist)
		}
		return err
	}
	// The snapshot is committed; the rename would be only at the next
	// commit. A crash before it would leave the result in result-tmp,
	// where Open removes it: fsync the directory (btrfs logs it in its
	// tree log, no full commit) so that a result Build reported survives.
	if err := unix.Fsync(s.resultFd); err != nil {
		return &fs.PathError{Op: "fsync", Path: resultDir, Err: err}
	}
	return nil
}
