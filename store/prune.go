package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// PruneOptions says which results Prune deletes. Its zero value deletes
// every result not in use.
type PruneOptions struct {
	UsedBefore   time.Time // only results last used before this; zero: no age limit
	Limit        int       // delete at most this many; 0: no limit
	MinFreeSpace float64   // stop once FreeSpace (percent) reaches this; 0: no target
}

// pruneBatchMax is the most results Prune deletes between two
// measurements of free space.
const pruneBatchMax = 64

// Prune deletes least recently used results first (see Results for what
// counts as a use), skips results in use (a build on them, a running Build
// of them), waits for the kernel's cleanup (CompleteDeletes) before it
// re-measures free space, and returns the ids it deleted, oldest use
// first. obuilder's `prune ~before limit` is Prune(ctx,
// PruneOptions{UsedBefore: before, Limit: limit}).
//
// With MinFreeSpace, Prune measures FreeSpace first and deletes nothing
// if the target is met; otherwise it deletes one result, waits for the
// cleanup, measures, and from then on deletes in batches sized by what a
// result freed so far (at most 64), measuring after each, and stops as
// soon as the target is met, or when no result is left to delete (not an
// error: the ids say how far it got). Without MinFreeSpace it does not
// wait for the cleanup; call CompleteDeletes for that.
//
// A result is skipped, never half-deleted, when a Build of its id is
// running, when a running Build started from it (from the snapshot of
// its base to the Build's end), and when it was used after Prune listed
// it. Each deletion is Delete's: the result disappears at once. ctx ends
// Prune between two deletions (or in CompleteDeletes), with the ids
// deleted so far and ctx's error. A SIGKILL leaves what Delete's would:
// results gone or intact, and trash in result-tmp that Open removes.
//
// Errors: a negative Limit, or MinFreeSpace not in [0, 100]:
// fs.ErrInvalid, before anything is deleted.
//
// Privilege and kernel: those of Delete, CompleteDeletes and FreeSpace.
// Concurrency: safe, with builds and deletes running; two Prunes at once
// share out the candidates.
func (s *Store) Prune(ctx context.Context, opts PruneOptions) ([]string, error) {
	if opts.Limit < 0 || math.IsNaN(opts.MinFreeSpace) || opts.MinFreeSpace < 0 || opts.MinFreeSpace > 100 {
		return nil, fmt.Errorf("btrstore: prune: limit %d and free space target %v%%: want a limit ≥ 0 and a target from 0 to 100: %w",
			opts.Limit, opts.MinFreeSpace, fs.ErrInvalid)
	}
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	start := time.Now()
	infos, err := s.listResults()
	if err != nil {
		return nil, err
	}
	candidates := slices.DeleteFunc(infos, func(r ResultInfo) bool {
		return !opts.UsedBefore.IsZero() && !r.LastUsed.Before(opts.UsedBefore)
	})
	slices.SortFunc(candidates, func(a, b ResultInfo) int {
		return cmp.Or(a.LastUsed.Compare(b.LastUsed), cmp.Compare(a.ID, b.ID))
	})
	target := opts.MinFreeSpace > 0
	var free0, free float64
	if target {
		if free, err = s.FreeSpace(ctx); err != nil {
			return nil, fmt.Errorf("btrstore: prune: %w", err)
		}
		if free >= opts.MinFreeSpace {
			s.log.V(1).Info("prune: free space target met already", "free", free, "target", opts.MinFreeSpace)
			return nil, nil
		}
		free0 = free
	}
	var deleted []string
	skipped := 0
	batch := len(candidates)
	if target {
		batch = 1
	}
	for len(candidates) > 0 && (opts.Limit == 0 || len(deleted) < opts.Limit) {
		n := batch
		if opts.Limit > 0 {
			n = min(n, opts.Limit-len(deleted))
		}
		inBatch := 0
		for inBatch < n && len(candidates) > 0 {
			if err := ctx.Err(); err != nil {
				return deleted, fmt.Errorf("btrstore: prune: %w", err)
			}
			c := candidates[0]
			candidates = candidates[1:]
			ok, err := s.pruneOne(c)
			if err != nil {
				return deleted, fmt.Errorf("btrstore: prune: %w", err)
			}
			if !ok {
				skipped++
				continue
			}
			deleted = append(deleted, c.ID)
			inBatch++
		}
		if !target || inBatch == 0 {
			continue
		}
		if err := s.CompleteDeletes(ctx); err != nil {
			return deleted, fmt.Errorf("btrstore: prune: %w", err)
		}
		if free, err = s.FreeSpace(ctx); err != nil {
			return deleted, fmt.Errorf("btrstore: prune: %w", err)
		}
		if free >= opts.MinFreeSpace {
			break
		}
		// The next batch: as many results as, at the average freed so
		// far, meet the target.
		batch = min(batch*2, pruneBatchMax)
		if per := (free - free0) / float64(len(deleted)); per > 0 {
			batch = int(min(math.Ceil((opts.MinFreeSpace-free)/per), pruneBatchMax))
		}
	}
	s.log.V(1).Info("prune done", "deleted", len(deleted), "skipped", skipped, "free", free, "duration", time.Since(start))
	return deleted, nil
}

