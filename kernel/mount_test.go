package kernel

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/internal/mountinfo"
	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// The parser's cases are in internal/mountinfo; this checks that
// ParseMountInfo and HasOption reach it.
func TestParseMountInfo(t *testing.T) {
	got, err := ParseMountInfo(strings.NewReader("44 43 0:39 /a\\040b /mnt rw,noatime - btrfs /dev/loop0 ro,subvol=/a\\040b\n"))
	want := []Mount{{ID: 44, ParentID: 43, Major: 0, Minor: 39, Root: "/a b", MountPoint: "/mnt", FSType: "btrfs",
		Source: "/dev/loop0", Options: []string{"rw", "noatime"}, SuperOptions: []string{"ro", "subvol=/a b"}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseMountInfo = %+v, %v; want %+v", got, err, want)
	}
	if len(got) == 1 && (!got[0].HasOption("subvol") || got[0].HasOption("subvol=/a")) {
		t.Errorf("HasOption(subvol) wrong on %+v", got[0])
	}
	if _, err := ParseMountInfo(strings.NewReader("1 2 0:3 / /x rw\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("ParseMountInfo of a line without separator: %v, want an error naming line 1", err)
	}
}

func TestIsBtrfs(t *testing.T) {
	fsys := btrfstest.New(t)
	if ok, err := IsBtrfs(fsys.Path); !ok || err != nil {
		t.Errorf("IsBtrfs(%s) = %v, %v; want true", fsys.Path, ok, err)
	}
	if ok, err := IsBtrfs("/proc"); ok || err != nil {
		t.Errorf("IsBtrfs(/proc) = %v, %v; want false", ok, err)
	}
	if _, err := IsBtrfs(filepath.Join(fsys.Path, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("IsBtrfs(missing) error %v, want fs.ErrNotExist", err)
	}
}

// bindMount bind-mounts src on dst until the end of the test; call it after
// btrfstest.New so that it is unmounted before the filesystem.
func bindMount(t *testing.T, src, dst string) {
	t.Helper()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount %s on %s: %v", src, dst, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dst, 0); err != nil {
			t.Errorf("unmount %s: %v", dst, err)
		}
	})
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// mountOfBoth returns MountOf(path) after checking that the fallback used
// on kernels without STATX_MNT_ID finds the same mount.
func mountOfBoth(t *testing.T, path string) Mount {
	t.Helper()
	m, err := MountOf(path)
	if err != nil {
		t.Fatalf("MountOf(%s): %v", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(resolved, &st); err != nil {
		t.Fatal(err)
	}
	mounts, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(resolved, &sfs); err != nil {
		t.Fatal(err)
	}
	fallback, ok := findMount(mounts, resolved, unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)), 0, uint32(sfs.Type) == unix.BTRFS_SUPER_MAGIC)
	if !ok || !reflect.DeepEqual(fallback, m) {
		t.Errorf("for %s the fallback found %+v (%v), statx %+v", path, fallback, ok, m)
	}
	return m
}

func TestMountOfBtrfs(t *testing.T) {
	fsys := btrfstest.New(t)
	m := mountOfBoth(t, fsys.Path)
	if m.MountPoint != fsys.Path || m.FSType != "btrfs" || m.Source != fsys.Device || m.Root != "/" {
		t.Errorf("MountOf(%s) = %+v", fsys.Path, m)
	}
	var st unix.Stat_t
	if err := unix.Stat(fsys.Path, &st); err != nil {
		t.Fatal(err)
	}
	// btrfs gives every subvolume, the top one included, an anonymous
	// device of its own as st_dev; mountinfo shows the superblock's.
	t.Logf("mount device %d:%d, st_dev of the top subvolume %d:%d", m.Major, m.Minor, unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
	if m.HasOption("user_subvol_rm_allowed") {
		t.Errorf("mount without user_subvol_rm_allowed has it: %q %q", m.Options, m.SuperOptions)
	}
	if !m.HasOption("subvolid=5") || m.HasOption("ro") {
		t.Errorf("options %q %q: want subvolid=5 and rw", m.Options, m.SuperOptions)
	}

	// A nested subvolume has its own st_dev but is on the same mount.
	sub := filepath.Join(fsys.Path, "sv")
	if err := ioctl.CreateSubvolume(sub); err != nil {
		t.Fatal(err)
	}
	mkdirs(t, filepath.Join(sub, "dir"))
	var subSt unix.Stat_t
	if err := unix.Stat(sub, &subSt); err != nil {
		t.Fatal(err)
	}
	if subSt.Dev == st.Dev {
		t.Errorf("nested subvolume has the same st_dev as the top one (%d:%d)", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
	}
	for _, p := range []string{sub, filepath.Join(sub, "dir"), filepath.Join(sub, "dir", "..", "dir")} {
		if got := mountOfBoth(t, p); got.ID != m.ID {
			t.Errorf("MountOf(%s) = mount %d %s, want %d", p, got.ID, got.MountPoint, m.ID)
		}
	}

	// Through a symbolic link and a relative path.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(sub, link); err != nil {
		t.Fatal(err)
	}
	if got := mountOfBoth(t, link); got.ID != m.ID {
		t.Errorf("MountOf(%s) = mount %d %s, want %d", link, got.ID, got.MountPoint, m.ID)
	}
	t.Chdir(sub)
	if got := mountOfBoth(t, "dir"); got.ID != m.ID {
		t.Errorf("MountOf(dir) = mount %d %s, want %d", got.ID, got.MountPoint, m.ID)
	}

	if _, err := MountOf(filepath.Join(fsys.Path, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("MountOf(missing) error %v, want fs.ErrNotExist", err)
	}
}

func TestMountOfUserSubvolRmAllowed(t *testing.T) {
	fsys := btrfstest.New(t, btrfstest.MountOptions("user_subvol_rm_allowed"))
	m := mountOfBoth(t, fsys.Path)
	if !m.HasOption("user_subvol_rm_allowed") {
		t.Errorf("MountOf(%s) options %q %q lack user_subvol_rm_allowed", fsys.Path, m.Options, m.SuperOptions)
	}
}

// TestMountOfRemount checks the fix the requirement check gives: remounting
// with user_subvol_rm_allowed works and MountOf sees it.
func TestMountOfRemount(t *testing.T) {
	fsys := btrfstest.New(t)
	fsys.Remount(t, 0, "user_subvol_rm_allowed")
	if m := mountOfBoth(t, fsys.Path); !m.HasOption("user_subvol_rm_allowed") {
		t.Errorf("after remount, options %q %q lack user_subvol_rm_allowed", m.Options, m.SuperOptions)
	}
	fsys.Remount(t, unix.MS_RDONLY, "")
	if m := mountOfBoth(t, fsys.Path); !m.HasOption("ro") {
		t.Errorf("after read-only remount, options %q %q lack ro", m.Options, m.SuperOptions)
	}
}

func TestMountOfBindAndStacked(t *testing.T) {
	fsys := btrfstest.New(t)
	srcA := filepath.Join(fsys.Path, "a b")
	srcB := filepath.Join(fsys.Path, "b")
	dst := filepath.Join(fsys.Path, "c\td")
	stack := filepath.Join(fsys.Path, "stack")
	mkdirs(t, filepath.Join(srcA, "x"), filepath.Join(srcB, "y"), dst, stack)
	top := mountOfBoth(t, fsys.Path)

	bindMount(t, srcA, dst)
	m := mountOfBoth(t, filepath.Join(dst, "x"))
	if m.MountPoint != dst || m.Root != "/a b" || m.FSType != "btrfs" || m.ID == top.ID || m.ParentID != top.ID {
		t.Errorf("MountOf(bind mount) = %+v, want %s with root \"/a b\" on mount %d", m, dst, top.ID)
	}

	// Two mounts on one directory: the second one is what the path reaches.
	bindMount(t, srcA, stack)
	bindMount(t, srcB, stack)
	m = mountOfBoth(t, filepath.Join(stack, "y"))
	if m.MountPoint != stack || m.Root != "/b" {
		t.Errorf("MountOf(stacked mount) = %+v, want root /b on %s", m, stack)
	}
}

func TestMountOfNotBtrfs(t *testing.T) {
	m := mountOfBoth(t, "/proc/self")
	if m.FSType != "proc" || m.MountPoint != "/proc" {
		t.Errorf("MountOf(/proc/self) = %+v", m)
	}
	dir := t.TempDir()
	m = mountOfBoth(t, dir)
	resolved, _ := filepath.EvalSymlinks(dir)
	if !isPathPrefix(m.MountPoint, resolved) || m.FSType == "" {
		t.Errorf("MountOf(%s) = %+v", dir, m)
	}
	t.Logf("%s is on %s mounted at %s", dir, m.FSType, m.MountPoint)
}

func TestIsPathPrefix(t *testing.T) {
	for _, tt := range []struct {
		dir, path string
		want      bool
	}{
		{"/", "/", true}, {"/", "/a", true}, {"/a", "/a", true}, {"/a", "/a/b", true},
		{"/a", "/ab", false}, {"/a/b", "/a", false}, {"/a b", "/a b/c", true},
	} {
		if got := isPathPrefix(tt.dir, tt.path); got != tt.want {
			t.Errorf("isPathPrefix(%q, %q) = %v", tt.dir, tt.path, got)
		}
	}
}
