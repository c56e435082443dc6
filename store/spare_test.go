package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// sparesIn lists the spares' directories in result-tmp, once made.
func sparesIn(t testing.TB, s *Store) []string {
	t.Helper()
	waitSpares(s)
	return slices.DeleteFunc(entries(t, filepath.Join(s.Root(), resultTmpDir)), func(n string) bool { return !isSpare(n) })
}

// spareBuild builds id on base with a step that records what it saw of
// the work directory: the names in it.
func spareBuild(t testing.TB, s *Store, id, base string) (seen []string, dir string) {
	t.Helper()
	err := s.Build(context.Background(), id, base, func(_ context.Context, d string) error {
		names, err := invNames(d)
		seen, dir = names, d
		if err != nil {
			return err
		}
		return writeFile(d, "out-"+id, id)
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen, dir
}

// oneSpare builds base-a and base-b on base, which has the second build
// make a spare, and returns the spare's directory, failing unless it is
// the only one.
func oneSpare(t testing.TB, s *Store, base string) string {
	t.Helper()
	spareBuild(t, s, base+"-a", base)
	spareBuild(t, s, base+"-b", base)
	sp := sparesIn(t, s)
	if len(sp) != 1 {
		t.Fatalf("spares %v, want one", sp)
	}
	return sp[0]
}

// The second build on a base has a spare made; the third takes it, under a
// fresh build directory name, and has the next one made; what the step
// sees and what the result holds are as without spares.
func TestSpareTaken(t *testing.T) {
	s, _ := newStore(t)
	buildEmpty(t, s, "base", "")
	spareBuild(t, s, "a", "base")
	if got := sparesIn(t, s); len(got) != 0 {
		t.Fatalf("one build on base made spares %v", got)
	}
	spareBuild(t, s, "b", "base")
	first := sparesIn(t, s)
	if len(first) != 1 {
		t.Fatalf("two builds on base: spares %v, want one", first)
	}
	spareInfo, err := ioctl.SubvolumeInfo(filepath.Join(s.Root(), resultTmpDir, first[0], workName))
	if err != nil {
		t.Fatal(err)
	}
	seen, dir := spareBuild(t, s, "c", "base")
	if want := []string{"out"}; !slices.Equal(seen, want) {
		t.Errorf("the step on a spare saw %v, want %v (base's content)", seen, want)
	}
	if got := filepath.Base(filepath.Dir(dir)); isSpare(got) || got == first[0] {
		t.Errorf("the step got %s: a spare's name, not a fresh build directory", dir)
	}
	if _, err := os.Lstat(filepath.Join(s.Root(), resultTmpDir, first[0])); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the spare's directory is still there after it was taken: %v", err)
	}
	// The result is a snapshot of the spare.
	p, err := s.Result("c")
	if err != nil {
		t.Fatal(err)
	}
	rinfo, err := ioctl.SubvolumeInfo(p)
	if err != nil {
		t.Fatal(err)
	}
	if rinfo.ParentUUID != spareInfo.UUID {
		t.Errorf("result c is a snapshot of %v, not of the spare %v", rinfo.ParentUUID, spareInfo.UUID)
	}
	if got := readFile(t, filepath.Join(p, "out")); got != "base" {
		t.Errorf("result c holds base's out = %q", got)
	}
	if got := readFile(t, filepath.Join(p, "out-c")); got != "c" {
		t.Errorf("result c holds out-c = %q", got)
	}
	next := sparesIn(t, s)
	if len(next) != 1 || next[0] == first[0] {
		t.Errorf("after the spare was taken: spares %v, want one new", next)
	} else if info, err := ioctl.SubvolumeInfo(filepath.Join(s.Root(), resultTmpDir, next[0], workName)); err != nil || info.ID == spareInfo.ID {
		t.Errorf("the next spare is %+v, %v: not a new subvolume", info.ID, err)
	}
	checkInvariants(t, s.Root())
	must(t, s.Close())
	if got := entries(t, filepath.Join(s.Root(), resultTmpDir)); len(got) != 0 {
		t.Errorf("Close left %v in result-tmp", got)
	}
}

// A chain of builds, each on the result before it, makes no spare.
func TestSpareNoneForChains(t *testing.T) {
	s, _ := newStore(t)
	buildEmpty(t, s, "r0", "")
	for i := 1; i < 6; i++ {
		spareBuild(t, s, "r"+string(rune('0'+i)), "r"+string(rune('0'+i-1)))
	}
	if got := sparesIn(t, s); len(got) != 0 {
		t.Errorf("a chain of builds made spares %v", got)
	}
}

// A spare in which anything changed is not used: the build snapshots its
// base itself, and the spare is removed.
func TestSpareChangedNotUsed(t *testing.T) {
	for _, change := range []struct {
		name string
		do   func(work string) error
	}{
		{"file created", func(w string) error { return writeFile(w, "planted", "x") }},
		{"file rewritten", func(w string) error { return writeFile(w, "out", "changed") }},
		{"root chmod", func(w string) error { return os.Chmod(w, 0o700) }},
		{"xattr set", func(w string) error { return unix.Setxattr(w, "user.planted", []byte("x"), 0) }},
		{"file removed", func(w string) error { return os.Remove(filepath.Join(w, "out")) }},
	} {
		t.Run(change.name, func(t *testing.T) {
			s, _ := newStore(t)
			buildEmpty(t, s, "base", "")
			sp := oneSpare(t, s, "base")
			must(t, change.do(filepath.Join(s.Root(), resultTmpDir, sp, workName)))
			seen, _ := spareBuild(t, s, "c", "base")
			if want := []string{"out"}; !slices.Equal(seen, want) {
				t.Errorf("the step saw %v, want %v: the changed spare was used", seen, want)
			}
			p, err := s.Result("c")
			must(t, err)
			if got := readFile(t, filepath.Join(p, "out")); got != "base" {
				t.Errorf("result c holds out = %q, want base's", got)
			}
			var st unix.Stat_t
			must(t, unix.Stat(p, &st))
			if st.Mode&0o777 != 0o755 {
				t.Errorf("result c's root has mode %o, want base's 755", st.Mode&0o777)
			}
			if slices.Contains(sparesIn(t, s), sp) {
				t.Errorf("the changed spare %s is still there", sp)
			}
		})
	}
}

// A base deleted and built again under the same id, behind the store's
// back (so that its spare was not dropped), is another subvolume: its old
// spare is not used.
func TestSpareStaleBase(t *testing.T) {
	s, _ := newStore(t)
	buildEmpty(t, s, "base", "")
	oneSpare(t, s, "base")
	root := s.Root()
	must(t, os.Rename(filepath.Join(root, resultDir, "base"), filepath.Join(root, resultDir, "old")))
	must(t, s.Build(t.Context(), "base", "", func(_ context.Context, dir string) error { return writeFile(dir, "out", "new base") }))
	seen, _ := spareBuild(t, s, "c", "base")
	if want := []string{"out"}; !slices.Equal(seen, want) {
		t.Errorf("the step saw %v, want %v", seen, want)
	}
	p, err := s.Result("c")
	must(t, err)
	if got := readFile(t, filepath.Join(p, "out")); got != "new base" {
		t.Errorf("result c holds out = %q: built on the old base's spare", got)
	}
}

// Delete and Prune of a base remove its spare, so that its space is freed;
// Build on a deleted base fails as without spares.
func TestSpareDroppedWithBase(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	for _, base := range []string{"del", "pruned"} {
		buildEmpty(t, s, base, "")
		spareBuild(t, s, base+"-a", base)
		spareBuild(t, s, base+"-b", base)
	}
	if got := sparesIn(t, s); len(got) != 2 {
		t.Fatalf("spares %v, want two", got)
	}
	must(t, s.Delete(ctx, "del"))
	if got := sparesIn(t, s); len(got) != 1 {
		t.Errorf("after Delete of a base: spares %v, want one", got)
	}
	err := s.Build(ctx, "x", "del", func(context.Context, string) error { t.Error("the step ran"); return nil })
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Build on a deleted base = %v, want fs.ErrNotExist", err)
	}
	// Prune everything but "pruned"'s builds: then it is the oldest.
	must(t, s.Delete(ctx, "pruned-a"))
	must(t, s.Delete(ctx, "pruned-b"))
	must(t, s.Delete(ctx, "del-a"))
	must(t, s.Delete(ctx, "del-b"))
	got, err := s.Prune(ctx, PruneOptions{Limit: 1})
	must(t, err)
	if !slices.Equal(got, []string{"pruned"}) {
		t.Fatalf("Prune = %v, want [pruned]", got)
	}
	if got := sparesIn(t, s); len(got) != 0 {
		t.Errorf("after Prune of a base: spares %v, want none", got)
	}
	checkInvariants(t, s.Root())
}

