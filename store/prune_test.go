package store

import (
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"golang.org/x/sys/unix"
)

// buildAged builds results named prefix0..prefix(n-1), each used later
// than the one before (LastUsed is the ctime, nanoseconds apart at least).
func buildAged(t testing.TB, s *Store, prefix string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		id := prefix + strconv.Itoa(i)
		buildEmpty(t, s, id, "")
		out = append(out, id)
	}
	return out
}

func TestPruneByAgeAndLimit(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	old := buildAged(t, s, "old", 4)
	time.Sleep(10 * time.Millisecond)
	cut := time.Now()
	time.Sleep(10 * time.Millisecond)
	buildAged(t, s, "new", 2)
	// Using old0 makes it recent, and the least recently used old1.
	if _, err := s.Result("old0"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Prune(ctx, PruneOptions{UsedBefore: cut, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"old1", "old2"}; !slices.Equal(got, want) {
		t.Fatalf("Prune(before, limit 2) = %v, want %v (least recently used first)", got, want)
	}
	got, err = s.Prune(ctx, PruneOptions{UsedBefore: cut})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"old3"}; !slices.Equal(got, want) {
		t.Fatalf("Prune(before) = %v, want %v", got, want)
	}
	left := ids(resultsByID(t, s))
	if want := append([]string{"new0", "new1"}, "old0"); !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	for _, id := range []string{old[1], old[2], old[3]} {
		if _, err := s.Result(id); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Result(%s) after prune: %v", id, err)
		}
	}
	// No limit, no age: everything, oldest use first.
	got, err = s.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"new0", "new1", "old0"}; !slices.Equal(got, want) {
		t.Fatalf("Prune() = %v, want %v", got, want)
	}
	assertNoTmp(t, s)
	for _, bad := range []PruneOptions{{Limit: -1}, {MinFreeSpace: -1}, {MinFreeSpace: 100.5}} {
		if _, err := s.Prune(ctx, bad); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Prune(%+v) = %v, want fs.ErrInvalid", bad, err)
		}
	}
}

