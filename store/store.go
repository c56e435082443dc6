package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btrstore/btrstore/cache"
	"github.com/btrstore/btrstore/internal/beneath"
	"github.com/btrstore/btrstore/internal/keylock"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/kernel"
	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
)

// Directory names below the root. A result is a plain directory
// result/<id> holding the read-only subvolume "snapshot".
const (
	resultDir    = "result"
	resultTmpDir = "result-tmp"
	stateDir     = "state"
	cacheDir     = "cache"
	cacheTmpDir  = "cache-tmp"
	snapshotName = "snapshot"
	workName     = "work"
	stageDir     = "out" // result-tmp/i<n>/out/<id>: a result received, about to be published
	lockName     = ".btrstore.lock"
	markerName   = ".btrstore" // marks a store: markerPrefix and the format
	markerPrefix = "btrstore store, format "
)

// ErrClosed is returned by the methods of a closed Store.
var ErrClosed = errors.New("btrstore: store is closed")

// ErrLocked is matched by the error of an Open whose root another Store,
// in this process or another, has open.
var ErrLocked = errors.New("btrstore: another Store has the root open")

// ErrNotStore is matched by the error of an Open of a directory that is
// neither empty nor a store: Open never adopts (and then cleans) a
// directory holding someone else's files.
var ErrNotStore = errors.New("btrstore: not a store")

// ErrWorkReplaced is matched by the error of a Build whose step replaced
// or moved away its work directory (a symlink, another directory or
// subvolume, or a mount in its place), and of a Release whose cache clone
// was: the store publishes or saves only the subvolume it created.
var ErrWorkReplaced = errors.New("btrstore: the directory handed out was replaced")

// Config configures a Store. Its zero value is the sensible default.
type Config struct {
	// Logger receives what an operator must see (V(0): repairs made by
	// Open, cleanups that failed) and the life cycle of builds and caches
	// (V(1)). Its zero value discards.
	Logger logr.Logger
}

// runningBuild is the work directory of a build in progress.
type runningBuild struct {
	path string
	id   fileID
}

// Owner is the owner given to a cache clone's top directory: a uid and a
// gid, each 0 to 2³²-2 (others are fs.ErrInvalid; -1 does not mean
// "unchanged"). The zero Owner is root:root, not the caller: a caller
// that is not root and wants the clone for itself passes
// Owner{os.Getuid(), os.Getgid()}, and any other owner needs CAP_CHOWN.
type Owner struct{ UID, GID int }

// Store is a build-result store on a btrfs directory. See the package
// documentation for its life cycle. All methods are safe for concurrent
// use; Close waits for running operations.
type Store struct {
	root   string
	log    logr.Logger
	report *kernel.Report

	// How subvolumes are deleted and their cleanup waited for: chosen
	// by Open (see rootless.go), fixed after.
	deletes        deleteMechanism
	commitOnlyWait bool // no tree search, no SUBVOL_SYNC_WAIT: CompleteDeletes commits

	// ops counts the operations running; Close sets closed, so that new
	// ones fail with ErrClosed, and waits for ops to drop to 0. Not a
	// sync.RWMutex: a Close waiting for its write lock would block the
	// read lock of a call that a running build step makes, while waiting
	// for that very build (a deadlock).
	opsMu   sync.Mutex
	opsDone sync.Cond // signalled when ops drops to 0; L is &opsMu
	ops     int       // guarded by opsMu
	closed  bool      // guarded by opsMu
	fdsShut bool      // Close released the fds; guarded by opsMu

	// Open directory fds, relative to which everything is done.
	rootFd, resultFd, resultTmpFd, cacheFd, cacheTmpFd int
	lockFd                                             int

	// The same directories as the paths the store hands out reach them,
	// checked (and repaired) before a path below them is handed out.
	dirResult, dirResultTmp, dirCache, dirCacheTmp storeDir
	repairMu                                       sync.Mutex // one repair at a time

	// realRoot is the root as the kernel names it (symlinks resolved),
	// to tell whether what a build moved is still below the root; "" if
	// /proc could not tell.
	realRoot string

	// fail, set only by tests, is called after each step that can fail
	// for want of space or at commit time (before the rename in Delete);
	// an error it returns is taken as that step's.
	fail func(step string) error

	nonce    string        // random, new at each Open: in every temporary name
	seq      atomic.Uint64 // names of temporary entries
	builds   keylock.Table // one Build per id at a time (exclusive)
	results  keylock.Table // by result id: shared while snapshotted as a base, exclusive for Delete
	bases    useCounts     // results that running builds started from (Prune skips them)
	caches   cache.Table   // per cache name: lock and generation
	released releaseTimes  // releases that kept the version, in memory (see released.go)
	spares   spares        // work subvolumes made ahead (see spare.go)

	mu      sync.Mutex               // guards running and leases
	running map[string]runningBuild  // builds in progress, by id
	leases  map[*CacheLease]struct{} // leases not yet released, whose clones are open
}