// At most maxSpares are held; a base that builds want evicts the spare
// wanted longest ago.
func TestSpareEviction(t *testing.T) {
	s, _ := newStore(t)
	var bases []string
	for i := range maxSpares + 1 {
		base := "base" + string(rune('a'+i))
		bases = append(bases, base)
		buildEmpty(t, s, base, "")
		spareBuild(t, s, base+"-1", base)
		spareBuild(t, s, base+"-2", base)
		if got := len(sparesIn(t, s)); got != min(i+1, maxSpares) {
			t.Errorf("after %d bases: %d spares, want %d", i+1, got, min(i+1, maxSpares))
		}
	}
	s.spares.mu.Lock()
	_, first := s.spares.by[bases[0]]
	_, last := s.spares.by[bases[maxSpares]]
	s.spares.mu.Unlock()
	if first || !last {
		t.Errorf("the spare of the base wanted first is kept (%v) or the last base's is not (%v)", first, last)
	}
	checkInvariants(t, s.Root())
}

// A mount on a spare (a step with CAP_SYS_ADMIN could plant tools there)
// changes nothing in its subvolume, but the spare is not used: the next
// build does not see what is mounted, and the spare goes with its mount.
func TestSpareMountedNotUsed(t *testing.T) {
	s, _ := newStore(t)
	must(t, s.Build(t.Context(), "base", "", func(_ context.Context, dir string) error {
		return os.Mkdir(filepath.Join(dir, "bin"), 0o755)
	}))
	sp := oneSpare(t, s, "base")
	bin := filepath.Join(s.Root(), resultTmpDir, sp, workName, "bin")
	must(t, unix.Mount("tmpfs", bin, "tmpfs", 0, "size=1m"))
	mounted := true
	t.Cleanup(func() {
		if mounted {
			unix.Unmount(bin, unix.MNT_DETACH)
		}
	})
	must(t, writeFile(bin, "trojan", "x"))
	var inBin []string
	must(t, s.Build(t.Context(), "c", "base", func(_ context.Context, dir string) error {
		var err error
		inBin, err = invNames(filepath.Join(dir, "bin"))
		return err
	}))
	if len(inBin) != 0 {
		t.Errorf("the step saw %v in bin: the mounted spare was used", inBin)
	}
	if slices.Contains(sparesIn(t, s), sp) {
		t.Errorf("the mounted spare %s is still there", sp)
	} else {
		mounted = false // detached with it
	}
	checkInvariants(t, s.Root())
}

// A spare whose directory a step replaced (moved away, a directory of its
// own in its place) is not used, and both go.
func TestSpareDirectoryReplaced(t *testing.T) {
	s, _ := newStore(t)
	buildEmpty(t, s, "base", "")
	sp := oneSpare(t, s, "base")
	tmp := filepath.Join(s.Root(), resultTmpDir)
	must(t, os.Rename(filepath.Join(tmp, sp), filepath.Join(tmp, "moved")))
	must(t, os.MkdirAll(filepath.Join(tmp, sp, workName), 0o755))
	must(t, writeFile(filepath.Join(tmp, sp, workName), "planted", "x"))
	seen, _ := spareBuild(t, s, "c", "base")
	if want := []string{"out"}; !slices.Equal(seen, want) {
		t.Errorf("the step saw %v, want %v", seen, want)
	}
	for _, n := range []string{"moved", sp} {
		if _, err := os.Lstat(filepath.Join(tmp, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("result-tmp/%s is still there: %v", n, err)
		}
	}
	assertNoTmp(t, s)
}
