package store

import "sync"

// rwLocks is a table of reader/writer locks by id, freed when unused.
// Builds hold a result's read lock while they snapshot it as their base, so
// Delete (which takes the write lock) cannot pull it away mid-snapshot,
// while any number of builds snapshot one popular base in parallel.
type rwLocks struct {
	mu sync.Mutex // guards m
	m  map[string]*rwLock
}

type rwLock struct {
	sync.RWMutex
	refs int // users holding or waiting; guarded by rwLocks.mu
}

// lock takes id's lock, shared or exclusive, and returns its unlock.
func (t *rwLocks) lock(id string, shared bool) (unlock func()) {
	t.mu.Lock()
	if t.m == nil {
		t.m = map[string]*rwLock{}
	}
	l := t.m[id]
	if l == nil {
		l = &rwLock{}
		t.m[id] = l
	}
	l.refs++
	t.mu.Unlock()
	if shared {
		l.RLock()
	} else {
		l.Lock()
	}
	return func() {
		if shared {
			l.RUnlock()
		} else {
			l.Unlock()
		}
		t.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(t.m, id)
		}
		t.mu.Unlock()
	}
}
