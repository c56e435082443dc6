package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// Regression tests for issue 9, items 9-17 (the store part): found by an
// adversarial suite run against the store; each case here failed before
// its fix.

func init() {
	btrfstest.Register("store-trust-root-owned", trustRootOwnedChild)
}

// within runs f and fails the test if it has not returned after d: a
// hang is reported rather than waited for. It returns whether f returned.
func within(t *testing.T, d time.Duration, what string, f func()) bool {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		t.Errorf("%s: still running after %v (hang)", what, d)
		return false
	}
}

// Item 9: a step that calls into the store while another goroutine has
// called Close gets ErrClosed instead of hanging; Close waits for the
// running Build and new calls fail with ErrClosed.
func TestTrustCloseFromStepNoDeadlock(t *testing.T) {
	e := newHardEnv(t, "")
	e.keep()
	closed := make(chan error, 1)
	var inStep error
	buildErr := make(chan error, 1)
	go func() {
		buildErr <- e.s.Build(t.Context(), "x", "", func(ctx context.Context, dir string) error {
			go func() { closed <- e.s.Close() }()
			time.Sleep(200 * time.Millisecond) // Close is waiting now
			_, inStep = e.s.Result("keep-a")
			if _, err := e.s.Cache(ctx, "c", Owner{}); !errors.Is(err, ErrClosed) {
				return fmt.Errorf("Cache in a step after Close: %v, want ErrClosed", err)
			}
			if _, err := e.s.LogFile("x"); !errors.Is(err, ErrClosed) {
				return fmt.Errorf("LogFile in a step after Close: %v, want ErrClosed", err)
			}
			return nil
		})
	}()
	select {
	case err := <-buildErr:
		if err != nil {
			t.Errorf("Build: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Build whose step calls Result after Close: hangs (deadlock)")
	}
	if !errors.Is(inStep, ErrClosed) {
		t.Errorf("Result in a step after Close = %v, want ErrClosed", inStep)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close: hangs")
	}
	if _, err := e.s.Result("keep-a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Result after Close = %v, want ErrClosed", err)
	}
	if err := e.s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	e.open()
	e.checkKept()
	if _, err := e.s.Result("x"); err != nil {
		t.Errorf("the build running during Close was not published: %v", err)
	}
}

// Item 9: Close waits for a running Build, and a second Close made
// meanwhile waits too.
func TestTrustCloseWaitsForBuild(t *testing.T) {
	e := newHardEnv(t, "")
	release := make(chan struct{})
	started := make(chan struct{})
	buildErr := make(chan error, 1)
	go func() {
		buildErr <- e.s.Build(t.Context(), "slow", "", func(ctx context.Context, dir string) error {
			close(started)
			<-release
			return writeFile(dir, "f", "slow")
		})
	}()
	<-started
	closed := make(chan struct{}, 2)
	for range 2 {
		go func() { e.s.Close(); closed <- struct{}{} }()
	}
	select {
	case <-closed:
		t.Error("Close returned while a Build was running")
	case <-time.After(200 * time.Millisecond):
	}
	if err := e.s.Build(t.Context(), "new", "", func(context.Context, string) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Build after Close began = %v, want ErrClosed", err)
	}
	close(release)
	if err := <-buildErr; err != nil {
		t.Errorf("running Build: %v", err)
	}
	for range 2 {
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("Close hangs after the Build returned")
		}
	}
}

