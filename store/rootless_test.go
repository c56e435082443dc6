package store

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/btrstore/btrstore/internal/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
)

// The no-privilege mechanisms, forced on a store run as root: deletes by
// emptying and rmdir (nested and read-only subvolumes included), and a
// CompleteDeletes that only commits, after which the deleted files' space
// counts as free, as rootless.go promises for kernels before 6.13.
func TestRootlessMechanisms(t *testing.T) {
	s, fsys := newStore(t, btrfstest.Size(512<<20))
	s.deletes, s.commitOnlyWait = deleteRmdir, true
	ctx := t.Context()
	if err := s.CompleteDeletes(ctx); err != nil {
		t.Fatal(err)
	}
	free0, err := s.FreeSpace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	if err := s.Build(ctx, "big", "", func(_ context.Context, dir string) error {
		b := make([]byte, size)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, "data"), b, 0o644); err != nil {
			return err
		}
		if err := ioctl.CreateSubvolume(filepath.Join(dir, "sub")); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "sub"), "f", "f"); err != nil {
			return err
		}
		return ioctl.Snapshot(filepath.Join(dir, "sub"), filepath.Join(dir, "sub-ro"), ioctl.SnapshotReadOnly)
	}); err != nil {
		t.Fatal(err)
	}
	assertNoTmp(t, s)
	if err := s.CompleteDeletes(ctx); err != nil {
		t.Fatal(err)
	}
	full, err := s.FreeSpace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteDeletes(ctx); err != nil {
		t.Fatal(err)
	}
	free, err := s.FreeSpace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("free %.2f%%, with the result %.2f%%, after Delete and CompleteDeletes %.2f%%", free0, full, free)
	if per := 100 * float64(size) / (512 << 20); full > free0-per/2 || free < free0-per/10 {
		t.Errorf("free space %.2f%% → %.2f%% → %.2f%%: the %.1f%% the result took is not free after CompleteDeletes", free0, full, free, per)
	}
	if got := subvolumes(t, fsys.Path); len(got) != 0 {
		t.Errorf("subvolumes left: %v", got)
	}
	assertNoTmp(t, s)
}
