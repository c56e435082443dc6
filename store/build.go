package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/btrstore/btrstore/internal/beneath"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/kernel"
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
// result: fs.ErrNotExist; fn left something other than the work
// subvolume the store created at dir (a symlink, another directory or
// subvolume, a mount): ErrWorkReplaced, and nothing is published. A full
// filesystem gives an error matching syscall.ENOSPC, a read-only one
// syscall.EROFS; in every case the work directory is removed, or the error
// says what could not be removed (Open removes it later).
//
// What fn leaves is removed without ever following a symlink or crossing
// into a mount: mounts below the build's directory are detached (this
// needs CAP_SYS_ADMIN), immutable and append-only flags cleared (this
// needs CAP_LINUX_IMMUTABLE), nested subvolumes deleted. If fn moved its
// work subvolume elsewhere below the root, it is found and deleted there;
// outside the root it is left alone, and the error says where it is.
//
// Speed: for a base that builds start from again and again, the next
// build's work subvolume is made while this one runs, so that the next
// build starts without waiting for a commit (see "Spare work subvolumes"
// in the package documentation); a chain of builds, each on the result
// before it, makes none.
//
// Concurrency: builds of different ids run in parallel, each in its own
// directory so that their snapshots share transaction commits. A second
// Build of an id that is being built waits for the first (or for ctx) and
// then fails with fs.ErrExist if the first succeeded, or builds if it
// failed: never two writers. Delete of base waits for the base snapshot.
func (s *Store) Build(ctx context.Context, id, base string, fn func(ctx context.Context, dir string) error) (err error) {
	if err := validID(id); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("btrstore: build %s: nil build function: %w", id, fs.ErrInvalid)
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
	if base != "" {
		defer s.bases.add(base)() // Prune leaves base alone meanwhile
	}
	unlockBuild, err := s.builds.Lock(ctx, id, false)
	if err != nil {
		return err
	}
	defer unlockBuild()
	if s.resultExists(id) {
		// Unless what is there is no result (a symlink a step planted):
		// publish replaces that.
		if _, err := s.result(id); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("btrstore: build %s: result exists: %w", id, fs.ErrExist)
		}
	}

	// From here on, a failure is the build's: logged, with the duration,
	// at V(1) when the step failed, as an error when the store did.
	start, stepFailed, inStep := time.Now(), false, false
	defer func() {
		switch d := time.Since(start); {
		case inStep: // fn panicked; the panic goes on
			s.log.V(1).Info("build failed", "id", id, "err", "the build function panicked", "duration", d)
		case err == nil:
			s.log.V(1).Info("build done", "id", id, "duration", d)
		case stepFailed:
			s.log.V(1).Info("build failed", "id", id, "err", err.Error(), "duration", d)
		default:
			s.log.Error(err, "build failed", "id", id, "base", base, "duration", d)
		}
	}()
	w := workVol{fd: -1}
	tmp, tmpFd, err := s.buildDir(base, &w)
	if err != nil {
		return fmt.Errorf("btrstore: build %s: %w", id, explainEPERM(err, s.resultTmpFd, resultTmpDir))
	}
	work := filepath.Join(s.root, resultTmpDir, tmp, workName)
	defer func() {
		// Runs on success, failure and panic alike.
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
		cerr := s.removeBuildDir(tmp, tmpFd, &w, id, err == nil)
		if cerr == nil {
			return
		}
		s.log.Error(cerr, "removing build directory failed; Open retries", "id", id, "dir", resultTmpDir+"/"+tmp)
		if err != nil {
			err = fmt.Errorf("%w; removing its directory %s/%s failed too (Open retries): %w", err, resultTmpDir, tmp, cerr)
		}
	}()
	if w.fd < 0 { // no spare
		if err := s.startWork(tmpFd, base, &w); err != nil {
			return fmt.Errorf("btrstore: build %s: %w", id, err)
		}
	}
	// The path fn gets must lead to the work subvolume: not through a
	// mount or symlink an earlier step planted on result-tmp.
	wid, err := fdID(w.fd)
	if err == nil && !leadsTo(work, wid) {
		err = s.checkDir(&s.dirResultTmp)
		if err == nil && !leadsTo(work, wid) {
			err = fmt.Errorf("%w: %s does not lead to the work subvolume", ErrWorkReplaced, work)
		}
	}
	if err != nil {
		return fmt.Errorf("btrstore: build %s: %w", id, err)
	}
	s.mu.Lock()
	s.running[id] = runningBuild{work, wid}
	s.mu.Unlock()
	s.log.V(1).Info("build started", "id", id, "base", base)

	inStep = true
	err = fn(ctx, work)
	inStep = false
	// What the step may have planted on the store's directories goes
	// before anyone is handed a path below them again.
	defer s.checkDirs()
	if err != nil {
		stepFailed = true
		return fmt.Errorf("btrstore: build %s: %w", id, err)
	}
	// The step wrote through the path: if it no longer leads to the work
	// subvolume because result-tmp was mounted over or replaced (by
	// another build's step, say), what the step wrote may be elsewhere:
	// nothing is published. (A step that replaced its own work directory
	// gets publish's error, which says what is there; one that moved its
	// own build directory is published: its work subvolume is intact.)
	if !leadsTo(work, wid) {
		fd, err := w.openVerified(tmpFd, workName, "the work directory")
		if err != nil {
			return fmt.Errorf("btrstore: build %s: %w", id, err)
		}
		unix.Close(fd)
		if !leadsTo(s.root+"/"+resultTmpDir, s.dirResultTmp.id) {
			return fmt.Errorf("btrstore: build %s: %w: %s no longer leads to the store's %s (a mount or symlink on it): "+
				"what the step wrote through %s may not be in its work subvolume; nothing is published", id, ErrWorkReplaced,
				filepath.Join(s.root, resultTmpDir), resultTmpDir, work)
		}
	}
	if err := s.publish(tmpFd, id, base, &w); err != nil {
		return fmt.Errorf("btrstore: build %s: %w", id, err)
	}
	return nil
}

