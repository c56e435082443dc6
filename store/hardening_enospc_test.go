package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

// A full filesystem: builds that fill it fail with ENOSPC and leave
// nothing behind, a cache release that cannot be saved keeps the old
// version, and once results are deleted and the deletes completed, the
// store builds again. Both for real, on a 256 MiB filesystem, and step by
// step with ENOSPC injected where btrfs can report it (at a snapshot's
// commit too), after the step was done, the case that leaves the most.

const hardFullSize = 256 << 20

func TestFullDisk(t *testing.T) {
	e := newHardEnv(t, "", btrfstest.Size(hardFullSize))
	ctx := t.Context()
	e.keepWithCache()
	// A lease taken and written while there is space, released when
	// there is none.
	pending := e.pendingLease()

	// A build that fills the disk fails with the step's ENOSPC.
	err := e.buildErr("fill", "keep-a", fillData)
	wantErrno(t, syscall.ENOSPC, "Build that fills the data space", err)
	e.noResult("fill")
	e.noBuildTmp()

	// Results that fill it: each build writes until it is full and
	// succeeds all the same.
	var big []string
	for i := range 4 {
		id := fmt.Sprintf("big%d", i)
		err := e.buildErr(id, "", func(dir string) error { fillData(dir); return nil })
		e.noBuildTmp()
		if err != nil {
			wantErrno(t, syscall.ENOSPC, "Build of "+id+" on a full disk", err)
			e.noResult(id)
			continue
		}
		big = append(big, id)
	}
	if len(big) == 0 {
		t.Fatal("no result holds the disk's space")
	}
	free, err := e.s.FreeSpace(ctx)
	must(t, err)
	t.Logf("free space with %v: %.1f%%", big, free)

	// A build whose step fills the metadata space and succeeds: usually
	// no room is left to publish its result, and then the build fails with
	// ENOSPC and leaves nothing. Whether the publishing steps (snapshot,
	// renames) still find metadata space after the step's ENOSPC depends
	// on the kernel's reservations: measured, amd64 (6.1, 6.18)
	// fails, Debian's ppc64le 6.1 (64 KiB pages) publishes. Both are
	// correct; a published result must then be there, and
	// checkInvariants below checks the store either way.
	err = e.buildErr("meta", "", func(dir string) error { fillMetadata(dir); return nil })
	if err == nil {
		t.Log("Build that fills the metadata space published its result all the same")
		if _, err := e.s.Result("meta"); err != nil {
			t.Errorf("Build(meta) succeeded, Result(meta) = %v", err)
		}
	} else {
		wantErrno(t, syscall.ENOSPC, "Build that fills the metadata space", err)
		e.noResult("meta")
	}
	e.noBuildTmp()

	// The release of a clone whose owner filled the metadata space: the
	// old version stays, complete.
	if err := fillMetadata(pending.Path()); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the clone: %v", err)
	}
	err = pending.Release(ctx)
	wantErrno(t, syscall.ENOSPC, "Release on a full disk", err)
	if got := e.cacheVersion("c"); got != "1" {
		t.Errorf("cache after a release that failed = version %q, want the old 1", got)
	}
	e.noTmp()
	e.noCacheTmp()
	for i := range 3 {
		err := e.buildErr(fmt.Sprintf("small%d", i), "keep-b", func(dir string) error { return writeFile(dir, "s", "s") })
		e.noBuildTmp()
		if err != nil {
			wantErrno(t, syscall.ENOSPC, "small Build on a full disk", err)
		}
	}
	checkInvariants(t, e.root)
	e.checkKept()

	// Deleting works on a full disk, and once the deletes are complete
	// the store builds again.
	for _, id := range big {
		must(t, e.s.Delete(ctx, id))
	}
	must(t, e.s.CompleteDeletes(ctx))
	free2, err := e.s.FreeSpace(ctx)
	must(t, err)
	t.Logf("free space after deleting %v: %.1f%%", big, free2)
	if free2 < free+20 {
		t.Errorf("free space %.1f%% after deleting, %.1f%% before", free2, free)
	}
	e.build("again", "keep-b", func(dir string) error { return writeFile(dir, "again", strings.Repeat("x", 1<<20)) })
	l, err := e.s.Cache(ctx, "c", Owner{})
	must(t, err)
	must(t, writeFile(l.Path(), "v", "3"))
	must(t, l.Release(ctx))
	if got := e.cacheVersion("c"); got != "3" {
		t.Errorf("cache = version %q, want 3", got)
	}
	e.noTmp()
	e.reopen()
	e.checkKept()
}

