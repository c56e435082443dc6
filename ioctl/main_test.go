package ioctl

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

// btrfsExamples are the examples (in example_btrfs_test.go) that make a btrfs: they
// need root, and an example cannot skip itself.
const btrfsExamples = "^ExampleSubvolumes$"

func TestMain(m *testing.M) {
	btrfstest.SkipRootExamples(btrfsExamples)
	btrfstest.Main(m)
}

// mustCreate creates subvolumes at the given paths below root, in order.
func mustCreate(t testing.TB, root string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		if err := CreateSubvolume(filepath.Join(root, rel)); err != nil {
			t.Fatal(err)
		}
	}
}

func mustMkdir(t testing.TB, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustOpenDir(t testing.TB, path string) int {
	t.Helper()
	fd, err := openDir(unix.AT_FDCWD, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func subvolID(t testing.TB, path string) uint64 {
	t.Helper()
	info, err := SubvolumeInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

// exists reports whether path exists, failing on other errors.
func exists(t testing.TB, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}