// buildDir makes the build's directory in result-tmp, or takes a spare's
// (see spare.go), whose work subvolume it then identifies as w.
func (s *Store) buildDir(base string, w *workVol) (tmp string, tmpFd int, err error) {
	if base != "" {
		if sp := s.takeSpare(base); sp != nil {
			err := s.useSpare(sp, base, w)
			if err == nil {
				tmp, err = s.moveToTmp(s.resultTmpFd, sp.tmp, s.resultTmpFd, "b")
			}
			if err == nil {
				// What was renamed must be the spare's directory, not
				// what a step put in its place.
				if holds(s.resultTmpFd, tmp, sp.fd) {
					return tmp, sp.fd, nil
				}
				err = fmt.Errorf("%w: %s/%s is not the spare's directory", ErrWorkReplaced, resultTmpDir, sp.tmp)
				sp.tmp = tmp // what is there goes, as the spare
				if merr := s.removeMoved(sp.fd, "spare directory", ""); merr != nil {
					s.log.Error(merr, "removing a spare a step moved failed")
				}
			}
			s.log.V(1).Info("spare work subvolume not used", "base", base, "err", err.Error())
			w.close()
			*w = workVol{fd: -1}
			s.removeSpare(sp)
		}
	}
	return s.mkdirOpenTmp(s.resultTmpFd, "b")
}

// startWork creates the work subvolume in the build's directory: empty, or
// a writable snapshot of result base taken under base's shared lock.
func (s *Store) startWork(tmpFd int, base string, w *workVol) error {
	if err := s.makeWork(tmpFd, base, false); err != nil {
		return explainEPERM(err, tmpFd, "the build directory") // what it made goes with the build directory
	}
	if base != "" {
		s.markUsed(base) // see Results
	}
	return w.identify(tmpFd, workName)
}

// makeWork makes the work subvolume in tmpFd: empty, or a writable
// snapshot of result base taken under base's shared lock. spare says that
// it is a spare's (spare.go): made in the background, where a test's
// injected failures are not.
func (s *Store) makeWork(tmpFd int, base string, spare bool) error {
	if base == "" {
		err := ioctl.CreateSubvolumeAt(tmpFd, workName)
		if err == nil {
			err = s.failAt("create-work")
		}
		return err
	}
	unlock := s.lockResult(base, true)
	defer unlock()
	baseFd, err := openDirAt(s.resultFd, base+"/"+snapshotName)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("base %s has no result: %w", base, fs.ErrNotExist)
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EXDEV):
			// A symlink, file or mount a build step put there.
			return fmt.Errorf("base %s has no result (result/%s is not one: %v): %w", base, base, err, fs.ErrNotExist)
		}
		return err
	}
	defer unix.Close(baseFd)
	err = ioctl.SnapshotAt(baseFd, tmpFd, workName, 0)
	if err == nil && !spare {
		err = s.failAt("snapshot-base")
	}
	if errors.Is(err, unix.EPERM) {
		err = explainSnapshotEPERM(err, baseFd, "base "+base)
	}
	return err
}

