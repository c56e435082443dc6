package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/ioctl"
)

// checkInvariants fails t unless the store at root is in the state Open
// leaves it in (and every operation that returned leaves it in):
//
//   - result-tmp and cache-tmp are empty;
//   - every result/<id> is a plain directory holding exactly one entry,
//     "snapshot", a read-only subvolume;
//   - every cache/ entry is named c-* and is a read-only subvolume;
//   - no other subvolume exists anywhere below root.
//
// It checks the layout only, not what results hold. Call it while no
// operation runs (after Open, between operations, or after Close).
func checkInvariants(t testing.TB, root string) {
	t.Helper()
	checkLayout(t, root, false)
}

// checkLayout is checkInvariants, but with leftovers it also accepts what a
// killed process may leave and Open removes: anything in result-tmp and
// cache-tmp, and cache/t-* entries. The rest (results complete and
// read-only, caches read-only) must hold at every instant, crash or not.
func checkLayout(t testing.TB, root string, leftovers bool) {
	t.Helper()
	for _, dir := range []string{resultTmpDir, cacheTmpDir} {
		if names := invReadDir(t, filepath.Join(root, dir)); len(names) > 0 && !leftovers {
			t.Errorf("invariant: %s is not empty: %v", dir, names)
		}
	}
	for _, id := range invReadDir(t, filepath.Join(root, resultDir)) {
		if err := invCheckResult(filepath.Join(root, resultDir, id)); err != "" {
			t.Errorf("invariant: result %s: %s", id, err)
		}
	}
	for _, name := range invReadDir(t, filepath.Join(root, cacheDir)) {
		switch {
		case strings.HasPrefix(name, "c-"):
			if err := invCheckReadOnlySubvolume(filepath.Join(root, cacheDir, name)); err != "" {
				t.Errorf("invariant: cache/%s: %s", name, err)
			}
		case leftovers && strings.HasPrefix(name, "t-"):
		default:
			t.Errorf("invariant: cache/%s: unexpected entry (only c-* caches belong there)", name)
		}
	}
	for _, p := range invSubvolumes(t, root) {
		if !invAllowedSubvolume(p, leftovers) {
			t.Errorf("invariant: unexpected subvolume %s", p)
		}
	}
}

// invCheckResult describes what is wrong with the result directory dir, or
// returns "".
func invCheckResult(dir string) string {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err.Error()
	}
	if !fi.IsDir() {
		return "not a directory: " + fi.Mode().String()
	}
	if sub, err := ioctl.IsSubvolume(dir); err != nil || sub {
		return "not a plain directory (subvolume or error: " + invErrString(err) + ")"
	}
	names, err := invNames(dir)
	if err != nil {
		return err.Error()
	}
	if len(names) != 1 || names[0] != snapshotName {
		return "holds " + strings.Join(names, ", ") + ", want exactly " + snapshotName
	}
	if msg := invCheckReadOnlySubvolume(filepath.Join(dir, snapshotName)); msg != "" {
		return snapshotName + ": " + msg
	}
	return ""
}

// invCheckReadOnlySubvolume describes what keeps path from being a
// read-only subvolume, or returns "".
func invCheckReadOnlySubvolume(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		return err.Error()
	}
	if !fi.IsDir() {
		return "not a directory: " + fi.Mode().String()
	}
	info, err := ioctl.SubvolumeInfo(path)
	if err != nil {
		return "not a subvolume: " + err.Error()
	}
	if !info.ReadOnly {
		return "subvolume is writable"
	}
	return ""
}

// invAllowedSubvolume reports whether a subvolume may exist at p (relative
// to the store's root).
func invAllowedSubvolume(p string, leftovers bool) bool {
	parts := strings.Split(p, "/")
	switch {
	case len(parts) == 3 && parts[0] == resultDir && parts[2] == snapshotName:
		return true
	case len(parts) == 2 && parts[0] == cacheDir && strings.HasPrefix(parts[1], "c-"):
		return true
	case !leftovers:
		return false
	case parts[0] == resultTmpDir, parts[0] == cacheTmpDir:
		return true
	default:
		return len(parts) == 2 && parts[0] == cacheDir && strings.HasPrefix(parts[1], "t-")
	}
}

// invSubvolumes lists every subvolume below root, relative to root. Root
// need not be a subvolume itself: the listing starts at the subvolume that
// holds it.
func invSubvolumes(t testing.TB, root string) []string {
	t.Helper()
	top := root
	for {
		sub, err := ioctl.IsSubvolume(top)
		if err != nil {
			t.Fatalf("invariant check: %v", err)
		}
		if sub || top == "/" {
			break
		}
		top = filepath.Dir(top)
	}
	rel, err := filepath.Rel(top, root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for info, err := range ioctl.Subvolumes(top) {
		if err != nil {
			t.Fatalf("invariant check: list subvolumes: %v", err)
		}
		p := info.Path
		if rel != "." {
			var ok bool
			if p, ok = strings.CutPrefix(p, rel+"/"); !ok {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

func invReadDir(t testing.TB, dir string) []string {
	t.Helper()
	names, err := invNames(dir)
	if err != nil {
		t.Fatalf("invariant check: %v", err)
	}
	return names
}

// invNames lists dir, sorted.
func invNames(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names, err
}

func invErrString(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}
