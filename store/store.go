package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/btrstore/btrstore/cache"
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
	lockName     = ".btrstore.lock"
)

// ErrClosed is returned by the methods of a closed Store.
var ErrClosed = errors.New("btrstore: store is closed")

// Config configures a Store. Its zero value is the sensible default.
type Config struct {
	// Logger receives what an operator must see (V(0): repairs made by
	// Open, cleanups that failed) and the life cycle of builds and caches
	// (V(1)). Its zero value discards.
	Logger logr.Logger
}

// Owner is the owner given to a cache clone's top directory.
type Owner struct{ UID, GID int }

// Store is a build-result store on a btrfs directory. See the package
// documentation for its life cycle. All methods are safe for concurrent
// use; Close waits for running operations.
type Store struct {
	root   string
	log    logr.Logger
	report *kernel.Report

	// ops is held shared by every operation and exclusively by Close.
	ops    sync.RWMutex
	closed bool // guarded by ops

	// Open directory fds, relative to which everything is done.
	rootFd, resultFd, resultTmpFd, cacheFd, cacheTmpFd int
	lockFd                                             int

	seq     atomic.Uint64 // names of temporary entries
	builds  cache.Table   // one Build per id at a time
	results rwLocks       // shared: snapshotting as a base; exclusive: Delete
	caches  cache.Table   // per cache name: lock and generation

	mu      sync.Mutex        // guards running
	running map[string]string // id -> work dir of builds in progress
}

// Open opens the store at root, a directory on btrfs, creating its
// directories if missing and repairing whatever a killed process left (see
// the package documentation). A root is used by one Store at a time: a
// second Open, in this process or another, fails until Close.
//
// Privilege: deleting subvolumes needs CAP_SYS_ADMIN or the
// user_subvol_rm_allowed mount option; waiting for cleanup needs
// CAP_SYS_ADMIN or Linux 6.13. Open checks both and fails with an error that
// says what is missing and how to get it (errors.Is(err, fs.ErrPermission)).
// Kernel: 4.18 (GET_SUBVOL_INFO).
func Open(ctx context.Context, root string, cfg Config) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	r := kernel.Check(abs)
	for _, check := range []func() error{r.CanUseBtrfs, r.CanDeleteSubvolumes, r.CanWaitDeleted} {
		if err := check(); err != nil {
			return nil, fmt.Errorf("btrstore: open %s: %w", abs, err)
		}
	}
	s := &Store{root: abs, log: cfg.Logger, report: r, running: map[string]string{},
		rootFd: -1, resultFd: -1, resultTmpFd: -1, cacheFd: -1, cacheTmpFd: -1, lockFd: -1}
	if err := s.openDirs(); err != nil {
		s.closeFds()
		return nil, fmt.Errorf("btrstore: open %s: %w", abs, err)
	}
	if err := s.repair(ctx); err != nil {
		s.closeFds()
		return nil, fmt.Errorf("btrstore: open %s: repair: %w", abs, err)
	}
	s.log.V(1).Info("store opened", "root", abs)
	return s, nil
}