// explainSnapshotEPERM adds to EPERM from snapshotting the subvolume open
// as srcFd what the kernel wants: owning the subvolume's root (a build
// step may have given it away) or CAP_FOWNER.
func explainSnapshotEPERM(err error, srcFd int, what string) error {
	var st unix.Stat_t
	if unix.Fstat(srcFd, &st) != nil || int(st.Uid) == os.Geteuid() {
		return err
	}
	if has, cerr := kernel.HasCapability(unix.CAP_FOWNER); cerr != nil || has {
		return err
	}
	return fmt.Errorf("%w: %s is owned by uid %d (a build step gave its directory away), and snapshotting a subvolume "+
		"another user owns needs CAP_FOWNER: grant it (`setpriv --inh-caps=+fowner --ambient-caps=+fowner ...`, "+
		"or `docker run --cap-add FOWNER`, a Docker default)", err, what, st.Uid)
}

// publish freezes the work subvolume as the read-only snapshot
// result/<id>/snapshot: it makes the plain directory result/<id>, records
// base on it (for Export, export.go) and snapshots the work subvolume into
// it read-only. The result appears at once with the snapshot, complete and
// read-only; until then result/<id> is an empty directory, which is no
// result: Result, Results and Prune pass it by, Delete waits for the
// snapshot (publish holds the result's lock), and Open removes one that a
// crash left. What is frozen is the subvolume the store created, opened by
// descriptor and checked by id, never what a symlink or mount in its place
// leads to.
//
// Durability without an fsync: the snapshot's own transaction commit
// carries the directory, its base and the snapshot together.
//
// Made in place, the result costs one mkdir over the seed's sequence,
// where staging it in result-tmp/b<n>/out/<id> and renaming that into
// result/ cost five directory operations (Import still stages so, as a
// received subvolume is not complete when it appears).
func (s *Store) publish(tmpFd int, id, base string, w *workVol) error {
	workFd, err := w.openVerified(tmpFd, workName, "the work directory")
	if err != nil {
		return err
	}
	defer unix.Close(workFd)
	unlock := s.lockResult(id, false)
	defer unlock()
	idFd, err := mkdirOpen(s.resultFd, id)
	if errors.Is(err, fs.ErrExist) && s.removeNonResultLocked(id) {
		// What a step planted in the result's place, or an empty
		// directory a delete in place left.
		idFd, err = mkdirOpen(s.resultFd, id)
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("result appeared meanwhile: %w", fs.ErrExist)
		}
		return explainEPERM(err, s.resultFd, resultDir)
	}
	err = s.failAt("mkdir-result")
	if err == nil {
		err = setBase(idFd, base)
	}
	if err == nil {
		err = ioctl.SnapshotAt(workFd, idFd, snapshotName, ioctl.SnapshotReadOnly)
		if err == nil {
			err = s.failAt("snapshot-result")
		}
		if errors.Is(err, unix.EPERM) {
			err = explainSnapshotEPERM(err, workFd, "the work directory")
		}
	}
	if err != nil && !s.unpublish(id) {
		s.log.Error(err, "removing the directory of a result that was not published failed; Open retries", "id", id)
	}
	unix.Close(idFd)
	return err
}

// removeNonResult removes what is at result/<id> if it is not a result (a
// symlink or file a build step planted, an empty directory left by a
// delete in place), and reports whether it did. A result, or one a mount
// hides, stays.
func (s *Store) removeNonResult(id string) bool {
	unlock := s.lockResult(id, false)
	defer unlock()
	return s.removeNonResultLocked(id)
}

// removeNonResultLocked is removeNonResult under the result's lock.
func (s *Store) removeNonResultLocked(id string) bool {
	if _, err := s.result(id); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	trash, err := s.moveToTmp(s.resultFd, id, s.resultTmpFd, "d")
	if err != nil {
		return errors.Is(err, fs.ErrNotExist) // gone meanwhile
	}
	s.log.Info("removing what is not a result in its place", "id", id)
	if err := s.removeEntry(s.resultTmpFd, resultTmpDir, trash); err != nil {
		s.log.Error(err, "removing what was in a result's place failed; Open retries", "id", id)
	}
	return true
}

