package keylock

import (
	"context"
	"errors"
	"testing"
	"time"
)

type result struct {
	unlock func()
	err    error
}

func lockAsync(tbl *Table, ctx context.Context, key string, shared bool) <-chan result {
	c := make(chan result, 1)
	go func() {
		u, err := tbl.Lock(ctx, key, shared)
		c <- result{u, err}
	}()
	return c
}

func waitFor(t *testing.T, tbl *Table, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tbl.Waiting(key) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters on %q, want %d", tbl.Waiting(key), key, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func recv(t *testing.T, c <-chan result, what string) result {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting", what)
	}
	return result{}
}

func pending(c <-chan result) bool {
	select {
	case r := <-c:
		if r.unlock != nil {
			r.unlock()
		}
		return false
	case <-time.After(20 * time.Millisecond):
		return true
	}
}

// Shared holders share; an exclusive Lock waits for all of them, and a
// shared Lock that comes after it waits behind it (FIFO: no writer
// starves); when the writer is done, the readers behind it go in together.
func TestSharedExclusiveFIFO(t *testing.T) {
	var tbl Table
	r1, err := tbl.Lock(t.Context(), "k", true)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := tbl.Lock(t.Context(), "k", true)
	if err != nil {
		t.Fatal(err)
	}
	w := lockAsync(&tbl, t.Context(), "k", false)
	waitFor(t, &tbl, "k", 1)
	r3 := lockAsync(&tbl, t.Context(), "k", true)
	r4 := lockAsync(&tbl, t.Context(), "k", true)
	waitFor(t, &tbl, "k", 3)
	r1()
	if !pending(w) {
		t.Fatal("exclusive lock taken while a shared one is held")
	}
	r2()
	wr := recv(t, w, "writer")
	if wr.err != nil {
		t.Fatal(wr.err)
	}
	if tbl.Waiting("k") != 2 {
		t.Fatalf("readers behind the writer: %d waiting, want 2", tbl.Waiting("k"))
	}
	wr.unlock()
	a, b := recv(t, r3, "reader 3"), recv(t, r4, "reader 4")
	if a.err != nil || b.err != nil {
		t.Fatal(a.err, b.err)
	}
	a.unlock()
	b.unlock()
	if n := tbl.Keys(); n != 0 {
		t.Errorf("%d keys with lock state after everyone left", n)
	}
}

// An exclusive waiter at the head that gives up lets the shared waiters
// behind it in at once, with the shared holder still there.
func TestCancelledWriterLetsReadersIn(t *testing.T) {
	var tbl Table
	r1, err := tbl.Lock(t.Context(), "k", true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	w := lockAsync(&tbl, ctx, "k", false)
	waitFor(t, &tbl, "k", 1)
	r2 := lockAsync(&tbl, t.Context(), "k", true)
	waitFor(t, &tbl, "k", 2)
	cancel()
	if r := recv(t, w, "writer"); !errors.Is(r.err, context.Canceled) || r.unlock != nil {
		t.Fatalf("cancelled writer got %v", r.err)
	}
	r := recv(t, r2, "reader behind the cancelled writer")
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.unlock()
	r1()
	if tbl.Has("k") {
		t.Error("key still has lock state after everyone left")
	}
}

// The handoff reaches a waiter whose ctx already ended: it must pass the
// lock on rather than drop it. Cancelling while holding Table.mu and then
// handing over makes the waiter see both; whichever it picks, it either
// holds the lock or the next waiter does.
func TestHandoffToCancelledWaiter(t *testing.T) {
	var tbl Table
	passedOn := 0
	for i := range 200 {
		if _, err := tbl.Lock(t.Context(), "x", false); err != nil {
			t.Fatal(err)
		}
		ctxA, cancelA := context.WithCancel(t.Context())
		a := lockAsync(&tbl, ctxA, "x", false)
		waitFor(t, &tbl, "x", 1)
		b := lockAsync(&tbl, t.Context(), "x", false)
		waitFor(t, &tbl, "x", 2)

		tbl.mu.Lock() // what unlock does, with the cancellation inside it
		cancelA()
		tbl.release("x", tbl.locks["x"], false)
		tbl.mu.Unlock()

		r := recv(t, a, "first waiter")
		switch {
		case r.err == nil:
			r.unlock()
		case errors.Is(r.err, context.Canceled):
			passedOn++
		default:
			t.Fatalf("iteration %d: first waiter: %v", i, r.err)
		}
		rb := recv(t, b, "second waiter")
		if rb.err != nil {
			t.Fatal(rb.err)
		}
		rb.unlock()
		if tbl.Has("x") {
			t.Fatalf("iteration %d: key still locked after everyone left", i)
		}
	}
	t.Logf("a cancelled waiter passed the lock on in %d of 200 iterations", passedOn)
	if passedOn == 0 {
		t.Errorf("the pass-it-on path never ran")
	}
}

func TestUnlockTwicePanics(t *testing.T) {
	var tbl Table
	u, err := tbl.Lock(t.Context(), "k", true)
	if err != nil {
		t.Fatal(err)
	}
	u()
	defer func() {
		if recover() == nil {
			t.Error("second unlock did not panic")
		}
	}()
	u()
}
