// Package cache is the bookkeeping behind the build store's named caches:
// one lock and one generation counter per cache name. It knows nothing of
// btrfs, so it is tested without root.
//
// # Semantics
//
// The store follows obuilder's cache rules, and this package holds the
// state those rules need:
//
//   - Cache(name): under the name's lock, create the cache if missing,
//     remember the generation (Held.Generation), take a writable clone,
//     unlock, hand the clone out.
//   - Release: under the lock, if the generation still equals the one
//     remembered at clone time, make the clone the new cache and, only if
//     that succeeded, bump the generation; otherwise discard the clone.
//     Held.Save is this rule: the test, the save the caller passes, and the
//     bump on success. The first successful release of a generation wins;
//     every later release of the same generation sees a different number
//     and discards. A release whose save fails leaves the old version and
//     the generation as they were, so another clone of that generation may
//     still be saved.
//   - DeleteCache: under the lock, bump the generation (so every clone in
//     flight is discarded on release) and delete the cache.
//
// # The generation rule
//
// A generation never goes backwards and never resets during the Table's
// life: it starts at 0 and only Bump changes it. This is what makes an old
// clone lose: had the counter of an idle name been forgotten and restarted
// at 0, a clone of generation 0 taken before a DeleteCache could win against
// the recreated cache. So the Table keeps the counter of every name ever
// bumped (a map entry of a string and a uint64; a name never bumped costs
// nothing, its generation is 0). Only the lock structures are freed: a name
// that nobody holds or waits for has none.
//
// Generations are not persisted. They only need to outlive the clones, and
// clones are in cache-tmp, which the store empties when it is opened.
//
// # Concurrency
//
// A Table's zero value is ready to use, and all its methods are safe for
// concurrent use. Locks of different names are independent. A lock is not
// reentrant: locking a name twice from one goroutine without unlocking
// deadlocks until ctx ends. Lock waits until the lock is free or ctx ends;
// waiters are served in arrival order (FIFO), so a stream of lockers cannot
// starve one of them, and a waiter that gives up (ctx ended) leaves the
// queue without ever taking the lock and without holding up the next one.
//
// A Held belongs to one acquisition. Unlock it exactly once, like
// sync.Mutex: a second Unlock, or Generation or Bump after Unlock, panics,
// because it is a programming error that would otherwise break mutual
// exclusion silently.
package cache
