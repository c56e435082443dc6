package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
)

// concWaitLimit bounds every wait for something the store must do promptly, so
// that a deadlock fails the test instead of hanging it.
const concWaitLimit = 10 * time.Second

// concWriters counts the build functions of one id running at once.
type concWriters struct {
	running, max atomic.Int32
}

func (w *concWriters) enter() {
	n := w.running.Add(1)
	for {
		m := w.max.Load()
		if n <= m || w.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (w *concWriters) leave() { w.running.Add(-1) }

// concHeldBuild starts Build(id, base) with function fn, which calls
// hold where it is to stop, and returns once fn is there: Build's result,
// and open, which lets fn go on. The test's cleanup opens it too, before
// the store's Close (which waits for the builds), so that a failing test
// does not hang.
func concHeldBuild(t *testing.T, s *Store, id, base string, fn func(dir string, hold func()) error) (result <-chan error, open func()) {
	t.Helper()
	started, gate, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	open = sync.OnceFunc(func() { close(gate) })
	t.Cleanup(open)
	hold := func() { close(started); <-gate }
	go func() {
		done <- s.Build(t.Context(), id, base, func(_ context.Context, dir string) error { return fn(dir, hold) })
	}()
	concRecv(t, started, "the function of Build("+id+") to stop")
	return done, open
}

// concOneWriter checks that one build function at a time ran, and that
// result id holds file "who" written by want.
func concOneWriter(t *testing.T, s *Store, w *concWriters, id, want string) {
	t.Helper()
	if m := w.max.Load(); m != 1 {
		t.Errorf("%d build functions of one id ran at once", m)
	}
	p, err := s.Result(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(p, "who")); got != want {
		t.Errorf("result written by %q, want %q", got, want)
	}
	assertNoTmp(t, s)
}

// concRecv waits for a value from ch for at most concWaitLimit.
func concRecv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(concWaitLimit):
		t.Fatalf("%s: still waiting after %v (deadlock?)", what, concWaitLimit)
		panic("unreachable")
	}
}

// concNotYet fails if ch delivers within d.
func concNotYet[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s returned %v early: it should still be waiting", what, v)
	case <-time.After(d):
	}
}

// Two Builds of one id: the second waits for the first, its function never
// runs alongside the first's, and it fails with fs.ErrExist without running
// its function once the first succeeded.
func TestBuildSameIDSecondWaits(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	var w concWriters
	first, open := concHeldBuild(t, s, "x", "", func(dir string, hold func()) error {
		w.enter()
		defer w.leave()
		hold()
		time.Sleep(20 * time.Millisecond) // a window for a second writer
		return writeFile(dir, "who", "first")
	})

	var secondCalled atomic.Bool
	second := make(chan error, 1)
	go func() {
		second <- s.Build(ctx, "x", "", func(_ context.Context, dir string) error {
			secondCalled.Store(true)
			w.enter()
			defer w.leave()
			time.Sleep(20 * time.Millisecond)
			return writeFile(dir, "who", "second")
		})
	}()
	concNotYet(t, second, 100*time.Millisecond, "second Build of an id being built")
	open()

	if err := concRecv(t, first, "first Build"); err != nil {
		t.Fatalf("first Build: %v", err)
	}
	err := concRecv(t, second, "second Build")
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Build = %v, want fs.ErrExist", err)
	}
	if secondCalled.Load() {
		t.Errorf("second Build ran its function although the first succeeded")
	}
	concOneWriter(t, s, &w, "x", "first")
}

