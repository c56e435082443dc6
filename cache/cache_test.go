package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// deadlockTimeout bounds every wait in these tests: reaching it means a lost
// handoff or a deadlock, never a slow machine.
const deadlockTimeout = 10 * time.Second

type lockResult struct {
	h   *Held
	err error
}

// lockAsync calls tbl.Lock in a new goroutine and delivers its result.
func lockAsync(tbl *Table, ctx context.Context, name string) <-chan lockResult {
	res := make(chan lockResult, 1)
	go func() {
		h, err := tbl.Lock(ctx, name)
		res <- lockResult{h, err}
	}()
	return res
}

// recv waits for a Lock result, failing the test on a deadlock.
func recv(t testing.TB, res <-chan lockResult, what string) lockResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(deadlockTimeout):
		t.Fatalf("%s: no result after %v: deadlock or lost handoff", what, deadlockTimeout)
		return lockResult{}
	}
}

// mustAcquire waits for a Lock result that must be a success.
func mustAcquire(t testing.TB, res <-chan lockResult, what string) *Held {
	t.Helper()
	r := recv(t, res, what)
	if r.err != nil {
		t.Fatalf("%s: Lock: %v, want the lock", what, r.err)
	}
	return r.h
}

// waiting returns how many goroutines wait for the lock of name.
func waiting(tbl *Table, name string) int { return tbl.locks.Waiting(name) }

// isLocked reports whether the Table has lock state for name.
func isLocked(tbl *Table, name string) bool { return tbl.locks.Has(name) }

// lockCount returns how many names have lock state.
func lockCount(tbl *Table) int { return tbl.locks.Keys() }

// waitForWaiters waits until n goroutines are queued on name.
func waitForWaiters(t testing.TB, tbl *Table, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(deadlockTimeout)
	for waiting(tbl, name) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters on %q, want %d", waiting(tbl, name), name, n)
		}
		time.Sleep(10 * time.Microsecond)
	}
}

func TestZeroValue(t *testing.T) {
	var tbl Table
	h, err := tbl.Lock(t.Context(), "opam")
	if err != nil {
		t.Fatal(err)
	}
	if h.Name() != "opam" {
		t.Errorf("Name() = %q, want %q", h.Name(), "opam")
	}
	if g := h.Generation(); g != 0 {
		t.Errorf("first Generation() = %d, want 0", g)
	}
	if g := h.Bump(); g != 1 {
		t.Errorf("Bump() = %d, want 1", g)
	}
	if g := h.Bump(); g != 2 {
		t.Errorf("second Bump() = %d, want 2", g)
	}
	if g := h.Generation(); g != 2 {
		t.Errorf("Generation() after two bumps = %d, want 2", g)
	}
	h.Unlock()

	h, err = tbl.Lock(t.Context(), "opam")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Unlock()
	if g := h.Generation(); g != 2 {
		t.Errorf("Generation() after unlock and lock = %d, want 2", g)
	}
}

