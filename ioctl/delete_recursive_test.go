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
	"github.com/btrstore/btrstore/internal/beneath"
	"golang.org/x/sys/unix"
)

// mustExist fails the test for every path below root that is gone.
func mustExist(t *testing.T, root string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		if !exists(t, filepath.Join(root, rel)) {
			t.Errorf("%s was deleted", rel)
		}
	}
}

// Issue 9 item 3: "x/.", "x/sub/..", "x/./" name no deletable entry; a
// recursive delete must delete nothing and say so.
func TestDeleteRecursiveRefusesDotNames(t *testing.T) {
	fsys := btrfstest.New(t)
	for i, p := range []string{"x/.", "x/sub/..", "x/./", "x/sub/../", "."} {
		t.Run(p, func(t *testing.T) {
			top := filepath.Join(fsys.Path, "t"+strconv.Itoa(i))
			mustMkdir(t, top)
			mustCreate(t, top, "x", "x/sub", "x/sub/n", "x/other")
			for _, flags := range []DeleteFlags{DeleteRecursive, 0} {
				_, err := DeleteSubvolumeIDs(top+"/"+p, flags)
				if !errors.Is(err, fs.ErrInvalid) {
					t.Errorf("DeleteSubvolume(%q, %v) = %v, want fs.ErrInvalid", p, flags, err)
				}
			}
			mustExist(t, top, "x", "x/sub", "x/sub/n", "x/other")
		})
	}
}

// Issue 9 item 4: a symlink to a subvolume, or a mount point where a
// subvolume is mounted, is not a subvolume to delete; nothing below what
// it leads to may be deleted.
func TestDeleteRecursiveFollowsNothing(t *testing.T) {
	bothResolvers(t, testDeleteRecursiveFollowsNothing)
}

// bothResolvers runs fn with openat2, and with internal/beneath's fallback
// for kernels without it.
func bothResolvers(t *testing.T, fn func(t *testing.T)) {
	t.Run("openat2", fn)
	t.Run("no-openat2", func(t *testing.T) {
		defer beneath.DisableOpenat2()()
		fn(t)
	})
}

func testDeleteRecursiveFollowsNothing(t *testing.T) {
	fsys := btrfstest.New(t)
	mustCreate(t, fsys.Path, "a", "a/n", "a/n/m", "b")
	mustMkdir(t, filepath.Join(fsys.Path, "b/d"))
	if err := os.Symlink("a", filepath.Join(fsys.Path, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../a", filepath.Join(fsys.Path, "b/d/link")); err != nil {
		t.Fatal(err)
	}
	mustMkdir(t, filepath.Join(fsys.Path, "mnt"))
	mustMount(t, filepath.Join(fsys.Path, "a"), filepath.Join(fsys.Path, "mnt"), "", unix.MS_BIND)
	for _, c := range []struct {
		path string
		want error
	}{
		{"link", ErrNotSubvolume},
		{"link/", ErrNotSubvolume},
		{"b/d/link", ErrNotSubvolume},
		{"mnt", ErrMountPoint},
		{"mnt/", ErrMountPoint},
	} {
		for _, flags := range []DeleteFlags{DeleteRecursive, 0} {
			ids, err := DeleteSubvolumeIDs(fsys.Path+"/"+c.path, flags)
			if !errors.Is(err, c.want) || !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("DeleteSubvolume(%q, %v) = %v, want %v and fs.ErrInvalid", c.path, flags, err, c.want)
			}
			if len(ids) != 0 {
				t.Errorf("DeleteSubvolume(%q, %v) deleted %v", c.path, flags, ids)
			}
		}
	}
	mustExist(t, fsys.Path, "a", "a/n", "a/n/m", "link", "b/d/link", "mnt/n/m")
}

// nestedNames is the name of each level of the deep tree: 200 bytes.
func nestedName(i int) string {
	s := fmt.Sprintf("level%02d-", i)
	return s + strings.Repeat("x", 200-len(s))
}