// Item 10: a FIFO, a symlink or a directory at root/.btrstore.lock does
// not hang Open nor lead it elsewhere: it is replaced by the lock file.
func TestTrustLockFileNotRegular(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("not the store's"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		plant func(p string) error
	}{
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o644) }},
		{"symlink", func(p string) error { return os.Symlink(outside, p) }},
		{"dangling symlink", func(p string) error { return os.Symlink(outside+"-missing", p) }},
		{"directory", func(p string) error { return os.MkdirAll(filepath.Join(p, "sub"), 0o755) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newHardEnv(t, "")
			e.keep()
			if err := e.s.Close(); err != nil {
				t.Fatal(err)
			}
			lock := filepath.Join(e.root, lockName)
			if err := os.Remove(lock); err != nil {
				t.Fatal(err)
			}
			if err := tc.plant(lock); err != nil {
				t.Fatal(err)
			}
			var s *Store
			var err error
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if !within(t, 5*time.Second, "Open with a "+tc.name+" at the lock", func() { s, err = Open(ctx, e.root, Config{Logger: e.log.logger()}) }) {
				// Unblock the reader of the FIFO so that the test ends.
				if fd, oerr := unix.Open(lock, unix.O_WRONLY|unix.O_NONBLOCK, 0); oerr == nil {
					unix.Close(fd)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open with a %s at the lock: %v", tc.name, err)
			}
			e.s = s
			t.Cleanup(func() { s.Close() })
			var st unix.Stat_t
			if err := unix.Lstat(lock, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
				t.Errorf("lock after Open: mode %o, %v; want a regular file", st.Mode, err)
			}
			if b, err := os.ReadFile(outside); err != nil || string(b) != "not the store's" {
				t.Errorf("the symlink's target changed: %q, %v", b, err)
			}
			if _, err := Open(t.Context(), e.root, Config{}); !errors.Is(err, ErrLocked) {
				t.Errorf("second Open after the repair = %v, want ErrLocked", err)
			}
			if e.log.count("lock") == 0 {
				t.Error("the repair of the lock file was not logged")
			}
			e.checkKept()
		})
	}
}

// Item 11: a mount or a symlink that a step plants over root/result,
// root/result-tmp or the cache directories does not make Result, LogFile,
// CacheLease.Path or a later build's directory lead elsewhere.
func TestTrustStoreDirsReplaced(t *testing.T) {
	attacker := t.TempDir()
	if err := os.MkdirAll(filepath.Join(attacker, "real", "snapshot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(attacker, "real/snapshot/f", "attacker"); err != nil {
		t.Fatal(err)
	}
	tmpfsOver := func(p string) error {
		if err := unix.Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(p, "real", "snapshot"), 0o755); err != nil {
			return err
		}
		return writeFile(p, "real/snapshot/f", "attacker")
	}
	symlinkOver := func(p string) error {
		if err := os.Rename(p, p+"-moved"); err != nil {
			return err
		}
		return os.Symlink(attacker, p)
	}
	for _, tc := range []struct {
		name  string
		dir   string
		plant func(p string) error
	}{
		{"mount over result", resultDir, tmpfsOver},
		{"symlink over result", resultDir, symlinkOver},
		{"mount over result-tmp", resultTmpDir, tmpfsOver},
		{"mount over cache-tmp", cacheTmpDir, tmpfsOver},
		{"symlink over cache-tmp", cacheTmpDir, symlinkOver},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newHardEnv(t, "")
			e.build("real", "", func(dir string) error { return writeFile(dir, "f", "real") })
			// The planting step fails or succeeds: either way, what it
			// planted must not outlive the build's cleanup.
			err := e.s.Build(t.Context(), "evil", "", func(_ context.Context, dir string) error {
				return tc.plant(filepath.Join(e.root, tc.dir))
			})
			t.Logf("planting build: %v", err)
			if p, err := e.s.Result("real"); err == nil {
				if got, rerr := os.ReadFile(filepath.Join(p, "f")); rerr != nil || string(got) != "real" {
					t.Errorf("Result(real) = %s, serving %q (%v); want the store's result", p, got, rerr)
				}
			} else {
				t.Logf("Result(real): %v", err)
			}
			if p, err := e.s.LogFile("real"); err == nil && !strings.HasPrefix(p, e.root+"/"+resultDir+"/") {
				t.Errorf("LogFile = %s", p)
			}
			// A later build's step writes through the path it gets: the
			// result must hold what it wrote, or the build must fail.
			err = e.s.Build(t.Context(), "later", "", func(_ context.Context, dir string) error { return writeFile(dir, "f", "later") })
			if err == nil {
				p, err := e.s.Result("later")
				if err != nil {
					t.Fatalf("later build succeeded but Result: %v", err)
				}
				var st unix.Stat_t
				if got, rerr := os.ReadFile(filepath.Join(p, "f")); rerr != nil || string(got) != "later" {
					t.Errorf("later build reported success, but its result holds %q (%v)", got, rerr)
				} else if unix.Stat(p, &st) != nil || st.Ino != ioctl.BTRFS_FIRST_FREE_OBJECTID {
					t.Errorf("later result %s is not a subvolume", p)
				}
			} else {
				t.Logf("later build: %v", err)
			}
			lease, err := e.s.Cache(t.Context(), "c", Owner{})
			if err == nil {
				werr := writeFile(lease.Path(), "f", "cached")
				if err := lease.Release(t.Context()); err == nil && werr == nil {
					l2, err := e.s.Cache(t.Context(), "c", Owner{})
					if err != nil {
						t.Fatal(err)
					}
					if got, rerr := os.ReadFile(filepath.Join(l2.Path(), "f")); rerr != nil || string(got) != "cached" {
						t.Errorf("a release reported success, but the cache holds %q (%v)", got, rerr)
					}
					l2.Release(t.Context())
				}
			} else {
				t.Logf("Cache: %v", err)
			}
			if m := hardMountsBelow(t, e.root); len(m) > 0 {
				t.Errorf("mounts left below the root: %v", m)
				hardDetachAll(t, e.root)
			}
			e.reopen()
		})
	}
}

