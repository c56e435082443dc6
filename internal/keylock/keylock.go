// Package keylock is btrstore's one table of locks by key: reader/writer
// locks, served in arrival order, that a waiter can give up on through its
// context, and that cost nothing for a key nobody holds or waits for. The
// store locks build ids and results with it, and package cache its cache
// names.
package keylock

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// Table holds a lock per key. Its zero value is ready to use. It is safe
// for concurrent use and must not be copied after first use.
type Table struct {
	mu sync.Mutex // guards locks and every entry in it

	// locks has an entry exactly for the keys that are held or waited
	// for: the entry goes when the last holder leaves and no one waits.
	locks map[string]*entry
}

// entry is the state of one key.
type entry struct {
	readers int  // shared holders
	writer  bool // an exclusive holder
	// queue is the FIFO of waiters. The lock is handed to the head (and
	// the shared waiters right behind a shared head) by closing their
	// channels under Table.mu, so no newcomer overtakes the queue, and a
	// waiter whose ctx ends can tell, under Table.mu, whether it was
	// already handed the lock.
	queue []*waiter
}

type waiter struct {
	shared bool
	ready  chan struct{}
}

// Lock takes the lock of key, shared (any number of shared holders at once)
// or exclusive (one holder, no shared one), waiting until it is free or ctx
// ends, and returns the function that releases it, to be called exactly
// once (a second call panics). Waiters get the lock in the order they called
// Lock: a shared Lock waits behind a waiting exclusive one, so neither kind
// starves the other.
//
// If ctx is done before the lock is taken, Lock returns ctx.Err() and the
// caller does not hold the lock, now or later (if ctx ends at the very moment
// the lock is handed over, either outcome can happen, never both). A ctx
// already done on entry returns its error even if the lock is free. A lock is
// not reentrant.
//
// Concurrency: safe; locks of different keys are independent.
func (t *Table) Lock(ctx context.Context, key string, shared bool) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	if t.locks == nil {
		t.locks = make(map[string]*entry)
	}
	e := t.locks[key]
	if e == nil {
		e = &entry{}
		t.locks[key] = e
	}
	if len(e.queue) == 0 && e.admits(shared) {
		e.take(shared)
		t.mu.Unlock()
		return t.unlocker(key, e, shared), nil
	}
	w := &waiter{shared: shared, ready: make(chan struct{})}
	e.queue = append(e.queue, w)
	t.mu.Unlock()

	select {
	case <-w.ready:
		return t.unlocker(key, e, shared), nil
	case <-ctx.Done():
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-w.ready:
		// Handed the lock after ctx ended but before we took t.mu: pass
		// it on, or the next waiter would wait forever.
		t.release(key, e, shared)
	default:
		i := slices.Index(e.queue, w)
		e.queue = slices.Delete(e.queue, i, i+1)
		// An exclusive waiter leaving the head may let the shared
		// ones behind it in.
		t.grant(key, e)
	}
	return nil, ctx.Err()
}

// TryLock takes the lock of key, shared or exclusive, only if that needs no
// waiting (it is free for that kind and no one waits for it), and returns
// its unlock function and true; otherwise nil and false.
//
// Concurrency: safe.
func (t *Table) TryLock(key string, shared bool) (unlock func(), ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.locks[key]
	if e == nil {
		if t.locks == nil {
			t.locks = make(map[string]*entry)
		}
		e = &entry{}
		t.locks[key] = e
	} else if len(e.queue) > 0 || !e.admits(shared) {
		return nil, false
	}
	e.take(shared)
	return t.unlocker(key, e, shared), true
}

func (e *entry) admits(shared bool) bool {
	return !e.writer && (shared || e.readers == 0)
}

func (e *entry) take(shared bool) {
	if shared {
		e.readers++
	} else {
		e.writer = true
	}
}

// release drops one hold of key. t.mu must be held.
func (t *Table) release(key string, e *entry, shared bool) {
	if shared {
		e.readers--
	} else {
		e.writer = false
	}
	t.grant(key, e)
}

// grant hands the lock of key to the waiters at the head of the queue
// that it admits, and frees the entry when no one holds it or waits. t.mu
// must be held.
func (t *Table) grant(key string, e *entry) {
	for len(e.queue) > 0 && e.admits(e.queue[0].shared) {
		w := e.queue[0]
		e.queue = slices.Delete(e.queue, 0, 1)
		e.take(w.shared)
		close(w.ready)
	}
	if !e.writer && e.readers == 0 && len(e.queue) == 0 {
		delete(t.locks, key)
	}
}

func (t *Table) unlocker(key string, e *entry, shared bool) func() {
	var done atomic.Bool
	return func() {
		if done.Swap(true) {
			panic("keylock: unlock of " + strconv.Quote(key) + " twice")
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		t.release(key, e, shared)
	}
}

// Waiting returns how many Lock calls wait for key; for tests.
func (t *Table) Waiting(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.locks[key]; e != nil {
		return len(e.queue)
	}
	return 0
}

// Keys returns how many keys have lock state (held or waited for); for
// tests.
func (t *Table) Keys() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.locks)
}

// Has reports whether key has lock state (is held or waited for); for
// tests.
func (t *Table) Has(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.locks[key]
	return ok
}
