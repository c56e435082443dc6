package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/internal/mountinfo"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"golang.org/x/sys/unix"
)

// The store's test helpers: a store on a fresh filesystem, files and
// listings, error checks, and the helpers of the hardening tests (full
// disk, read-only filesystem, build steps that attack the store). Each
// hardening scenario checks the same things afterwards: the store's other
// results are intact, nothing outside the root changed (hardCanary), no
// mount is left below the root, and the invariants hold after Close and
// Open (hardEnv.reopen).

// newStore opens a store on a fresh btrfs and closes it at the end.
func newStore(t testing.TB, opts ...btrfstest.Option) (*Store, *btrfstest.FS) {
	t.Helper()
	fsys := btrfstest.New(t, opts...)
	s, err := Open(context.Background(), fsys.Path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, fsys
}

func writeFile(dir, name, content string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// subvolumes lists every subvolume below the store's root.
func subvolumes(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	for info, err := range ioctl.Subvolumes(root) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Path)
	}
	return out
}

// entries lists a directory, sorted.
func entries(t testing.TB, dir string) []string {
	t.Helper()
	names, err := invNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// assertNoTmp checks that result-tmp and cache-tmp are empty but for
// spare work subvolumes.
func assertNoTmp(t testing.TB, s *Store) {
	t.Helper()
	for _, d := range []string{resultTmpDir, cacheTmpDir} {
		if names := tmpEntries(t, filepath.Join(s.Root(), d)); len(names) != 0 {
			t.Errorf("%s not empty: %v", d, names)
		}
	}
}

// tmpEntries lists dir (result-tmp or cache-tmp) but for spare work
// subvolumes (see spare.go), which a store holds between builds.
func tmpEntries(t testing.TB, dir string) []string {
	t.Helper()
	names := entries(t, dir)
	if filepath.Base(dir) != resultTmpDir {
		return names
	}
	return slices.DeleteFunc(names, isSpare)
}

// waitSpares waits until the spares s is making are made and those it
// evicted removed, so that no snapshot or delete is in flight (a
// read-only remount would fail with EBUSY).
func waitSpares(s *Store) {
	s.spares.mu.Lock()
	sps := slices.Collect(maps.Values(s.spares.by))
	evicting := slices.Collect(maps.Keys(s.spares.evicting))
	s.spares.mu.Unlock()
	for _, sp := range sps {
		<-sp.done
	}
	for _, ch := range evicting {
		<-ch
	}
}

// isSpare reports whether name in result-tmp is a spare's directory.
func isSpare(name string) bool { return strings.HasPrefix(name, "s") }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fillData writes 8 MiB files into dir until the filesystem is full and
// returns the error that says so.
func fillData(dir string) error {
	buf := make([]byte, 8<<20)
	for i := 0; ; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("data%d", i)))
		if err != nil {
			return err
		}
		_, err = f.Write(buf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// fillMetadata makes directories with large extended attributes in dir,
// which take metadata space only, until there is none.
func fillMetadata(dir string) error {
	val := make([]byte, 3000)
	for i := 0; ; i++ {
		p := filepath.Join(dir, fmt.Sprintf("m%d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		for j := range 4 {
			if err := unix.Setxattr(p, fmt.Sprintf("user.x%d", j), val, 0); err != nil {
				return &fs.PathError{Op: "setxattr", Path: p, Err: err}
			}
		}
	}
}

// wantErrno checks that err matches errno (syscall.ENOSPC, syscall.EROFS)
// and logs it.
func wantErrno(t *testing.T, errno syscall.Errno, what string, err error) {
	t.Helper()
	if !errors.Is(err, errno) {
		t.Errorf("%s = %v, want an error matching syscall.%s", what, err, unix.ErrnoName(errno))
	} else {
		t.Logf("%s (as expected): %v", what, err)
	}
}

// noBuildTmp checks that result-tmp is empty but for spares (cache-tmp
// may hold a lease).
func (e *hardEnv) noBuildTmp() {
	e.t.Helper()
	if names := tmpEntries(e.t, filepath.Join(e.root, resultTmpDir)); len(names) != 0 {
		e.t.Errorf("result-tmp not empty: %v", names)
	}
}

// cacheVersion reads file v of cache name where it is kept, and checks
// that the cache is a complete read-only subvolume.
func (e *hardEnv) cacheVersion(name string) string {
	e.t.Helper()
	p := filepath.Join(e.root, cacheDir, Escape(name))
	if msg := invCheckReadOnlySubvolume(p); msg != "" {
		e.t.Errorf("cache %s: %s", name, msg)
	}
	b, err := os.ReadFile(filepath.Join(p, "v"))
	if err != nil {
		e.t.Errorf("cache %s: %v", name, err)
	}
	return string(b)
}

// noCacheTmp checks that cache/ holds only caches.
func (e *hardEnv) noCacheTmp() {
	e.t.Helper()
	for _, n := range entries(e.t, filepath.Join(e.root, cacheDir)) {
		if !strings.HasPrefix(n, "c-") {
			e.t.Errorf("cache/ holds %s", n)
		}
	}
}

// hardLog collects what a store logs, V(0) and V(1), one line a message.
type hardLog struct {
	t     testing.TB
	mu    sync.Mutex // guards lines
	lines []string
}

func (l *hardLog) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, args)
		l.mu.Unlock()
		l.t.Logf("store log: %s", args)
	}, funcr.Options{Verbosity: 1})
}

