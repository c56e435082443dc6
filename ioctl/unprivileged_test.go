package ioctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

const testUID = 1000

// The child: as uid 1000 without capabilities, in a directory it owns.
// args: the directory, and whether the mount has user_subvol_rm_allowed.
var _ = registerChild("unprivileged-ops", func(args []string) error {
	dir, rmAllowed := args[0], args[1] == "true"
	s, ro, rw := filepath.Join(dir, "s"), filepath.Join(dir, "ro"), filepath.Join(dir, "rw")
	for _, p := range []string{s, s + "/n1", s + "/n1/n2"} {
		if err := CreateSubvolume(p); err != nil {
			return fmt.Errorf("create as owner: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(s, "f"), []byte("x"), 0o644); err != nil {
		return err
	}
	if err := Snapshot(s, ro, SnapshotReadOnly); err != nil {
		return fmt.Errorf("read-only snapshot as owner: %w", err)
	}
	if err := Snapshot(s, rw, 0); err != nil {
		return fmt.Errorf("writable snapshot as owner: %w", err)
	}
	// Listing without CAP_SYS_ADMIN goes through the unprivileged ioctls.
	var listed []string
	for info, err := range Subvolumes(s) {
		if err != nil {
			return fmt.Errorf("unprivileged listing: %w", err)
		}
		listed = append(listed, info.Path)
	}
	if want := []string{"n1", "n1/n2"}; !slices.Equal(listed, want) {
		return fmt.Errorf("unprivileged listing = %v, want %v", listed, want)
	}
	idRW := mustInfoID(rw)
	errRW := DeleteSubvolume(rw, 0)
	errS := DeleteSubvolume(s, DeleteRecursive)
	if !rmAllowed {
		for name, err := range map[string]error{"rw": errRW, "recursive": errS} {
			if !errors.Is(err, fs.ErrPermission) {
				return fmt.Errorf("delete %s without CAP_SYS_ADMIN on a normal mount = %v, want EPERM", name, err)
			}
		}
		return nil
	}
	if errRW != nil || errS != nil {
		return fmt.Errorf("delete on a user_subvol_rm_allowed mount: %v; recursive: %v", errRW, errS)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := WaitDeleted(ctx, dir+"/..", idRW)
	if btrfstest.KernelAtLeast(6, 13) && err != nil {
		return fmt.Errorf("unprivileged WaitDeleted on a kernel with SUBVOL_SYNC_WAIT: %w", err)
	}
	if !btrfstest.KernelAtLeast(6, 13) && !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("unprivileged WaitDeleted without SUBVOL_SYNC_WAIT = %v, want EPERM", err)
	}
	fmt.Print(idRW) // for the parent to check that it is really gone
	return nil
})

func mustInfoID(p string) uint64 {
	info, err := SubvolumeInfo(p)
	if err != nil {
		panic(err)
	}
	return info.ID
}

func registerChild(name string, fn func([]string) error) bool {
	btrfstest.Register(name, fn)
	return true
}

func TestUnprivileged(t *testing.T) {
	for _, rmAllowed := range []bool{false, true} {
		t.Run(fmt.Sprint("user_subvol_rm_allowed=", rmAllowed), func(t *testing.T) {
			var opts []btrfstest.Option
			if rmAllowed {
				opts = append(opts, btrfstest.MountOptions("user_subvol_rm_allowed"))
			}
			fsys := btrfstest.New(t, opts...)
			dir := filepath.Join(fsys.Path, "home")
			mustMkdir(t, dir)
			if err := os.Chown(dir, testUID, testUID); err != nil {
				t.Fatal(err)
			}
			out, err := btrfstest.RunAs(t, btrfstest.Cred{UID: testUID, GID: testUID}, "unprivileged-ops", dir, fmt.Sprint(rmAllowed))
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if rmAllowed && btrfstest.KernelAtLeast(6, 13) {
				id, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
				if err != nil {
					t.Fatalf("child output %q: %v", out, err)
				}
				if rootItemExists(t, fsys.Path, id) {
					t.Errorf("unprivileged WaitDeleted returned before subvolume %d was cleaned", id)
				}
			}
			// What the child created is owned by it; what it deleted is gone.
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(dir, "ro"), &st); err != nil || st.Uid != testUID {
				t.Errorf("ro snapshot: uid %d, %v", st.Uid, err)
			}
			for _, name := range []string{"s", "rw"} {
				if got := exists(t, filepath.Join(dir, name)); got == rmAllowed {
					t.Errorf("%s exists = %v on a mount with user_subvol_rm_allowed=%v", name, got, rmAllowed)
				}
			}
		})
	}
}
