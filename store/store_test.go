package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// The seed's own store checks, in our words.
func TestBuildResultDelete(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if _, err := s.Result("unknown"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Result(unknown) = %v, want fs.ErrNotExist", err)
	}
	if err := s.Build(ctx, "base", "", func(_ context.Context, dir string) error {
		if names := entries(t, dir); len(names) != 0 {
			t.Errorf("new work dir not empty: %v", names)
		}
		return writeFile(dir, "output", "ok")
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Build(ctx, "child", "base", func(_ context.Context, dir string) error {
		b, err := os.ReadFile(filepath.Join(dir, "output"))
		if err != nil {
			return err
		}
		return writeFile(dir, "output", string(b)+"+")
	}); err != nil {
		t.Fatal(err)
	}
	child, err := s.Result("child")
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(child, "output")); got != "ok+" {
		t.Errorf("child output = %q, want ok+", got)
	}
	base, _ := s.Result("base")
	if got := readFile(t, filepath.Join(base, "output")); got != "ok" {
		t.Errorf("base output changed to %q", got)
	}
	if ro, err := ioctl.ReadOnly(child); err != nil || !ro {
		t.Errorf("result read-only = %v, %v", ro, err)
	}
	if err := writeFile(child, "x", ""); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing into a result: %v, want EROFS", err)
	}
	// Building an existing id.
	called := false
	err = s.Build(ctx, "child", "", func(context.Context, string) error { called = true; return nil })
	if !errors.Is(err, fs.ErrExist) || called {
		t.Errorf("Build of existing id = %v (fn called %v), want fs.ErrExist", err, called)
	}
	// Absent base.
	err = s.Build(ctx, "orphan", "missing", func(context.Context, string) error { called = true; return nil })
	if !errors.Is(err, fs.ErrNotExist) || called {
		t.Errorf("Build on missing base = %v, want fs.ErrNotExist", err)
	}
	for _, id := range []string{"child", "base", "never-existed"} {
		if err := s.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Result(id); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Result(%s) after Delete = %v", id, err)
		}
	}
	assertNoTmp(t, s)
}

func TestBuildFailureAndPanic(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	boom := errors.New("boom")
	var workDir string
	err := s.Build(ctx, "fails", "", func(_ context.Context, dir string) error {
		workDir = dir
		if err := writeFile(dir, "partial", "x"); err != nil {
			return err
		}
		// The in-progress log is reachable while the build runs.
		if p, err := s.LogFile("fails"); err != nil || p != filepath.Join(dir, "log") {
			t.Errorf("LogFile during build = %q, %v", p, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Build = %v, want the function's error", err)
	}
	if _, err := s.Result("fails"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed build left a result: %v", err)
	}
	if _, err := os.Stat(workDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed build left its work dir: %v", err)
	}
	assertNoTmp(t, s)

	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Errorf("recovered %v, want the build's panic", r)
			}
		}()
		s.Build(ctx, "panics", "", func(_ context.Context, dir string) error {
			writeFile(dir, "partial", "x")
			panic("kaboom")
		})
		t.Error("Build did not re-panic")
	}()
	if _, err := s.Result("panics"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("panicking build left a result: %v", err)
	}
	assertNoTmp(t, s)
	// The id can be built after a failure.
	if err := s.Build(ctx, "fails", "", func(context.Context, string) error { return nil }); err != nil {
		t.Errorf("rebuild after failure: %v", err)
	}
}

func TestLogFile(t *testing.T) {
	s, _ := newStore(t)
	if err := s.Build(t.Context(), "a", "", func(_ context.Context, dir string) error {
		return writeFile(dir, "log", "built\n")
	}); err != nil {
		t.Fatal(err)
	}
	p, err := s.LogFile("a")
	if err != nil || readFile(t, p) != "built\n" {
		t.Fatalf("LogFile(a) = %q, %v", p, err)
	}
	if _, err := s.LogFile("nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LogFile(no build) = %v, want fs.ErrNotExist", err)
	}
}

func TestNestedSubvolumesInResult(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	// A build that makes subvolumes in its dir (as nested container
	// builds do) can be removed, where the seed failed.
	err := s.Build(ctx, "nested", "", func(_ context.Context, dir string) error {
		if err := ioctl.CreateSubvolume(filepath.Join(dir, "inner")); err != nil {
			return err
		}
		if err := ioctl.CreateSubvolume(filepath.Join(dir, "inner/deeper")); err != nil {
			return err
		}
		return ioctl.Snapshot(filepath.Join(dir, "inner"), filepath.Join(dir, "ro"), ioctl.SnapshotReadOnly)
	})
	if err != nil {
		t.Fatal(err)
	}
	assertNoTmp(t, s)
	if err := s.Delete(ctx, "nested"); err != nil {
		t.Fatal(err)
	}
	if got := subvolumes(t, s.Root()); len(got) != 0 {
		t.Errorf("subvolumes left: %v", got)
	}
}

func TestBadIDs(t *testing.T) {
	s, fsys := newStore(t)
	ctx := t.Context()
	before := subvolumes(t, fsys.Path)
	bad := []string{"", ".", "..", "a/b", "/", "a\x00b", strings.Repeat("x", 256)}
	for _, id := range bad {
		called := false
		fn := func(context.Context, string) error { called = true; return nil }
		results := map[string]error{
			"Build":   s.Build(ctx, id, "", fn),
			"Delete":  s.Delete(ctx, id),
			"Result":  func() error { _, err := s.Result(id); return err }(),
			"LogFile": func() error { _, err := s.LogFile(id); return err }(),
		}
		if id != "" { // base "" means "start empty"
			results["Build base"] = s.Build(ctx, "good", id, fn)
		}
		for name, err := range results {
			if !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("%s(%q) = %v, want fs.ErrInvalid", name, id, err)
			}
		}
		if called {
			t.Errorf("build function called for id %q", id)
		}
	}
	if after := subvolumes(t, fsys.Path); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("bad ids changed the disk: %v -> %v", before, after)
	}
	assertNoTmp(t, s)
	if _, err := s.Result(strings.Repeat("x", 255)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("255-byte id is valid: %v", err)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":        "c-",
		"a/1":     "c-a%2f1",
		"\nb":     "c-%0ab",
		"\xab":    "c-%ab",
		"Az09._-": "c-Az09._-",
		"a b%":    "c-a%20b%25",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenTwice(t *testing.T) {
	s, fsys := newStore(t)
	if _, err := Open(t.Context(), fsys.Path, Config{}); err == nil {
		t.Fatal("second Open of the same root succeeded")
	}
	s.Close()
	s2, err := Open(t.Context(), fsys.Path, Config{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
	if _, err := s.Result("x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Result after Close = %v, want ErrClosed", err)
	}
}