// unpublish removes result/<id>, which publish made but which is not
// to be published: a failure (of the base's attribute, of the snapshot)
// left it empty, or the snapshot was made but a failure came after it. It
// reports whether result/<id> is gone.
func (s *Store) unpublish(id string) bool {
	if err := unix.Unlinkat(s.resultFd, id, unix.AT_REMOVEDIR); err == nil || err == unix.ENOENT {
		return true
	}
	trash, err := s.moveToTmp(s.resultFd, id, s.resultTmpFd, "d")
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	if err := s.removeEntry(s.resultTmpFd, resultTmpDir, trash); err != nil {
		s.log.Error(err, "removing a result that was not published failed; Open retries", "id", id)
	}
	return true
}

// removeBuildDir removes the build directory result-tmp/tmp (open as
// tmpFd, which it closes) and the work subvolume w, wherever the step
// moved them. The usual leftovers are the work subvolume and the empty
// directory; anything else (a failed publish, what a step made beside its
// work directory) goes the long way.
//
// published says that result id was published from the work subvolume:
// nested subvolumes the step left in it are then logged, as the result
// holds them as empty directories (a snapshot does not descend into
// nested subvolumes). The kernel says so at no cost: deleting the work
// subvolume fails with ENOTEMPTY.
func (s *Store) removeBuildDir(tmp string, tmpFd int, w *workVol, id string, published bool) error {
	tmpDisplay := resultTmpDir + "/" + tmp
	// The usual case costs two system calls: the work subvolume's
	// delete and the build directory's rmdir. Anything unexpected
	// (nested subvolumes, what a step left, a store that deletes by
	// rmdir) makes one of them fail or be skipped, and the long way
	// removes the rest.
	done := false
	if published && w.verified && s.deletes == deleteIoctl {
		err := ioctl.DeleteSubvolumeAt(tmpFd, workName, 0)
		if errors.Is(err, unix.ENOTEMPTY) {
			s.log.Info("the build left nested subvolumes in its work directory: they are empty directories in the result", "id", id)
		}
		done = err == nil && unix.Unlinkat(s.resultTmpFd, tmp, unix.AT_REMOVEDIR) == nil
	}
	var err error
	if !done {
		err = s.removeEntry(tmpFd, tmpDisplay, workName)
		if err == nil {
			if err = unix.Unlinkat(s.resultTmpFd, tmp, unix.AT_REMOVEDIR); err != nil {
				err = s.removeEntry(s.resultTmpFd, resultTmpDir, tmp)
			}
		}
	}
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	// A step may have moved the build directory or its work subvolume
	// away (and put something else at the name, which is gone now).
	var st unix.Stat_t
	if err == nil && unix.Fstat(tmpFd, &st) == nil && st.Nlink > 0 {
		if merr := s.removeMoved(tmpFd, "build directory", tmpDisplay); merr != nil {
			errs = append(errs, merr)
		}
	}
	unix.Close(tmpFd)
	if w.fd >= 0 && !w.verified {
		if merr := s.removeMoved(w.fd, "work subvolume", tmpDisplay+"/"+workName); merr != nil {
			errs = append(errs, merr)
		}
	}
	w.close()
	return errors.Join(errs...)
}

// removeMoved removes the directory or subvolume open as fd, which a step
// may have moved from made, where the store made it (relative to the
// root): found by its path in /proc, and removed if that is below the root
// and still holds it. Outside the root it is left alone and the error says
// where it is. what names it.
func (s *Store) removeMoved(fd int, what, made string) error {
	p, ok := fdPath(fd)
	if !ok {
		return nil // gone
	}
	rel, below := strings.CutPrefix(p, s.realRoot+"/")
	if rel == made {
		return nil // not moved: removing it at its name failed, and said so
	}
	if s.realRoot == "" || !below {
		return fmt.Errorf("%w: the step moved its %s out of the store, to %s; it is left there", ErrWorkReplaced, what, p)
	}
	pfd, base, err := beneath.OpenParent(s.rootFd, rel)
	if err != nil {
		return fmt.Errorf("the step moved its %s to %s, which cannot be reached safely: %w", what, rel, err)
	}
	defer unix.Close(pfd)
	dir, _ := beneath.Split(rel)
	if !holds(pfd, base, fd) {
		return fmt.Errorf("the step moved its %s to %s, which no longer holds it; not removed", what, rel)
	}
	s.log.Info("removing what a build moved away", "what", what, "path", rel)
	return s.removeEntry(pfd, dir, base)
}
