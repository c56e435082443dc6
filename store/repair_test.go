package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/btrstore/btrstore/ioctl"
)

// TestOpenPublishesFrozenResult: a build frozen as out/<id>/snapshot whose
// rename into result/ was lost (process killed, or the machine crashed
// before the next commit) is published by Open; what is not a complete
// frozen result is removed with the rest of result-tmp.
func TestOpenPublishesFrozenResult(t *testing.T) {
	s, fsys := newStore(t)
	ctx := t.Context()
	if err := s.Build(ctx, "src", "", func(_ context.Context, dir string) error {
		return writeFile(dir, "content", "frozen")
	}); err != nil {
		t.Fatal(err)
	}
	src, _ := s.Result("src")
	s.Close()

	stage := func(build, id string, flags ioctl.SnapshotFlags) {
		t.Helper()
		dir := filepath.Join(fsys.Path, resultTmpDir, build, stageDir, id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := ioctl.Snapshot(src, filepath.Join(dir, snapshotName), flags); err != nil {
			t.Fatal(err)
		}
	}
	stage("b900", "frozen", ioctl.SnapshotReadOnly)
	stage("b901", "writable", 0)                 // not frozen: not a result
	stage("b902", "src", ioctl.SnapshotReadOnly) // result exists already
	if err := os.MkdirAll(filepath.Join(fsys.Path, resultTmpDir, "b903", stageDir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(ctx, fsys.Path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	p, err := s2.Result("frozen")
	if err != nil {
		t.Fatalf("frozen result not published: %v", err)
	}
	if got := readFile(t, filepath.Join(p, "content")); got != "frozen" {
		t.Errorf("published result holds %q", got)
	}
	for _, id := range []string{"writable", "empty"} {
		if _, err := s2.Result(id); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Result(%s) = %v, want fs.ErrNotExist", id, err)
		}
	}
	assertNoTmp(t, s2)
	checkInvariants(t, fsys.Path)
}
