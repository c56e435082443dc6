package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/internal/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

const sampleMountInfo = `24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334492k,nr_inodes=3083623,mode=755
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
43 27 0:39 / /tmp/btrfstest-1/fs-2/mnt rw,relatime - btrfs /dev/loop0 rw,discard=async,space_cache=v2,user_subvol_rm_allowed,subvolid=5,subvol=/
44 43 0:39 /a\040b /tmp/with\040space/c\011d\134e rw,noatime shared:7 master:3 propagate_from:2 unbindable - btrfs /dev/loop0 ro,subvolid=256,subvol=/a\040b
45 27 0:50 / /srv/nosrc rw - tmpfs  rw,opt\054with\054commas
`

func TestParseMountInfo(t *testing.T) {
	got, err := ParseMountInfo(strings.NewReader(sampleMountInfo + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{ID: 24, ParentID: 27, Major: 0, Minor: 6, Root: "/", MountPoint: "/dev", FSType: "devtmpfs", Source: "devtmpfs",
			Options: []string{"rw", "relatime"}, SuperOptions: []string{"rw", "size=12334492k", "nr_inodes=3083623", "mode=755"}},
		{ID: 27, ParentID: 1, Major: 254, Minor: 0, Root: "/", MountPoint: "/", FSType: "ext4", Source: "/dev/vda",
			Options: []string{"rw", "relatime"}, SuperOptions: []string{"rw", "discard"}},
		{ID: 43, ParentID: 27, Major: 0, Minor: 39, Root: "/", MountPoint: "/tmp/btrfstest-1/fs-2/mnt", FSType: "btrfs", Source: "/dev/loop0",
			Options:      []string{"rw", "relatime"},
			SuperOptions: []string{"rw", "discard=async", "space_cache=v2", "user_subvol_rm_allowed", "subvolid=5", "subvol=/"}},
		{ID: 44, ParentID: 43, Major: 0, Minor: 39, Root: "/a b", MountPoint: "/tmp/with space/c\td\\e", FSType: "btrfs", Source: "/dev/loop0",
			Options: []string{"rw", "noatime"}, SuperOptions: []string{"ro", "subvolid=256", "subvol=/a b"}},
		{ID: 45, ParentID: 27, Major: 0, Minor: 50, Root: "/", MountPoint: "/srv/nosrc", FSType: "tmpfs", Source: "",
			Options: []string{"rw"}, SuperOptions: []string{"rw", "opt,with,commas"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseMountInfo:\n got %+v\nwant %+v", got, want)
	}

	if !want[2].HasOption("user_subvol_rm_allowed") || want[1].HasOption("user_subvol_rm_allowed") {
		t.Error("HasOption(user_subvol_rm_allowed) wrong")
	}
	for opt, wantHas := range map[string]bool{
		"ro": true, "rw": true, "noatime": true, "subvol": true, "subvol=/a b": true,
		"subvol=/a": false, "subvolid=256": true, "subvolid=5": false, "relatime": false, "sub": false,
	} {
		if got := want[3].HasOption(opt); got != wantHas {
			t.Errorf("HasOption(%q) = %v, want %v", opt, got, wantHas)
		}
	}
}

func TestParseMountInfoErrors(t *testing.T) {
	for _, bad := range []string{
		"24 27 0:6 / /dev rw,relatime devtmpfs devtmpfs rw",   // no separator
		"24 27 0:6 / /dev - devtmpfs devtmpfs rw",             // 5 fields before
		"24 27 0:6 / /dev rw - devtmpfs devtmpfs",             // 2 after
		"x 27 0:6 / /dev rw - devtmpfs devtmpfs rw",           // id
		"24 y 0:6 / /dev rw - devtmpfs devtmpfs rw",           // parent
		"24 27 06 / /dev rw - devtmpfs devtmpfs rw",           // device
		"24 27 0:x / /dev rw - devtmpfs devtmpfs rw",          // minor
		"24 27 4294967296:0 / /dev rw - devtmpfs devtmpfs rw", // major overflow
	} {
		in := sampleMountInfo + bad + "\n"
		if _, err := ParseMountInfo(strings.NewReader(in)); err == nil {
			t.Errorf("ParseMountInfo accepted %q", bad)
		} else if !strings.Contains(err.Error(), "line 6") {
			t.Errorf("error %q does not name line 6", err)
		}
	}
}

func TestUnescapeMountInfo(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:           "/plain",
		`/a\040b`:          "/a b",
		`/t\011x\134y\012`: "/t\tx\\y\n",
		`/short\04`:        `/short\04`,
		`/end\`:            `/end\`,
		`/not\999\040`:     `/not\999 `,
		`/big\400`:         `/big\400`,
		`\377`:             "\xff",
		`\\040`:            `\ `,
	} {
		if got := unescapeMountInfo(in); got != want {
			t.Errorf("unescapeMountInfo(%q) = %q, want %q", in, got, want)
		}
	}
}

// escapeMountInfo is the inverse of unescapeMountInfo, escaping more than
// the kernel does so that any field survives.
func escapeMountInfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("/_.:=+@", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, `\%03o`, c)
		}
	}
	return b.String()
}

func formatMountLine(m Mount) string {
	opts := func(list []string) string {
		esc := make([]string, len(list))
		for i, o := range list {
			esc[i] = escapeMountInfo(o)
		}
		return strings.Join(esc, ",")
	}
	return fmt.Sprintf("%d %d %d:%d %s %s %s - %s %s %s", m.ID, m.ParentID, m.Major, m.Minor,
		escapeMountInfo(m.Root), escapeMountInfo(m.MountPoint), opts(m.Options),
		escapeMountInfo(m.FSType), escapeMountInfo(m.Source), opts(m.SuperOptions))
}

// FuzzParseMountInfo checks that ParseMountInfo never panics, and that what
// it parses survives formatting and parsing again. The seed corpus is in
// testdata/fuzz/FuzzParseMountInfo.
func FuzzParseMountInfo(f *testing.F) {
	f.Add([]byte(sampleMountInfo))
	f.Fuzz(func(t *testing.T, data []byte) {
		mounts, err := ParseMountInfo(bytes.NewReader(data))
		if err != nil {
			return
		}
		var again bytes.Buffer
		for _, m := range mounts {
			// A list with one empty option formats like an empty list.
			if len(m.Options) == 1 && m.Options[0] == "" || len(m.SuperOptions) == 1 && m.SuperOptions[0] == "" {
				return
			}
			fmt.Fprintln(&again, formatMountLine(m))
		}
		got, err := ParseMountInfo(&again)
		if err != nil {
			t.Fatalf("reparse of %q: %v", again.String(), err)
		}
		if !reflect.DeepEqual(got, mounts) {
			t.Fatalf("round trip changed the mounts:\n got %+v\nwant %+v", got, mounts)
		}
	})
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
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := ParseMountInfo(bytes.NewReader(b))
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