// On a small filesystem filled with results of random data, Prune with a
// free-space target deletes least recently used results until the target
// is met, and no more than needed.
func TestPruneFreeSpaceTarget(t *testing.T) {
	s, _ := newStore(t, btrfstest.Size(512<<20))
	ctx := t.Context()
	const perResult = 16 << 20
	const n = 16
	for i := range n {
		id := "r" + strconv.Itoa(i)
		if err := s.Build(ctx, id, "", func(_ context.Context, dir string) error {
			b := make([]byte, perResult)
			rand.Read(b)
			return os.WriteFile(filepath.Join(dir, "data"), b, 0o644)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CompleteDeletes(ctx); err != nil {
		t.Fatal(err)
	}
	free0, err := s.FreeSpace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Target: what deleting 5 results frees, less half a result.
	var device float64 = 512 << 20
	per := 100 * perResult / device
	target := free0 + 4.5*per
	// A target met already deletes nothing.
	if got, err := s.Prune(ctx, PruneOptions{MinFreeSpace: free0 - 1}); err != nil || len(got) != 0 {
		t.Fatalf("Prune with the target met = %v, %v; want nothing deleted", got, err)
	}
	got, err := s.Prune(ctx, PruneOptions{MinFreeSpace: target})
	if err != nil {
		t.Fatal(err)
	}
	free, err := s.FreeSpace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("free %.2f%% → %.2f%% (target %.2f%%, %.2f%% a result): deleted %v", free0, free, target, per, got)
	if free < target {
		t.Errorf("free space %.2f%% after Prune, below the target %.2f%%", free, target)
	}
	if want := []string{"r0", "r1", "r2", "r3", "r4"}; !slices.Equal(got, want) {
		t.Errorf("Prune(target) deleted %v, want %v: the 5 least recently used, no more", got, want)
	}
	// A target that deleting everything cannot meet: everything goes,
	// and that is not an error.
	got, err = s.Prune(ctx, PruneOptions{MinFreeSpace: 100})
	if err != nil || len(got) != n-5 {
		t.Errorf("Prune(100%%) = %d results, %v; want the %d left", len(got), err, n-5)
	}
}

// A result that a running build started from, and one whose build is
// running, are not pruned; the build goes on.
func TestPruneSkipsResultsInUse(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	buildAged(t, s, "r", 3)
	inStep, proceed := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- s.Build(ctx, "child", "r1", func(_ context.Context, dir string) error {
			close(inStep)
			<-proceed
			return writeFile(dir, "more", "x")
		})
	}()
	<-inStep
	got, err := s.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"r0", "r2"}; !slices.Equal(got, want) {
		t.Errorf("Prune during a build on r1 = %v, want %v", got, want)
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatalf("the build on r1: %v", err)
	}
	if _, err := s.Result("r1"); err != nil {
		t.Errorf("base r1 after Prune: %v", err)
	}
	got, err = s.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// r1 was used last by the Result call above.
	if want := []string{"child", "r1"}; !slices.Equal(got, want) {
		t.Errorf("Prune after the build = %v, want %v", got, want)
	}
	// A result whose lock a Delete or base snapshot holds is skipped.
	buildEmpty(t, s, "held", "")
	unlock := s.lockResult("held", true)
	got, err = s.Prune(ctx, PruneOptions{})
	unlock()
	if err != nil || len(got) != 0 {
		t.Errorf("Prune while held is being snapshotted = %v, %v; want nothing", got, err)
	}
	assertNoTmp(t, s)
}

func TestPruneCancelled(t *testing.T) {
	fsys := btrfstest.New(t)
	ctx, cancel := context.WithCancel(t.Context())
	// The logger cancels once the second result is pruned.
	pruned := 0
	log := funcr.New(func(_, args string) {}, funcr.Options{Verbosity: 1})
	s, err := Open(ctx, fsys.Path, Config{Logger: log.WithSink(&cancelSink{LogSink: log.GetSink(), msg: "result pruned", after: 2, n: &pruned, cancel: cancel})})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	buildAged(t, s, "r", 5)
	got, err := s.Prune(ctx, PruneOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Prune: %v, want context.Canceled", err)
	}
	if want := []string{"r0", "r1"}; !slices.Equal(got, want) {
		t.Errorf("cancelled Prune deleted %v, want %v", got, want)
	}
	if left := ids(resultsByID(t, s)); !slices.Equal(left, []string{"r2", "r3", "r4"}) {
		t.Errorf("left %v", left)
	}
	// Cancelled before it starts: nothing.
	got, err = s.Prune(ctx, PruneOptions{})
	if !errors.Is(err, context.Canceled) || len(got) != 0 {
		t.Errorf("Prune with a done ctx = %v, %v", got, err)
	}
	assertNoTmp(t, s)
}

// cancelSink calls cancel once msg has been logged after times.
type cancelSink struct {
	logr.LogSink
	msg    string
	after  int
	n      *int
	cancel context.CancelFunc
}

func (c *cancelSink) Info(level int, msg string, kv ...any) {
	if msg == c.msg {
		if *c.n++; *c.n == c.after {
			c.cancel()
		}
	}
	c.LogSink.Info(level, msg, kv...)
}

func TestCaches(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	before := time.Now().Add(-time.Second)
	names := []string{"plain", "with/slash and %"}
	for _, name := range names {
		l, err := s.Cache(ctx, name, Owner{os.Getuid(), os.Getgid()})
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFile(l.Path(), "f", "x"); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	after := time.Now().Add(time.Second)
	got := cachesByName(t, s)
	if len(got) != 2 {
		t.Fatalf("Caches = %v, want %v", got, names)
	}
	for _, name := range names {
		c, ok := got[name]
		if !ok || c.LastReleased.Before(before) || c.LastReleased.After(after) {
			t.Errorf("cache %q: %+v (listed %v), want released in [%v, %v]", name, c, ok, before, after)
		}
	}
	if err := s.DeleteCache(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	if got := cachesByName(t, s); len(got) != 1 || got[names[1]].Name != names[1] {
		t.Errorf("Caches after DeleteCache = %v", got)
	}
}

// TestCacheReleasedAcrossReopen: a release that keeps the version (the
// clone unchanged) is remembered across Close and Open, costs no
// transaction commit, and is forgotten with the cache.
func TestCacheReleasedAcrossReopen(t *testing.T) {
	s, fsys := newStore(t)
	ctx := t.Context()
	owner := Owner{os.Getuid(), os.Getgid()}
	lease := func(s *Store, name string) *CacheLease {
		t.Helper()
		l, err := s.Cache(ctx, name, owner)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	release := func(l *CacheLease) {
		t.Helper()
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"idle", "kept"}
	for i := range 10 {
		names = append(names, "n"+strconv.Itoa(i))
	}
	for _, name := range names {
		l := lease(s, name)
		must(t, writeFile(l.Path(), "f", name))
		release(l)
	}
	saved := cachesByName(t, s) // the versions' creation times
	time.Sleep(100 * time.Millisecond)
	var leases []*CacheLease
	for _, name := range names[1:] {
		leases = append(leases, lease(s, name))
	}
	commits := commitCount(t, s)
	before := time.Now()
	for _, l := range leases {
		release(l) // unchanged
	}
	after := time.Now()
	if c := commitCount(t, s); commits >= 0 && c > commits+1 { // the periodic commit may fall in between
		t.Errorf("%d unchanged releases made %d transaction commits, want none", len(leases), c-commits)
	}
	// Recorded through fsetxattr, whose time is the kernel's (coarse)
	// clock's: up to a tick before time.Now.
	check := func(when string, got map[string]CacheInfo) {
		t.Helper()
		if c := got["idle"]; !c.LastReleased.Equal(saved["idle"].LastReleased) {
			t.Errorf("%s: idle cache released %v, want its version's creation %v", when, c.LastReleased, saved["idle"].LastReleased)
		}
		for _, name := range names[1:] {
			c := got[name]
			if c.LastReleased.Before(before.Add(-20*time.Millisecond)) || c.LastReleased.After(after) {
				t.Errorf("%s: cache %q released %v, want in [%v, %v] (version made %v)", when, name, c.LastReleased, before, after, saved[name].LastReleased)
			}
		}
	}
	check("same Store", cachesByName(t, s))
	must(t, s.Close())
	s, err := Open(ctx, fsys.Path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	check("after Close and Open", cachesByName(t, s))

	// DeleteCache forgets the time; a time left by a DeleteCache killed
	// before it removed it goes at the next Open; a cache made again
	// under the name starts at its version.
	cacheDir := filepath.Join(fsys.Path, "cache")
	attr := releasedXattr(Escape("kept"))
	must(t, s.DeleteCache(ctx, "kept"))
	if _, err := unix.Getxattr(cacheDir, attr, nil); err != unix.ENODATA {
		t.Errorf("release time of a deleted cache: getxattr %v, want ENODATA", err)
	}
	future := strconv.FormatInt(time.Now().Add(time.Hour).UnixNano(), 10) + " " + Escape("kept")
	must(t, unix.Setxattr(cacheDir, attr, []byte(future), 0))
	must(t, s.Close())
	if s, err = Open(ctx, fsys.Path, Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(cacheDir, attr, nil); err != unix.ENODATA {
		t.Errorf("Open left the release time of a deleted cache: getxattr %v, want ENODATA", err)
	}
	must(t, unix.Setxattr(cacheDir, attr, []byte(future), 0)) // too late for Open: Caches bounds it
	l := lease(s, "kept")
	must(t, writeFile(l.Path(), "f", "again"))
	release(l)
	fd, err := unix.Open(filepath.Join(cacheDir, Escape("kept")), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	info, err := ioctl.SubvolumeInfoFd(fd)
	unix.Close(fd)
	must(t, err)
	var st unix.Stat_t
	must(t, unix.Stat(cacheDir, &st))
	if got := cachesByName(t, s)["kept"].LastReleased; got.Before(info.Otime) || got.After(time.Unix(st.Ctim.Unix())) {
		t.Errorf("cache made again: released %v, want from its version's creation %v to cache/'s last change %v", got, info.Otime, time.Unix(st.Ctim.Unix()))
	}

	// What cache/ carries is believed no later than cache/'s last change
	// and only for the cache it names.
	for _, v := range []string{"garbage", strconv.FormatInt(time.Now().UnixNano(), 10) + " " + Escape("other")} {
		must(t, unix.Setxattr(cacheDir, releasedXattr(Escape("idle")), []byte(v), 0))
		if got := cachesByName(t, s)["idle"].LastReleased; !got.Equal(saved["idle"].LastReleased) {
			t.Errorf("xattr %q: idle cache released %v, want its version's creation %v", v, got, saved["idle"].LastReleased)
		}
	}
}

// cachesByName is s.Caches() by name.
func cachesByName(t *testing.T, s *Store) map[string]CacheInfo {
	t.Helper()
	m := map[string]CacheInfo{}
	for c, err := range s.Caches() {
		if err != nil {
			t.Fatal(err)
		}
		m[c.Name] = c
	}
	return m
}