// Item 12: a step that leaves a 20,500-level directory chain beside its
// work directory: removal holds a bounded number of descriptors (here the
// process may open 1024 more than it has), and no error or log line
// carries the whole path.
func TestTrustDeepDirectoryChain(t *testing.T) {
	const depth = 20500
	e := newHardEnv(t, "")
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(len(open)) + 1024
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &lim) })
	chain := func(dir string) error {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		for range depth {
			if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
				unix.Close(fd)
				return err
			}
			nfd, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
			unix.Close(fd)
			if err != nil {
				return err
			}
			fd = nfd
		}
		return unix.Close(fd)
	}
	err = e.s.Build(t.Context(), "deep", "", func(_ context.Context, dir string) error {
		return chain(filepath.Dir(dir))
	})
	if err != nil {
		msg := err.Error()
		t.Errorf("Build leaving a deep chain beside its work dir: %.300s (%d bytes)", msg, len(msg))
	}
	if names := entries(t, filepath.Join(e.root, resultTmpDir)); len(names) != 0 {
		t.Errorf("result-tmp not empty: %v", names)
	}
	// And at Open: a chain left in result-tmp is removed too.
	if err := chain(filepath.Join(e.root, resultTmpDir)); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	e.open()
	e.noTmp()
	for _, line := range e.log.lines {
		if len(line) > 1024 {
			t.Errorf("a log line of %d bytes: %.200s...", len(line), line)
		}
	}
}

// Item 12: an error that names many entries that could not be removed
// stays short.
func TestTrustRemoveErrorCapped(t *testing.T) {
	e := newHardEnv(t, "")
	dir := filepath.Join(e.root, resultTmpDir, "wide")
	for i := range 200 {
		p := filepath.Join(dir, fmt.Sprintf("%0200d", i))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeFile(p, "f", ""); err != nil {
			t.Fatal(err)
		}
	}
	// On a read-only filesystem nothing there can be removed.
	e.fs.Remount(t, unix.MS_RDONLY, "")
	err := e.s.removeEntry(e.s.resultTmpFd, resultTmpDir, "wide")
	e.fs.Remount(t, 0, "")
	if err == nil {
		t.Fatal("removing on a read-only filesystem succeeded")
	}
	if n := len(err.Error()); n > 4096 {
		t.Errorf("removal error of %d bytes: %.300s...", n, err.Error())
	}
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("capped error does not match EROFS: %.300s", err)
	}
}

// Item 13: a work subvolume that a step moved to a name ending in
// " (deleted)" is found there and removed, as any moved one.
func TestTrustMovedToDeletedSuffix(t *testing.T) {
	e := newHardEnv(t, "")
	moved := filepath.Join(e.root, "moved (deleted)")
	err := e.s.Build(t.Context(), "x", "", func(_ context.Context, dir string) error {
		if err := writeFile(dir, "f", "x"); err != nil {
			return err
		}
		return os.Rename(dir, moved)
	})
	if !errors.Is(err, ErrWorkReplaced) {
		t.Errorf("Build whose step moved its work dir away = %v, want ErrWorkReplaced", err)
	}
	if _, serr := os.Lstat(moved); serr == nil {
		t.Errorf("the work subvolume moved to %q is left there (Build: %v)", moved, err)
	}
	if got := subvolumes(t, e.root); len(got) != 0 {
		t.Errorf("subvolumes left: %v", got)
	}
}

