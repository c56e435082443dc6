package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// cacheVersion returns the subvolume id of cache name's current version.
func cacheVersion(t testing.TB, s *Store, name string) uint64 {
	t.Helper()
	info, err := ioctl.SubvolumeInfo(filepath.Join(s.Root(), cacheDir, Escape(name)))
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

// cycle clones cache name, applies change to the clone and releases it.
func cycle(t testing.TB, s *Store, name string, change func(dir string) error) {
	t.Helper()
	l, err := s.Cache(context.Background(), name, Owner{os.Getuid(), os.Getgid()})
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		if err := change(l.Path()); err != nil {
			l.Release(context.Background())
			t.Fatal(err)
		}
	}
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Every kind of change to a clone is saved; an untouched clone is not,
// and its release still wins its generation.
func TestUnchangedCacheNotSaved(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	const name = "c"
	// The first version: a file, a directory, a file with an xattr.
	cycle(t, s, name, func(dir string) error {
		if err := writeFile(dir, "f", "content"); err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
			return err
		}
		if err := writeFile(dir, "x", ""); err != nil {
			return err
		}
		return unix.Setxattr(filepath.Join(dir, "x"), "user.a", []byte("1"), 0)
	})
	// Untouched: the version stays (same subvolume), several times.
	for range 3 {
		v := cacheVersion(t, s, name)
		cycle(t, s, name, nil)
		if got := cacheVersion(t, s, name); got != v {
			t.Fatalf("releasing an untouched clone replaced the cache version (subvolume %d → %d)", v, got)
		}
	}
	// An unchanged release wins its generation: a changed clone of the
	// same generation released after it is discarded.
	l1, err := s.Cache(ctx, name, Owner{os.Getuid(), os.Getgid()})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := s.Cache(ctx, name, Owner{os.Getuid(), os.Getgid()})
	if err != nil {
		t.Fatal(err)
	}
	v := cacheVersion(t, s, name)
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(l2.Path(), "late", "x"); err != nil {
		t.Fatal(err)
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got := cacheVersion(t, s, name); got != v {
		t.Errorf("a clone of a generation an unchanged release won was saved (subvolume %d → %d)", v, got)
	}

	at := func(dir, n string) string { return filepath.Join(dir, n) }
	changes := []struct {
		kind   string
		change func(dir string) error
	}{
		{"write", func(dir string) error { return writeFile(dir, "f", "CONTENT") }},
		{"append", func(dir string) error {
			f, err := os.OpenFile(at(dir, "f"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteString("+")
			return errorsJoinClose(err, f)
		}},
		{"truncate", func(dir string) error { return os.Truncate(at(dir, "f"), 2) }},
		{"create", func(dir string) error { return writeFile(dir, "new", "") }},
		{"unlink", func(dir string) error { return os.Remove(at(dir, "x")) }},
		{"rename", func(dir string) error { return os.Rename(at(dir, "f"), at(dir, "g")) }},
		{"mkdir", func(dir string) error { return os.Mkdir(at(dir, "e"), 0o755) }},
		{"rmdir", func(dir string) error { return os.Remove(at(dir, "d")) }},
		{"chmod", func(dir string) error { return os.Chmod(at(dir, "f"), 0o600) }},
		{"chown", func(dir string) error { return os.Lchown(at(dir, "f"), 1234, 1234) }},
		{"setxattr", func(dir string) error { return unix.Setxattr(at(dir, "f"), "user.b", []byte("2"), 0) }},
		{"removexattr", func(dir string) error { return unix.Removexattr(at(dir, "x"), "user.a") }},
		{"utimes", func(dir string) error {
			past := time.Unix(1e9, 0)
			return os.Chtimes(at(dir, "f"), past, past)
		}},
		{"hard link", func(dir string) error { return os.Link(at(dir, "f"), at(dir, "h")) }},
		{"symlink", func(dir string) error { return os.Symlink("f", at(dir, "s")) }},
	}
	for _, c := range changes {
		// Each change from the same starting point: a fresh cache
		// holding f, d and x (with its xattr).
		cname := "k-" + c.kind
		cycle(t, s, cname, func(dir string) error {
			if err := writeFile(dir, "f", "content"); err != nil {
				return err
			}
			if err := os.Mkdir(at(dir, "d"), 0o755); err != nil {
				return err
			}
			if err := writeFile(dir, "x", ""); err != nil {
				return err
			}
			return unix.Setxattr(at(dir, "x"), "user.a", []byte("1"), 0)
		})
		v := cacheVersion(t, s, cname)
		cycle(t, s, cname, c.change)
		if got := cacheVersion(t, s, cname); got == v {
			t.Errorf("%s: the changed clone was not saved (cache version still subvolume %d)", c.kind, v)
		}
	}
}

func errorsJoinClose(err error, f *os.File) error {
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// A clone given to another owner and only read (its top directory
// listed) is not saved: with CAP_FOWNER, the version keeps the owner its
// last save had,
// so that the next clone needs no chown, whose newer ctime would make
// the listing update the access time (relatime), a change.
func TestUnchangedCacheOtherOwnerRead(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	owner := Owner{1234, 1234}
	use := func(change func(dir string) error) {
		t.Helper()
		l, err := s.Cache(ctx, "c", owner)
		if err != nil {
			t.Fatal(err)
		}
		if err := ownedBy(l.Path(), owner); err != nil {
			t.Error(err)
		}
		if err := change(l.Path()); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	use(func(dir string) error { return writeFile(dir, "f", "x") })
	// The first listing after a change updates the access time
	// (relatime: atime older than mtime), which is saved; from then on
	// listings change nothing.
	list := func(dir string) error { _, err := os.ReadDir(dir); return err }
	use(list)
	v := cacheVersion(t, s, "c")
	for range 2 {
		use(list)
	}
	if got := cacheVersion(t, s, "c"); got != v {
		t.Errorf("a clone only listed was saved (subvolume %d → %d)", v, got)
	}
	// Another owner again: chowned, and still right.
	l, err := s.Cache(ctx, "c", Owner{os.Getuid(), os.Getgid()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	if err := ownedBy(l.Path(), Owner{os.Getuid(), os.Getgid()}); err != nil {
		t.Error(err)
	}
}
