package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// The filesystem goes read-only while the store runs (an operator's
// remount, or btrfs after an aborted transaction): every operation fails
// with an error matching syscall.EROFS, nothing is half-written, Open
// refuses a read-only mount saying so, and after a read-write remount Open
// repairs what the interrupted operations left.

func TestReadOnlyRemount(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 88 s in a TCG guest (make vmtest-cross); make test and make vmtest run it")
	}
	e := newHardEnv(t, "")
	ctx := t.Context()
	e.keepWithCache()
	pending := e.pendingLease()
	// A deleted result whose cleanup the kernel has not finished when
	// the filesystem goes read-only: many files take a while to drop.
	e.build("doomed", "keep-a", func(dir string) error {
		for i := range 30000 {
			if err := writeFile(dir, fmt.Sprint(i), "d"); err != nil {
				return err
			}
		}
		return nil
	})
	must(t, e.s.Delete(ctx, "doomed"))

	// Two builds in flight: one whose step then writes (and fails), one
	// whose step is done and returns nil.
	startedFail, startedOK := make(chan struct{}), make(chan struct{})
	goOn := make(chan struct{})
	errFail, errOK := make(chan error, 1), make(chan error, 1)
	go func() {
		errFail <- e.s.Build(ctx, "in-flight-fails", "keep-a", func(_ context.Context, dir string) error {
			close(startedFail)
			<-goOn
			return writeFile(dir, "late", "x")
		})
	}()
	go func() {
		errOK <- e.s.Build(ctx, "in-flight-ok", "", func(_ context.Context, dir string) error {
			if err := writeFile(dir, "early", "x"); err != nil {
				return err
			}
			close(startedOK)
			<-goOn
			return nil
		})
	}()
	<-startedFail
	<-startedOK
	waitSpares(e.s)
	e.fs.Remount(t, unix.MS_RDONLY, "")
	close(goOn)
	wantErrno(t, syscall.EROFS, "Build whose step writes after the remount", <-errFail)
	wantErrno(t, syscall.EROFS, "Build whose step returned nil after the remount", <-errOK)

	// Every operation fails with EROFS and changes nothing.
	ran := false
	step := func(context.Context, string) error { ran = true; return nil }
	wantErrno(t, syscall.EROFS, "Build", e.s.Build(ctx, "new", "", step))
	wantErrno(t, syscall.EROFS, "Build on a base", e.s.Build(ctx, "new", "keep-a", step))
	if ran {
		t.Errorf("a build step ran on a read-only filesystem")
	}
	wantErrno(t, syscall.EROFS, "Delete", e.s.Delete(ctx, "keep-b"))
	_, err := e.s.Cache(ctx, "c", Owner{})
	wantErrno(t, syscall.EROFS, "Cache", err)
	_, err = e.s.Cache(ctx, "new-cache", Owner{})
	wantErrno(t, syscall.EROFS, "Cache of a new name", err)
	wantErrno(t, syscall.EROFS, "Release", pending.Release(ctx))
	wantErrno(t, syscall.EROFS, "DeleteCache", e.s.DeleteCache(ctx, "c"))
	// The kernel does not clean deleted subvolumes on a read-only
	// filesystem: waiting for one would never end. (The remount may
	// have cleaned them all, and then there is nothing to wait for.)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	start := time.Now()
	err = e.s.CompleteDeletes(wctx)
	cancel()
	if err == nil {
		t.Logf("CompleteDeletes: nothing was left to clean when the filesystem went read-only")
	} else {
		wantErrno(t, syscall.EROFS, "CompleteDeletes", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("CompleteDeletes took %v to return", time.Since(start))
	}
	// Reading works.
	if _, err := e.s.FreeSpace(ctx); err != nil {
		t.Errorf("FreeSpace: %v", err)
	}
	e.checkKept()
	if got := e.cacheVersion("c"); got != "1" {
		t.Errorf("cache = version %q, want 1", got)
	}
	must(t, e.s.Close())

	// Open refuses a read-only mount, saying what to do.
	_, err = Open(ctx, e.root, Config{})
	wantErrno(t, syscall.EROFS, "Open on a read-only mount", err)
	if err != nil && !strings.Contains(err.Error(), "remount") {
		t.Errorf("Open's error does not say to remount: %v", err)
	}

	// Read-write again: Open repairs, nothing complete is lost, nothing
	// half-made is there.
	e.fs.Remount(t, 0, "")
	e.open()
	checkInvariants(t, e.root)
	e.checkKept()
	for _, id := range []string{"in-flight-fails", "in-flight-ok", "new", "doomed"} {
		e.noResult(id)
	}
	if got := e.cacheVersion("c"); got != "1" {
		t.Errorf("cache after the repair = version %q, want 1", got)
	}
	if e.log.count("removing left-over entry") == 0 {
		t.Errorf("Open repaired nothing, but the interrupted builds and release left their directories")
	}
	must(t, e.s.CompleteDeletes(ctx))
	e.build("after", "keep-b", func(dir string) error { return writeFile(dir, "a", "a") })
	l, err := e.s.Cache(ctx, "c", Owner{})
	must(t, err)
	must(t, writeFile(l.Path(), "v", "3"))
	must(t, l.Release(ctx))
	e.reopen()
	e.checkKept()
	if got := e.cacheVersion("c"); got != "3" {
		t.Errorf("cache = version %q, want 3", got)
	}
}

// TestOpenReadOnly: Open on a read-only mount fails clearly, for a new
// store and for an existing one, and creates nothing.
func TestOpenReadOnly(t *testing.T) {
	e := newHardEnv(t, "")
	e.keep()
	must(t, e.s.Close())
	fresh := filepath.Join(e.fs.Path, "state", "fresh")
	must(t, os.Mkdir(fresh, 0o755))
	e.fs.Remount(t, unix.MS_RDONLY, "")
	for _, root := range []string{e.root, fresh} {
		_, err := Open(t.Context(), root, Config{})
		wantErrno(t, syscall.EROFS, "Open("+root+")", err)
	}
	if names := entries(t, fresh); len(names) != 0 {
		t.Errorf("Open on a read-only mount made %v", names)
	}
	e.fs.Remount(t, 0, "")
	e.open()
	checkInvariants(t, e.root)
	e.checkKept()

	// A root in a read-only subvolume is refused too, also when the
	// store's directories exist already.
	keep, err := e.s.Result("keep-a")
	must(t, err)
	openFails := func(what, root string) {
		t.Helper()
		s, err := Open(t.Context(), root, Config{})
		if err == nil {
			s.Close()
		}
		wantErrno(t, syscall.EROFS, what, err)
	}
	for _, root := range []string{keep, filepath.Join(keep, "d")} {
		openFails("Open("+root+")", root)
	}
	roStore := filepath.Join(e.fs.Path, "state", "ro-store")
	must(t, os.MkdirAll(roStore, 0o755))
	s, err := Open(t.Context(), roStore, Config{})
	must(t, err)
	must(t, s.Close())
	must(t, ioctl.Snapshot(e.fs.Path, filepath.Join(e.fs.Path, "state", "frozen"), ioctl.SnapshotReadOnly))
	openFails("Open of an existing store in a read-only snapshot", filepath.Join(e.fs.Path, "state", "frozen", "state", "ro-store"))
	must(t, ioctl.DeleteSubvolume(filepath.Join(e.fs.Path, "state", "frozen"), 0))
}