// makeDeep creates top/l0/l1/.../l<n-1> with 200-byte names, by fds, so
// that the whole path is longer than PATH_MAX, owned by uid.
func makeDeep(t *testing.T, top string, n int, uid int) {
	t.Helper()
	fd, err := openDir(unix.AT_FDCWD, top)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd) // now: an fd left open would keep the deleted tree from being cleaned
	cur := fd
	for i := range n {
		if err := CreateSubvolumeAt(cur, nestedName(i)); err != nil {
			t.Fatalf("level %d: %v", i, err)
		}
		next, err := unix.Openat(cur, nestedName(i), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Fchown(next, uid, uid); err != nil {
			t.Fatal(err)
		}
		if cur != fd {
			unix.Close(cur)
		}
		cur = next
	}
	if cur != fd {
		unix.Close(cur)
	}
}

// The child for the deep delete: fds limited to a few more than it holds,
// so that a delete that keeps an fd per level fails with EMFILE.
var _ = registerChild("delete-deep", func(args []string) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	maxFd := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			maxFd = max(maxFd, n)
		}
	}
	lim := unix.Rlimit{Cur: uint64(maxFd + 1 + 16), Max: uint64(maxFd + 1 + 16)}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if len(args) > 1 && args[1] == "no-openat2" {
		beneath.DisableOpenat2()
	}
	ids, err := DeleteSubvolumeIDs(args[0], DeleteRecursive)
	if err != nil {
		return err
	}
	for _, id := range ids {
		fmt.Println(id)
	}
	return nil
})

// Issue 9 items 5 and 7: 25 nested subvolumes with 200-byte names, deeper
// than PATH_MAX, are deleted fully with a bounded number of fds, and the
// delete returns every id it removed, for WaitDeleted.
func TestDeleteRecursiveDeep(t *testing.T) {
	for _, resolve := range []string{"openat2", "no-openat2"} {
		t.Run("CAP_SYS_ADMIN,"+resolve, func(t *testing.T) {
			testDeleteDeep(t, resolve, btrfstest.Cred{Caps: []uintptr{unix.CAP_SYS_ADMIN}})
		})
		t.Run("unprivileged,"+resolve, func(t *testing.T) {
			testDeleteDeep(t, resolve, btrfstest.Cred{UID: testUID, GID: testUID}, btrfstest.MountOptions("user_subvol_rm_allowed"))
		})
	}
}

