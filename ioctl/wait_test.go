package ioctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

// fillSubvolume writes n small files so that cleaning the subvolume up
// takes the kernel real work.
func fillSubvolume(t testing.TB, dir string, n int) {
	t.Helper()
	for i := range n {
		mustWrite(t, filepath.Join(dir, fmt.Sprint("f", i)), strings.Repeat("x", 3000))
	}
}

// rootItemExists asks the root tree directly whether subvolume id still
// has a root item, independently of WaitDeleted's own polling.
func rootItemExists(t testing.TB, fsPath string, id uint64) bool {
	t.Helper()
	fd := mustOpenDir(t, fsPath)
	found, err := rootItem(fd, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestWaitDeleted(t *testing.T) {
	fsys := btrfstest.New(t)
	var ids []uint64
	for _, name := range []string{"a", "b", "c"} {
		p := filepath.Join(fsys.Path, name)
		mustCreate(t, fsys.Path, name)
		fillSubvolume(t, p, 200)
		ids = append(ids, subvolID(t, p))
	}
	// One id.
	if err := DeleteSubvolume(filepath.Join(fsys.Path, "a"), 0); err != nil {
		t.Fatal(err)
	}
	if !rootItemExists(t, fsys.Path, ids[0]) {
		t.Fatal("root item gone before any commit: the test proves nothing")
	}
	start := time.Now()
	if err := WaitDeleted(t.Context(), fsys.Path, ids[0]); err != nil {
		t.Fatal(err)
	}
	t.Logf("WaitDeleted(one id) took %v", time.Since(start))
	if rootItemExists(t, fsys.Path, ids[0]) {
		t.Fatal("WaitDeleted returned before the root item was removed")
	}
	// No ids: all deleted ones.
	for _, name := range []string{"b", "c"} {
		if err := DeleteSubvolume(filepath.Join(fsys.Path, name), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := WaitDeleted(t.Context(), fsys.Path); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[1:] {
		if rootItemExists(t, fsys.Path, id) {
			t.Errorf("subvolume %d not cleaned after WaitDeleted()", id)
		}
	}
	if out := btrfsCLI(t, "subvolume", "list", "-d", fsys.Path); strings.TrimSpace(out) != "" {
		t.Errorf("btrfs subvolume list -d still shows deleted subvolumes:\n%s", out)
	}
	// An id that never existed is done at once; a live one is an error.
	if err := WaitDeleted(t.Context(), fsys.Path, 100000); err != nil {
		t.Errorf("WaitDeleted(unknown id) = %v", err)
	}
	mustCreate(t, fsys.Path, "live")
	live := subvolID(t, filepath.Join(fsys.Path, "live"))
	if err := WaitDeleted(t.Context(), fsys.Path, live); !errors.Is(err, fs.ErrExist) {
		t.Errorf("WaitDeleted(live subvolume) = %v, want fs.ErrExist", err)
	}
}

// TestWaitDeletedContext holds a file open in a deleted subvolume, which
// keeps the kernel from cleaning it, so WaitDeleted must give up with the
// context's error; once the file is closed the wait succeeds.
func TestWaitDeletedContext(t *testing.T) {
	fsys := btrfstest.New(t)
	p := filepath.Join(fsys.Path, "held")
	mustCreate(t, fsys.Path, "held")
	mustWrite(t, filepath.Join(p, "f"), "x")
	id := subvolID(t, p)
	f, err := os.Open(filepath.Join(p, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := DeleteSubvolume(p, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = WaitDeleted(ctx, fsys.Path, id)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDeleted with the subvolume held open = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancellation took %v", d)
	}
	if !rootItemExists(t, fsys.Path, id) {
		t.Fatal("subvolume cleaned although a file was open: the test proves nothing")
	}
	f.Close()
	if err := WaitDeleted(t.Context(), fsys.Path, id); err != nil {
		t.Fatal(err)
	}
	if rootItemExists(t, fsys.Path, id) {
		t.Error("not cleaned after the file was closed")
	}
	_ = unix.EPERM
}

// TestWaitDeletedAllSkipsLaterDeletes: a subvolume deleted after
// WaitDeleted's commit has its orphan item already but keeps its refs
// until the next commit; waiting for "all deleted" must not take it for a
// live subvolume (it once failed with EEXIST under concurrent deletes).
func TestWaitDeletedAllSkipsLaterDeletes(t *testing.T) {
	fsys := btrfstest.New(t)
	mustCreate(t, fsys.Path, "late")
	id := subvolID(t, filepath.Join(fsys.Path, "late"))
	fd := mustOpenDir(t, fsys.Path)
	if err := SyncFS(fd); err != nil {
		t.Fatal(err)
	}
	if err := DeleteSubvolume(filepath.Join(fsys.Path, "late"), 0); err != nil {
		t.Fatal(err)
	}
	// The state WaitDeleted meets right after its own commit when a
	// delete comes in between: an orphan item whose root still has refs.
	orphans, err := deletedIDs(fd)
	if err != nil {
		t.Fatal(err)
	}
	refs, found, err := rootRefs(fd, nil, id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(orphans, id) || !found || refs == 0 {
		t.Skipf("the kernel did not show the intermediate state (orphans %v, refs %d, found %v)", orphans, refs, found)
	}
	if err := waitTreeSearch(t.Context(), fd, nil); err != nil {
		t.Errorf("waiting for all deleted subvolumes with one deleted after the commit: %v", err)
	}
}
