package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btrstore/btrstore/ioctl"
)

// TestStress is obuilder's stress test, in our words: many builds, a bounded
// number at a time, chained on random earlier results and all sharing one
// cache; then everything is deleted, and the filesystem must be back where
// it started: no subvolume left, nothing in the tmp directories, and the
// free space recovered.
func TestStress(t *testing.T) {
	const (
		builds     = 100
		maxRunning = 10
		fileSize   = 1 << 20 // each build's own file
		cacheName  = "shared"
	)
	s, _ := newStore(t)
	ctx := t.Context()
	root := s.Root()
	owner := Owner{UID: os.Getuid(), GID: os.Getgid()}

	if err := ioctl.Sync(root); err != nil {
		t.Fatal(err)
	}
	freeAtStart, err := s.FreeSpace(ctx)
	if err != nil {
		t.Fatal(err)
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	id := func(i int) string { return fmt.Sprintf("b%03d", i) }
	// parent[i] is the index of build i's base, or -1 to start empty.
	parent := make([]int, builds)
	for i := range parent {
		parent[i] = -1
		if i > 0 && rng.IntN(5) != 0 {
			parent[i] = rng.IntN(i)
		}
	}
	// lineage returns the ids whose files result i must hold: its own and
	// its ancestors'.
	lineage := func(i int) []string {
		var ids []string
		for ; i >= 0; i = parent[i] {
			ids = append(ids, id(i))
		}
		slices.Sort(ids)
		return ids
	}
	content := func(i int) []byte {
		b := make([]byte, fileSize)
		copy(b, id(i)+"\n")
		return b
	}

	var (
		done         = make([]chan struct{}, builds)
		errs         = make([]error, builds) // errs[i] written before done[i] closes
		sem          = make(chan struct{}, maxRunning)
		running      atomic.Int32
		maxSeen      atomic.Int32
		releaseBegun sync.Map // id -> true once its Release was called
		wg           sync.WaitGroup
	)
	for i := range done {
		done[i] = make(chan struct{})
	}
	start := time.Now()
	for i := range builds {
		wg.Go(func() {
			defer close(done[i])
			base := ""
			if p := parent[i]; p >= 0 {
				<-done[p]
				if errs[p] != nil {
					errs[i] = fmt.Errorf("base %s failed", id(p))
					return
				}
				base = id(p)
			}
			// Taken after waiting for the base, so that waiting builds do
			// not hold slots.
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = s.Build(ctx, id(i), base, func(ctx context.Context, dir string) error {
				n := running.Add(1)
				defer running.Add(-1)
				for {
					m := maxSeen.Load()
					if n <= m || maxSeen.CompareAndSwap(m, n) {
						break
					}
				}
				// The work dir starts as exactly the base's content.
				var want []string
				if parent[i] >= 0 {
					want = lineage(parent[i])
				}
				if got := stressNames(dir); !slices.Equal(got, want) {
					return fmt.Errorf("work dir on base %q holds %v, want %v", base, got, want)
				}
				if err := stressUseCache(ctx, s, cacheName, owner, id(i), &releaseBegun); err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(dir, id(i)), content(i), 0o644)
			})
		})
	}
	wg.Wait()
	t.Logf("%d builds in %v, at most %d running at once", builds, time.Since(start), maxSeen.Load())

	for i, err := range errs {
		if err != nil {
			t.Errorf("build %s: %v", id(i), err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if m := maxSeen.Load(); m > maxRunning || m < 2 {
		t.Errorf("at most %d build functions ran at once, want 2..%d (builds of different ids must run in parallel)", m, maxRunning)
	}
	// Every result holds its own file and its ancestors', and nothing else.
	for i := range builds {
		p, err := s.Result(id(i))
		if err != nil {
			t.Errorf("Result(%s): %v", id(i), err)
			continue
		}
		if got, want := stressNames(p), lineage(i); !slices.Equal(got, want) {
			t.Errorf("result %s holds %v, want %v", id(i), got, want)
		}
		if ro, err := ioctl.ReadOnly(p); err != nil || !ro {
			t.Errorf("result %s read-only = %v, %v", id(i), ro, err)
		}
		for _, anc := range lineage(i) {
			f, err := os.Open(filepath.Join(p, anc))
			if err != nil {
				t.Errorf("result %s: %v", id(i), err)
				continue
			}
			head := make([]byte, len(anc)+1)
			_, rerr := f.ReadAt(head, 0)
			st, serr := f.Stat()
			f.Close()
			if rerr != nil || serr != nil || string(head) != anc+"\n" || st.Size() != fileSize {
				t.Errorf("result %s: file %s has head %q, size %v (%v, %v); want %q, %d",
					id(i), anc, head, st.Size(), rerr, serr, anc+"\n", fileSize)
			}
		}
	}
	// The cache holds only files of builds that released it.
	lease, err := s.Cache(ctx, cacheName, owner)
	if err != nil {
		t.Fatal(err)
	}
	inCache := stressNames(lease.Path())
	if len(inCache) == 0 {
		t.Errorf("shared cache is empty after %d builds wrote into it", builds)
	}
	for _, name := range inCache {
		if b, err := os.ReadFile(filepath.Join(lease.Path(), name)); err != nil || string(b) != name {
			t.Errorf("cache file %s = %q, %v; want its own name", name, b, err)
		}
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("the shared cache holds %d files", len(inCache))
	assertNoTmp(t, s)

	// The builds' data is counted as used.
	if err := ioctl.Sync(root); err != nil {
		t.Fatal(err)
	}
	freeFull, err := s.FreeSpace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("free space: %.2f%% at start, %.2f%% after the builds", freeAtStart, freeFull)
	if freeAtStart-freeFull < 5 {
		t.Errorf("free space went from %.2f%% to %.2f%% after writing %d MiB: want a drop of at least 5 points",
			freeAtStart, freeFull, builds*fileSize>>20)
	}

	// Delete everything, in parallel and in random order.
	start = time.Now()
	order := rng.Perm(builds)
	for _, i := range order {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s.Delete(ctx, id(i)); err != nil {
				t.Errorf("Delete(%s): %v", id(i), err)
			}
		})
	}
	wg.Wait()
	if err := s.DeleteCache(ctx, cacheName); err != nil {
		t.Fatal(err)
	}
	deleted := time.Since(start)
	start = time.Now()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.CompleteDeletes(cctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("deletes in %v, CompleteDeletes in %v", deleted, time.Since(start))

	for i := range builds {
		if _, err := s.Result(id(i)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Result(%s) after Delete = %v, want fs.ErrNotExist", id(i), err)
		}
	}
	// The store's own directories are plain: no subvolume is left at all.
	if subs := subvolumes(t, root); len(subs) != 0 {
		t.Errorf("subvolumes left after deleting everything: %v", subs)
	}
	for _, d := range []string{resultDir, resultTmpDir, cacheDir, cacheTmpDir} {
		if names := entries(t, filepath.Join(root, d)); len(names) != 0 {
			t.Errorf("%s not empty after deleting everything: %v", d, names)
		}
	}
	freeAtEnd, err := s.FreeSpace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("free space after CompleteDeletes: %.2f%%", freeAtEnd)
	if d := freeAtStart - freeAtEnd; d > 1 || d < -1 {
		t.Errorf("free space after deleting everything = %.2f%%, want within 1 point of %.2f%% at start",
			freeAtEnd, freeAtStart)
	}
}

// stressUseCache is one build's use of the shared cache: lease it, check
// that the clone holds only files of builds that had begun releasing, add
// a file named after the build, release it.
func stressUseCache(ctx context.Context, s *Store, name string, owner Owner, id string, releaseBegun *sync.Map) error {
	lease, err := s.Cache(ctx, name, owner)
	if err != nil {
		return err
	}
	// A clone of a version that no release made would hold files of
	// builds still running.
	for _, f := range stressNames(lease.Path()) {
		if _, ok := releaseBegun.Load(f); !ok {
			lease.Release(ctx)
			return fmt.Errorf("cache clone holds %s, whose build has not released the cache", f)
		}
	}
	werr := os.WriteFile(filepath.Join(lease.Path(), id), []byte(id), 0o644)
	releaseBegun.Store(id, true)
	if err := lease.Release(ctx); err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	// A second Release is a no-op.
	return lease.Release(ctx)
}

// stressNames lists a directory, sorted; if it cannot be read, the error
// stands in for the names, so that comparisons fail and show it.
func stressNames(dir string) []string {
	names, err := invNames(dir)
	if err != nil {
		return []string{"<" + strings.ReplaceAll(err.Error(), " ", "_") + ">"}
	}
	return names
}
