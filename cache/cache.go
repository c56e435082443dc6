package cache

import (
	"context"
	"strconv"
	"sync"

	"github.com/btrstore/btrstore/internal/keylock"
)

// Table holds per-name locks and generation counters. Its zero value is
// ready to use. It is safe for concurrent use and must not be copied after
// first use.
type Table struct {
	locks keylock.Table // one exclusive lock per name

	mu sync.Mutex // guards gens and every Held's done

	// gens has the generation of every name ever bumped; absent means 0.
	// It never shrinks: see "The generation rule" in the package doc.
	gens map[string]uint64
}

// Held is one acquisition of a name's lock, returned by Table.Lock. Its
// methods may be called only until Unlock.
type Held struct {
	t      *Table
	name   string
	unlock func()
	done   bool // Unlock was called; guarded by t.mu
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
	unlock, err := t.locks.Lock(ctx, name, false)
	if err != nil {
		return nil, err
	}
	return &Held{t: t, name: name, unlock: unlock}, nil
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
	h.markDone()
	h.unlock()
}

// markDone marks h unlocked. It panics if it already is.
func (h *Held) markDone() {
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	h.mustHold("Unlock")
	h.done = true
}

// mustHold panics if h was unlocked. h.t.mu must be held.
func (h *Held) mustHold(op string) {
	if h.done {
		panic("cache: " + op + " after Unlock of the lock of " + strconv.Quote(h.name))
	}
}