// pruneOne deletes result r, as Delete does, unless it is in use or was
// used since r was listed, and reports whether it did.
func (s *Store) pruneOne(r ResultInfo) (bool, error) {
	s.mu.Lock()
	_, building := s.running[r.ID]
	s.mu.Unlock()
	if building || s.bases.inUse(r.ID) {
		return false, nil
	}
	unlock, ok := s.results.TryLock(r.ID, false)
	if !ok {
		return false, nil // a build is snapshotting it, or a Delete has it
	}
	// Under the lock, no build can start from it; one that started since
	// the check above holds its use count.
	if s.bases.inUse(r.ID) {
		unlock()
		return false, nil
	}
	now, err := s.resultInfo(r.ID)
	if err != nil || !now.LastUsed.Equal(r.LastUsed) {
		unlock()
		if errors.Is(err, fs.ErrNotExist) {
			err = nil // deleted meanwhile
		}
		return false, err
	}
	trash, err := s.moveToTmp(s.resultFd, r.ID, s.resultTmpFd, "d")
	if errors.Is(err, unix.ENOSPC) {
		err = s.deleteInPlace(r.ID) // as Delete does on a full filesystem
		trash = ""
	}
	unlock()
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", r.ID, err)
	}
	s.log.V(1).Info("result pruned", "id", r.ID, "lastUsed", r.LastUsed)
	s.dropSpare(r.ID)
	if trash != "" {
		if err := s.removeEntry(s.resultTmpFd, resultTmpDir, trash); err != nil {
			return true, fmt.Errorf("delete %s: result gone, but freeing it failed (Open retries): %w", r.ID, err)
		}
	}
	return true, nil
}

// useCounts counts, per result id, the running builds that started from
// it.
type useCounts struct {
	mu sync.Mutex     // guards m
	m  map[string]int // absent: 0
}

// add counts one more use of id and returns what ends it.
func (u *useCounts) add(id string) (done func()) {
	u.mu.Lock()
	if u.m == nil {
		u.m = map[string]int{}
	}
	u.m[id]++
	u.mu.Unlock()
	return func() {
		u.mu.Lock()
		if u.m[id]--; u.m[id] == 0 {
			delete(u.m, id)
		}
		u.mu.Unlock()
	}
}

func (u *useCounts) inUse(id string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.m[id] > 0
}

// CacheInfo describes a cache, as Caches lists it.
type CacheInfo struct {
	Name string // as given to Cache
	// LastReleased is when the cache was last released: the creation
	// time of its current version (the read-only subvolume
	// cache/c-<name>, made when a Release saved it, or when the cache
	// was created), or, if later, the last release that found the clone
	// unchanged and kept the version. Such a release records its time
	// in an extended attribute of the directory cache/, which survives
	// Close and Open (see Caches); where that cannot be written, only
	// the Store that released it knows.
	LastReleased time.Time
}

// Caches yields every cache, in no particular order, with when it was
// last released, so that a pruner can DeleteCache the stale ones. An
// error (the directory unreadable) is yielded once and ends the listing.
//
// A release that keeps the version records its time with one fsetxattr
// on cache/ (user.btrstore.released.<hash of the name>): no transaction
// commit, no fsync, so a crash of the machine loses at most the last
// commit interval (30 s by default) of such releases, and Close and Open
// lose nothing. The kernel sets cache/'s change time with it, and a
// recorded time is taken as no later than that: whoever can write cache/
// (only the store's user, and root) can make a cache look released at
// any time up to its last change, much as it could by putting a fresh
// subvolume in its place, and never older than its version.
//
// Cost: one readdir and one fstat of cache/, and per cache one open,
// GET_SUBVOL_INFO and fgetxattr; nothing is held while the caller's loop
// body runs.
//
// Privilege: none. Kernel: 4.18 (GET_SUBVOL_INFO). Concurrency: safe.
func (s *Store) Caches() iter.Seq2[CacheInfo, error] {
	return func(yield func(CacheInfo, error) bool) {
		infos, err := s.listCaches()
		if err != nil {
			yield(CacheInfo{}, err)
			return
		}
		for _, info := range infos {
			if !yield(info, nil) {
				return
			}
		}
	}
}

func (s *Store) listCaches() ([]CacheInfo, error) {
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	names, err := readDirNames(s.cacheFd)
	if err != nil {
		return nil, fmt.Errorf("btrstore: caches: %w", &fs.PathError{Op: "readdir", Path: cacheDir, Err: err})
	}
	// A release time recorded on cache/ is no later than the last change
	// of cache/ (see released.go).
	var st unix.Stat_t
	if err := unix.Fstat(s.cacheFd, &st); err != nil {
		return nil, fmt.Errorf("btrstore: caches: %w", &fs.PathError{Op: "fstat", Path: cacheDir, Err: err})
	}
	changed := time.Unix(st.Ctim.Unix())
	buf := make([]byte, 32+maxName)
	slices.Sort(names)
	var infos []CacheInfo
	for _, entry := range names {
		name, ok := cacheName(entry)
		if !ok {
			continue // a version being made or swapped out
		}
		fd, err := openDirAt(s.cacheFd, entry)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("btrstore: caches: %w", &fs.PathError{Op: "open", Path: cacheDir + "/" + entry, Err: err})
		}
		info, err := ioctl.SubvolumeInfoFd(fd)
		unix.Close(fd)
		if err != nil {
			continue // not a cache (Open removes it)
		}
		last := info.Otime
		if t := s.lastReleased(entry, changed, buf); t.After(last) {
			last = t // an unchanged release, which keeps the version
		}
		infos = append(infos, CacheInfo{Name: name, LastReleased: last})
	}
	return infos, nil
}

// cacheName inverts Escape; ok is false for what Escape does not make.
func cacheName(entry string) (name string, ok bool) {
	rest, ok := strings.CutPrefix(entry, "c-")
	if !ok {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+3 > len(rest) {
			return "", false
		}
		v, err := strconv.ParseUint(rest[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	name = b.String()
	return name, Escape(name) == entry
}
