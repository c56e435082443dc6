package cache

import (
	"context"
	"slices"
	"strconv"
	"sync"
)

// Table holds per-name locks and generation counters. Its zero value is
// ready to use. It is safe for concurrent use and must not be copied after
// first use.
type Table struct {
	mu sync.Mutex // guards locks, gens, and the waiters of every lock in locks

	// locks has an entry exactly for the names that are held. Waiters only
	// queue on a held name, so a name with no entry has no waiter either,
	// and Unlock deletes the entry when it finds no one to hand over to.
	locks map[string]*lock

	// gens has the generation of every name ever bumped; absent means 0.
	// It never shrinks: see "The generation rule" in the package doc.
	gens map[string]uint64
}

// lock is the state of one held name.
type lock struct {
	// waiters is the FIFO queue of goroutines waiting in Lock. Unlock hands
	// the lock to waiters[0] by removing it and closing its channel, while
	// holding Table.mu, so the name is never free in between (no newcomer
	// can overtake the queue), and a waiter whose ctx ends can tell, under
	// Table.mu, whether it was already handed the lock.
	waiters []chan struct{}
}

// Held is one acquisition of a name's lock, returned by Table.Lock. Its
// methods may be called only until Unlock.
type Held struct {
	t    *Table
	name string
	l    *lock // t.locks[name] for as long as this Held is locked
	done bool  // Unlock was called; guarded by t.mu
}

// Lock acquires the lock of name, waiting until it is free or ctx ends.
// Waiters get the lock in the order they called Lock.
//
// If ctx is done before the lock is acquired, Lock returns ctx.Err() and
// the caller does not hold the lock, now or later. (If ctx ends at the very
// moment the lock is handed over, either outcome can happen, but never
// both: an error always means the lock is not held.) A ctx already done on
// entry returns its error even if the lock is free.
func (t *Table) Lock(ctx context.Context, name string) (*Held, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	if t.locks == nil {
		t.locks = make(map[string]*lock)
	}
	l := t.locks[name]
	if l == nil {
		l = &lock{}
		t.locks[name] = l
		t.mu.Unlock()
		return &Held{t: t, name: name, l: l}, nil
	}
	ready := make(chan struct{})
	l.waiters = append(l.waiters, ready)
	t.mu.Unlock()

	select {
	case <-ready:
		return &Held{t: t, name: name, l: l}, nil
	case <-ctx.Done():
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-ready:
		// Unlock handed us the lock after ctx ended but before we took
		// t.mu. We are the holder now: pass it on, or the next waiter
		// would wait forever (the lost handoff).
		t.release(name, l)
	default:
		// Still queued: leave the queue. The name stays held by someone
		// else, so the lock entry stays.
		i := slices.Index(l.waiters, ready)
		l.waiters = slices.Delete(l.waiters, i, i+1)
	}
	return nil, ctx.Err()
}

// release hands the held lock l of name to the first waiter, or frees the
// name if there is none. t.mu must be held.
func (t *Table) release(name string, l *lock) {
	if len(l.waiters) == 0 {
		delete(t.locks, name)
		return
	}
	next := l.waiters[0]
	l.waiters = slices.Delete(l.waiters, 0, 1)
	close(next)
}

// Name returns the name whose lock h holds.
func (h *Held) Name() string { return h.name }

// Generation returns the current generation of the name, 0 if it was never
// bumped. It panics if h is unlocked.
func (h *Held) Generation() uint64 {
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	h.mustHold("Generation")
	return h.t.gens[h.name]
}

// Bump increments the generation of the name and returns the new value. It
// panics if h is unlocked.
func (h *Held) Bump() uint64 {
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	h.mustHold("Bump")
	return h.t.bump(h.name)
}

// Save is the release rule of a clone taken at generation seen (the
// value Generation returned when the clone was taken). If the generation
// is still seen, Save calls save, which makes the clone the new cache, and
// bumps the generation only if save returns nil: the generation moves on
// only once the new version is in place, so a save that fails keeps the
// old version, and another clone of that generation may still be saved.
// It then reports current true and save's error. Otherwise (another
// release of that generation won, or the cache was deleted) it calls
// nothing, changes nothing and reports false: the clone must be
// discarded.
//
// save runs with the name's lock held (by h) and the Table's bookkeeping
// free, so it may take long and may use the Table for other names. It
// panics if h is unlocked.
func (h *Held) Save(seen uint64, save func() error) (current bool, err error) {
	return h.save("Save", seen, save)
}

// CompareAndBump is Save with nothing to save: if the generation is still
// seen, it bumps it and reports true; otherwise it changes nothing and
// reports false. It panics if h is unlocked.
func (h *Held) CompareAndBump(seen uint64) bool {
	current, _ := h.save("CompareAndBump", seen, func() error { return nil })
	return current
}

func (h *Held) save(op string, seen uint64, save func() error) (current bool, err error) {
	if !h.isCurrent(op, seen) {
		return false, nil
	}
	// No one else can bump meanwhile: every bump goes through a Held of
	// this name, and h holds it.
	if err := save(); err != nil {
		return true, err
	}
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	h.mustHold(op)
	h.t.bump(h.name)
	return true, nil
}

// isCurrent reports whether the generation is seen. It panics if h is
// unlocked.
func (h *Held) isCurrent(op string, seen uint64) bool {
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	h.mustHold(op)
	return h.t.gens[h.name] == seen
}

// bump increments and returns the generation of name. t.mu must be held.
func (t *Table) bump(name string) uint64 {
	if t.gens == nil {
		t.gens = make(map[string]uint64)
	}
	t.gens[name]++
	return t.gens[name]
}

// Unlock releases the lock, handing it to the longest waiter if there is
// one. Like sync.Mutex, unlocking twice is a programming error: the second
// call panics.
func (h *Held) Unlock() {
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	h.mustHold("Unlock")
	h.done = true
	h.t.release(h.name, h.l)
}

// mustHold panics if h was unlocked. h.t.mu must be held.
func (h *Held) mustHold(op string) {
	if h.done {
		panic("cache: " + op + " after Unlock of the lock of " + strconv.Quote(h.name))
	}
	if h.t.locks[h.name] != h.l {
		// Cannot happen while the invariants hold; cheap enough to check.
		panic("cache: " + op + ": the lock of " + strconv.Quote(h.name) + " is not held by this Held")
	}
}