// Open opens the store at root, a directory on btrfs, creating its
// directories if missing and repairing whatever a killed process left (see
// the package documentation). root must be an empty directory or a store
// (see "Opening a directory" in the package documentation): anything else
// fails with ErrNotStore, and "" with fs.ErrInvalid, before anything is
// written. A symlinked root is resolved. A root is used by one Store at a
// time: a second Open, in this process or another, fails with ErrLocked
// until Close. A root that another user owns fails with an error matching
// fs.ErrPermission that says to chown it.
//
// Privilege: none beyond owning the root. Open chooses the fastest
// mechanism that works and logs which: subvolumes are deleted by ioctl
// with CAP_SYS_ADMIN or the user_subvol_rm_allowed mount option, else by
// emptying them and rmdir (Linux 4.18; deletes cost O(files), and a
// result holding another user's files cannot be deleted so, see
// rootless.go); deleted subvolumes are waited for by tree search
// (CAP_SYS_ADMIN) or SUBVOL_SYNC_WAIT (Linux 6.13), else CompleteDeletes
// only commits (see CompleteDeletes). Open fails, with an error that says
// what is missing (errors.Is(err, fs.ErrPermission)), only when no
// mechanism works (a kernel before 4.18 without the privileges).
// Cleaning up after build steps that misbehave may need more, asked for
// only then, with errors that name it: CAP_SYS_ADMIN to detach a mount a
// step left, CAP_LINUX_IMMUTABLE to clear an immutable or append-only
// flag. A read-only mount fails with an error matching syscall.EROFS.
// Kernel: 4.18 (GET_SUBVOL_INFO).
func Open(ctx context.Context, root string, cfg Config) (*Store, error) {
	if root == "" {
		return nil, fmt.Errorf("btrstore: open: empty root (give the store's directory; \".\" for the working directory): %w", fs.ErrInvalid)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	// A symlinked root is resolved once, here: the paths the store hands
	// out lead to its own directories, not through a link.
	if resolved, err := filepath.EvalSymlinks(abs); err == nil && resolved != abs {
		cfg.Logger.V(1).Info("the store's root is reached through a symlink; using the directory it leads to", "root", abs, "resolved", resolved)
		abs = resolved
	}
	r, err := admit(abs)
	if err != nil {
		return nil, fmt.Errorf("btrstore: open %s: %w", abs, err)
	}
	s := &Store{root: abs, log: cfg.Logger, report: r, running: map[string]runningBuild{}, leases: map[*CacheLease]struct{}{},
		rootFd: -1, resultFd: -1, resultTmpFd: -1, cacheFd: -1, cacheTmpFd: -1, lockFd: -1}
	m, _ := mechanismsFor(r) // admit checked that they work
	s.deletes, s.commitOnlyWait = m.deletes, m.commitOnlyWait
	s.logMechanisms(r)
	s.opsDone.L = &s.opsMu
	var nonce [6]byte
	rand.Read(nonce[:]) // never fails (crypto/rand)
	s.nonce = hex.EncodeToString(nonce[:]) + "-"
	if err := s.openDirs(); err != nil {
		err = s.explainRootAccess(err)
		s.closeFds()
		return nil, fmt.Errorf("btrstore: open %s: %w", abs, err)
	}
	if err := s.repair(ctx); err != nil {
		s.closeFds()
		return nil, fmt.Errorf("btrstore: open %s: repair: %w", abs, err)
	}
	// Spares need a delete of one ioctl and the change check (5.10).
	s.openSpares(s.deletes == deleteIoctl && r.Kernel.AtLeast(5, 10))
	s.log.V(1).Info("store opened", "root", abs)
	return s, nil
}

// explainRootAccess adds to a permission error of Open what to do when
// the root belongs to another user (a directory made by root, say).
func (s *Store) explainRootAccess(err error) error {
	if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
		return err
	}
	var st unix.Stat_t
	if s.rootFd < 0 || unix.Fstat(s.rootFd, &st) != nil || int(st.Uid) == os.Geteuid() {
		return err
	}
	return fmt.Errorf("%w: the root %s is owned by uid %d gid %d (mode %o), and this process runs as uid %d: "+
		"chown the root to the user that runs the store (`chown %d:%d %s`), or run the store as uid %d",
		err, s.root, st.Uid, st.Gid, st.Mode&0o7777, os.Geteuid(), os.Geteuid(), os.Getegid(), s.root, st.Uid)
}

