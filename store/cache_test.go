package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The seed's cache checks.
func TestCacheLifecycle(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	owner := Owner{UID: 123, GID: 456}

	// A new cache is empty and owned by the given uid:gid.
	c1, err := s.Cache(ctx, "c", owner)
	if err != nil {
		t.Fatal(err)
	}
	if names := entries(t, c1.Path()); len(names) != 0 {
		t.Errorf("new cache not empty: %v", names)
	}
	var st unix.Stat_t
	if err := unix.Stat(c1.Path(), &st); err != nil || st.Uid != 123 || st.Gid != 456 {
		t.Errorf("clone owner %d:%d, %v; want 123:456", st.Uid, st.Gid, err)
	}
	if err := writeFile(c1.Path(), "data", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := c1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c1.Release(ctx); err != nil {
		t.Errorf("second Release = %v, want a no-op", err)
	}
	if _, err := os.Stat(c1.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("released clone still exists: %v", err)
	}

	// A released v1 is seen by the next clone.
	c2, err := s.Cache(ctx, "c", owner)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(c2.Path(), "data")); got != "v1" {
		t.Errorf("next clone sees %q, want v1", got)
	}
	// With two clones, the one released first wins.
	c3, err := s.Cache(ctx, "c", owner)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(c2.Path(), "data", "v2")
	writeFile(c3.Path(), "data", "v3")
	if err := c3.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	c4, err := s.Cache(ctx, "c", owner)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(c4.Path(), "data")); got != "v3" {
		t.Errorf("after two releases the cache holds %q, want v3 (first release wins)", got)
	}
	// DeleteCache while a clone is in use succeeds; that clone's release
	// is not saved, and the next clone is empty.
	writeFile(c4.Path(), "data", "v4")
	if err := s.DeleteCache(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(c4.Path(), "data")); got != "v4" {
		t.Errorf("clone in use broken by DeleteCache: %q", got)
	}
	if err := c4.Release(ctx); err != nil {
		t.Fatal(err)
	}
	c5, err := s.Cache(ctx, "c", owner)
	if err != nil {
		t.Fatal(err)
	}
	if names := entries(t, c5.Path()); len(names) != 0 {
		t.Errorf("cache after DeleteCache not empty: %v", names)
	}
	if err := c5.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// The cache itself is a read-only subvolume and nothing else is left.
	if got := entries(t, filepath.Join(s.Root(), cacheDir)); strings.Join(got, ",") != "c-c" {
		t.Errorf("cache dir holds %v", got)
	}
	assertNoTmp(t, s)
}

func TestCacheNames(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	l, err := s.Cache(ctx, "a/1", Owner{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), cacheDir, "c-a%2f1")); err != nil {
		t.Errorf("cache a/1 not stored as c-a%%2f1: %v", err)
	}
	for _, name := range []string{"", "..", "\x00", strings.Repeat("\xff", 84)} {
		l, err := s.Cache(ctx, name, Owner{})
		if err != nil {
			t.Errorf("Cache(%q) = %v; every name that fits is valid", name, err)
			continue
		}
		l.Release(ctx)
	}
	long := strings.Repeat("/", 85) // 2 + 85*3 = 257 bytes escaped
	if _, err := s.Cache(ctx, long, Owner{}); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("Cache(name escaping to 257 bytes) = %v, want fs.ErrInvalid", err)
	}
	if err := s.DeleteCache(ctx, long); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("DeleteCache(too long) = %v, want fs.ErrInvalid", err)
	}
	assertNoTmp(t, s)
}

// TestCacheFailedSaveDoesNotWin: a release whose save fails keeps the old
// version and does not use up the generation, so another clone of it can
// still be saved.
func TestCacheFailedSaveDoesNotWin(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	a, err := s.Cache(ctx, "c", Owner{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Cache(ctx, "c", Owner{})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(a.Path(), "data", "a")
	writeFile(b.Path(), "data", "b")
	s.fail = func(step string) error {
		if step == "snapshot-save" {
			return unix.ENOSPC
		}
		return nil
	}
	if err := a.Release(ctx); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Release with a failing save = %v, want ENOSPC", err)
	}
	s.fail = nil
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := s.Cache(ctx, "c", Owner{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release(ctx)
	if got := readFile(t, filepath.Join(c.Path(), "data")); got != "b" {
		t.Errorf("cache holds %q, want b: the failed save of a used up the generation", got)
	}
}