// count returns how many lines contain every one of subs.
func (l *hardLog) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

// hardEnv is a store on a fresh filesystem, opened with a logger.
type hardEnv struct {
	t    *testing.T
	s    *Store
	fs   *btrfstest.FS
	root string
	log  *hardLog
}

// newHardEnv makes a filesystem and opens a store at its top (or at
// subdir of it, made first, if not ""). Mounts a failed test leaves below
// the filesystem are detached before it is torn down.
func newHardEnv(t *testing.T, subdir string, opts ...btrfstest.Option) *hardEnv {
	t.Helper()
	fsys := btrfstest.New(t, opts...)
	t.Cleanup(func() { hardDetachAll(t, fsys.Path) })
	root := fsys.Path
	if subdir != "" {
		root = filepath.Join(fsys.Path, subdir)
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := &hardEnv{t: t, fs: fsys, root: root, log: &hardLog{t: t}}
	e.open()
	return e
}

// open opens the store (again), closing it at the end of the test.
func (e *hardEnv) open() {
	e.t.Helper()
	s, err := Open(context.Background(), e.root, Config{Logger: e.log.logger()})
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.s = s
	e.t.Cleanup(func() { s.Close() })
}

// reopen closes the store, opens it again (which repairs), and checks the
// invariants and that no mount is left below the root.
func (e *hardEnv) reopen() {
	e.t.Helper()
	if err := e.s.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
	checkInvariants(e.t, e.root)
	if m := hardMountsBelow(e.t, e.fs.Path); len(m) > 0 {
		e.t.Errorf("mounts left below the filesystem after Open: %v", m)
	}
}

// build builds id on base with fn and fails the test on an error.
func (e *hardEnv) build(id, base string, fn func(dir string) error) {
	e.t.Helper()
	if err := e.s.Build(e.t.Context(), id, base, func(_ context.Context, dir string) error { return fn(dir) }); err != nil {
		e.t.Fatalf("Build(%s): %v", id, err)
	}
}

// keep builds two results the scenario must not lose: keep-a, and keep-b
// on it.
func (e *hardEnv) keep() {
	e.t.Helper()
	e.build("keep-a", "", func(dir string) error {
		if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
			return err
		}
		return writeFile(dir, "d/a", "kept a")
	})
	e.build("keep-b", "keep-a", func(dir string) error { return writeFile(dir, "b", "kept b") })
}

// keepWithCache is keep, plus cache c saved with "1" in its file v.
func (e *hardEnv) keepWithCache() {
	e.t.Helper()
	e.keep()
	l, err := e.s.Cache(e.t.Context(), "c", Owner{})
	must(e.t, err)
	must(e.t, writeFile(l.Path(), "v", "1"))
	must(e.t, l.Release(e.t.Context()))
}

// pendingLease leases cache c and writes "2" into the clone's file v; the
// caller releases it.
func (e *hardEnv) pendingLease() *CacheLease {
	e.t.Helper()
	l, err := e.s.Cache(e.t.Context(), "c", Owner{})
	must(e.t, err)
	must(e.t, writeFile(l.Path(), "v", "2"))
	return l
}

// checkKept checks that keep-a and keep-b are intact.
func (e *hardEnv) checkKept() {
	e.t.Helper()
	for id, files := range map[string]map[string]string{
		"keep-a": {"d/a": "kept a"},
		"keep-b": {"d/a": "kept a", "b": "kept b"},
	} {
		p, err := e.s.Result(id)
		if err != nil {
			e.t.Errorf("result %s lost: %v", id, err)
			continue
		}
		for name, want := range files {
			if got, err := os.ReadFile(filepath.Join(p, name)); err != nil || string(got) != want {
				e.t.Errorf("result %s: %s = %q, %v; want %q", id, name, got, err, want)
			}
		}
		if ro, err := ioctl.ReadOnly(p); err != nil || !ro {
			e.t.Errorf("result %s: read-only = %v, %v", id, ro, err)
		}
	}
}

// noTmp checks that result-tmp and cache-tmp are empty.
func (e *hardEnv) noTmp() {
	e.t.Helper()
	assertNoTmp(e.t, e.s)
}

// hardCanary is what lies outside the store and must stay as it is: on a
// second btrfs a file, a directory tree, a subvolume holding a file and a
// read-only one; and a directory tree on the temp filesystem.
type hardCanary struct {
	fs       *btrfstest.FS
	dir      string // a plain directory tree on the second btrfs
	sub      string // a subvolume there
	roSub    string // a read-only subvolume there
	tmp      string // a directory on another filesystem
	snapshot map[string]string
}