// If the first Build of an id fails, the one waiting builds, after it.
func TestBuildSameIDFirstFailsSecondBuilds(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	var w concWriters
	boom := errors.New("boom")
	var firstDone atomic.Bool
	first, open := concHeldBuild(t, s, "x", "", func(dir string, hold func()) error {
		w.enter()
		defer w.leave()
		hold()
		writeFile(dir, "who", "first")
		time.Sleep(20 * time.Millisecond)
		firstDone.Store(true)
		return boom
	})
	second := make(chan error, 1)
	go func() {
		second <- s.Build(ctx, "x", "", func(_ context.Context, dir string) error {
			w.enter()
			defer w.leave()
			if !firstDone.Load() {
				t.Errorf("second build function started before the first ended")
			}
			if names := stressNames(dir); len(names) != 0 {
				t.Errorf("second build's work dir holds %v: the failed build's files leaked", names)
			}
			return writeFile(dir, "who", "second")
		})
	}()
	concNotYet(t, second, 100*time.Millisecond, "second Build of an id being built")
	open()
	if err := concRecv(t, first, "first Build"); !errors.Is(err, boom) {
		t.Errorf("first Build = %v, want its function's error", err)
	}
	if err := concRecv(t, second, "second Build"); err != nil {
		t.Errorf("second Build after the first failed = %v, want success", err)
	}
	concOneWriter(t, s, &w, "x", "second")
}

// Many Builds of one id at once, the first few failing: one writer at a
// time, exactly one success, and everyone after it gets fs.ErrExist without
// running its function.
func TestBuildSameIDMany(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	const builders, failing = 8, 3
	boom := errors.New("boom")
	var (
		w        concWriters
		calls    atomic.Int32
		wg       sync.WaitGroup
		errs     = make([]error, builders)
		winner   atomic.Int32
		released = make(chan struct{})
	)
	winner.Store(-1)
	for i := range builders {
		wg.Go(func() {
			<-released
			errs[i] = s.Build(ctx, "same", "", func(_ context.Context, dir string) error {
				w.enter()
				defer w.leave()
				time.Sleep(5 * time.Millisecond)
				if calls.Add(1) <= failing {
					return boom
				}
				winner.Store(int32(i))
				return writeFile(dir, "who", fmt.Sprint(i))
			})
		})
	}
	close(released)
	wg.Wait()
	var ok, exist, failed int
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, fs.ErrExist):
			exist++
		case errors.Is(err, boom):
			failed++
		default:
			t.Errorf("builder %d: unexpected error %v", i, err)
		}
	}
	if ok != 1 || failed != failing || exist != builders-1-failing {
		t.Errorf("%d succeeded, %d failed, %d found the result; want 1, %d, %d", ok, failed, exist, failing, builders-1-failing)
	}
	if n := calls.Load(); n != failing+1 {
		t.Errorf("build functions ran %d times, want %d (the failures and one success)", n, failing+1)
	}
	concOneWriter(t, s, &w, "same", fmt.Sprint(winner.Load()))
}

// Deleting a base while builds snapshot it never breaks them: each build
// either started from the complete base, or found it gone (fs.ErrNotExist)
// before running its function.
func TestBuildBaseDeletedConcurrently(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	const iterations, children = 60, 3
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var built, baseGone int
	for it := range iterations {
		base := fmt.Sprintf("base%d", it)
		if err := s.Build(ctx, base, "", func(_ context.Context, dir string) error {
			return writeFile(dir, "base", base)
		}); err != nil {
			t.Fatal(err)
		}
		var (
			wg     sync.WaitGroup
			errs   [children]error
			called [children]atomic.Bool
			delErr error
		)
		delay := time.Duration(rng.IntN(3000)) * time.Microsecond
		for c := range children {
			wg.Go(func() {
				child := fmt.Sprintf("child%d-%d", it, c)
				errs[c] = s.Build(ctx, child, base, func(_ context.Context, dir string) error {
					called[c].Store(true)
					if b, err := os.ReadFile(filepath.Join(dir, "base")); err != nil || string(b) != base {
						return fmt.Errorf("work dir on base %s: file base = %q, %v", base, b, err)
					}
					time.Sleep(2 * time.Millisecond) // slow: the Delete lands in here too
					return writeFile(dir, "child", child)
				})
			})
		}
		wg.Go(func() {
			time.Sleep(delay)
			delErr = s.Delete(ctx, base)
		})
		wg.Wait()
		if delErr != nil {
			t.Errorf("Delete(%s) during builds on it: %v", base, delErr)
		}
		if _, err := s.Result(base); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Result(%s) after Delete = %v", base, err)
		}
		for c, err := range errs {
			child := fmt.Sprintf("child%d-%d", it, c)
			p, rerr := s.Result(child)
			switch {
			case err == nil:
				built++
				if rerr != nil {
					t.Errorf("Build(%s) succeeded but Result = %v", child, rerr)
					continue
				}
				if got := readFile(t, filepath.Join(p, "base")); got != base {
					t.Errorf("%s: inherited file base = %q, want %q", child, got, base)
				}
				if got := readFile(t, filepath.Join(p, "child")); got != child {
					t.Errorf("%s: own file = %q", child, got)
				}
			case errors.Is(err, fs.ErrNotExist):
				baseGone++
				if called[c].Load() {
					t.Errorf("Build(%s) ran its function, then failed with %v", child, err)
				}
				if !errors.Is(rerr, fs.ErrNotExist) {
					t.Errorf("Build(%s) failed but Result = %q, %v", child, p, rerr)
				}
			default:
				t.Errorf("Build(%s) while its base was deleted: %v (want success or fs.ErrNotExist)", child, err)
			}
		}
	}
	t.Logf("%d builds started from their base, %d found it deleted", built, baseGone)
	if built == 0 {
		t.Errorf("no build got its base: the race never ran the builds first")
	}
	assertNoTmp(t, s)
}