// The lock state of an idle name is freed, its generation is not: a name
// that was evicted and recreated must not restart at 0.
func TestGenerationSurvivesIdleCleanup(t *testing.T) {
	var tbl Table
	names := []string{"a", "b", "never-bumped"}
	for i, name := range names[:2] {
		h, err := tbl.Lock(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		for range i + 1 {
			h.Bump()
		}
		h.Unlock()
	}
	h, err := tbl.Lock(t.Context(), "never-bumped")
	if err != nil {
		t.Fatal(err)
	}
	h.Unlock()

	if n := lockCount(&tbl); n != 0 {
		t.Errorf("%d names have lock state after all were unlocked, want 0", n)
	}
	if _, ok := tbl.gens["never-bumped"]; ok {
		t.Errorf("a name never bumped takes an entry in gens")
	}
	for i, name := range names {
		h, err := tbl.Lock(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		want := uint64(i + 1)
		if name == "never-bumped" {
			want = 0
		}
		if g := h.Generation(); g != want {
			t.Errorf("Generation() of %q after idle cleanup = %d, want %d", name, g, want)
		}
		h.Unlock()
	}
}

func TestMisuseAfterUnlockPanics(t *testing.T) {
	ops := []struct {
		op string
		do func(h *Held)
	}{
		{"Unlock", func(h *Held) { h.Unlock() }},
		{"Generation", func(h *Held) { h.Generation() }},
		{"Bump", func(h *Held) { h.Bump() }},
		{"CompareAndBump", func(h *Held) { h.CompareAndBump(0) }},
		{"Save", func(h *Held) { h.Save(0, func() error { return nil }) }},
	}
	// After the Unlock the name is idle, locked afresh by someone else, or
	// handed to a waiter. A stale Held must be refused in each case rather
	// than act on someone else's lock.
	situations := []struct {
		name  string
		after func(t *testing.T, tbl *Table, h *Held) (other *Held)
	}{
		{"idle", func(t *testing.T, tbl *Table, h *Held) *Held {
			h.Unlock()
			return nil
		}},
		{"relocked", func(t *testing.T, tbl *Table, h *Held) *Held {
			h.Unlock()
			other, err := tbl.Lock(t.Context(), "x")
			if err != nil {
				t.Fatal(err)
			}
			return other
		}},
		{"handed off", func(t *testing.T, tbl *Table, h *Held) *Held {
			waiter := lockAsync(tbl, t.Context(), "x")
			waitForWaiters(t, tbl, "x", 1)
			h.Unlock()
			return mustAcquire(t, waiter, "waiter")
		}},
	}
	for _, sit := range situations {
		for _, tc := range ops {
			t.Run(sit.name+"/"+tc.op, func(t *testing.T) {
				var tbl Table
				h, err := tbl.Lock(t.Context(), "x")
				if err != nil {
					t.Fatal(err)
				}
				other := sit.after(t, &tbl, h)
				defer func() {
					if recover() == nil {
						t.Errorf("%s after Unlock did not panic", tc.op)
					}
					if other == nil {
						return
					}
					if !isLocked(&tbl, "x") {
						t.Errorf("%s after Unlock released someone else's lock", tc.op)
					}
					if g := other.Generation(); g != 0 {
						t.Errorf("%s after Unlock changed the generation to %d", tc.op, g)
					}
					other.Unlock()
				}()
				tc.do(h)
			})
		}
	}
}

func TestMutualExclusion(t *testing.T) {
	const goroutines, increments = 32, 200
	var tbl Table
	counter := 0 // guarded by the lock of "counter"; -race checks that it is
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range increments {
				h, err := tbl.Lock(t.Context(), "counter")
				if err != nil {
					t.Error(err)
					return
				}
				v := counter
				runtime.Gosched() // widen the window a broken lock would lose updates in
				counter = v + 1
				h.Unlock()
			}
		})
	}
	wg.Wait()
	if counter != goroutines*increments {
		t.Errorf("counter = %d, want %d", counter, goroutines*increments)
	}
	if n := lockCount(&tbl); n != 0 {
		t.Errorf("%d names have lock state at the end, want 0", n)
	}
}