func testDeleteDeep(t *testing.T, resolve string, cred btrfstest.Cred, opts ...btrfstest.Option) {
	const depth = 25
	fsys := btrfstest.New(t, opts...)
	home := filepath.Join(fsys.Path, "home") // the caller's, so that it may delete in it
	mustMkdir(t, home)
	mustCreate(t, home, "deep")
	top := filepath.Join(home, "deep")
	for _, p := range []string{home, top} {
		if err := os.Chown(p, int(cred.UID), int(cred.GID)); err != nil {
			t.Fatal(err)
		}
	}
	makeDeep(t, top, depth, int(cred.UID))
	want := []uint64{subvolID(t, top)}
	for info, err := range Subvolumes(top) {
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, info.ID)
	}
	if len(want) != depth+1 {
		t.Fatalf("listed %d subvolumes, want %d", len(want), depth+1)
	}
	out, err := btrfstest.RunAs(t, cred, "delete-deep", top, resolve)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if exists(t, top) {
		t.Fatalf("%s survived", top)
	}
	var got []uint64
	for _, f := range strings.Fields(out) {
		id, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	if got[len(got)-1] != want[0] {
		t.Errorf("last id removed = %d, want the target %d", got[len(got)-1], want[0])
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("removed ids = %v, want %v", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := WaitDeleted(ctx, fsys.Path, got...); err != nil {
		t.Fatal(err)
	}
	for _, id := range got {
		if rootItemExists(t, fsys.Path, id) {
			t.Errorf("subvolume %d not cleaned after WaitDeleted", id)
		}
	}
}

// Issue 9 item 7, in process: the ids come back in deletion order, the
// target last, also from DeleteSubvolumeAtIDs.
func TestDeleteSubvolumeIDs(t *testing.T) { bothResolvers(t, testDeleteSubvolumeIDs) }

func testDeleteSubvolumeIDs(t *testing.T) {
	fsys := btrfstest.New(t)
	mustCreate(t, fsys.Path, "x", "x/a", "x/a/b", "x/c")
	mustMkdir(t, filepath.Join(fsys.Path, "x/dir"))
	mustCreate(t, fsys.Path, "x/dir/d")
	ids := map[string]uint64{}
	for _, p := range []string{"x", "x/a", "x/a/b", "x/c", "x/dir/d"} {
		ids[p] = subvolID(t, filepath.Join(fsys.Path, p))
	}
	fd := mustOpenDir(t, fsys.Path)
	got, err := DeleteSubvolumeAtIDs(fd, "x", DeleteRecursive)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[4] != ids["x"] {
		t.Fatalf("removed %v, want 5 ids ending with x's %d", got, ids["x"])
	}
	if slices.Index(got, ids["x/a/b"]) > slices.Index(got, ids["x/a"]) {
		t.Errorf("removed %v: x/a before its child x/a/b", got)
	}
	for p, id := range ids {
		if !slices.Contains(got, id) {
			t.Errorf("%s (%d) missing from %v", p, id, got)
		}
	}
	if exists(t, filepath.Join(fsys.Path, "x")) {
		t.Error("x survived")
	}
}

// Issue 9 item 8: functions documented to take any path on the filesystem
// take a regular file too.
func TestAnyPathOnFilesystem(t *testing.T) {
	fsys := btrfstest.New(t)
	f := filepath.Join(fsys.Path, "file")
	mustWrite(t, f, "x")
	if err := Sync(f); err != nil {
		t.Errorf("Sync(file) = %v", err)
	}
	if u, err := FilesystemUsage(f); err != nil || u.DeviceSize == 0 {
		t.Errorf("FilesystemUsage(file) = %+v, %v", u, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := WaitDeleted(ctx, f); err != nil {
		t.Errorf("WaitDeleted(file) = %v", err)
	}
	mustCreate(t, fsys.Path, "s")
	id := subvolID(t, filepath.Join(fsys.Path, "s"))
	if err := DeleteSubvolumeByID(f, id); err != nil {
		t.Errorf("DeleteSubvolumeByID(file, %d) = %v", id, err)
	}
	if exists(t, filepath.Join(fsys.Path, "s")) {
		t.Error("DeleteSubvolumeByID(file) left the subvolume")
	}
	if err := Sync("/proc/self/status"); !errors.Is(err, ErrNotBtrfs) {
		t.Errorf("Sync(a file not on btrfs) = %v, want ErrNotBtrfs", err)
	}
}

// Issue 9 item 8: deleting what is not a subvolume says what it is.
func TestDeleteSaysWhatIsWrong(t *testing.T) {
	fsys := btrfstest.New(t)
	plain := filepath.Join(fsys.Path, "plain")
	mustMkdir(t, plain)
	err := DeleteSubvolume(plain, 0)
	if !errors.Is(err, ErrNotSubvolume) || !errors.Is(err, fs.ErrInvalid) || strings.Contains(err.Error(), "(invalid argument)") {
		t.Errorf("DeleteSubvolume(plain directory) = %v, want ErrNotSubvolume", err)
	}
	// fsys.Path is a mount point whose parent is not on btrfs.
	err = DeleteSubvolume(fsys.Path, DeleteRecursive)
	if !errors.Is(err, ErrMountPoint) || errors.Is(err, ErrNotBtrfs) {
		t.Errorf("DeleteSubvolume(mount point) = %v, want ErrMountPoint", err)
	}
	if !exists(t, plain) {
		t.Error("plain directory deleted")
	}
}