// Item 13: fdPath tells a deleted directory from one whose name ends in
// " (deleted)".
func TestTrustFdPathDeleted(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"plain", "x (deleted)"} {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := fdPath(fd); !ok || got != p {
			t.Errorf("fdPath(%s) = %q, %v", name, got, ok)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if got, ok := fdPath(fd); ok {
			t.Errorf("fdPath of removed %s = %q, true", name, got)
		}
		unix.Close(fd)
	}
}

// Item 14: Open refuses a non-empty directory that is not a store, and
// deletes nothing in it; Open("") is invalid.
func TestTrustOpenNotAStore(t *testing.T) {
	fsys := btrfstest.New(t)
	root := filepath.Join(fsys.Path, "mine")
	files := map[string]string{"result/notes.txt": "mine", "cache/x": "mine too", "README": "hello"}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeFile(root, name, content); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(t.Context(), root, Config{})
	if err == nil {
		s.Close()
		t.Error("Open of a directory that is not a store succeeded")
	} else if !errors.Is(err, ErrNotStore) {
		t.Errorf("Open of a directory that is not a store = %v, want ErrNotStore", err)
	} else {
		t.Logf("Open: %v", err)
	}
	for name, content := range files {
		if got, err := os.ReadFile(filepath.Join(root, name)); err != nil || string(got) != content {
			t.Errorf("%s after Open: %q, %v; want %q", name, got, err, content)
		}
	}
	if names := entries(t, root); len(names) != 3 {
		t.Errorf("Open changed the directory: %v", names)
	}
	if s, err := Open(t.Context(), "", Config{}); !errors.Is(err, fs.ErrInvalid) {
		if err == nil {
			s.Close()
		}
		t.Errorf(`Open("") = %v, want fs.ErrInvalid`, err)
	}
}

// Item 14: a new store is marked; a store made by the previous version
// (its directories and lock, no marker) still opens, and is marked then.
func TestTrustStoreMarker(t *testing.T) {
	e := newHardEnv(t, "store")
	e.keep()
	marker := filepath.Join(e.root, markerName)
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("new store has no marker: %v", err)
	}
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	e.open() // as left by the previous version
	e.checkKept()
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("store of the previous version not marked by Open: %v", err)
	}
	// A marker of a later format is refused.
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, []byte(markerPrefix+"99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(t.Context(), e.root, Config{}); err == nil {
		s.Close()
		t.Error("Open of a store of format 99 succeeded")
	} else if !strings.Contains(err.Error(), "99") {
		t.Errorf("Open of a store of format 99: %v", err)
	}
}

// Item 15: temporary names are not reused by a later Open.
func TestTrustTmpNamesUniqueAcrossOpens(t *testing.T) {
	e := newHardEnv(t, "")
	seen := map[string]bool{}
	for i := range 3 {
		var work string
		e.build(fmt.Sprint("r", i), "", func(dir string) error { work = dir; return nil })
		lease, err := e.s.Cache(t.Context(), "c", Owner{})
		if err != nil {
			t.Fatal(err)
		}
		clone := lease.Path()
		lease.Release(t.Context())
		for _, p := range []string{work, clone} {
			if seen[p] {
				t.Errorf("Open %d reuses the temporary name %s", i, p)
			}
			seen[p] = true
		}
		if err := e.s.Close(); err != nil {
			t.Fatal(err)
		}
		e.open()
	}
}

