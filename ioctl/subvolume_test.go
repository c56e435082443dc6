package ioctl

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

func TestCreateSnapshotDelete(t *testing.T) {
	fsys := btrfstest.New(t)
	a := filepath.Join(fsys.Path, "a")
	mustCreate(t, fsys.Path, "a")
	if ok, err := IsSubvolume(a); err != nil || !ok {
		t.Fatalf("IsSubvolume(a) = %v, %v", ok, err)
	}
	mustWrite(t, filepath.Join(a, "f"), "hello")

	rw, ro := filepath.Join(fsys.Path, "rw"), filepath.Join(fsys.Path, "ro")
	if err := Snapshot(a, rw, 0); err != nil {
		t.Fatal(err)
	}
	if err := Snapshot(a, ro, SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path     string
		readOnly bool
	}{{a, false}, {rw, false}, {ro, true}} {
		got, err := ReadOnly(c.path)
		if err != nil || got != c.readOnly {
			t.Errorf("ReadOnly(%s) = %v, %v; want %v", c.path, got, err, c.readOnly)
		}
		b, err := os.ReadFile(filepath.Join(c.path, "f"))
		if err != nil || string(b) != "hello" {
			t.Errorf("%s/f = %q, %v", c.path, b, err)
		}
		err = os.WriteFile(filepath.Join(c.path, "g"), nil, 0o644)
		if c.readOnly != errors.Is(err, unix.EROFS) || (!c.readOnly && err != nil) {
			t.Errorf("write into %s: %v (read-only %v)", c.path, err, c.readOnly)
		}
	}
	info, err := SubvolumeInfo(ro)
	if err != nil {
		t.Fatal(err)
	}
	src, err := SubvolumeInfo(a)
	if err != nil {
		t.Fatal(err)
	}
	if info.ParentUUID != src.UUID || !info.ReadOnly || info.Path != "ro" || info.Name != "ro" {
		t.Errorf("snapshot info %+v; source UUID %v", info, src.UUID)
	}

	// Flags round trip.
	if err := SetReadOnly(rw, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadOnly(rw); !got {
		t.Error("SetReadOnly(true) did not stick")
	}
	if err := SetReadOnly(rw, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadOnly(rw); got {
		t.Error("SetReadOnly(false) did not stick")
	}

	for _, p := range []string{a, rw, ro} {
		if err := DeleteSubvolume(p, 0); err != nil {
			t.Fatal(err)
		}
		if exists(t, p) {
			t.Errorf("%s still exists after delete", p)
		}
	}
}

func TestSnapshotAtAndCreateAt(t *testing.T) {
	fsys := btrfstest.New(t)
	root := mustOpenDir(t, fsys.Path)
	if err := CreateSubvolumeAt(root, "src"); err != nil {
		t.Fatal(err)
	}
	src := mustOpenDir(t, filepath.Join(fsys.Path, "src"))
	if err := SnapshotAt(src, root, "snap", SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	if ro, err := ReadOnly(filepath.Join(fsys.Path, "snap")); err != nil || !ro {
		t.Fatalf("ReadOnly(snap) = %v, %v", ro, err)
	}
	if err := DeleteSubvolumeAt(root, "snap", 0); err != nil {
		t.Fatal(err)
	}
	if exists(t, filepath.Join(fsys.Path, "snap")) {
		t.Error("snap still exists")
	}
}

// nestedTree creates a tree of nested subvolumes below fsys and returns
// their paths in pre-order.
func nestedTree(t testing.TB, root string) []string {
	mustCreate(t, root, "a", "a/b")
	mustMkdir(t, filepath.Join(root, "a/dir/deeper"))
	mustCreate(t, root, "a/dir/deeper/c", "a/b/d", "e")
	mustMkdir(t, filepath.Join(root, "e/x"))
	mustCreate(t, root, "e/x/f")
	return []string{"a", "a/b", "a/b/d", "a/dir/deeper/c", "e", "e/x/f"}
}

func TestNestedDelete(t *testing.T) {
	fsys := btrfstest.New(t)
	nestedTree(t, fsys.Path)
	a := filepath.Join(fsys.Path, "a")
	err := DeleteSubvolume(a, 0)
	if !errors.Is(err, unix.ENOTEMPTY) {
		t.Fatalf("plain delete of a subvolume with children: %v, want ENOTEMPTY", err)
	}
	if !exists(t, filepath.Join(a, "b/d")) {
		t.Fatal("failed delete removed something")
	}
	if err := DeleteSubvolume(a, DeleteRecursive); err != nil {
		t.Fatal(err)
	}
	if exists(t, a) {
		t.Fatal("a exists after recursive delete")
	}
	var left []string
	for info, err := range Subvolumes(fsys.Path) {
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, info.Path)
	}
	if want := []string{"e", "e/x/f"}; !slices.Equal(left, want) {
		t.Errorf("left after deleting a: %v, want %v", left, want)
	}
}

func TestDeleteByID(t *testing.T) {
	fsys := btrfstest.New(t)
	mustCreate(t, fsys.Path, "x", "y")
	id := subvolID(t, filepath.Join(fsys.Path, "x"))
	if err := DeleteSubvolumeByID(fsys.Path, id); err != nil {
		t.Fatal(err)
	}
	if exists(t, filepath.Join(fsys.Path, "x")) {
		t.Error("x exists after delete by id")
	}
	if !exists(t, filepath.Join(fsys.Path, "y")) {
		t.Error("delete by id removed y too")
	}
	// The top level and ids below 256 are not deletable subvolumes.
	for _, bad := range []uint64{BTRFS_FS_TREE_OBJECTID, 1, 255} {
		if err := DeleteSubvolumeByID(fsys.Path, bad); err == nil {
			t.Errorf("DeleteSubvolumeByID(%d) succeeded", bad)
		}
	}
	if err := DeleteSubvolumeByID(fsys.Path, id+1000); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DeleteSubvolumeByID(unknown) = %v, want ENOENT", err)
	}
}

func TestListingNestedPaths(t *testing.T) {
	fsys := btrfstest.New(t)
	want := nestedTree(t, fsys.Path)
	// Tree search reads committed root items, GET_SUBVOL_INFO the in-memory
	// ones (ctime moves with each child created): commit so they agree.
	if err := Sync(fsys.Path); err != nil {
		t.Fatal(err)
	}
	var byTree, byUser []SubvolInfo
	for _, c := range []struct {
		method listMethod
		out    *[]SubvolInfo
	}{{listTreeSearch, &byTree}, {listUser, &byUser}, {listAuto, nil}} {
		var got []string
		for info, err := range subvolumes(fsys.Path, c.method) {
			if err != nil {
				t.Fatalf("method %d: %v", c.method, err)
			}
			got = append(got, info.Path)
			if c.out != nil {
				*c.out = append(*c.out, info)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("method %d listed %v, want %v", c.method, got, want)
		}
	}
	// Both implementations must agree on every field: the tree search
	// parses root items itself, the other asks GET_SUBVOL_INFO.
	if !slices.Equal(byTree, byUser) {
		for i := range byTree {
			if byTree[i] != byUser[i] {
				t.Errorf("tree search: %+v\nuser ioctls: %+v", byTree[i], byUser[i])
			}
		}
	}
	// Listing below a nested subvolume gives paths relative to it.
	var below []string
	for info, err := range Subvolumes(filepath.Join(fsys.Path, "a")) {
		if err != nil {
			t.Fatal(err)
		}
		below = append(below, info.Path)
	}
	if w := []string{"b", "b/d", "dir/deeper/c"}; !slices.Equal(below, w) {
		t.Errorf("listing below a: %v, want %v", below, w)
	}
	// Early stop is honoured.
	n := 0
	for range Subvolumes(fsys.Path) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break after one item ran %d", n)
	}
}

func TestIsSubvolume(t *testing.T) {
	fsys := btrfstest.New(t)
	mustCreate(t, fsys.Path, "s")
	mustMkdir(t, filepath.Join(fsys.Path, "d"))
	for _, c := range []struct {
		path string
		want bool
	}{{fsys.Path, true}, {filepath.Join(fsys.Path, "s"), true}, {filepath.Join(fsys.Path, "d"), false}} {
		if got, err := IsSubvolume(c.path); err != nil || got != c.want {
			t.Errorf("IsSubvolume(%s) = %v, %v", c.path, got, err)
		}
	}
	if _, err := IsSubvolume("/proc"); !errors.Is(err, ErrNotBtrfs) {
		t.Errorf("IsSubvolume(/proc) = %v, want ErrNotBtrfs", err)
	}
	if _, err := SubvolumeInfo(filepath.Join(fsys.Path, "d")); !errors.Is(err, ErrNotSubvolume) {
		t.Errorf("SubvolumeInfo(plain dir) = %v, want ErrNotSubvolume", err)
	}
}

func TestFilesystemUsage(t *testing.T) {
	fsys := btrfstest.New(t, btrfstest.Size(512<<20))
	u, err := FilesystemUsage(fsys.Path)
	if err != nil {
		t.Fatal(err)
	}
	if u.DeviceSize != 512<<20 {
		t.Errorf("DeviceSize = %d, want %d", u.DeviceSize, 512<<20)
	}
	if u.Used == 0 || u.Used >= u.DeviceSize {
		t.Errorf("Used = %d of %d", u.Used, u.DeviceSize)
	}
}
