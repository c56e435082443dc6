package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// CacheLease is a writable clone of a cache, given out by Store.Cache.
type CacheLease struct {
	s     *Store
	name  string // cache name as given
	entry string // its escaped directory entry in cache/
	clone string // its directory entry in cache-tmp/
	gen   uint64 // the cache's generation when cloned
	once  sync.Once
	err   error
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
	if err := s.report.CanChown(owner.UID, owner.GID); err != nil {
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
	l := &CacheLease{s: s, name: name, entry: entry, clone: s.tmpName("k"), gen: held.Generation()}
	srcFd, err := openDirAt(s.cacheFd, entry)
	if err != nil {
		return nil, fmt.Errorf("btrstore: cache %q: %w", name, err)
	}
	err = ioctl.SnapshotAt(srcFd, s.cacheTmpFd, l.clone, 0)
	unix.Close(srcFd)
	if err == nil {
		err = unix.Fchownat(s.cacheTmpFd, l.clone, owner.UID, owner.GID, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			err = &os.PathError{Op: "chown", Path: l.Path(), Err: err}
			removeEntry(s.cacheTmpFd, l.clone)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("btrstore: cache %q: %w", name, err)
	}
	s.log.V(1).Info("cache cloned", "name", name, "generation", l.gen, "path", l.Path())
	return l, nil
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
	tmp := s.tmpName("t-")
	if err := ioctl.CreateSubvolumeAt(s.cacheFd, tmp); err != nil {
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
	if err != nil {
		removeEntry(s.cacheFd, tmp)
	}
	return err
}

// Release ends the lease. If no release or DeleteCache of the cache
// happened since the clone was taken, the clone becomes the new version of
// the cache (the first release of a generation wins); otherwise it is
// discarded. The clone is removed in every case. Release must be called;
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
	if held.CompareAndBump(l.gen) {
		err = l.save()
		if err != nil {
			s.log.Error(err, "saving cache failed; the previous version is kept", "name", l.name)
		} else {
			s.log.V(1).Info("cache saved", "name", l.name, "generation", l.gen+1)
		}
	} else {
		s.log.V(1).Info("cache clone discarded: a newer generation exists", "name", l.name)
	}
	if rerr := removeEntry(s.cacheTmpFd, l.clone); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("btrstore: release cache %q: %w", l.name, err)
	}
	return nil
}

// save makes the clone the new version of the cache.
func (l *CacheLease) save() error {
	s := l.s
	cloneFd, err := openDirAt(s.cacheTmpFd, l.clone)
	if err != nil {
		return err
	}
	// The kernel snapshots only subvolumes the caller owns (or with
	// CAP_FOWNER): take a clone given to another owner back first, with
	// the CAP_CHOWN that giving it away needed. Clones are chowned anew.
	var st unix.Stat_t
	err = unix.Fstat(cloneFd, &st)
	if err == nil && (int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid()) {
		err = unix.Fchown(cloneFd, os.Geteuid(), os.Getegid())
	}
	tmp := s.tmpName("t-")
	if err == nil {
		err = ioctl.SnapshotAt(cloneFd, s.cacheFd, tmp, ioctl.SnapshotReadOnly)
	}
	unix.Close(cloneFd)
	if err != nil {
		return err
	}
	if err := exchange(s.cacheFd, tmp, l.entry); err != nil {
		// The cache was deleted meanwhile by another process? Not with
		// the lock held: keep the old version, drop the new one.
		removeEntry(s.cacheFd, tmp)
		return err
	}
	return removeEntry(s.cacheFd, tmp) // now the old version
}

// DeleteCache deletes cache name. Clones in use stay usable, but their
// release is discarded; the next Cache starts empty.
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
	if err := removeEntry(s.cacheFd, entry); err != nil {
		return fmt.Errorf("btrstore: delete cache %q: %w", name, err)
	}
	s.log.V(1).Info("cache deleted", "name", name)
	return nil
}