func TestNamesAreIndependent(t *testing.T) {
	var tbl Table
	a, err := tbl.Lock(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Unlock()
	// A waiter queued on "a" must not hold up "b" either.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	queued := lockAsync(&tbl, ctx, "a")
	waitForWaiters(t, &tbl, "a", 1)

	ctxB, cancelB := context.WithTimeout(t.Context(), deadlockTimeout)
	defer cancelB()
	b, err := tbl.Lock(ctxB, "b")
	if err != nil {
		t.Fatalf("Lock(b) while a is held: %v", err)
	}
	b.Bump()
	b.Unlock()
	if g := a.Generation(); g != 0 {
		t.Errorf("bumping b changed a's generation to %d", g)
	}
	cancel()
	if r := recv(t, queued, "waiter on a"); !errors.Is(r.err, context.Canceled) {
		t.Errorf("cancelled waiter on a: got %v, want context.Canceled", r.err)
	}
}

func TestLockWithDoneContext(t *testing.T) {
	var tbl Table
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if h, err := tbl.Lock(ctx, "free"); !errors.Is(err, context.Canceled) || h != nil {
		t.Errorf("Lock with a cancelled ctx on a free name = %v, %v; want nil, context.Canceled", h, err)
	}
	if isLocked(&tbl, "free") {
		t.Errorf("failed Lock left the name locked")
	}
}

func TestLockTimeout(t *testing.T) {
	var tbl Table
	h, err := tbl.Lock(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	got, err := tbl.Lock(ctx, "x")
	if !errors.Is(err, context.DeadlineExceeded) || got != nil {
		t.Fatalf("Lock of a held name with a 20ms timeout = %v, %v; want nil, context.DeadlineExceeded", got, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Lock returned %v after its deadline", d)
	}
	if n := waiting(&tbl, "x"); n != 0 {
		t.Errorf("timed-out waiter left %d entries in the queue", n)
	}
}

// holderAndTwoWaiters locks "x" in tbl as h, then queues a waiter a whose
// Lock cancelA cancels, then a waiter b, and returns once both wait.
func holderAndTwoWaiters(t *testing.T, tbl *Table) (h *Held, a <-chan lockResult, cancelA context.CancelFunc, b <-chan lockResult) {
	t.Helper()
	h, err := tbl.Lock(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	ctxA, cancelA := context.WithCancel(t.Context())
	a = lockAsync(tbl, ctxA, "x")
	waitForWaiters(t, tbl, "x", 1)
	b = lockAsync(tbl, t.Context(), "x")
	waitForWaiters(t, tbl, "x", 2)
	return h, a, cancelA, b
}

// The classic bug: the waiter next in line gives up, and the handoff meant
// for it is lost, so the waiter behind it never gets the lock.
func TestCancelledWaiterFirstInLine(t *testing.T) {
	var tbl Table
	for i := range 200 {
		h, a, cancelA, b := holderAndTwoWaiters(t, &tbl)

		cancelA()
		if r := recv(t, a, "cancelled first waiter"); !errors.Is(r.err, context.Canceled) || r.h != nil {
			t.Fatalf("iteration %d: cancelled first waiter got %v, %v; want nil, context.Canceled", i, r.h, r.err)
		}
		h.Unlock()
		mustAcquire(t, b, "second waiter after the first gave up").Unlock()
		if isLocked(&tbl, "x") {
			t.Fatalf("iteration %d: name still locked after everyone left", i)
		}
	}
}

// The handoff to a waiter whose ctx already ended is keylock's
// (TestHandoffToCancelledWaiter there): it holds the locks.

// Cancellation and Unlock race for real.
func TestCancelRacesUnlock(t *testing.T) {
	var tbl Table
	for i := range 1000 {
		h, a, cancelA, b := holderAndTwoWaiters(t, &tbl)

		go cancelA()
		h.Unlock()
		if r := recv(t, a, "first waiter"); r.err == nil {
			r.h.Unlock()
		} else if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("iteration %d: first waiter: %v", i, r.err)
		}
		mustAcquire(t, b, "second waiter").Unlock()
		cancelA()
	}
	if n := lockCount(&tbl); n != 0 {
		t.Errorf("%d names have lock state at the end, want 0", n)
	}
}

func TestFIFO(t *testing.T) {
	const n = 20
	var tbl Table
	h, err := tbl.Lock(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	var order []int // guarded by the lock of "x"
	var wg sync.WaitGroup
	var cancels []context.CancelFunc
	for i := range n {
		ctx, cancel := context.WithCancel(t.Context())
		cancels = append(cancels, cancel)
		wg.Go(func() {
			h, err := tbl.Lock(ctx, "x")
			if err != nil {
				if i%3 != 1 {
					t.Errorf("waiter %d: %v", i, err)
				}
				return
			}
			order = append(order, i)
			h.Unlock()
		})
		waitForWaiters(t, &tbl, "x", i+1)
	}
	// Every third waiter gives up; the others keep their places.
	want := []int{}
	for i := range n {
		if i%3 == 1 {
			cancels[i]()
		} else {
			want = append(want, i)
		}
	}
	waitForWaiters(t, &tbl, "x", len(want))
	h.Unlock()
	wg.Wait()
	for _, cancel := range cancels {
		cancel()
	}
	if !slices.Equal(order, want) {
		t.Errorf("acquisition order %v, want %v", order, want)
	}
}

// A locker is not starved by goroutines that keep taking and releasing the
// lock (TestFIFO checks the order itself; this is the same under load).
func TestNoStarvation(t *testing.T) {
	var tbl Table
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				h, err := tbl.Lock(t.Context(), "x")
				if err != nil {
					t.Error(err)
					return
				}
				h.Unlock()
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for range 100 {
		ctx, cancel := context.WithTimeout(t.Context(), deadlockTimeout)
		h, err := tbl.Lock(ctx, "x")
		cancel()
		if err != nil {
			t.Fatalf("starved: %v", err)
		}
		h.Unlock()
	}
}

// The store's rules at the bookkeeping level: Cache takes a clone and
// remembers the generation; Release makes the clone the cache only if the
// generation is unchanged; DeleteCache bumps.
func TestCacheRules(t *testing.T) {
	var tbl Table
	locked := func(f func(h *Held)) {
		t.Helper()
		h, err := tbl.Lock(t.Context(), "opam")
		if err != nil {
			t.Fatal(err)
		}
		defer h.Unlock()
		f(h)
	}
	clone := func() (seen uint64) {
		locked(func(h *Held) { seen = h.Generation() })
		return seen
	}
	release := func(seen uint64) (won bool) {
		locked(func(h *Held) { won = h.CompareAndBump(seen) })
		return won
	}
	generation := func() (g uint64) {
		locked(func(h *Held) { g = h.Generation() })
		return g
	}

	t.Run("first release wins", func(t *testing.T) {
		g := generation()
		a, b := clone(), clone()
		if a != g || b != g {
			t.Fatalf("clones saw generations %d and %d, want %d", a, b, g)
		}
		if !release(a) {
			t.Errorf("first release of generation %d discarded", g)
		}
		if got := generation(); got != g+1 {
			t.Errorf("generation after the winning release = %d, want %d", got, g+1)
		}
		if release(b) {
			t.Errorf("second release of generation %d won", g)
		}
		if got := generation(); got != g+1 {
			t.Errorf("a losing release changed the generation to %d, want %d", got, g+1)
		}
	})
	t.Run("release after a later winner", func(t *testing.T) {
		old := clone()
		newer := clone()
		if !release(newer) {
			t.Fatalf("release of a fresh clone discarded")
		}
		if release(old) {
			t.Errorf("a clone of a superseded generation won")
		}
	})
	t.Run("delete discards in-flight clones", func(t *testing.T) {
		inFlight := clone()
		locked(func(h *Held) { h.Bump() }) // DeleteCache
		// Nobody holds the name now: its lock state is gone, its
		// generation is not.
		if isLocked(&tbl, "opam") {
			t.Fatalf("idle name still has lock state")
		}
		if release(inFlight) {
			t.Errorf("a clone taken before DeleteCache won")
		}
		after := clone()
		if !release(after) {
			t.Errorf("a clone taken after DeleteCache was discarded")
		}
	})
	t.Run("Generation and Bump spell out CompareAndBump", func(t *testing.T) {
		seen := clone()
		locked(func(h *Held) {
			if h.Generation() != seen {
				t.Fatalf("generation moved without a release")
			}
			if got := h.Bump(); got != seen+1 {
				t.Errorf("Bump() = %d, want %d", got, seen+1)
			}
			if h.CompareAndBump(seen) {
				t.Errorf("CompareAndBump of a superseded generation won")
			}
		})
	})
}

// TestRandomized runs random lock, unlock, bump and cancel traffic on a few
// names and checks that no name ever has two holders and that generations
// only grow.
func TestRandomized(t *testing.T) {
	const goroutines, opsEach = 16, 300
	names := []string{"a", "b", "c", "d"}
	var tbl Table
	var holders [4]atomic.Int32
	var lastGen [4]uint64 // lastGen[i] is guarded by the lock of names[i]
	var acquired, gaveUp atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range opsEach {
				i := rng.IntN(len(names))
				var ctx context.Context
				var cancel context.CancelFunc
				switch rng.IntN(4) {
				case 0: // already done
					ctx, cancel = context.WithCancel(t.Context())
					cancel()
				case 1: // short timeout
					ctx, cancel = context.WithTimeout(t.Context(), time.Duration(rng.IntN(100))*time.Microsecond)
				case 2: // cancelled by someone else at a random moment
					ctx, cancel = context.WithCancel(t.Context())
					time.AfterFunc(time.Duration(rng.IntN(100))*time.Microsecond, cancel)
				default:
					ctx, cancel = context.WithCancel(t.Context())
				}
				h, err := tbl.Lock(ctx, names[i])
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("Lock failed with a live ctx: %v", err)
					}
					gaveUp.Add(1)
					cancel()
					continue
				}
				acquired.Add(1)
				if n := holders[i].Add(1); n != 1 {
					t.Errorf("%d holders of %q", n, names[i])
				}
				gen := h.Generation()
				if gen < lastGen[i] {
					t.Errorf("generation of %q went back from %d to %d", names[i], lastGen[i], gen)
				}
				switch rng.IntN(3) {
				case 0:
					gen = h.Bump()
				case 1:
					if h.CompareAndBump(gen) {
						gen++
					}
				}
				lastGen[i] = gen
				if rng.IntN(2) == 0 {
					runtime.Gosched()
				}
				holders[i].Add(-1)
				h.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	t.Logf("%d acquisitions, %d gave up", acquired.Load(), gaveUp.Load())
	if n := lockCount(&tbl); n != 0 {
		t.Errorf("%d names have lock state at the end, want 0", n)
	}
	for i, name := range names {
		if g := tbl.gens[name]; g != lastGen[i] {
			t.Errorf("generation of %q = %d, last seen by a holder %d", name, g, lastGen[i])
		}
	}
}

// checkLockModel drives a Table through ops and compares it with a model of
// a FIFO lock per name. Each byte is one operation: bits 0-1 pick it, bits
// 2-3 the name, bits 4-7 an argument.
//
//	0  Lock: acquires at once if the name is free (or, with an odd
//	   argument and an already cancelled ctx, fails at once), else queues
//	1  Unlock: the holder unlocks; the head of the queue gets the lock
//	2  cancel the waiter at position argument (mod queue length); it fails
//	   and leaves the queue, the others keep their order
//	3  cancel the head of the queue while the holder unlocks, racing: the
//	   head either gets the lock or fails, and then the next one gets it
//
// After every operation no waiter may have returned but the ones expected.
func checkLockModel(t *testing.T, ops []byte) {
	t.Helper()
	type attempt struct {
		id     int
		cancel context.CancelFunc
		res    <-chan lockResult
	}
	type nameState struct {
		held  *Held // nil if free
		queue []*attempt
	}
	var tbl Table
	names := []string{"a", "b", "c"}
	state := map[string]*nameState{}
	for _, name := range names {
		state[name] = &nameState{}
	}
	nextID := 0
	start := func(name string, ctx context.Context, cancel context.CancelFunc) *attempt {
		nextID++
		return &attempt{nextID, cancel, lockAsync(&tbl, ctx, name)}
	}
	// handOver gives the lock of a freed name to the head of its queue.
	handOver := func(name string, s *nameState) {
		if len(s.queue) == 0 {
			s.held = nil
			if isLocked(&tbl, name) {
				t.Fatalf("%q still locked with no holder and no waiter", name)
			}
			return
		}
		next := s.queue[0]
		s.queue = s.queue[1:]
		s.held = mustAcquire(t, next.res, fmt.Sprintf("waiter %d at the head of %q", next.id, name))
		next.cancel()
	}

	for step, op := range ops {
		name := names[int(op>>2&3)%len(names)]
		arg := int(op >> 4)
		s := state[name]
		switch op & 3 {
		case 0:
			ctx, cancel := context.WithCancel(t.Context())
			if arg%2 == 1 {
				cancel()
				a := start(name, ctx, cancel)
				if r := recv(t, a.res, "Lock with a done ctx"); !errors.Is(r.err, context.Canceled) {
					t.Fatalf("step %d: Lock with a done ctx: %v, %v", step, r.h, r.err)
				}
				break
			}
			a := start(name, ctx, cancel)
			if s.held == nil {
				s.held = mustAcquire(t, a.res, "Lock of a free name")
				cancel()
				break
			}
			s.queue = append(s.queue, a)
			waitForWaiters(t, &tbl, name, len(s.queue))
		case 1:
			if s.held == nil {
				continue
			}
			s.held.Unlock()
			handOver(name, s)
		case 2:
			if len(s.queue) == 0 {
				continue
			}
			i := arg % len(s.queue)
			a := s.queue[i]
			a.cancel()
			if r := recv(t, a.res, "cancelled waiter"); !errors.Is(r.err, context.Canceled) {
				t.Fatalf("step %d: cancelled waiter %d: %v, %v; want context.Canceled", step, a.id, r.h, r.err)
			}
			s.queue = slices.Delete(s.queue, i, i+1)
			waitForWaiters(t, &tbl, name, len(s.queue))
		case 3:
			if s.held == nil || len(s.queue) == 0 {
				continue
			}
			a := s.queue[0]
			s.queue = s.queue[1:]
			go a.cancel()
			s.held.Unlock()
			r := recv(t, a.res, "head waiter cancelled during Unlock")
			switch {
			case r.err == nil:
				s.held = r.h
			case errors.Is(r.err, context.Canceled):
				handOver(name, s)
			default:
				t.Fatalf("step %d: head waiter: %v", step, r.err)
			}
		}
		for _, name := range names {
			for _, a := range state[name].queue {
				select {
				case r := <-a.res:
					t.Fatalf("step %d: waiter %d on %q returned out of turn: %v, %v", step, a.id, name, r.h, r.err)
				default:
				}
			}
		}
	}

	for _, name := range names {
		s := state[name]
		for _, a := range s.queue {
			a.cancel()
			if r := recv(t, a.res, "waiter cancelled at the end"); r.err == nil {
				t.Fatalf("waiter %d on %q got the lock while it was held", a.id, name)
			}
		}
		if s.held != nil {
			s.held.Unlock()
		}
	}
	if n := lockCount(&tbl); n != 0 {
		t.Errorf("%d names have lock state at the end, want 0", n)
	}
}

func FuzzLockModel(f *testing.F) {
	f.Add([]byte{0x00, 0x00, 0x00, 0x01, 0x01})             // lock, two waiters, unlock twice
	f.Add([]byte{0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x01}) // cancel the head, then unlock
	f.Add([]byte{0x00, 0x00, 0x00, 0x03, 0x01, 0x01})       // cancel the head during unlock
	f.Add([]byte{0x00, 0x04, 0x08, 0x00, 0x04, 0x12, 0x05}) // three names
	f.Add([]byte{0x00, 0x00, 0x00, 0x00, 0x12, 0x22, 0x03, 0x01})
	f.Add([]byte{0x10, 0x00, 0x10, 0x03, 0x03})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 64 {
			ops = ops[:64]
		}
		checkLockModel(t, ops)
	})
}

// TestLockModelRandom runs the model on random operation sequences, so that
// plain go test covers more than the fuzz seeds.
func TestLockModelRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		ops := make([]byte, 1+rng.IntN(48))
		for j := range ops {
			ops[j] = byte(rng.Uint32())
		}
		// Lock more often than anything else, so queues get long.
		for j := range ops {
			if rng.IntN(2) == 0 {
				ops[j] &^= 3
			}
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkLockModel(t, ops) })
	}
}

