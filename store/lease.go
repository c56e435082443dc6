package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// CacheLease is a writable clone of a cache, given out by Store.Cache.
type CacheLease struct {
	s     *Store
	name  string           // cache name as given
	entry string           // its escaped directory entry in cache/
	clone string           // its directory entry in cache-tmp/
	gen   uint64           // the cache's generation when cloned
	vol   workVol          // the clone as created, open until released
	volID fileID           // what Path must lead to
	mark  ioctl.ChangeMark // the clone as handed out, if marked
	// marked: mark is set, and Release may keep the current version
	// when the clone is unchanged (see changedClone).
	marked bool
	start  time.Time
	once   sync.Once
	err    error
}

// maxID is the largest uid or gid: (uid_t)-1 means "unchanged" to chown.
const maxID = 1<<32 - 2

// valid checks that the owner's ids are uids and gids the kernel can
// give: 0 to 2³²-2.
func (o Owner) valid() error {
	if o.UID < 0 || int64(o.UID) > maxID || o.GID < 0 || int64(o.GID) > maxID {
		return fmt.Errorf("owner uid %d gid %d: ids must be 0 to %d: %w", o.UID, o.GID, int64(maxID), fs.ErrInvalid)
	}
	return nil
}

// Path returns the clone's directory.
func (l *CacheLease) Path() string { return filepath.Join(l.s.root, cacheTmpDir, l.clone) }

// Cache returns a writable clone of cache name, creating the cache (empty)
// if missing, with its top directory owned by owner. Any byte string is a
// valid name; it is stored escaped (see Escape), and only a name whose
// escaped form exceeds 255 bytes is rejected (fs.ErrInvalid). The lease
// must be released.
//
// Privilege: giving the clone to another uid or gid than the caller's
// needs CAP_CHOWN (checked first: the error names it). Concurrency: safe;
// operations on one name are serialized.
func (s *Store) Cache(ctx context.Context, name string, owner Owner) (*CacheLease, error) {
	entry, err := cacheEntry(name)
	if err != nil {
		return nil, err
	}
	if err := owner.valid(); err != nil {
		return nil, fmt.Errorf("btrstore: cache %q: %w", name, err)
	}
	if err := s.canGiveCache(owner); err != nil {
		return nil, fmt.Errorf("btrstore: cache %q: %w", name, err)
	}
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	held, err := s.caches.Lock(ctx, entry)
	if err != nil {
		return nil, err
	}
	defer held.Unlock()
	if err := s.ensureCache(entry); err != nil {
		return nil, fmt.Errorf("btrstore: cache %q: %w", name, err)
	}
	l := &CacheLease{s: s, name: name, entry: entry, gen: held.Generation(), vol: workVol{fd: -1}, start: time.Now()}
	if err := s.clone(l, owner); err != nil {
		return nil, fmt.Errorf("btrstore: cache %q: %w", name, err)
	}
	s.mu.Lock()
	s.leases[l] = struct{}{}
	s.mu.Unlock()
	s.log.V(1).Info("cache cloned", "name", name, "generation", l.gen, "path", l.Path())
	return l, nil
}

