// Package store is a build-result store on btrfs in the style of
// obuilder's btrfs store: a builder asks it to build step id on top of
// result base, gets a writable directory, and on success the store freezes
// that directory as a read-only snapshot that later steps start from.
// Named caches are writable clones of a shared snapshot that is replaced on
// release.
//
// # Layout
//
// Below the root (a directory on btrfs):
//
//	result/<id>/snapshot   a result: a read-only subvolume in a plain directory
//	result-tmp/b<n>/work   a build in progress: its writable subvolume
//	result-tmp/d<n>        a result being deleted
//	state/                 left to the caller (its database)
//	cache/c-<escaped name> a cache: a read-only subvolume
//	cache/t-<n>            a cache version being created or swapped out
//	cache-tmp/k<n>         a writable clone handed out by Cache
//
// Ids are single path components (validated before anything touches the
// disk); cache names are escaped into one (see Escape).
//
// # Life cycle of a result
//
// Build creates result-tmp/b<n>/ and in it the work subvolume: empty, or a
// writable snapshot of result/<base>/snapshot taken under base's shared
// lock (Delete takes it exclusively, so a base cannot vanish mid-snapshot).
// The build function writes into the work subvolume. On success, a
// read-only snapshot of it is made in a fresh plain directory
// result-tmp/b<n>/out/, and that directory is renamed to result/<id> with
// RENAME_NOREPLACE: the result appears at once, complete and read-only.
// (A read-only subvolume cannot be moved to another directory, but a
// directory holding one can.) Then, on success, failure or panic alike,
// result-tmp/b<n> is removed with everything in it, nested subvolumes
// included. Each build snapshots into directories of its own, so that
// concurrent builds share transaction commits instead of queueing on one
// directory's lock.
//
// Delete renames result/<id> into result-tmp (it disappears atomically) and
// then deletes it; the kernel frees the space in the background, and
// CompleteDeletes waits for that.
//
// # Life cycle of a cache
//
// Cache, under the name's lock: creates cache/c-<name> if missing (empty,
// read-only, made as cache/t-<n> and renamed into place), notes the
// generation, snapshots it writable to cache-tmp/k<n> and chowns that to
// the owner. Release, under the lock: if the generation is unchanged, bumps
// it, snapshots the clone read-only to cache/t-<n>, exchanges that with
// cache/c-<name> by renameat2(RENAME_EXCHANGE) and deletes the old version;
// otherwise discards the clone. The first release of a generation wins.
// DeleteCache bumps the generation, so clones in flight are discarded on
// release.
//
// # Crashes
//
// At every instant each result is absent or complete and read-only, and
// each cache is a complete old or new version. Open repairs what a killed
// process left: it empties result-tmp and cache-tmp, removes cache/t-*
// entries, and removes any result or cache that is not a read-only
// subvolume where one should be, logging each repair. Cache generations
// live in memory and restart with Open.
//
// # Concurrency and privileges
//
// A root is used by one Store at a time (an flock on root/.btrstore.lock);
// its methods are safe for concurrent use. Open checks what the store needs
// and says what is missing: deleting subvolumes needs CAP_SYS_ADMIN or the
// user_subvol_rm_allowed mount option, waiting for cleanup CAP_SYS_ADMIN or
// Linux 6.13, giving a cache to another owner CAP_CHOWN. No sudo, no
// fork/exec.
package store
