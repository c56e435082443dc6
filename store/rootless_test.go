package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
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

func init() {
	btrfstest.Register("store-rootless-build", rootlessBuildChild)
	btrfstest.Register("store-rootless-delete", rootlessDeleteChild)
}

// rootlessBuildChild builds result r holding d/f, as privUID without
// privilege.
func rootlessBuildChild(args []string) error {
	s, err := Open(context.Background(), args[0], Config{})
	if err != nil {
		return err
	}
	defer s.Close()
	if s.deletes != deleteRmdir {
		return errors.New("a store without privilege did not choose rmdir deletes")
	}
	if s.spares.on {
		return errors.New("a store without privilege makes spare work subvolumes, whose deletes cost O(files)")
	}
	return s.Build(context.Background(), "r", "", func(_ context.Context, dir string) error {
		if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
			return err
		}
		return writeFile(filepath.Join(dir, "d"), "f", "f")
	})
}

// rootlessDeleteChild deletes result r and prints the error.
func rootlessDeleteChild(args []string) error {
	s, err := Open(context.Background(), args[0], Config{})
	if err != nil {
		return err
	}
	defer s.Close()
	err = s.Delete(context.Background(), "r")
	fmt.Printf("errPermission=%v\n%v\n", errors.Is(err, fs.ErrPermission), err)
	// What cannot be removed does not lock the user out: Open logs it.
	s.Close()
	s2, err := Open(context.Background(), args[0], Config{})
	if err != nil {
		return fmt.Errorf("Open again: %w", err)
	}
	return s2.Close()
}

// The documented limit of a store without privilege: a result holding a
// directory another uid owns (as a step with CAP_CHOWN could leave)
// cannot be deleted by emptying it; the error says so, matches
// fs.ErrPermission and names CAP_SYS_ADMIN. The result is gone from
// result/ all the same (renamed away first), never half-deleted in
// place, and a privileged Open removes the rest.
func TestRootlessForeignFilesLimit(t *testing.T) {
	fsys := privStore(t)
	cred := btrfstest.Cred{UID: privUID, GID: privGID}
	if out, err := btrfstest.RunAs(t, cred, "store-rootless-build", fsys.Path); err != nil {
		t.Fatalf("build as uid %d: %v\n%s", privUID, err, out)
	}
	// As root: give d to another user, as a privileged step would have.
	snap := filepath.Join(fsys.Path, resultDir, "r", snapshotName)
	if err := ioctl.SetReadOnly(snap, false); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(snap, "d"), 1234, 1234); err != nil {
		t.Fatal(err)
	}
	if err := ioctl.SetReadOnly(snap, true); err != nil {
		t.Fatal(err)
	}
	out, err := btrfstest.RunAs(t, cred, "store-rootless-delete", fsys.Path)
	if err != nil {
		t.Fatalf("delete as uid %d: %v\n%s", privUID, err, out)
	}
	t.Logf("Delete said: %s", out)
	for _, want := range []string{"errPermission=true", "CAP_SYS_ADMIN", "another user"} {
		if !strings.Contains(out, want) {
			t.Errorf("Delete's error lacks %q: %s", want, out)
		}
	}
	if names := entries(t, filepath.Join(fsys.Path, resultDir)); len(names) != 0 {
		t.Errorf("result/ holds %v after the Delete", names)
	}
	// With privilege, Open removes what was left.
	s, err := Open(t.Context(), fsys.Path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := subvolumes(t, fsys.Path); len(got) != 0 {
		t.Errorf("subvolumes left after a privileged Open: %v", got)
	}
}