func (s *Store) openDirs() error {
	var err error
	if s.rootFd, err = openDirAt(unix.AT_FDCWD, s.root); err != nil {
		return err
	}
	if err := ioctl.CheckBtrfs(s.rootFd); err != nil {
		return &fs.PathError{Op: "statfs", Path: s.root, Err: err}
	}
	s.lockFd, err = unix.Openat(s.rootFd, lockName, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return &fs.PathError{Op: "open", Path: lockName, Err: err}
	}
	if err := unix.Flock(s.lockFd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if err == unix.EWOULDBLOCK {
			return fmt.Errorf("another Store has %s open (lock %s held)", s.root, lockName)
		}
		return &fs.PathError{Op: "flock", Path: lockName, Err: err}
	}
	for _, d := range []struct {
		name string
		fd   *int
	}{{resultDir, &s.resultFd}, {resultTmpDir, &s.resultTmpFd}, {stateDir, nil}, {cacheDir, &s.cacheFd}, {cacheTmpDir, &s.cacheTmpFd}} {
		if err := unix.Mkdirat(s.rootFd, d.name, 0o755); err != nil && err != unix.EEXIST {
			return &fs.PathError{Op: "mkdirat", Path: d.name, Err: err}
		}
		if d.fd != nil {
			if *d.fd, err = openDirAt(s.rootFd, d.name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Store) closeFds() {
	for _, fd := range []*int{&s.resultFd, &s.resultTmpFd, &s.cacheFd, &s.cacheTmpFd, &s.rootFd, &s.lockFd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// Close waits for running operations, then releases the store. Methods
// called afterwards return ErrClosed. A second Close is a no-op.
func (s *Store) Close() error {
	s.ops.Lock()
	defer s.ops.Unlock()
	if !s.closed {
		s.closed = true
		s.closeFds() // closing lockFd releases the flock
	}
	return nil
}

// enter marks the start of an operation; the returned function its end.
func (s *Store) enter() (leave func(), err error) {
	s.ops.RLock()
	if s.closed {
		s.ops.RUnlock()
		return nil, ErrClosed
	}
	return s.ops.RUnlock, nil
}

// Root returns the store's root directory (absolute).
func (s *Store) Root() string { return s.root }

// StateDir returns root/state, a directory the store leaves to the caller
// (for its database).
func (s *Store) StateDir() string { return filepath.Join(s.root, stateDir) }

func (s *Store) tmpName(prefix string) string {
	return prefix + strconv.FormatUint(s.seq.Add(1), 10)
}

// Result returns the path of result id, a read-only subvolume, or an error
// matching fs.ErrNotExist when there is none. It is O(1): one fstatat.
func (s *Store) Result(id string) (string, error) {
	if err := validID(id); err != nil {
		return "", err
	}
	leave, err := s.enter()
	if err != nil {
		return "", err
	}
	defer leave()
	return s.result(id)
}

// result is Result for callers that have entered already: entering twice
// could deadlock against a waiting Close (sync.RWMutex).
func (s *Store) result(id string) (string, error) {
	var st unix.Stat_t
	rel := id + "/" + snapshotName
	if err := unix.Fstatat(s.resultFd, rel, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return "", &fs.PathError{Op: "result", Path: id, Err: err}
	}
	return filepath.Join(s.root, resultDir, rel), nil
}

// LogFile returns the path of the log of result id if the result exists,
// else that of the build of id in progress (which may not exist yet). It
// does not check that the file exists.
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
		return filepath.Join(p, "log"), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	s.mu.Lock()
	work, ok := s.running[id]
	s.mu.Unlock()
	if !ok {
		return "", &fs.PathError{Op: "log", Path: id, Err: fs.ErrNotExist}
	}
	return filepath.Join(work, "log"), nil
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
	trash := s.tmpName("d")
	unlock := s.results.lock(id, false)
	err = moveNoReplace(s.resultFd, id, s.resultTmpFd, trash)
	unlock()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("btrstore: delete %s: %w", id, err)
	}
	s.log.V(1).Info("result deleted", "id", id)
	if err := removeEntry(s.resultTmpFd, trash); err != nil {
		return fmt.Errorf("btrstore: delete %s: result gone, but freeing it failed (Open retries): %w", id, err)
	}
	return nil
}

// CompleteDeletes returns once the kernel has cleaned every deleted
// subvolume of the filesystem, so that FreeSpace is accurate. It forces a
// transaction commit rather than waiting for the periodic one, and returns
// ctx.Err() if ctx ends first.
func (s *Store) CompleteDeletes(ctx context.Context) error {
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := ioctl.WaitDeleted(ctx, s.root); err != nil {
		return fmt.Errorf("btrstore: complete deletes: %w", err)
	}
	return nil
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