func newHardCanary(t *testing.T) *hardCanary {
	t.Helper()
	fsys := btrfstest.New(t, btrfstest.Size(256<<20))
	t.Cleanup(func() { hardDetachAll(t, fsys.Path) })
	c := &hardCanary{fs: fsys, dir: filepath.Join(fsys.Path, "dir"), sub: filepath.Join(fsys.Path, "sub"),
		roSub: filepath.Join(fsys.Path, "ro-sub"), tmp: t.TempDir()}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(c.dir, "inner", "deeper"), 0o755))
	must(writeFile(c.dir, "inner/deeper/file", "canary"))
	must(writeFile(fsys.Path, "top-file", "canary top"))
	must(ioctl.CreateSubvolume(c.sub))
	must(writeFile(c.sub, "file", "canary in subvolume"))
	must(os.Mkdir(filepath.Join(c.sub, "snapshot"), 0o755)) // looks like a result
	must(ioctl.Snapshot(c.sub, c.roSub, ioctl.SnapshotReadOnly))
	must(os.MkdirAll(filepath.Join(c.tmp, "a", "b"), 0o755))
	must(writeFile(c.tmp, "a/b/file", "canary in tmp"))
	c.snapshot = c.take(t)
	return c
}

// take records every entry below the canary's directories: type, mode,
// content of files, target of links.
func (c *hardCanary) take(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, top := range []string{c.fs.Path, c.tmp} {
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			v := info.Mode().String()
			switch {
			case info.Mode().IsRegular():
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				v += " " + string(b)
			case info.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				v += " -> " + target
			}
			out[p] = v
			return nil
		})
		if err != nil {
			t.Fatalf("canary: %v", err)
		}
	}
	return out
}

// check fails t if anything outside the store changed.
func (c *hardCanary) check(t *testing.T) {
	t.Helper()
	got := c.take(t)
	for _, p := range slices.Sorted(mapKeys(c.snapshot, got)) {
		if c.snapshot[p] != got[p] {
			t.Errorf("outside the store, %s changed: %q -> %q", p, c.snapshot[p], got[p])
		}
	}
	for _, p := range []string{c.sub, c.roSub} {
		if info, err := ioctl.SubvolumeInfo(p); err != nil {
			t.Errorf("canary subvolume %s: %v", p, err)
		} else if info.ReadOnly != (p == c.roSub) {
			t.Errorf("canary subvolume %s: read-only %v", p, info.ReadOnly)
		}
	}
	if m := hardMountsBelow(t, c.fs.Path); len(m) > 0 {
		t.Errorf("mounts below the canary filesystem: %v", m)
	}
}

func mapKeys(ms ...map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		seen := map[string]bool{}
		for _, m := range ms {
			for k := range m {
				if !seen[k] {
					seen[k] = true
					if !yield(k) {
						return
					}
				}
			}
		}
	}
}

// hardMountsBelow lists the mount points strictly below dir.
func hardMountsBelow(t testing.TB, dir string) []string {
	t.Helper()
	mounts, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mounts {
		if strings.HasPrefix(m.MountPoint, dir+"/") {
			out = append(out, fmt.Sprintf("%s (%s, id %d)", m.MountPoint, m.FSType, m.ID))
		}
	}
	return out
}

// hardDetachAll detaches whatever is still mounted below dir, deepest
// first, so that the fixture can unmount dir: a safety net for a failed
// test, which reports what it detached.
func hardDetachAll(t testing.TB, dir string) {
	for range 100 {
		m := hardMountsBelow(t, dir)
		if len(m) == 0 {
			return
		}
		p, _, _ := strings.Cut(m[len(m)-1], " (")
		t.Errorf("cleanup: detaching %s, left mounted below %s", p, dir)
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
	}
}

// setFlags adds inode flags (fsImmutableFl, fsAppendFl) to path.
func setFlags(path string, flags int) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	old, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(old)|flags)
	}
	if err != nil {
		return &fs.PathError{Op: "FS_IOC_SETFLAGS", Path: path, Err: err}
	}
	return nil
}

// hasFlags reports whether path has any of flags.
func hasFlags(t testing.TB, path string, flags uint32) bool {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	got, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		t.Fatal(err)
	}
	return got&flags != 0
}

// buildErr runs a build of id whose step is fn and returns its error.
func (e *hardEnv) buildErr(id, base string, fn func(dir string) error) error {
	return e.s.Build(e.t.Context(), id, base, func(_ context.Context, dir string) error { return fn(dir) })
}

// wantReplaced checks that err matches ErrWorkReplaced and says what.
func wantReplaced(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, ErrWorkReplaced) || !strings.Contains(err.Error(), what) {
		t.Errorf("error = %v; want ErrWorkReplaced saying %q", err, what)
	} else {
		t.Logf("error (as expected): %v", err)
	}
}

// noResult checks that the build left no result id.
func (e *hardEnv) noResult(id string) {
	e.t.Helper()
	if _, err := e.s.Result(id); !errors.Is(err, fs.ErrNotExist) {
		e.t.Errorf("Result(%s) = %v, want fs.ErrNotExist", id, err)
	}
}

// median returns the median of xs (the mean of the middle two for an even
// count; 0 if none), leaving xs as it is: the one median of the store's
// tests and benchmarks.
func median[T ~int64 | ~float64](xs []T) T {
	n := len(xs)
	if n == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}