// Delete of a base waits only for the snapshot, not for the whole build on
// it, and the build still succeeds.
func TestDeleteBaseDuringBuild(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.Build(ctx, "base", "", func(_ context.Context, dir string) error {
		return writeFile(dir, "base", "b")
	}); err != nil {
		t.Fatal(err)
	}
	build, open := concHeldBuild(t, s, "child", "base", func(dir string, hold func()) error {
		hold()
		return writeFile(dir, "child", "c")
	})
	del := make(chan error, 1)
	go func() { del <- s.Delete(ctx, "base") }()
	if err := concRecv(t, del, "Delete of a base while a build on it runs"); err != nil {
		t.Errorf("Delete(base): %v", err)
	}
	open()
	if err := concRecv(t, build, "Build"); err != nil {
		t.Fatalf("Build on a base deleted meanwhile: %v", err)
	}
	p, err := s.Result("child")
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(p, "base")); got != "b" {
		t.Errorf("inherited file = %q", got)
	}
	if _, err := s.Result("base"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Result(base) = %v, want fs.ErrNotExist", err)
	}
	assertNoTmp(t, s)
}

// A Build waiting for its id's lock gives up with ctx.Err() when its ctx
// ends, and leaves the lock in order for the builds after it.
func TestBuildWaitHonoursContext(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	boom := errors.New("boom")
	first, open := concHeldBuild(t, s, "x", "", func(_ string, hold func()) error {
		hold()
		return boom
	})

	var called atomic.Bool
	fn := func(context.Context, string) error { called.Store(true); return nil }

	// Cancelled.
	cctx, cancel := context.WithCancel(ctx)
	waiting := make(chan error, 1)
	go func() { waiting <- s.Build(cctx, "x", "", fn) }()
	concNotYet(t, waiting, 50*time.Millisecond, "Build waiting for its id")
	cancel()
	if err := concRecv(t, waiting, "cancelled Build"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Build = %v, want context.Canceled", err)
	}
	// Deadline.
	dctx, dcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer dcancel()
	begin := time.Now()
	go func() { waiting <- s.Build(dctx, "x", "", fn) }()
	if err := concRecv(t, waiting, "Build with a deadline"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Build past its deadline = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("Build with a 50 ms deadline returned after %v", d)
	}
	if called.Load() {
		t.Errorf("a Build whose ctx ended while waiting ran its function")
	}

	// The first one fails; the lock is free again.
	open()
	if err := concRecv(t, first, "first Build"); !errors.Is(err, boom) {
		t.Errorf("first Build = %v, want its function's error", err)
	}
	again := make(chan error, 1)
	go func() { again <- s.Build(ctx, "x", "", fn) }()
	if err := concRecv(t, again, "Build after the cancelled waiters"); err != nil {
		t.Errorf("Build after the cancelled waiters: %v", err)
	}
	if _, err := s.Result("x"); err != nil {
		t.Errorf("Result: %v", err)
	}
	assertNoTmp(t, s)
}