func (s *Store) openDirs() error {
	var err error
	if s.rootFd, err = openDirAt(unix.AT_FDCWD, s.root); err != nil {
		return err
	}
	if err := ioctl.CheckBtrfs(s.rootFd); err != nil {
		return &fs.PathError{Op: "statfs", Path: s.root, Err: err}
	}
	// kernel.Check saw the mount's options; the filesystem may have gone
	// read-only since, and the root may be in a read-only subvolume.
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(s.rootFd, &sfs); err == nil && sfs.Flags&unix.ST_RDONLY != 0 {
		return fmt.Errorf("%s is on a read-only filesystem: remount it read-write: %w", s.root,
			&fs.PathError{Op: "statfs", Path: s.root, Err: unix.EROFS})
	}
	var info ioctl.GetSubvolInfoArgs // of the subvolume holding the root
	if err := ioctl.GetSubvolInfo(s.rootFd, &info); err == nil && info.Flags&ioctl.BTRFS_ROOT_SUBVOL_RDONLY != 0 {
		return fmt.Errorf("%s is in a read-only subvolume: put the store in a writable one: %w", s.root,
			&fs.PathError{Op: "BTRFS_IOC_GET_SUBVOL_INFO", Path: s.root, Err: unix.EROFS})
	}
	s.realRoot, _ = fdPath(s.rootFd)
	// Nothing is written before the root is known to be a store, or empty.
	marked, err := s.checkStore()
	if err != nil {
		return err
	}
	if err := s.openLock(); err != nil {
		return err
	}
	if !marked {
		if err := s.writeMarker(); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		name string
		fd   *int
	}{{resultDir, &s.resultFd}, {resultTmpDir, &s.resultTmpFd}, {stateDir, nil}, {cacheDir, &s.cacheFd}, {cacheTmpDir, &s.cacheTmpFd}} {
		if d.fd == nil {
			// state/ is the caller's: made if missing, else left alone
			// (it may well be a symlink to the caller's database).
			if err := unix.Mkdirat(s.rootFd, d.name, 0o755); err != nil && err != unix.EEXIST {
				return &fs.PathError{Op: "mkdirat", Path: d.name, Err: err}
			}
			continue
		}
		if err := s.mkdirStoreDir(d.name); err != nil {
			return err
		}
		fd, err := s.openDirDetaching(dir{s.rootFd, "."}, d.name)
		if err != nil {
			return err
		}
		// A build step may have made the store's own directory immutable
		// or append-only, which would fail every build or removal in it.
		if changed, err := clearProtection(fd, d.name); err != nil {
			s.log.Error(err, "the store's directory is immutable or append-only; builds and removals in it will fail", "dir", d.name)
		} else if changed {
			s.log.Info("cleared the immutable or append-only flag of the store's directory", "dir", d.name)
		}
		*d.fd = fd
	}
	for _, d := range []struct {
		sd   *storeDir
		name string
		fd   *int
	}{{&s.dirResult, resultDir, &s.resultFd}, {&s.dirResultTmp, resultTmpDir, &s.resultTmpFd}, {&s.dirCache, cacheDir, &s.cacheFd}, {&s.dirCacheTmp, cacheTmpDir, &s.cacheTmpFd}} {
		id, err := fdID(*d.fd)
		if err != nil {
			return &fs.PathError{Op: "statx", Path: d.name, Err: err}
		}
		*d.sd = storeDir{name: d.name, fd: d.fd, id: id}
		// The root's path leads to the root opened: the directories'
		// paths should too (Open repaired what was planted on them).
		if err := s.checkDir(d.sd); err != nil {
			return err
		}
	}
	return nil
}