// TestSaveBumpsOnlyOnSuccess: Held.Save is the store's release rule. It
// saves only a clone of the current generation, and the generation moves
// on only when the save succeeded, so a failed save leaves another clone
// of that generation free to win.
func TestSaveBumpsOnlyOnSuccess(t *testing.T) {
	var tbl Table
	h, err := tbl.Lock(t.Context(), "c")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Unlock()
	seen := h.Generation()
	failed := errors.New("disk full")
	calls := 0
	current, err := h.Save(seen, func() error { calls++; return failed })
	if !current || err != failed || calls != 1 {
		t.Errorf("Save with a failing save = %v, %v after %d calls; want true, %v after 1", current, err, calls, failed)
	}
	if g := h.Generation(); g != seen {
		t.Errorf("a failed save moved the generation to %d, want %d", g, seen)
	}
	current, err = h.Save(seen, func() error { calls++; return nil })
	if !current || err != nil || calls != 2 {
		t.Errorf("Save after a failed one = %v, %v after %d calls; want true, nil after 2", current, err, calls)
	}
	if g := h.Generation(); g != seen+1 {
		t.Errorf("generation after a successful save = %d, want %d", g, seen+1)
	}
	current, err = h.Save(seen, func() error { calls++; return nil })
	if current || err != nil || calls != 2 {
		t.Errorf("Save of a superseded generation = %v, %v after %d calls; want false, nil, save not called", current, err, calls)
	}
	if g := h.Generation(); g != seen+1 {
		t.Errorf("a discarded save moved the generation to %d, want %d", g, seen+1)
	}
}