// Close waits for running builds; afterwards every method fails with
// ErrClosed, and the root can be opened again.
func TestCloseWaitsForBuilds(t *testing.T) {
	s, fsys := newStore(t)
	ctx := t.Context()
	lease, err := s.Cache(ctx, "c", Owner{os.Getuid(), os.Getgid()})
	if err != nil {
		t.Fatal(err)
	}
	build, open := concHeldBuild(t, s, "x", "", func(dir string, hold func()) error {
		hold()
		return writeFile(dir, "f", "x")
	})
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	concNotYet(t, closed, 100*time.Millisecond, "Close while a build runs")
	open()
	if err := concRecv(t, build, "Build"); err != nil {
		t.Errorf("Build that Close waited for: %v", err)
	}
	if err := concRecv(t, closed, "Close"); err != nil {
		t.Errorf("Close: %v", err)
	}

	fn := func(context.Context, string) error { t.Error("Build after Close ran its function"); return nil }
	_, errLog := s.LogFile("x")
	_, errResult := s.Result("x")
	_, errCache := s.Cache(ctx, "c", Owner{os.Getuid(), os.Getgid()})
	_, errFree := s.FreeSpace(ctx)
	for name, err := range map[string]error{
		"Build":           s.Build(ctx, "y", "", fn),
		"Build on base":   s.Build(ctx, "y", "x", fn),
		"Result":          errResult,
		"LogFile":         errLog,
		"Delete":          s.Delete(ctx, "x"),
		"Cache":           errCache,
		"Release":         lease.Release(ctx),
		"DeleteCache":     s.DeleteCache(ctx, "c"),
		"CompleteDeletes": s.CompleteDeletes(ctx),
		"FreeSpace":       errFree,
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// The build Close waited for is complete; the lease released too late
	// is cleaned up by the next Open.
	s2, err := Open(ctx, fsys.Path, Config{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer s2.Close()
	p, err := s2.Result("x")
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(p, "f")); got != "x" {
		t.Errorf("result file = %q", got)
	}
	assertNoTmp(t, s2)
}

// Close while one Build of an id runs and a second one waits for it: Close
// waits for both, and the second finds the first's result.
func TestCloseWhileBuildWaitsForSameID(t *testing.T) {
	fsys := btrfstest.New(t)
	ctx := t.Context()
	s, err := Open(ctx, fsys.Path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	open := func() {}
	deadlocked := false
	defer func() {
		open() // before Close, which waits for the build
		if deadlocked {
			// The store's goroutines stay blocked forever; release its
			// file descriptors so that the filesystem can be unmounted.
			s.closeFds()
			return
		}
		s.Close()
	}()

	first, open := concHeldBuild(t, s, "x", "", func(dir string, hold func()) error {
		hold()
		return writeFile(dir, "f", "first")
	})
	var secondCalled atomic.Bool
	second := make(chan error, 1)
	go func() {
		second <- s.Build(ctx, "x", "", func(context.Context, string) error {
			secondCalled.Store(true)
			return nil
		})
	}()
	concNotYet(t, second, 50*time.Millisecond, "second Build of an id being built")
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	concNotYet(t, closed, 50*time.Millisecond, "Close while builds run")
	open()

	// Not concRecv: on a deadlock the test must go on to its cleanup.
	wait := func(ch <-chan error, what string) (error, bool) {
		select {
		case err := <-ch:
			return err, true
		case <-time.After(3 * time.Second):
			t.Errorf("%s: no answer after 3 s: deadlock", what)
			deadlocked = true
			return nil, false
		}
	}
	if err, ok := wait(first, "first Build"); ok && err != nil {
		t.Errorf("first Build: %v", err)
	}
	if err, ok := wait(second, "second Build (waiting for the first, with Close pending)"); ok &&
		!errors.Is(err, fs.ErrExist) && !errors.Is(err, ErrClosed) {
		t.Errorf("second Build = %v, want fs.ErrExist (or ErrClosed)", err)
	}
	if secondCalled.Load() {
		t.Errorf("second Build ran its function although the first succeeded")
	}
	if err, ok := wait(closed, "Close"); ok && err != nil {
		t.Errorf("Close: %v", err)
	}
}