// Item 16: the errors of smaller misuses.
func TestTrustSmallErrors(t *testing.T) {
	e := newHardEnv(t, "store")
	if s, err := Open(t.Context(), e.root, Config{}); !errors.Is(err, ErrLocked) {
		if err == nil {
			s.Close()
		}
		t.Errorf("second Open = %v, want ErrLocked", err)
	}
	before := entries(t, filepath.Join(e.root, cacheDir))
	// Ids past 2³²-2 exist only where int has 64 bits.
	const big = int64(1<<32 - 1)
	bad := []Owner{{-1, 0}, {0, -1}}
	if strconv.IntSize == 64 {
		for _, id := range []int64{big, big + 1, big + 6} {
			bad = append(bad, Owner{int(id), 0}, Owner{0, int(id)})
		}
	}
	for _, o := range bad {
		if l, err := e.s.Cache(t.Context(), "c", o); !errors.Is(err, fs.ErrInvalid) {
			if err == nil {
				l.Release(t.Context())
			}
			t.Errorf("Cache with %+v = %v, want fs.ErrInvalid", o, err)
		}
	}
	if after := entries(t, filepath.Join(e.root, cacheDir)); len(after) != len(before) {
		t.Errorf("refused Cache changed cache/: %v -> %v", before, after)
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("Build with a nil function panics: %v", r)
			}
		}()
		if err := e.s.Build(t.Context(), "nil", "", nil); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Build with a nil function = %v, want fs.ErrInvalid", err)
		}
	}()
	e.noTmp()

	// A symlinked root is resolved.
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(e.root, link); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), link, Config{})
	if err != nil {
		t.Fatalf("Open of a symlink to a store: %v", err)
	}
	defer s.Close()
	if s.Root() != e.root {
		t.Errorf("Root() of a store opened through a symlink = %s, want %s", s.Root(), e.root)
	}
}

// Item 16: a root the process cannot write into gets an error that says
// what to do.
func TestTrustRootOwnedRoot(t *testing.T) {
	fsys := btrfstest.New(t) // owned by root; the child runs as privUID
	out, err := btrfstest.RunAs(t, btrfstest.Cred{UID: privUID, GID: privGID, Caps: []uintptr{unix.CAP_SYS_ADMIN}},
		"store-trust-root-owned", fsys.Path)
	t.Logf("child said:\n%s", out)
	if err != nil {
		t.Error(err)
	}
}

func trustRootOwnedChild(args []string) error {
	s, err := Open(context.Background(), args[0], Config{})
	if err == nil {
		s.Close()
		return errors.New("Open of a root-owned root as another user succeeded")
	}
	fmt.Println(err)
	var errs []error
	if !errors.Is(err, fs.ErrPermission) {
		errs = append(errs, fmt.Errorf("error does not match fs.ErrPermission: %w", err))
	}
	for _, want := range []string{"chown", "uid 0"} {
		if !strings.Contains(err.Error(), want) {
			errs = append(errs, fmt.Errorf("error does not say %q: %w", want, err))
		}
	}
	return errors.Join(errs...)
}

// Item 17: Open on another filesystem says so once.
func TestTrustNotBtrfsSaysItOnce(t *testing.T) {
	dir := t.TempDir()
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil || uint32(sfs.Type) == unix.BTRFS_SUPER_MAGIC {
		t.Skipf("temp dir is on btrfs (%v)", err)
	}
	_, err := Open(t.Context(), dir, Config{})
	if !errors.Is(err, ioctl.ErrNotBtrfs) {
		t.Fatalf("Open on another filesystem = %v, want ErrNotBtrfs", err)
	}
	if n := strings.Count(err.Error(), "not btrfs"); n != 1 {
		t.Errorf("error says \"not btrfs\" %d times: %v", n, err)
	}
}

