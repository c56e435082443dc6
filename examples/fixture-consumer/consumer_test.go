package consumer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// TestMain runs the tests with btrfstest's leak checks, and dispatches the
// child processes that RunAs starts.
func TestMain(m *testing.M) { btrfstest.Main(m) }

func init() {
	// create makes the subvolume args[0]; a child process runs it.
	btrfstest.Register("create", func(args []string) error {
		return ioctl.CreateSubvolume(args[0])
	})
}

// TestCreateSubvolume creates a subvolume with ioctl on a fresh btrfs and
// checks it is one: inode 256, its own subvolume id, a child of the top
// level, empty.
func TestCreateSubvolume(t *testing.T) {
	fsys := btrfstest.New(t)
	dir := filepath.Join(fsys.Path, Subvolumes)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sv := filepath.Join(dir, "a")
	if err := ioctl.CreateSubvolume(sv); err != nil {
		t.Fatal(err)
	}

	if ok, err := ioctl.IsSubvolume(sv); err != nil || !ok {
		t.Fatalf("IsSubvolume(%s) = %v, %v; want true", sv, ok, err)
	}
	if ok, err := ioctl.IsSubvolume(dir); err != nil || ok {
		t.Fatalf("IsSubvolume(%s) = %v, %v; want false for a plain directory", dir, ok, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(sv, &st); err != nil {
		t.Fatal(err)
	}
	if st.Ino != 256 {
		t.Fatalf("%s: inode %d, want 256", sv, st.Ino)
	}
	info, err := ioctl.SubvolumeInfo(sv)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID < 256 || info.ParentID != 5 || info.Name != "a" || info.ReadOnly {
		t.Fatalf("SubvolumeInfo(%s) = id %d parent %d name %q ro %v; want id >= 256, parent 5, name a, writable",
			sv, info.ID, info.ParentID, info.Name, info.ReadOnly)
	}
	if entries, err := os.ReadDir(sv); err != nil || len(entries) != 0 {
		t.Fatalf("new subvolume holds %v (err %v), want nothing", entries, err)
	}

	// The same name again is fs.ErrExist, and changes nothing.
	if err := ioctl.CreateSubvolume(sv); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second CreateSubvolume(%s) = %v, want fs.ErrExist", sv, err)
	}
	again, err := ioctl.SubvolumeInfo(sv)
	if err != nil || again.ID != info.ID {
		t.Fatalf("after the refused create: id %d (err %v), want %d", again.ID, err, info.ID)
	}
}

// TestCreateSubvolumeUnprivileged creates subvolumes from a child process
// running as uid 65534 with no capabilities: allowed in a directory it owns,
// refused with EACCES in root's.
func TestCreateSubvolumeUnprivileged(t *testing.T) {
	fsys := btrfstest.New(t)
	const uid = 65534
	nobody := btrfstest.Cred{UID: uid, GID: uid}
	owned := filepath.Join(fsys.Path, "owned")
	if err := os.Mkdir(owned, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(owned, uid, uid); err != nil {
		t.Fatal(err)
	}

	mine := filepath.Join(owned, "mine")
	if _, err := btrfstest.RunAs(t, nobody, "create", mine); err != nil {
		t.Fatal(err)
	}
	if ok, err := ioctl.IsSubvolume(mine); err != nil || !ok {
		t.Fatalf("IsSubvolume(%s) = %v, %v; want true", mine, ok, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(mine, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != uid {
		t.Fatalf("%s is owned by uid %d, want %d", mine, st.Uid, uid)
	}

	denied := filepath.Join(fsys.Path, "denied")
	_, err := btrfstest.RunAs(t, nobody, "create", denied)
	if err == nil {
		t.Fatalf("uid %d created a subvolume in root's directory", uid)
	}
	if _, err := os.Lstat(denied); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("refused create left %s: %v", denied, err)
	}
	if !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("uid %d's create in root's directory: %v, want permission denied (EACCES)", uid, err)
	}
}
