package store

import (
	"context"
	"errors"
	"strings"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// repair brings the directories to the store's invariants after a crash:
// a result that was staged but whose rename into result/ was lost
// (result-tmp/b<n>/out/<id> holding a complete read-only snapshot, and no
// result/<id>: an Import, or a Build of an earlier version) is published; then result-tmp and cache-tmp are emptied
// (builds in progress, clones, results being deleted); an empty
// result/<id> (a build killed before its snapshot) is removed, and so is
// any other result/<id> that is not a directory holding a read-only
// subvolume "snapshot"; in cache/, entries other
// than escaped cache names (versions being swapped in or out) are removed,
// and a cache that is not a read-only subvolume is removed, and so are
// the release times recorded on cache/ for caches that no longer exist
// (see released.go). Each repair is logged (the last at V(1)). Everything
// else is left alone.
//
// Removal is as safe as removeEntry makes it (no symlink followed, mounts
// detached, flags cleared). An entry that still cannot be removed is
// logged with the reason and left: the store opens all the same (its
// temporary names never collide with a left-over entry), and the next
// Open tries again. Only a directory that cannot be listed fails Open.
func (s *Store) repair(ctx context.Context) error {
	if err := s.publishStaged(); err != nil {
		return err
	}
	for _, d := range []dir{{s.resultTmpFd, resultTmpDir}, {s.cacheTmpFd, cacheTmpDir}} {
		names, err := readDirNames(d.fd)
		if err != nil {
			return err
		}
		for _, n := range names {
			s.log.Info("removing left-over entry", "dir", d.path, "entry", n)
			if err := s.removeEntry(d.fd, d.path, n); err != nil {
				s.log.Error(err, "cannot remove left-over entry; left for the next Open", "dir", d.path, "entry", n)
			}
		}
	}
	results, err := readDirNames(s.resultFd)
	if err != nil {
		return err
	}
	for _, id := range results {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.completeResult(id) {
			continue
		}
		if unix.Unlinkat(s.resultFd, id, unix.AT_REMOVEDIR) == nil {
			// A build killed before its snapshot, or a delete in place
			// before its rmdir: nothing was lost.
			s.log.Info("removed the empty directory of an unfinished result", "id", id)
			continue
		}
		s.log.Info("removing incomplete result", "id", id)
		trash, err := s.moveToTmp(s.resultFd, id, s.resultTmpFd, "d")
		if errors.Is(err, unix.EBUSY) {
			// A mount on it: detach, and try again.
			if err = s.detachMounts(dir{s.resultFd, resultDir}, id); err == nil {
				trash, err = s.moveToTmp(s.resultFd, id, s.resultTmpFd, "d")
			}
		}
		if err == nil {
			err = s.removeEntry(s.resultTmpFd, resultTmpDir, trash)
		}
		if err != nil {
			s.log.Error(err, "cannot remove incomplete result; left for the next Open", "id", id)
		}
	}
	caches, err := readDirNames(s.cacheFd)
	if err != nil {
		return err
	}
	kept := caches[:0]
	for _, n := range caches {
		if strings.HasPrefix(n, "c-") && s.isReadOnlySubvolume(dir{s.cacheFd, cacheDir}, n) {
			kept = append(kept, n)
			continue
		}
		s.log.Info("removing left-over cache entry", "entry", n)
		if err := s.removeEntry(s.cacheFd, cacheDir, n); err != nil {
			s.log.Error(err, "cannot remove left-over cache entry; left for the next Open", "entry", n)
		}
	}
	s.dropStaleReleases(kept)
	return nil
}

// publishStaged publishes the results that builds had frozen when the
// process died, before the rename that publishes them took effect (a
// crash of the machine can undo that rename, but not the snapshot's
// commit before it).
func (s *Store) publishStaged() error {
	builds, err := readDirNames(s.resultTmpFd)
	if err != nil {
		return err
	}
	for _, b := range builds {
		if !strings.HasPrefix(b, "b") {
			continue
		}
		outFd, err := openDirAt(s.resultTmpFd, b+"/"+stageDir)
		if err != nil {
			continue // no staged result
		}
		out := dir{outFd, resultTmpDir + "/" + b + "/" + stageDir}
		ids, _ := readDirNames(outFd)
		for _, id := range ids {
			if validID(id) != nil || !s.completeAt(out, id) || s.resultExists(id) {
				continue // removed with the rest of result-tmp
			}
			if err := moveNoReplace(outFd, id, s.resultFd, id); err != nil {
				s.log.Error(err, "cannot publish a result frozen before a crash; it is removed", "id", id)
				continue
			}
			s.log.Info("published a result frozen before a crash", "id", id)
		}
		unix.Close(outFd)
	}
	return nil
}

// completeResult reports whether result/<id> is a complete result.
func (s *Store) completeResult(id string) bool {
	return s.completeAt(dir{s.resultFd, resultDir}, id)
}

// completeAt reports whether name in dirFd is a plain directory holding
// exactly the read-only subvolume "snapshot". A mount a build step left on
// it or its snapshot is detached first: it hides the result, it does not
// make it incomplete.
func (s *Store) completeAt(d dir, name string) bool {
	fd, err := s.openDirDetaching(d, name)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	names, err := readDirNames(fd)
	if err != nil || len(names) != 1 || names[0] != snapshotName {
		return false
	}
	return s.isReadOnlySubvolume(dir{fd, d.join(name)}, snapshotName)
}

// isReadOnlySubvolume reports whether name in d is a read-only
// subvolume, detaching a mount on it first.
func (s *Store) isReadOnlySubvolume(d dir, name string) bool {
	fd, err := s.openDirDetaching(d, name)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	info, err := ioctl.SubvolumeInfoFd(fd)
	return err == nil && info.ReadOnly
}