// Item 17: store-side failures are logged like step failures, with
// durations for builds and releases; nested subvolumes dropped from a
// result are logged.
func TestTrustLogging(t *testing.T) {
	e := newHardEnv(t, "")
	e.build("nested", "", func(dir string) error { return ioctl.CreateSubvolume(filepath.Join(dir, "sub")) })
	if e.log.count("nested subvolume", "nested") == 0 {
		t.Error("a nested subvolume left out of a result was not logged")
	}
	if e.log.count("build done", "duration") == 0 {
		t.Error("build done logged without a duration")
	}
	err := e.s.Build(t.Context(), "replaced", "", func(_ context.Context, dir string) error {
		if err := os.Rename(dir, dir+"-away"); err != nil {
			return err
		}
		return os.Symlink("/", dir)
	})
	if !errors.Is(err, ErrWorkReplaced) {
		t.Fatalf("Build replacing its work dir = %v", err)
	}
	if e.log.count("build failed", "replaced", "duration") == 0 {
		t.Error("a store-side build failure (ErrWorkReplaced) was not logged with its duration")
	}
	lease, err := e.s.Cache(t.Context(), "c", Owner{})
	if err != nil {
		t.Fatal(err)
	}
	// A change, so that the release saves (an unchanged clone is kept).
	if err := writeFile(lease.Path(), "f", "x"); err != nil {
		t.Fatal(err)
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e.log.count("cache saved", "duration") == 0 {
		t.Error("cache release logged without a duration")
	}
}

// Item 12: the bounded walk removes a tree that is both deep and wide,
// with files, symlinks and nested subvolumes at every level.
func TestTrustRemoveDeepWideTree(t *testing.T) {
	e := newHardEnv(t, "")
	top := filepath.Join(e.root, resultTmpDir, "tree")
	var mk func(dir string, depth int)
	mk = func(dir string, depth int) {
		must(t, os.MkdirAll(dir, 0o755))
		must(t, writeFile(dir, "f", "x"))
		must(t, os.Symlink("/", filepath.Join(dir, "l")))
		if depth%20 == 0 {
			must(t, ioctl.CreateSubvolume(filepath.Join(dir, "sub")))
		}
		if depth == 0 {
			return
		}
		mk(filepath.Join(dir, "a"), depth-1)
		if depth%25 == 0 {
			mk(filepath.Join(dir, "b"), depth-1)
		}
	}
	mk(top, 100)
	if err := e.s.removeEntry(e.s.resultTmpFd, resultTmpDir, "tree"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(top); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tree left: %v", err)
	}
	if got := subvolumes(t, e.root); len(got) != 0 {
		t.Errorf("subvolumes left: %v", got)
	}
}

// Item 11: a mount planted over cache-tmp while a lease is out: what was
// written through its path is not saved as the cache, and the mount goes.
func TestTrustLeasePathMountedOver(t *testing.T) {
	e := newHardEnv(t, "")
	l, err := e.s.Cache(t.Context(), "c", Owner{})
	must(t, err)
	must(t, writeFile(l.Path(), "f", "in the clone"))
	must(t, unix.Mount("tmpfs", filepath.Join(e.root, cacheTmpDir), "tmpfs", 0, "size=1m"))
	must(t, os.MkdirAll(l.Path(), 0o755))
	must(t, writeFile(l.Path(), "f", "in the tmpfs"))
	if err := l.Release(t.Context()); !errors.Is(err, ErrWorkReplaced) {
		t.Errorf("Release through a mounted-over path = %v, want ErrWorkReplaced", err)
	}
	if m := hardMountsBelow(t, e.root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	l, err = e.s.Cache(t.Context(), "c", Owner{})
	must(t, err)
	if _, err := os.Stat(filepath.Join(l.Path(), "f")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the cache holds f after a release whose path led elsewhere: %v", err)
	}
	must(t, l.Release(t.Context()))
	e.reopen()
}

// Item 11: LogFile of a running build, after another step mounted over
// result-tmp, leads to the build's work directory (the mount goes).
func TestTrustLogFileWhileMountedOver(t *testing.T) {
	e := newHardEnv(t, "")
	release, started := make(chan struct{}), make(chan string)
	done := make(chan error, 1)
	go func() {
		done <- e.s.Build(t.Context(), "running", "", func(_ context.Context, dir string) error {
			if err := writeFile(dir, "log", "the real log"); err != nil {
				return err
			}
			started <- dir
			<-release
			return nil
		})
	}()
	<-started
	tmp := filepath.Join(e.root, resultTmpDir)
	must(t, unix.Mount("tmpfs", tmp, "tmpfs", 0, "size=1m"))
	p, err := e.s.LogFile("running")
	if err != nil {
		t.Errorf("LogFile: %v", err)
	} else if got, err := os.ReadFile(p); err != nil || string(got) != "the real log" {
		t.Errorf("LogFile = %s, holding %q (%v); want the build's log", p, got, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Logf("Build: %v", err)
	}
	hardDetachAll(t, e.root)
}