// TestFullDiskEverywhere injects ENOSPC after each step that can report
// it (the step itself done: what a failed commit may leave) and checks
// that nothing is left behind and nothing complete is lost.
func TestFullDiskEverywhere(t *testing.T) {
	e := newHardEnv(t, "")
	ctx := t.Context()
	e.keepWithCache()
	injected := func(step string) error {
		return &fs.PathError{Op: "injected", Path: step, Err: unix.ENOSPC}
	}
	failAt := func(target string) {
		e.s.fail = func(step string) error {
			if step == target {
				return injected(step)
			}
			return nil
		}
	}
	afterEach := func(step string) {
		t.Helper()
		e.s.fail = nil
		e.noTmp()
		e.noCacheTmp()
		checkInvariants(t, e.root)
		e.checkKept()
		if got := e.cacheVersion("c"); got != "1" {
			t.Errorf("%s: cache = version %q, want 1", step, got)
		}
		e.build("after-"+step, "keep-b", func(dir string) error { return writeFile(dir, "a", "a") })
	}
	for _, tc := range []struct{ step, base string }{
		{"create-work", ""},
		{"snapshot-base", "keep-a"},
		{"mkdir-result", "keep-a"},
		{"snapshot-result", "keep-a"},
	} {
		failAt(tc.step)
		called := false
		err := e.buildErr("x-"+tc.step, tc.base, func(dir string) error { called = true; return writeFile(dir, "f", "f") })
		wantErrno(t, syscall.ENOSPC, "Build failing at "+tc.step, err)
		if strings.HasPrefix(tc.step, "create") || strings.HasPrefix(tc.step, "snapshot-base") {
			if called {
				t.Errorf("%s: the step ran", tc.step)
			}
		}
		e.noResult("x-" + tc.step)
		afterEach(tc.step)
	}

	// A new cache, made under a temporary name and renamed into place.
	for _, step := range []string{"create-cache", "rename-cache"} {
		failAt(step)
		_, err := e.s.Cache(ctx, "new-"+step, Owner{})
		wantErrno(t, syscall.ENOSPC, "Cache failing at "+step, err)
		if _, err := os.Lstat(filepath.Join(e.root, cacheDir, Escape("new-"+step))); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: the cache exists: %v", step, err)
		}
		afterEach(step)
	}
	failAt("snapshot-clone")
	_, err := e.s.Cache(ctx, "c", Owner{})
	wantErrno(t, syscall.ENOSPC, "Cache failing at snapshot-clone", err)
	afterEach("snapshot-clone")

	// Releases: the old version stays.
	for _, step := range []string{"snapshot-save", "exchange-cache"} {
		l, err := e.s.Cache(ctx, "c", Owner{})
		must(t, err)
		must(t, writeFile(l.Path(), "v", "2"))
		failAt(step)
		wantErrno(t, syscall.ENOSPC, "Release failing at "+step, l.Release(ctx))
		afterEach(step)
	}

	// Delete when the rename away fails for want of space: deleted in
	// place.
	e.build("victim", "keep-a", func(dir string) error { return writeFile(dir, "v", "v") })
	failAt("rename-delete")
	must(t, e.s.Delete(ctx, "victim"))
	e.noResult("victim")
	if _, err := os.Lstat(filepath.Join(e.root, resultDir, "victim")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Delete in place left result/victim: %v", err)
	}
	afterEach("rename-delete")
	must(t, e.s.CompleteDeletes(ctx))
	e.reopen()
	e.checkKept()
}
