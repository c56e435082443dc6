package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/btrstore/btrstore/internal/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
)

func TestMain(m *testing.M) { btrfstest.Main(m) }

// newStore opens a store on a fresh btrfs and closes it at the end.
func newStore(t testing.TB, opts ...btrfstest.Option) (*Store, *btrfstest.FS) {
	t.Helper()
	fsys := btrfstest.New(t, opts...)
	s, err := Open(context.Background(), fsys.Path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, fsys
}

func writeFile(dir, name, content string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// subvolumes lists every subvolume below the store's root.
func subvolumes(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	for info, err := range ioctl.Subvolumes(root) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Path)
	}
	return out
}

// entries lists a directory.
func entries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
