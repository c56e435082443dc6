package ioctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

// cliDefault parses `btrfs subvolume get-default`: "ID 5 (FS_TREE)" or
// "ID 256 gen 9 top level 5 path a".
func cliDefault(t testing.TB, fsPath string) uint64 {
	t.Helper()
	out := btrfsCLI(t, "subvolume", "get-default", fsPath)
	m := regexp.MustCompile(`^ID (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("btrfs subvolume get-default: %q", out)
	}
	id, _ := strconv.ParseUint(m[1], 10, 64)
	return id
}

// cliList parses `btrfs subvolume list` lines "ID n gen g top level p path x"
// into id → path.
func cliList(t testing.TB, args ...string) map[uint64]string {
	t.Helper()
	out := btrfsCLI(t, append([]string{"subvolume", "list"}, args...)...)
	got := map[uint64]string{}
	re := regexp.MustCompile(`^ID (\d+) gen \d+ top level \d+ path (.*)$`)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		m := re.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("btrfs subvolume list: line %q", line)
		}
		id, _ := strconv.ParseUint(m[1], 10, 64)
		got[id] = m[2]
	}
	return got
}

func TestDefaultSubvolume(t *testing.T) {
	fsys := btrfstest.New(t)
	mustCreate(t, fsys.Path, "a", "b")
	mustMkdir(t, filepath.Join(fsys.Path, "plain"))
	a, b := filepath.Join(fsys.Path, "a"), filepath.Join(fsys.Path, "b")
	idA, idB := subvolID(t, a), subvolID(t, b)

	get := func(want uint64) {
		t.Helper()
		got, err := DefaultSubvolume(filepath.Join(fsys.Path, "plain")) // any path on the filesystem
		if err != nil || got != want {
			t.Fatalf("DefaultSubvolume = %d, %v; want %d", got, err, want)
		}
		fd := mustOpenDir(t, b)
		if got, err := DefaultSubvolumeFd(fd); err != nil || got != want {
			t.Fatalf("DefaultSubvolumeFd = %d, %v; want %d", got, err, want)
		}
		if cli := cliDefault(t, fsys.Path); cli != want {
			t.Fatalf("btrfs subvolume get-default = %d, want %d", cli, want)
		}
	}
	get(BTRFS_FS_TREE_OBJECTID)
	if err := SetDefaultSubvolume(a); err != nil {
		t.Fatal(err)
	}
	get(idA)
	if err := SetDefaultSubvolumeByID(a, idB); err != nil {
		t.Fatal(err)
	}
	get(idB)
	if err := SetDefaultSubvolumeFd(mustOpenDir(t, a)); err != nil {
		t.Fatal(err)
	}
	get(idA)

	// Bad input changes nothing.
	for name, err := range map[string]error{
		"plain directory":         SetDefaultSubvolume(filepath.Join(fsys.Path, "plain")),
		"fd on a plain directory": SetDefaultSubvolumeFd(mustOpenDir(t, filepath.Join(fsys.Path, "plain"))),
		"id 0":                    SetDefaultSubvolumeByID(fsys.Path, 0),
		"no such id":              SetDefaultSubvolumeByID(fsys.Path, 9999),
	} {
		want := fs.ErrInvalid
		switch name {
		case "plain directory", "fd on a plain directory":
			want = ErrNotSubvolume
		case "no such id":
			want = fs.ErrNotExist
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	get(idA)
	if err := SetDefaultSubvolumeByIDFd(mustOpenDir(t, fsys.Path), BTRFS_FS_TREE_OBJECTID); err != nil {
		t.Fatal(err)
	}
	get(BTRFS_FS_TREE_OBJECTID)
	if _, err := DefaultSubvolume("/proc"); !errors.Is(err, ErrNotBtrfs) {
		t.Errorf("DefaultSubvolume(/proc) = %v, want ErrNotBtrfs", err)
	}
}

func TestDeletedSubvolumes(t *testing.T) {
	// A long commit interval: the deletions stay uncleaned until Sync.
	fsys := btrfstest.New(t, btrfstest.MountOptions("commit=300"))
	mustCreate(t, fsys.Path, "a", "b", "keep")
	idA, idB := subvolID(t, filepath.Join(fsys.Path, "a")), subvolID(t, filepath.Join(fsys.Path, "b"))
	if err := Sync(fsys.Path); err != nil {
		t.Fatal(err)
	}
	if got, err := DeletedSubvolumes(fsys.Path); err != nil || len(got) != 0 {
		t.Fatalf("DeletedSubvolumes before any delete = %v, %v", got, err)
	}
	for _, name := range []string{"a", "b"} {
		if err := DeleteSubvolume(filepath.Join(fsys.Path, name), 0); err != nil {
			t.Fatal(err)
		}
	}
	want := []uint64{idA, idB}
	got, err := DeletedSubvolumes(filepath.Join(fsys.Path, "keep"))
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("DeletedSubvolumes = %v, %v; want %v", got, err, want)
	}
	if got, err := DeletedSubvolumesFd(mustOpenDir(t, fsys.Path)); err != nil || !slices.Equal(got, want) {
		t.Fatalf("DeletedSubvolumesFd = %v, %v; want %v", got, err, want)
	}
	cli := cliList(t, "-d", fsys.Path)
	if len(cli) != 2 || cli[idA] == "" || cli[idB] == "" {
		t.Errorf("btrfs subvolume list -d = %v, want ids %v", cli, want)
	}
	// A deleted subvolume is still found by id, without a path.
	info, err := SubvolumeInfoByID(fsys.Path, idA)
	if err != nil || info.ID != idA || info.Path != "" || info.ParentID != 0 || info.UUID.IsZero() {
		t.Errorf("SubvolumeInfoByID(deleted) = %+v, %v", info, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := WaitDeletedFd(ctx, mustOpenDir(t, fsys.Path)); err != nil {
		t.Fatal(err)
	}
	if got, err := DeletedSubvolumes(fsys.Path); err != nil || len(got) != 0 {
		t.Errorf("DeletedSubvolumes after WaitDeleted = %v, %v", got, err)
	}
	if cli := cliList(t, "-d", fsys.Path); len(cli) != 0 {
		t.Errorf("btrfs subvolume list -d after WaitDeleted = %v", cli)
	}
}

func TestSubvolumeLookup(t *testing.T) {
	fsys := btrfstest.New(t)
	mustCreate(t, fsys.Path, "a")
	mustMkdir(t, filepath.Join(fsys.Path, "a/dir/deeper"))
	mustCreate(t, fsys.Path, "a/dir/deeper/n")
	mustWrite(t, filepath.Join(fsys.Path, "a/dir/f"), "x")
	if err := Snapshot(filepath.Join(fsys.Path, "a/dir/deeper/n"), filepath.Join(fsys.Path, "a/dir/snap"), SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	idA := subvolID(t, filepath.Join(fsys.Path, "a"))

	// The id of any path: `btrfs inspect-internal rootid`.
	for _, rel := range []string{".", "a", "a/dir", "a/dir/f", "a/dir/deeper/n", "a/dir/snap"} {
		p := filepath.Join(fsys.Path, rel)
		id, err := SubvolumeID(p)
		if err != nil {
			t.Fatal(err)
		}
		cli, _ := strconv.ParseUint(strings.TrimSpace(btrfsCLI(t, "inspect-internal", "rootid", p)), 10, 64)
		if id != cli {
			t.Errorf("SubvolumeID(%s) = %d, btrfs inspect-internal rootid %d", rel, id, cli)
		}
		if rel == "a/dir" || rel == "a/dir/f" {
			if id != idA {
				t.Errorf("SubvolumeID(%s) = %d, want a's %d", rel, id, idA)
			}
		}
	}
	fd := mustOpenDir(t, filepath.Join(fsys.Path, "a/dir"))
	if id, err := SubvolumeIDFd(fd); err != nil || id != idA {
		t.Errorf("SubvolumeIDFd(a/dir) = %d, %v; want %d", id, err, idA)
	}

	// Path and info by id against `btrfs subvolume show` and `list`.
	list := cliList(t, fsys.Path)
	if len(list) != 3 {
		t.Fatalf("btrfs subvolume list = %v", list)
	}
	for id, cliPath := range list {
		p, err := SubvolumePath(filepath.Join(fsys.Path, "a/dir/f"), id)
		if err != nil || p != cliPath {
			t.Errorf("SubvolumePath(%d) = %q, %v; btrfs subvolume list %q", id, p, err, cliPath)
		}
		info, err := SubvolumeInfoByID(fsys.Path, id)
		if err != nil {
			t.Fatal(err)
		}
		showPath, show := parseShow(btrfsCLI(t, "subvolume", "show", filepath.Join(fsys.Path, cliPath)))
		checks := map[string]string{
			"path":            info.Path + " / " + showPath,
			"Name":            info.Name + " / " + show["Name"],
			"UUID":            info.UUID.String() + " / " + show["UUID"],
			"Parent UUID":     info.ParentUUID.String() + " / " + show["Parent UUID"],
			"Subvolume ID":    fmt.Sprint(info.ID) + " / " + show["Subvolume ID"],
			"Generation":      fmt.Sprint(info.Generation) + " / " + show["Generation"],
			"Gen at creation": fmt.Sprint(info.OTransID) + " / " + show["Gen at creation"],
			"Parent ID":       fmt.Sprint(info.ParentID) + " / " + show["Parent ID"],
			"Flags":           map[bool]string{true: "readonly", false: "-"}[info.ReadOnly] + " / " + show["Flags"],
		}
		for k, v := range checks {
			ours, cli, _ := strings.Cut(v, " / ")
			if ours != cli {
				t.Errorf("subvolume %d %s: ours %q, btrfs subvolume show %q", id, k, ours, cli)
			}
		}
		// By id and through the subvolume itself agree, Path included.
		self, err := SubvolumeInfoByIDFd(mustOpenDir(t, filepath.Join(fsys.Path, cliPath)), 0)
		if err != nil || self.ID != id || self.Path != info.Path || self.UUID != info.UUID || self.DirID != info.DirID {
			t.Errorf("SubvolumeInfoByIDFd(fd, 0) = %+v, %v; by id %+v", self, err, info)
		}
	}
	if p, err := SubvolumePathFd(fd, 0); err != nil || p != "a" {
		t.Errorf("SubvolumePathFd(a/dir, 0) = %q, %v; want a", p, err)
	}
	if p, err := SubvolumePath(fsys.Path, BTRFS_FS_TREE_OBJECTID); err != nil || p != "" {
		t.Errorf("SubvolumePath(5) = %q, %v", p, err)
	}
	top, err := SubvolumeInfoByID(fsys.Path, BTRFS_FS_TREE_OBJECTID)
	if err != nil || top.ID != 5 || top.Path != "" || top.ParentID != 0 {
		t.Errorf("SubvolumeInfoByID(5) = %+v, %v", top, err)
	}
	for _, id := range []uint64{9999, 1, 255, BTRFS_LAST_FREE_OBJECTID + 1} {
		if _, err := SubvolumePath(fsys.Path, id); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("SubvolumePath(%d) = %v, want fs.ErrNotExist", id, err)
		}
		if _, err := SubvolumeInfoByID(fsys.Path, id); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("SubvolumeInfoByID(%d) = %v, want fs.ErrNotExist", id, err)
		}
	}
}

func TestSubvolumesWith(t *testing.T) {
	fsys := btrfstest.New(t)
	mustCreate(t, fsys.Path, "a", "a/b", "a/b/c", "a/d", "e")
	mustMkdir(t, filepath.Join(fsys.Path, "plain"))
	paths := func(seq func(func(SubvolInfo, error) bool)) []string {
		t.Helper()
		var got []string
		for info, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, info.Path)
		}
		return got
	}
	a := filepath.Join(fsys.Path, "a")
	if got, want := paths(SubvolumesWith(a, ListOptions{}.withPostOrder())), []string{"b/c", "b", "d"}; !slices.Equal(got, want) {
		t.Errorf("post-order = %v, want %v", got, want)
	}
	if got, want := paths(SubvolumesWith(a, ListOptions{})), []string{"b", "b/c", "d"}; !slices.Equal(got, want) {
		t.Errorf("pre-order = %v, want %v", got, want)
	}
	// A top by id, from any directory on the filesystem.
	idA := subvolID(t, a)
	if got, want := paths(SubvolumesWith(filepath.Join(fsys.Path, "plain"), ListOptions{Top: idA})), []string{"b", "b/c", "d"}; !slices.Equal(got, want) {
		t.Errorf("Top a = %v, want %v", got, want)
	}
	dirFd := mustOpenDir(t, fsys.Path)
	if got, want := paths(SubvolumesAtWith(dirFd, "plain", ListOptions{Top: idA, PostOrder: true})), []string{"b/c", "b", "d"}; !slices.Equal(got, want) {
		t.Errorf("SubvolumesAtWith Top a, post-order = %v, want %v", got, want)
	}
	// Top 5 is `btrfs subvolume list`.
	var all []string
	for _, p := range cliList(t, fsys.Path) {
		all = append(all, p)
	}
	slices.Sort(all)
	got := paths(SubvolumesWith(a, ListOptions{Top: BTRFS_FS_TREE_OBJECTID}))
	slices.Sort(got)
	if !slices.Equal(got, all) {
		t.Errorf("Top 5 = %v, btrfs subvolume list %v", got, all)
	}
	for _, top := range []uint64{9999, 3} {
		for _, err := range SubvolumesWith(a, ListOptions{Top: top}) {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Top %d: %v, want fs.ErrNotExist", top, err)
			}
			break
		}
	}
	// Without Top, the path must be a subvolume.
	for _, err := range SubvolumesWith(filepath.Join(fsys.Path, "plain"), ListOptions{PostOrder: true}) {
		if !errors.Is(err, ErrNotSubvolume) {
			t.Errorf("plain directory without Top: %v, want ErrNotSubvolume", err)
		}
		break
	}
	// Post-order is the order a delete needs: deleting one by one works.
	for info, err := range SubvolumesWith(a, ListOptions{PostOrder: true}) {
		if err != nil {
			t.Fatal(err)
		}
		if err := DeleteSubvolume(filepath.Join(a, info.Path), 0); err != nil {
			t.Fatalf("delete %s in post-order: %v", info.Path, err)
		}
	}
}

func (o ListOptions) withPostOrder() ListOptions { o.PostOrder = true; return o }

// mustTree checks that each rel below root is a subvolume holding file f
// with its own name, read-only or not.
func mustTree(t testing.TB, root string, readOnly bool, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		p := filepath.Join(root, rel)
		if ok, err := IsSubvolume(p); err != nil || !ok {
			t.Errorf("%s: IsSubvolume = %v, %v", rel, ok, err)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(p, "f")); err != nil || string(b) != filepath.Base(rel) {
			t.Errorf("%s/f = %q, %v", rel, b, err)
		}
		if ro, err := ReadOnly(p); err != nil || ro != readOnly {
			t.Errorf("%s: ReadOnly = %v, %v; want %v", rel, ro, err, readOnly)
		}
	}
}

// mustTop checks that p is a subvolume holding the top's file f ("s").
func mustTop(t testing.TB, p string, readOnly bool) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(p, "f")); err != nil || string(b) != "s" {
		t.Errorf("%s/f = %q, %v", p, b, err)
	}
	if ro, err := ReadOnly(p); err != nil || ro != readOnly {
		t.Errorf("%s: ReadOnly = %v, %v; want %v", p, ro, err, readOnly)
	}
}

// makeTree creates s, s/n1, s/n1/n2, s/dir/n3 below root, each with a file
// f holding its base name.
func makeTree(t testing.TB, root string) {
	t.Helper()
	mustCreate(t, root, "s", "s/n1", "s/n1/n2")
	mustMkdir(t, filepath.Join(root, "s/dir"))
	mustCreate(t, root, "s/dir/n3")
	for _, rel := range []string{"s", "s/n1", "s/n1/n2", "s/dir/n3"} {
		mustWrite(t, filepath.Join(root, rel, "f"), filepath.Base(rel))
	}
}

func TestSnapshotRecursive(t *testing.T) {
	fsys := btrfstest.New(t)
	makeTree(t, fsys.Path)
	s := filepath.Join(fsys.Path, "s")
	nested := []string{"n1", "n1/n2", "dir/n3"}

	rw := filepath.Join(fsys.Path, "rw")
	if err := Snapshot(s, rw, SnapshotRecursive); err != nil {
		t.Fatal(err)
	}
	mustTop(t, rw, false)
	mustTree(t, rw, false, nested...)
	for _, rel := range nested {
		src, _ := SubvolumeInfo(filepath.Join(s, rel))
		snap, _ := SubvolumeInfo(filepath.Join(rw, rel))
		if snap.ParentUUID != src.UUID || snap.ID == src.ID {
			t.Errorf("%s: snapshot parent UUID %v, source UUID %v", rel, snap.ParentUUID, src.UUID)
		}
	}

	ro := filepath.Join(fsys.Path, "ro")
	if err := SnapshotWith(s, ro, SnapshotOptions{Flags: SnapshotRecursive | SnapshotReadOnly}); err != nil {
		t.Fatal(err)
	}
	mustTop(t, ro, true)
	mustTree(t, ro, true, nested...)

	// Into the source itself: what is listed first is snapshotted, the new
	// snapshot is not snapshotted into itself.
	if err := SnapshotAtWith(mustOpenDir(t, s), mustOpenDir(t, filepath.Join(s, "dir")), "inner", SnapshotOptions{Flags: SnapshotRecursive}); err != nil {
		t.Fatal(err)
	}
	mustTree(t, filepath.Join(s, "dir/inner"), false, nested...)
	if ok, _ := IsSubvolume(filepath.Join(s, "dir/inner/dir/inner")); ok {
		t.Error("the recursive snapshot was snapshotted into itself")
	}

	// Without the flag, placeholders stay (the kernel's empty directories).
	if err := Snapshot(s, filepath.Join(fsys.Path, "flat"), 0); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(fsys.Path, "flat/n1"), &st); err != nil || st.Ino != BTRFS_EMPTY_SUBVOL_DIR_OBJECTID {
		t.Errorf("flat/n1: ino %d, %v; want the placeholder's %d", st.Ino, err, BTRFS_EMPTY_SUBVOL_DIR_OBJECTID)
	}

	// Bad input changes nothing.
	for name, err := range map[string]error{
		"exists":          Snapshot(s, rw, SnapshotRecursive),
		"unknown flag":    Snapshot(s, filepath.Join(fsys.Path, "x"), SnapshotRecursive|1<<40),
		"not a subvolume": Snapshot(filepath.Join(s, "dir"), filepath.Join(fsys.Path, "y"), SnapshotRecursive),
	} {
		want := map[string]error{"exists": fs.ErrExist, "unknown flag": fs.ErrInvalid, "not a subvolume": ErrNotSubvolume}[name]
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	for _, name := range []string{"x", "y"} {
		if exists(t, filepath.Join(fsys.Path, name)) {
			t.Errorf("%s created by a failed snapshot", name)
		}
	}
}

func TestQgroupInherit(t *testing.T) {
	for _, mode := range []string{"full", "simple"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "simple" && !btrfstest.KernelAtLeast(6, 7) {
				// A version gate, not a missing tool: below 6.7 the kernel
				// has no simple quotas, so skip even with
				// BTRFS_TEST_REQUIRE=1; from 6.7 on the subtest runs and a
				// missing feature fails.
				t.Skip("simple quotas (BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA) are in Linux 6.7 and later")
			}
			fsys := btrfstest.New(t)
			if mode == "simple" {
				// btrfs-progs learnt --simple in 6.7; the ioctl is older than
				// the CLI on many distributions, so issue it directly.
				if err := quotaEnableSimple(mustOpenDir(t, fsys.Path)); err != nil {
					t.Fatalf("BTRFS_IOC_QUOTA_CTL(ENABLE_SIMPLE_QUOTA): %v", err)
				}
			} else {
				btrfsCLI(t, "quota", "enable", fsys.Path)
			}
			parent := QgroupID(1, 100)
			btrfsCLI(t, "qgroup", "create", qgroupString(parent), fsys.Path)
			inherit := &QgroupInherit{Qgroups: []uint64{parent}}
			sub := filepath.Join(fsys.Path, "sub")
			if err := CreateSubvolumeWith(sub, CreateOptions{QgroupInherit: inherit}); err != nil {
				t.Fatal(err)
			}
			snap := filepath.Join(fsys.Path, "snap")
			if err := SnapshotWith(sub, snap, SnapshotOptions{Flags: SnapshotReadOnly, QgroupInherit: inherit}); err != nil {
				t.Fatal(err)
			}
			if err := CreateSubvolumeAtWith(mustOpenDir(t, fsys.Path), "plain", CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			parents := cliQgroupParents(t, fsys.Path)
			for _, p := range []string{sub, snap} {
				q := qgroupString(QgroupID(0, subvolID(t, p)))
				if parents[q] != "1/100" {
					t.Errorf("%s: qgroup %s has parent %q in btrfs qgroup show -p, want 1/100 (all: %v)", filepath.Base(p), q, parents[q], parents)
				}
			}
			if q := qgroupString(QgroupID(0, subvolID(t, filepath.Join(fsys.Path, "plain")))); parents[q] != "-" {
				t.Errorf("plain: qgroup %s has parent %q, want none", q, parents[q])
			}
			// A qgroup that does not exist (ENOENT), or of level 0 (EINVAL):
			// refused from 6.7 on, and nothing created.
			if btrfstest.KernelAtLeast(6, 7) {
				for bad, want := range map[uint64]error{QgroupID(1, 999): fs.ErrNotExist, QgroupID(0, 5): fs.ErrInvalid} {
					p := filepath.Join(fsys.Path, "bad")
					err := CreateSubvolumeWith(p, CreateOptions{QgroupInherit: &QgroupInherit{Qgroups: []uint64{bad}}})
					if !errors.Is(err, want) || exists(t, p) {
						t.Errorf("inherit %s: %v (exists %v), want %v and nothing created", qgroupString(bad), err, exists(t, p), want)
					}
					err = SnapshotWith(sub, p, SnapshotOptions{QgroupInherit: &QgroupInherit{Qgroups: []uint64{bad}}})
					if !errors.Is(err, want) || exists(t, p) {
						t.Errorf("snapshot inheriting %s: %v (exists %v), want %v and nothing created", qgroupString(bad), err, exists(t, p), want)
					}
				}
			}
		})
	}
}

// quotaEnableSimple enables simple quotas (kernel 6.7): BTRFS_IOC_QUOTA_CTL,
// _IOWR(0x94, 40, struct btrfs_ioctl_quota_ctl_args), with cmd
// BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA. Only the tests need it.
func quotaEnableSimple(fd int) error {
	const quotaCtl = iocWR | 16<<iocSizeShift | iocBtrfs | 40
	args := struct{ Cmd, Status uint64 }{Cmd: 4}
	return ioctlPtr(fd, quotaCtl, unsafe.Pointer(&args))
}

// cliQgroupParents parses `btrfs qgroup show -p --sync`: qgroup → parent
// column.
func cliQgroupParents(t testing.TB, fsPath string) map[string]string {
	t.Helper()
	out := btrfsCLI(t, "qgroup", "show", "-p", "--raw", "--sync", fsPath)
	got := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && strings.Contains(f[0], "/") && f[0][0] >= '0' && f[0][0] <= '9' {
			got[f[0]] = f[3]
		}
	}
	return got
}

func TestSyncStartWait(t *testing.T) {
	fsys := btrfstest.New(t)
	mustWrite(t, filepath.Join(fsys.Path, "f"), "x")
	transid, err := SyncStart(filepath.Join(fsys.Path, "f"))
	if err != nil || transid == 0 {
		t.Fatalf("SyncStart = %d, %v", transid, err)
	}
	if err := SyncWait(filepath.Join(fsys.Path, "f"), transid); err != nil {
		t.Fatal(err)
	}
	fd := mustOpenDir(t, fsys.Path)
	next, err := SyncStartFd(fd)
	if err != nil || next < transid {
		t.Fatalf("SyncStartFd = %d, %v; after %d", next, err, transid)
	}
	if err := SyncWaitFd(fd, next); err != nil {
		t.Fatal(err)
	}
	if err := SyncWaitFd(fd, 0); err != nil {
		t.Fatal(err)
	}
	if err := SyncWait(fsys.Path, next+1000); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("SyncWait(future transid) = %v, want fs.ErrInvalid", err)
	}
	if err := SyncFd(fd); err != nil {
		t.Fatal(err)
	}
	if _, err := SyncStart("/proc"); !errors.Is(err, ErrNotBtrfs) {
		t.Errorf("SyncStart(/proc) = %v, want ErrNotBtrfs", err)
	}
}

func TestFdForms(t *testing.T) {
	fsys := btrfstest.New(t)
	mustCreate(t, fsys.Path, "a")
	mustMkdir(t, filepath.Join(fsys.Path, "a/dir"))
	if err := Snapshot(filepath.Join(fsys.Path, "a"), filepath.Join(fsys.Path, "ro"), SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string][2]bool{"a": {true, false}, "a/dir": {false, false}, "ro": {true, true}} {
		fd := mustOpenDir(t, filepath.Join(fsys.Path, rel))
		isSub, err := IsSubvolumeFd(fd)
		if err != nil || isSub != want[0] {
			t.Errorf("IsSubvolumeFd(%s) = %v, %v; want %v", rel, isSub, err, want[0])
		}
		ro, err := ReadOnlyFd(fd)
		if !want[0] {
			if !errors.Is(err, ErrNotSubvolume) {
				t.Errorf("ReadOnlyFd(%s) = %v, want ErrNotSubvolume", rel, err)
			}
			continue
		}
		if err != nil || ro != want[1] {
			t.Errorf("ReadOnlyFd(%s) = %v, %v; want %v", rel, ro, err, want[1])
		}
	}
	procFd, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(procFd)
	if _, err := IsSubvolumeFd(procFd); !errors.Is(err, ErrNotBtrfs) {
		t.Errorf("IsSubvolumeFd(/proc) = %v, want ErrNotBtrfs", err)
	}
	if err := SyncFd(procFd); !errors.Is(err, ErrNotBtrfs) {
		t.Errorf("SyncFd(/proc) = %v, want ErrNotBtrfs", err)
	}
	if _, err := FilesystemUsageFd(procFd); !errors.Is(err, ErrNotBtrfs) {
		t.Errorf("FilesystemUsageFd(/proc) = %v, want ErrNotBtrfs", err)
	}
	if err := DeleteSubvolumeByIDFd(procFd, 256); !errors.Is(err, ErrNotBtrfs) {
		t.Errorf("DeleteSubvolumeByIDFd(/proc) = %v, want ErrNotBtrfs", err)
	}

	top := mustOpenDir(t, fsys.Path)
	want, err := FilesystemUsage(fsys.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := FilesystemUsageFd(top); err != nil || got.DeviceSize != want.DeviceSize || got.DeviceSize == 0 {
		t.Errorf("FilesystemUsageFd = %+v, %v; FilesystemUsage %+v", got, err, want)
	}
	id := subvolID(t, filepath.Join(fsys.Path, "ro"))
	if err := DeleteSubvolumeByIDFd(mustOpenDir(t, filepath.Join(fsys.Path, "a/dir")), id); err != nil {
		t.Fatal(err)
	}
	if exists(t, filepath.Join(fsys.Path, "ro")) {
		t.Error("DeleteSubvolumeByIDFd left the subvolume")
	}
	if err := DeleteSubvolumeByIDFd(top, id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DeleteSubvolumeByIDFd(deleted id) = %v, want fs.ErrNotExist", err)
	}
}