// clone snapshots the cache writable into a fresh entry of cache-tmp,
// gives it to owner and records it in l.
func (s *Store) clone(l *CacheLease, owner Owner) error {
	srcFd, err := openDirAt(s.cacheFd, l.entry)
	if err != nil {
		return err
	}
	for range maxNameTries {
		l.clone = s.tmpName("k")
		if err = ioctl.SnapshotAt(srcFd, s.cacheTmpFd, l.clone, 0); !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	unix.Close(srcFd)
	if err == nil {
		err = s.failAt("snapshot-clone")
	}
	if err == nil {
		err = l.vol.identify(s.cacheTmpFd, l.clone)
	}
	if err == nil {
		err = l.markAndChown(owner)
	}
	if err == nil {
		// Path must lead to the clone, not through a mount or symlink
		// a build step planted on cache-tmp.
		l.volID, err = fdID(l.vol.fd)
		if err == nil && !leadsTo(l.Path(), l.volID) {
			err = s.checkDir(&s.dirCacheTmp)
			if err == nil && !leadsTo(l.Path(), l.volID) {
				err = fmt.Errorf("%w: %s does not lead to the clone", ErrWorkReplaced, l.Path())
			}
		}
	}
	if err != nil {
		l.vol.close()
		if l.clone != "" {
			if rerr := s.removeEntry(s.cacheTmpFd, cacheTmpDir, l.clone); rerr != nil {
				s.log.Error(rerr, "removing a failed cache clone failed; Open retries", "name", l.name, "entry", l.clone)
			}
		}
		return explainEPERM(err, s.cacheTmpFd, cacheTmpDir)
	}
	return nil
}

// ensureCache creates cache entry as an empty read-only subvolume if it
// does not exist. It is made under a temporary name and renamed into place,
// so the cache never exists half-made.
func (s *Store) ensureCache(entry string) error {
	var st unix.Stat_t
	err := unix.Fstatat(s.cacheFd, entry, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil {
		return nil
	}
	if err != unix.ENOENT {
		return &os.PathError{Op: "fstatat", Path: entry, Err: err}
	}
	var tmp string
	for range maxNameTries {
		tmp = s.tmpName("t-")
		if err = ioctl.CreateSubvolumeAt(s.cacheFd, tmp); !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err == nil {
		err = s.failAt("create-cache")
	}
	if err != nil {
		s.removeFailed(s.cacheFd, cacheDir, tmp)
		return err
	}
	fd, err := openDirAt(s.cacheFd, tmp)
	if err == nil {
		err = ioctl.SetReadOnlyFd(fd, true)
		unix.Close(fd)
	}
	if err == nil {
		err = moveNoReplace(s.cacheFd, tmp, s.cacheFd, entry)
	}
	if err == nil {
		if err = s.failAt("rename-cache"); err != nil {
			// As if the rename had failed after all: take it back.
			if moveNoReplace(s.cacheFd, entry, s.cacheFd, tmp) != nil {
				return err
			}
		}
	}
	if err != nil {
		s.removeFailed(s.cacheFd, cacheDir, tmp)
	}
	return err
}

// removeFailed removes what a failed step may have made; a failure to is
// logged (Open retries), as the step's own error is what the caller gets.
func (s *Store) removeFailed(dirFd int, dir, name string) {
	if err := s.removeEntry(dirFd, dir, name); err != nil {
		s.log.Error(err, "removing what a failed step made failed; Open retries", "entry", name)
	}
}

// Release ends the lease. If no release or DeleteCache of the cache
// happened since the clone was taken, the clone becomes the new version of
// the cache, or, if nothing in it changed, the current version stays and
// no snapshot is taken (see unchanged.go) (the first release of a
// generation wins, changed or not; one whose save fails,
// on a full disk say, does not count); otherwise it is discarded. The clone is removed in every case. Release must be called;
// a second call is a no-op returning the first's result.
//
// The swap is atomic: the new version is snapshotted read-only beside the
// old one and exchanged with it by renameat2(RENAME_EXCHANGE), so the cache
// is a complete old or new version at every instant.
func (l *CacheLease) Release(ctx context.Context) error {
	l.once.Do(func() { l.err = l.release(ctx) })
	return l.err
}

func (l *CacheLease) release(ctx context.Context) error {
	s := l.s
	start := time.Now()
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	held, err := s.caches.Lock(context.WithoutCancel(ctx), l.entry)
	if err != nil {
		return err
	}
	defer held.Unlock()
	// What a step planted on the store's directories goes.
	defer s.checkDirs()
	switch {
	case !leadsTo(l.Path(), l.volID):
		// What was written through the path is not in the clone.
		err = fmt.Errorf("%w: %s no longer leads to the clone (a mount or symlink on the way): what was written through it is not saved", ErrWorkReplaced, l.Path())
		s.log.Error(err, "saving cache failed; the previous version is kept", "name", l.name)
	default:
		// The release rule (cache.Held.Save): saved, and the generation
		// bumped only if that succeeded. A clone nobody changed is not
		// saved: the current version stays, and the release still wins
		// its generation (see unchanged.go).
		var current, unchanged bool
		switch current, err = held.Save(l.gen, func() error {
			if !l.changed() {
				unchanged = true
				return nil
			}
			return l.save()
		}); {
		case !current:
			s.log.V(1).Info("cache clone discarded: a newer generation exists", "name", l.name, "duration", time.Since(start), "held", start.Sub(l.start))
		case err != nil:
			s.log.Error(err, "saving cache failed; the previous version is kept", "name", l.name)
		case unchanged:
			s.cacheKept(l.entry)
			s.log.V(1).Info("cache unchanged: current version kept", "name", l.name, "generation", l.gen+1, "duration", time.Since(start), "held", start.Sub(l.start))
		default:
			s.log.V(1).Info("cache saved", "name", l.name, "generation", l.gen+1, "duration", time.Since(start), "held", start.Sub(l.start))
		}
	}
	if rerr := l.removeClone(); rerr != nil {
		if err == nil {
			err = rerr
		} else {
			err = fmt.Errorf("%w; removing the clone failed too (Open retries): %w", err, rerr)
		}
	}
	if err != nil {
		return fmt.Errorf("btrstore: release cache %q: %w", l.name, err)
	}
	return nil
}

// removeClone removes the clone, and closes it: at its name, and, if a
// step moved it away, where it went.
func (l *CacheLease) removeClone() error {
	s := l.s
	err := s.removeEntry(s.cacheTmpFd, cacheTmpDir, l.clone)
	if !l.vol.verified {
		if merr := s.removeMoved(l.vol.fd, "cache clone", cacheTmpDir+"/"+l.clone); merr != nil {
			err = errors.Join(err, merr)
		}
	}
	s.mu.Lock()
	delete(s.leases, l)
	l.vol.close()
	s.mu.Unlock()
	return err
}

// save makes the clone the new version of the cache: the clone the store
// made, checked by id, never what a step put in its place.
func (l *CacheLease) save() error {
	s := l.s
	cloneFd, err := l.vol.openVerified(s.cacheTmpFd, l.clone, "the cache clone "+l.Path())
	if err != nil {
		return err
	}
	// The kernel snapshots only subvolumes the caller owns (or with
	// CAP_FOWNER): without CAP_FOWNER, take a clone given to another
	// owner back first, with the CAP_CHOWN that giving it away needed.
	// With it, the version keeps the owner, so that the next clone for
	// that owner needs no chown (see unchanged.go).
	var st unix.Stat_t
	err = unix.Fstat(cloneFd, &st)
	if err == nil && !s.canSnapshotOthers() && (int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid()) {
		if err = unix.Fchown(cloneFd, os.Geteuid(), os.Getegid()); err != nil {
			err = explainEPERM(&os.PathError{Op: "chown", Path: l.Path(), Err: err}, cloneFd, l.Path())
		}
	}
	var tmp string
	if err == nil {
		for range maxNameTries {
			tmp = s.tmpName("t-")
			if err = ioctl.SnapshotAt(cloneFd, s.cacheFd, tmp, ioctl.SnapshotReadOnly); !errors.Is(err, fs.ErrExist) {
				break
			}
		}
		if err == nil {
			err = s.failAt("snapshot-save")
		}
		err = explainEPERM(err, s.cacheFd, cacheDir)
	}
	unix.Close(cloneFd)
	if err != nil {
		if tmp != "" {
			s.removeFailed(s.cacheFd, cacheDir, tmp)
		}
		return err
	}
	err = exchange(s.cacheFd, tmp, l.entry)
	if err == nil {
		if err = s.failAt("exchange-cache"); err != nil {
			// As if the exchange had failed after all: swap back.
			if exchange(s.cacheFd, tmp, l.entry) != nil {
				return err
			}
		}
	}
	if err != nil {
		// The cache was deleted meanwhile by another process? Not with
		// the lock held: keep the old version, drop the new one.
		s.removeFailed(s.cacheFd, cacheDir, tmp)
		return err
	}
	if err := s.removeEntry(s.cacheFd, cacheDir, tmp); err != nil { // now the old version
		return fmt.Errorf("the new version is in place, but removing the old one failed (Open retries): %w", err)
	}
	return nil
}

// DeleteCache deletes cache name, and the time of its last release
// recorded on cache/. Clones in use stay usable, but their release is
// discarded; the next Cache starts empty.
func (s *Store) DeleteCache(ctx context.Context, name string) error {
	entry, err := cacheEntry(name)
	if err != nil {
		return err
	}
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	held, err := s.caches.Lock(ctx, entry)
	if err != nil {
		return err
	}
	defer held.Unlock()
	held.Bump()
	// At once where it is (a subvolume delete is atomic); only if the
	// kernel refuses (a flag or mode a step left, no CAP_SYS_ADMIN) is it
	// renamed away first, so that cache/<name> is never a half-unlocked
	// version while removeEntry makes it deletable.
	var trash string
	err = ioctl.DeleteSubvolumeAt(s.cacheFd, entry, 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		var merr error
		if trash, merr = s.moveToTmp(s.cacheFd, entry, s.cacheFd, "t-"); merr != nil {
			return fmt.Errorf("btrstore: delete cache %q: %w", name, err)
		}
	}
	s.forgetReleased(entry)
	if trash != "" {
		if err := s.removeEntry(s.cacheFd, cacheDir, trash); err != nil {
			return fmt.Errorf("btrstore: delete cache %q: cache gone, but freeing it failed (Open retries): %w", name, err)
		}
	}
	s.log.V(1).Info("cache deleted", "name", name)
	return nil
}
