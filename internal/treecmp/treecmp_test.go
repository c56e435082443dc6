package treecmp

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestIgnoreRootMtime: the option hides only the root's mtime; a
// subdirectory's mtime still differs.
func TestIgnoreRootMtime(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if err := os.Mkdir(filepath.Join(d, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Unix(1_700_000_000, 0)
	for _, p := range []string{filepath.Join(a, "sub"), filepath.Join(b, "sub"), a} {
		if err := os.Chtimes(p, t0, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(b, t0, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := Diff(t, a, b); len(d) != 1 {
		t.Errorf("root mtime differs: %d differences %v, want 1", len(d), d)
	}
	if d := Diff(t, a, b, IgnoreRootMtime); len(d) != 0 {
		t.Errorf("IgnoreRootMtime: %v", d)
	}
	if err := os.Chtimes(filepath.Join(b, "sub"), t0, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := Diff(t, a, b, IgnoreRootMtime); len(d) != 1 {
		t.Errorf("sub's mtime differs under IgnoreRootMtime: %v, want 1 difference", d)
	}
}
