package btrfstest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestNamesPathsFill(t *testing.T) {
	if got, want := Names("s", 3), []string{"s0", "s1", "s2"}; !slices.Equal(got, want) {
		t.Errorf("Names = %q, want %q", got, want)
	}
	if got, want := Paths("/d", "s", 2), []string{"/d/s0", "/d/s1"}; !slices.Equal(got, want) {
		t.Errorf("Paths = %q, want %q", got, want)
	}
	dir := t.TempDir()
	if err := Fill(dir, 3, 3000); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("Fill made %d entries, want 3", len(entries))
	}
	for _, name := range []string{"f0", "f1", "f2"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != 3000 {
			t.Errorf("%s: %d bytes, want 3000", name, st.Size())
		}
	}
}