// mkdirStoreDir makes the store's directory name in the root if missing.
// A symlink in its place, which a build step may have planted, is
// replaced by the directory.
func (s *Store) mkdirStoreDir(name string) error {
	err := unix.Mkdirat(s.rootFd, name, 0o755)
	if err != unix.EEXIST {
		if err != nil {
			return &fs.PathError{Op: "mkdirat", Path: name, Err: err}
		}
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(s.rootFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return nil // a directory, or what openDirAt then reports
	}
	target, _ := beneath.Readlinkat(s.rootFd, name)
	s.log.Info("replacing a symlink in place of the store's directory", "dir", name, "target", target)
	if err := unix.Unlinkat(s.rootFd, name, 0); err != nil {
		return &fs.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	if err := unix.Mkdirat(s.rootFd, name, 0o755); err != nil {
		return &fs.PathError{Op: "mkdirat", Path: name, Err: err}
	}
	return nil
}

// storeFormat is the format of the store's layout that this version
// writes to the marker and reads.
const storeFormat = 1

// checkStore tells whether the root is a store that Open may use (and
// repair, which deletes what the store does not recognise in its
// directories): marked reports a valid marker. Recognised are:
//
//   - a store marked by root/.btrstore ("btrstore store, format 1");
//   - an empty directory, which becomes a store;
//   - a store made by a version before the marker: root/.btrstore.lock a
//     regular file and result, result-tmp, cache and cache-tmp
//     directories (each Open of those versions made all of them);
//   - a directory holding nothing but the lock and other names of the
//     store's (an Open killed before it wrote the marker).
//
// Anything else fails with ErrNotStore, before anything is written. A
// marker of a later format fails too.
func (s *Store) checkStore() (marked bool, err error) {
	format, err := s.readMarker()
	switch {
	case err != nil:
		return false, err
	case format == storeFormat:
		return true, nil
	case format > storeFormat:
		return false, fmt.Errorf("%s was made by a later version of btrstore (format %d; this version reads format %d): %w",
			s.root, format, storeFormat, ErrNotStore)
	}
	names, err := readDirNames(s.rootFd)
	if err != nil {
		return false, &fs.PathError{Op: "readdir", Path: s.root, Err: err}
	}
	if len(names) == 0 {
		return false, nil
	}
	isType := func(name string, mode uint32) bool {
		var st unix.Stat_t
		return unix.Fstatat(s.rootFd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == mode
	}
	legacy := isType(lockName, unix.S_IFREG)
	for _, d := range []string{resultDir, resultTmpDir, cacheDir, cacheTmpDir} {
		legacy = legacy && isType(d, unix.S_IFDIR)
	}
	if legacy {
		s.log.Info("adopting a store made by an earlier version of btrstore: marking it", "root", s.root, "marker", markerName)
		return false, nil
	}
	own := map[string]bool{lockName: true, markerName: true, resultDir: true, resultTmpDir: true, stateDir: true, cacheDir: true, cacheTmpDir: true}
	var foreign []string
	for _, n := range names {
		if !own[n] {
			foreign = append(foreign, n)
		}
	}
	if len(foreign) == 0 && slices.Contains(names, lockName) {
		return false, nil // an Open that did not get to write the marker
	}
	if len(foreign) > 5 {
		foreign = append(foreign[:5], "...")
	}
	return false, fmt.Errorf("%s is neither empty nor a store (no %s; it holds %s): "+
		"give an empty or new directory, as Open deletes what it does not recognise in a store: %w",
		s.root, markerName, truncate(strings.Join(foreign, ", ")), ErrNotStore)
}

// readMarker returns the format the marker records, 0 if there is no
// valid marker (none, not a regular file, unreadable content).
func (s *Store) readMarker() (int, error) {
	fd, err := beneath.Openat(s.rootFd, markerName, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_NOFOLLOW)
	if err != nil {
		if err == unix.EACCES {
			return 0, &fs.PathError{Op: "open", Path: markerName, Err: err}
		}
		return 0, nil // missing, a symlink (ELOOP)...
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, nil
	}
	buf := make([]byte, 64)
	n, _ := unix.Read(fd, buf)
	rest, ok := strings.CutPrefix(string(buf[:max(n, 0)]), markerPrefix)
	if !ok {
		return 0, nil
	}
	format, err := strconv.Atoi(strings.TrimSpace(rest))
	if err != nil || format < 1 {
		return 0, nil
	}
	return format, nil
}

// writeMarker writes the marker, replacing whatever is at its name (with
// the lock held: the root is a store).
func (s *Store) writeMarker() error {
	content := markerPrefix + strconv.Itoa(storeFormat) + "\n"
	for try := 0; ; try++ {
		fd, err := openatMode(s.rootFd, markerName, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NONBLOCK|unix.O_NOCTTY, 0o644)
		if err == nil {
			var st unix.Stat_t
			if err = unix.Fstat(fd, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
				err = unix.EINVAL
			}
			if err == nil {
				_, err = unix.Write(fd, []byte(content))
			}
			if err == nil {
				err = unix.Fsync(fd)
			}
			unix.Close(fd)
			if err == nil {
				return nil
			}
		}
		if try > 0 || err == unix.EACCES || err == unix.EROFS || err == unix.ENOSPC {
			return &fs.PathError{Op: "write", Path: markerName, Err: err}
		}
		// A symlink, FIFO or directory in its place: it goes.
		s.log.Info("replacing what is in place of the store's marker", "entry", markerName, "what", describeEntry(s.rootFd, markerName))
		if err := s.removeEntry(s.rootFd, ".", markerName); err != nil {
			return err
		}
	}
}

// openLock opens root/.btrstore.lock and takes its flock. It never
// blocks and never follows a symlink: the lock is opened O_NONBLOCK (a
// FIFO a build step planted would block an ordinary open) and must be a
// regular file; anything else there (a symlink, FIFO, directory...) is
// logged and replaced, as the store's directories are. Another Store
// holding the lock gives ErrLocked.
func (s *Store) openLock() error {
	for try := 0; ; try++ {
		// Read-only: a file open for writing would keep the filesystem
		// from being remounted read-only (EBUSY); flock does not need
		// write access.
		fd, err := openatMode(s.rootFd, lockName, unix.O_RDONLY|unix.O_CREAT|unix.O_NONBLOCK|unix.O_NOCTTY, 0o644)
		var st unix.Stat_t
		if err == nil {
			if err = unix.Fstat(fd, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
				err = unix.EINVAL
			}
			if err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			if try > 2 || err == unix.EACCES || err == unix.EROFS || err == unix.ENOSPC || err == unix.EPERM {
				return &fs.PathError{Op: "open", Path: lockName, Err: err}
			}
			s.log.Info("replacing what is in place of the store's lock file", "entry", lockName, "what", describeEntry(s.rootFd, lockName))
			if err := s.removeEntry(s.rootFd, ".", lockName); err != nil {
				return err
			}
			continue
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			unix.Close(fd)
			if err == unix.EWOULDBLOCK {
				return fmt.Errorf("another Store has %s open (lock %s held): %w", s.root, lockName, ErrLocked)
			}
			return &fs.PathError{Op: "flock", Path: lockName, Err: err}
		}
		// The lock counts only if it is still the file at the name: one
		// replaced meanwhile (by another Open's repair) is taken again.
		var now unix.Stat_t
		if unix.Fstatat(s.rootFd, lockName, &now, unix.AT_SYMLINK_NOFOLLOW) != nil || now.Dev != st.Dev || now.Ino != st.Ino {
			unix.Close(fd)
			if try > 2 {
				return fmt.Errorf("%s keeps being replaced: %w", lockName, &fs.PathError{Op: "flock", Path: lockName, Err: unix.ESTALE})
			}
			continue
		}
		s.lockFd = fd
		return nil
	}
}

// lockResult takes the lock of result id, shared (snapshotting or
// sending it as a base) or exclusive (Delete), waiting as long as it
// takes, and returns its unlock.
func (s *Store) lockResult(id string, shared bool) (unlock func()) {
	unlock, _ = s.results.Lock(context.Background(), id, shared) // no ctx, no error
	return unlock
}

// openDirDetaching is openDirAt, but a mount on the entry (EXDEV), which
// a build step may have left, is detached (see detachMounts) and the open
// tried again.
func (s *Store) openDirDetaching(d dir, name string) (int, error) {
	fd, err := openDirAt(d.fd, name)
	if errors.Is(err, unix.EXDEV) {
		if derr := s.detachMounts(d, name); derr != nil {
			return -1, errors.Join(err, derr)
		}
		fd, err = openDirAt(d.fd, name)
	}
	return fd, err
}

// failAt returns the error that a test injects after step, if any.
func (s *Store) failAt(step string) error {
	if s.fail == nil {
		return nil
	}
	return s.fail(step)
}

func (s *Store) closeFds() {
	for _, fd := range []*int{&s.resultFd, &s.resultTmpFd, &s.cacheFd, &s.cacheTmpFd, &s.rootFd, &s.lockFd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// Close makes new calls fail with ErrClosed, waits for the running ones
// (and the spare work subvolumes being made) to return, deletes the
// spares, then releases the store. A call made meanwhile from inside a
// running build step (Result, Cache, LogFile...) is a new call: it fails
// with ErrClosed rather than wait for Close, which waits for the build.
// A second Close waits likewise and returns nil.
//
// Concurrency: safe to call from any goroutine, a signal handler's
// included, but not from inside a build step or while holding a lease
// whose release the caller would wait for after Close (Close would wait
// for that step).
func (s *Store) Close() error {
	s.opsMu.Lock()
	defer s.opsMu.Unlock()
	s.closed = true
	for s.ops > 0 {
		s.opsDone.Wait()
	}
	if s.fdsShut {
		return nil
	}
	s.dropSpares() // nothing makes them now: making one is an operation
	s.fdsShut = true
	s.closeFds() // closing lockFd releases the flock
	// Leases released from now on get ErrClosed, and the next Open
	// removes their clones: nothing keeps the filesystem busy.
	s.mu.Lock()
	for l := range s.leases {
		l.vol.close()
	}
	clear(s.leases)
	s.mu.Unlock()
	return nil
}

// enter marks the start of an operation; the returned function its end.
// It fails with ErrClosed once Close has been called.
func (s *Store) enter() (leave func(), err error) {
	s.opsMu.Lock()
	defer s.opsMu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.ops++
	return s.leave, nil
}

func (s *Store) leave() {
	s.opsMu.Lock()
	if s.ops--; s.ops == 0 && s.closed {
		s.opsDone.Broadcast()
	}
	s.opsMu.Unlock()
}

// Root returns the store's root directory (absolute).
func (s *Store) Root() string { return s.root }

// StateDir returns root/state, a directory the store leaves to the caller
// (for its database).
func (s *Store) StateDir() string { return filepath.Join(s.root, stateDir) }

// tmpName returns a fresh temporary name: prefix, the Open's random
// nonce and a sequence number. Unique across Opens, so that a process a
// killed builder left behind, still writing to its old work path, finds
// that path gone for good rather than reused by a later build.
func (s *Store) tmpName(prefix string) string {
	return prefix + s.nonce + strconv.FormatUint(s.seq.Add(1), 10)
}

// Result returns the path of result id, a read-only subvolume, or an error
// matching fs.ErrNotExist when there is none. The path leads to the
// store's result: if a build step planted a mount or symlink over
// root/result, it is repaired first (see Build), or the error matches
// ErrWorkReplaced. It records that the result was used (see Results and
// Prune). It is O(1): three statx calls and a utimensat (no commit, no
// fsync), whatever the number of results.
func (s *Store) Result(id string) (string, error) {
	if err := validID(id); err != nil {
		return "", err
	}
	leave, err := s.enter()
	if err != nil {
		return "", err
	}
	defer leave()
	p, err := s.result(id)
	if err == nil {
		if err = s.checkDir(&s.dirResult); err != nil {
			return "", &fs.PathError{Op: "result", Path: id, Err: err}
		}
		s.markUsed(id) // see Results
	}
	return p, err
}

// result is Result for callers that have entered already. The path it
// returns leads to the result and nowhere else: result/<id> must be a
// directory (not a symlink a build step planted) and neither it nor its
// snapshot a mount point.
func (s *Store) result(id string) (string, error) {
	rel := id + "/" + snapshotName
	for _, p := range []string{id, rel} {
		var stx unix.Statx_t
		if err := unix.Statx(s.resultFd, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_INO, &stx); err != nil {
			return "", &fs.PathError{Op: "result", Path: id, Err: err}
		}
		if stx.Mode&unix.S_IFMT != unix.S_IFDIR || p == rel && stx.Ino != ioctl.BTRFS_FIRST_FREE_OBJECTID {
			return "", &fs.PathError{Op: "result", Path: id, Err: fmt.Errorf("%s is not a result: %w", p, fs.ErrNotExist)}
		}
		if stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 {
			return "", &fs.PathError{Op: "result", Path: id, Err: fmt.Errorf("a mount hides %s (Open detaches it): %w", p, unix.EXDEV)}
		}
	}
	return filepath.Join(s.root, resultDir, rel), nil
}

// resultExists is the cheap check Build makes first; the rename that
// publishes a result never replaces anything anyway.
func (s *Store) resultExists(id string) bool {
	var st unix.Stat_t
	return unix.Fstatat(s.resultFd, id+"/"+snapshotName, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// LogFile returns the path of the log of result id if the result exists,
// else that of the build of id in progress (which may not exist yet). It
// does not check that the file exists, but that the path leads to the
// store's result or work directory, as Result does (ErrWorkReplaced when
// it cannot be made to).
func (s *Store) LogFile(id string) (string, error) {
	if err := validID(id); err != nil {
		return "", err
	}
	leave, err := s.enter()
	if err != nil {
		return "", err
	}
	defer leave()
	if p, err := s.result(id); err == nil {
		if err := s.checkDir(&s.dirResult); err != nil {
			return "", &fs.PathError{Op: "log", Path: id, Err: err}
		}
		return filepath.Join(p, "log"), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	s.mu.Lock()
	b, ok := s.running[id]
	s.mu.Unlock()
	if !ok {
		return "", &fs.PathError{Op: "log", Path: id, Err: fs.ErrNotExist}
	}
	if !leadsTo(b.path, b.id) {
		// A mount or symlink on result-tmp is repaired; one a step put
		// on its own work directory is its own business.
		if err := s.checkDir(&s.dirResultTmp); err != nil || !leadsTo(b.path, b.id) {
			return "", &fs.PathError{Op: "log", Path: id, Err: fmt.Errorf("%w: %s does not lead to the build's work directory", ErrWorkReplaced, b.path)}
		}
	}
	return filepath.Join(b.path, "log"), nil
}

// Delete removes result id; an absent result is not an error. The result
// disappears atomically; its space is freed in the background (see
// CompleteDeletes). Nested subvolumes in it are deleted too. A build that
// is snapshotting id as its base finishes that snapshot first.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	unlock := s.lockResult(id, false)
	trash, err := "", s.failAt("rename-delete") // a test's injected failure of the rename
	if err == nil {
		trash, err = s.moveToTmp(s.resultFd, id, s.resultTmpFd, "d")
	}
	if errors.Is(err, unix.ENOSPC) {
		// A full filesystem can refuse the rename (it needs metadata
		// space) but not a subvolume delete or rmdir, which may use
		// the global reserve: delete in place, which frees space.
		err = s.deleteInPlace(id)
		trash = ""
		if err == nil {
			s.log.V(1).Info("result deleted in place: no space to rename it away", "id", id)
		}
	}
	unlock()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("btrstore: delete %s: %w", id, err)
	}
	s.log.V(1).Info("result deleted", "id", id)
	s.dropSpare(id)
	if trash == "" {
		return nil
	}
	if err := s.removeEntry(s.resultTmpFd, resultTmpDir, trash); err != nil {
		return fmt.Errorf("btrstore: delete %s: result gone, but freeing it failed (Open retries): %w", id, err)
	}
	return nil
}

// deleteInPlace deletes result id where it is, its snapshot first (at
// once, atomically) and then its directory, for when it cannot be renamed
// away. A crash in between leaves an empty result/<id>, which is no
// result (Result says so) and which Open removes.
func (s *Store) deleteInPlace(id string) error {
	fd, err := openDirAt(s.resultFd, id)
	if err != nil {
		return err
	}
	err = ioctl.DeleteSubvolumeAt(fd, snapshotName, 0)
	unix.Close(fd)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := unix.Unlinkat(s.resultFd, id, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return s.removeEntry(s.resultFd, resultDir, id)
	}
	return nil
}

// CompleteDeletes returns once the kernel has cleaned every deleted
// subvolume of the filesystem, so that FreeSpace is accurate. It forces a
// transaction commit rather than waiting for the periodic one, and returns
// ctx.Err() if ctx ends first.
//
// Without CAP_SYS_ADMIN on a kernel before 6.13 (no SUBVOL_SYNC_WAIT) the
// cleaner cannot be seen: it commits twice and returns. Then the space of
// the files in what this store deleted is free (rootless deletes remove
// files one by one, and the commit releases them), but the emptied
// subvolumes' own trees may still await the cleaner, and subvolumes that
// other programs deleted are not waited for.
func (s *Store) CompleteDeletes(ctx context.Context) error {
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	// On a read-only filesystem the kernel does not clean deleted
	// subvolumes, and waiting would never end: stop once it is (or
	// becomes) read-only, with EROFS.
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.cancelIfReadOnly(ctx, cancel)
	}()
	if s.commitOnlyWait {
		err = s.completeDeletesCommitOnly(ctx)
	} else {
		err = ioctl.WaitDeleted(ctx, s.root)
	}
	cancel(nil)
	<-done
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, unix.EROFS) {
			err = cause
		}
		return fmt.Errorf("btrstore: complete deletes: %w", err)
	}
	return nil
}

// readOnlyPoll is how often CompleteDeletes checks whether the filesystem
// became read-only.
const readOnlyPoll = 20 * time.Millisecond

// cancelIfReadOnly cancels ctx with an EROFS error as soon as the
// filesystem is read-only, checking at once and then every readOnlyPoll,
// until ctx ends.
func (s *Store) cancelIfReadOnly(ctx context.Context, cancel context.CancelCauseFunc) {
	var tick *time.Ticker
	for {
		var st unix.Statfs_t
		if unix.Fstatfs(s.rootFd, &st) == nil && st.Flags&unix.ST_RDONLY != 0 {
			cancel(fmt.Errorf("the filesystem of %s is read-only, and the kernel cleans deleted subvolumes only once it is remounted read-write: %w",
				s.root, &fs.PathError{Op: "statfs", Path: s.root, Err: unix.EROFS}))
			return
		}
		if tick == nil {
			tick = time.NewTicker(readOnlyPoll)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// FreeSpace returns the percentage of the filesystem that is free, as
// obuilder defines it: 100 - 100*used/device size, the "Used" and "Device
// size" of `btrfs filesystem usage -b`.
func (s *Store) FreeSpace(ctx context.Context) (float64, error) {
	leave, err := s.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	u, err := ioctl.FilesystemUsage(s.root)
	if err != nil {
		return 0, fmt.Errorf("btrstore: free space: %w", err)
	}
	if u.DeviceSize == 0 {
		return 0, fmt.Errorf("btrstore: free space: device size 0")
	}
	return 100 - 100*float64(u.Used)/float64(u.DeviceSize), nil
}
