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
//	.btrstore              the marker: "btrstore store, format 1"
//	.btrstore.lock         the lock (flock) of the Store that has it open
//	result/<id>/snapshot   a result: a read-only subvolume in a plain directory
//	                       (whose xattr user.btrstore.base names its base)
//	result/<id>/snapshot/log  its build log, if the build function wrote one
//	result-tmp/b<n>/work   a build in progress: its writable subvolume
//	result-tmp/s<n>/work   a spare: the next build's, made ahead (below)
//	result-tmp/d<n>        a result being deleted
//	result-tmp/i<n>/out/<id>/snapshot  a result being imported (Import)
//	result-tmp/i<n>/chain/c<n>/snapshot  a parent received only as a base
//	state/                 left to the caller (its database)
//	cache/c-<escaped name> a cache: a read-only subvolume (the xattr
//	                       user.btrstore.released.<hash> of cache/ holds
//	                       its last release that kept the version)
//	cache/t-<n>            a cache version being created or swapped out
//	cache-tmp/k<n>         a writable clone handed out by Cache
//
// Ids are single path components (validated before anything touches the
// disk); cache names are escaped into one (see Escape). Every <n> is a
// random nonce drawn at Open followed by a counter, so that no temporary
// name is used twice, not even across Opens: a process that a killed
// builder left behind, still writing to its old work path, writes into
// nothing that a later build uses.
//
// # Opening a directory
//
// Open takes an empty directory, which it makes a store (marker first),
// or a store: one with the marker, or one made by a version of btrstore
// before the marker (recognised by its lock file and its result,
// result-tmp, cache and cache-tmp directories, and marked then), or one
// whose first Open was killed before it wrote the marker (nothing in it
// but the lock and the store's other names). Anything else fails with
// ErrNotStore before anything is written: Open's repair deletes what it
// does not recognise in the store's directories, and must never do so in
// a directory of someone else's. A marker of a later format is refused
// too. A root given through a symlink is resolved (Root returns the
// directory); another Store holding the root gives ErrLocked.
//
// # Build logs
//
// The store does not write logs: LogFile returns where the build's log
// belongs, the file "log" at the top of the build's directory (of the
// work directory while the build runs, of the result's snapshot once it
// is published). A build function that keeps a log writes it there. As
// the work directory starts as a snapshot of the base's result, it starts
// with the base's log, as in obuilder: a builder truncates it first.
//
// Nested subvolumes that a build step creates in its work directory are
// not part of the result: a snapshot does not descend into them, so the
// result holds empty directories in their place (logged when the work
// subvolume is removed). Build a result's content as plain files and
// directories.
//
// # Logging
//
// Config.Logger receives at V(0) what an operator must see: repairs
// (by Open, or of the store's directories after a build step), cleanups
// that failed, builds that failed for a reason of the store's own
// (ErrWorkReplaced, a full filesystem at publish...) as errors, and
// nested subvolumes left out of a result. At V(1), the life cycle: builds
// started, done or failed in their step, each with its duration; caches
// cloned, saved or discarded, with the release's duration and how long
// the lease was held.
//
// # Life cycle of a result
//
// Build creates result-tmp/b<n>/ and in it the work subvolume: empty, or a
// writable snapshot of result/<base>/snapshot taken under base's shared
// lock (Delete takes it exclusively, so a base cannot vanish mid-snapshot).
// The build function writes into the work subvolume. On success, the
// plain directory result/<id> is made (under id's lock, so that Delete
// waits) and a read-only snapshot of the work subvolume is made in it as
// result/<id>/snapshot: the result appears at once with the snapshot,
// complete and read-only. Until then result/<id> is an empty directory,
// which is no result (Result, Results and Prune pass it by). Then, on
// success, failure or panic alike, result-tmp/b<n> is removed with
// everything in it, nested subvolumes included. Each build snapshots into
// directories of its own (b<n> and result/<id>), so that concurrent
// builds share transaction commits instead of queueing on one directory's
// lock.
//
// # Spare work subvolumes
//
// The writable snapshot a build starts from waits for a transaction
// commit: with a short build step, half of a build cycle. Once a base has
// had two builds since Open, each build on it has the store make the next
// build's work subvolume, result-tmp/s<n>/work, while it runs (its commit
// joins this build's, or runs during the step), and the next build on
// that base takes it, renamed to a fresh result-tmp/b<n>, instead of
// waiting for a snapshot of its own. A spare is taken only if it is what
// a snapshot taken then would be: its source is the base's subvolume (by
// UUID: a base deleted and made again is another), and nothing in it
// changed since it was made (ioctl.ChangedSinceFd, exact), and nothing is
// mounted on or below it; otherwise it is removed and the build
// snapshots its base itself. At most four are
// held (one per base; the base wanted longest ago gives its up first);
// Delete and Prune of a base remove its spare, Close removes them all, and
// Open removes what a crash left, with the rest of result-tmp. There are
// none where deletes cost O(files) (rootless), or before Linux 5.10. One
// builder on a base built 1.04 to 1.15 times as fast as the seed's
// sequence, a snapshot per build (make bench and BenchmarkHotpath,
// docs/PERFORMANCE.md).
//
// Import receives a result exported by another store (Export) into
// result-tmp/i<n>/out/<id>, checks it, and renames that directory to
// result/<id> (a received subvolume is not complete when it appears, so
// it is staged; a read-only subvolume cannot be moved to another
// directory, but a directory holding one can). Open never publishes what
// an import left (it may not be checked yet): it goes with the rest of
// result-tmp. (Open still publishes result-tmp/b<n>/out/<id>, where
// earlier versions staged a build's result.)
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
// the owner (unless it has that owner already) and marks it
// (ioctl.MarkChangesFd). Release, under the lock: if the generation is
// unchanged and nothing in the clone changed (ioctl.ChangedSinceFd),
// bumps the generation, keeps the current version (no snapshot, no
// commit) and records the time on cache/ (one fsetxattr); if it changed,
// snapshots the clone read-only to cache/t-<n>, exchanges that with
// cache/c-<name> by renameat2(RENAME_EXCHANGE), deletes the old version
// and bumps the generation; otherwise discards the clone. The first
// release of a generation wins (a release whose save failed keeps the old
// version and does not count).
// DeleteCache bumps the generation, so clones in flight are discarded on
// release, and removes the cache's recorded release time.
//
// # Crashes
//
// At every instant each result is absent or complete and read-only, and
// each cache is a complete old or new version. Open repairs what a killed
// process left: it empties result-tmp and cache-tmp, removes cache/t-*
// entries and empty result/<id> directories (a build killed before its
// snapshot), and removes any result or cache that is not a read-only
// subvolume where one should be, logging each repair, and the
// release times recorded for caches that no longer exist. Cache
// generations live in memory and restart with Open.
//
// A result that Build reported survives a crash of the machine too, with
// no fsync: creating the read-only snapshot commits a transaction, which
// carries result/<id>, its base attribute and the snapshot together. A released cache version, a delete
// and a DeleteCache may be undone by such a crash, never half-done; last
// uses of results and release times of caches written in the last commit
// interval may be lost.
//
// # What a build step may do
//
// A build step runs with the caller's privileges and may misbehave. The
// store never resolves a path below its root through a symlink or across
// a mount: it works from directory descriptors, opens with openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV (on kernels without
// openat2, one component at a time with O_NOFOLLOW, comparing mount ids),
// and removes entries by name in their directory (unlink, rmdir,
// SNAP_DESTROY), which follows nothing. Build records the subvolume id
// and UUID of the work subvolume it creates, and publishes only that
// subvolume: if the step put a symlink, another directory or subvolume or
// a mount in its place, Build fails with ErrWorkReplaced and publishes
// nothing (Release likewise for a cache clone). What a step leaves is
// removed: nested subvolumes (read-only ones too), immutable and
// append-only files and directories (the flags are cleared first, which
// needs CAP_LINUX_IMMUTABLE), directories left without write or search
// permission, mounts (detached with MNT_DETACH, which needs
// CAP_SYS_ADMIN, and only after checking by mount id that the mount is
// below the store's directory); a work subvolume or build directory that
// the step moved elsewhere below the root is found by its descriptor and
// removed there, one moved out of the root is left where it is and the
// error says where. What cannot be removed is named in the error or the
// log, and Open tries again; Open also clears immutable flags from the
// store's own directories, detaches mounts on them and on results, and
// replaces a symlink planted in place of one of them. Temporary names
// that a step took in advance are skipped.
//
// The paths the store hands out lead to its own directories: Open
// records the device, inode and mount id of result, result-tmp, cache and
// cache-tmp; Result and LogFile check root/result (one statx), Build the
// work path before the build function gets it, Cache the clone's path.
// After each build step and each release the four are checked, and a
// mount a step planted on one is detached (CAP_SYS_ADMIN), a symlink or
// directory put in place of one removed and the store's directory moved
// back from where the step moved it (below the root). What cannot be
// repaired fails with ErrWorkReplaced until Close and Open. A build whose
// result-tmp no longer leads to the store's when its step returns (a
// mount planted meanwhile, by another build's step say) publishes
// nothing, as what the step wrote went elsewhere; a release whose clone
// path no longer leads to the clone saves nothing. Directory trees a
// step leaves are removed holding a bounded number of descriptors,
// however deep, and errors and log lines name at most a few entries, by
// paths elided past 256 bytes.
//
// # Full and read-only filesystems
//
// An operation that runs out of space fails with an error matching
// syscall.ENOSPC, on a read-only filesystem with syscall.EROFS, and
// leaves nothing behind that Open would not remove: every step that btrfs
// can fail (creates, snapshots, which can also fail at commit time,
// renames) cleans up what it made. A cache
// release that cannot be saved keeps the previous version. Delete works
// on a full filesystem (deleting in place when there is no room to rename
// the result away first), and once CompleteDeletes has returned the space
// is there for new builds. CompleteDeletes returns EROFS rather than wait
// forever on a read-only filesystem, where the kernel does not clean
// deleted subvolumes. Open refuses a read-only mount; after a read-write
// remount it repairs what the interrupted operations left. The store
// keeps no file open for writing, so that the filesystem can be remounted
// read-only while it is open, between operations (a spare work subvolume
// being made counts as one, for the milliseconds of its snapshot after
// the Build that started it returned).
//
// # Concurrency and privileges
//
// A root is used by one Store at a time (an flock on root/.btrstore.lock,
// opened without following a symlink or blocking on a FIFO; anything but
// a regular file there is replaced); its methods are safe for concurrent
// use. Close makes new calls fail with ErrClosed and waits for the
// running ones; a build step that calls the store after Close began gets
// ErrClosed too, rather than a deadlock (Close waits for its build).
// Open chooses the fastest way to delete subvolumes and to wait for their
// cleanup that works, and logs which: deleting by ioctl needs
// CAP_SYS_ADMIN or the user_subvol_rm_allowed mount option; with neither
// (a store with no privilege at all) the store empties a subvolume and
// rmdirs it (Linux 4.18), which costs O(files). Waiting for cleanup needs
// CAP_SYS_ADMIN or Linux 6.13; without, CompleteDeletes commits and
// cannot see the cleaner. Giving a cache to another owner needs
// CAP_CHOWN. No sudo, no fork/exec.
//
// # Results in use, last use, pruning
//
// Results lists the results with when each was published and last used
// (Result, or a Build on it as base): the ctime of the plain directory
// result/<id>, set with one utimensat, no commit, no fsync. Prune deletes
// least recently used results first, skipping those in use (a Build on
// them or of them running). A cache release whose clone nobody changed
// keeps the current version: no snapshot, no commit (see unchanged.go).
// Caches lists the caches with when each was last released: the
// creation time of its version, or the time such a release recorded on
// cache/ (see released.go), no commit, no fsync.
package store
