package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// listResults collects Results into a map by id, failing on an error.
func resultsByID(t testing.TB, s *Store) map[string]ResultInfo {
	t.Helper()
	m := map[string]ResultInfo{}
	for info, err := range s.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := m[info.ID]; dup {
			t.Fatalf("Results lists %s twice", info.ID)
		}
		m[info.ID] = info
	}
	return m
}

func ids(m map[string]ResultInfo) []string {
	var out []string
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func buildEmpty(t testing.TB, s *Store, id, base string) {
	t.Helper()
	if err := s.Build(context.Background(), id, base, func(_ context.Context, dir string) error {
		return writeFile(dir, "out", id)
	}); err != nil {
		t.Fatal(err)
	}
}

// Listing after builds, a build on a base, a failed build, a delete, and
// with a non-result in result/ (an empty directory, as a delete in place
// leaves, and a symlink).
func TestResultsListing(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if got := resultsByID(t, s); len(got) != 0 {
		t.Fatalf("a new store lists %v", ids(got))
	}
	before := time.Now().Add(-time.Second) // the filesystem's clock is coarser than Go's
	buildEmpty(t, s, "a", "")
	buildEmpty(t, s, "b", "a")
	buildEmpty(t, s, "c", "")
	failed := errors.New("step failed")
	if err := s.Build(ctx, "f", "a", func(context.Context, string) error { return failed }); !errors.Is(err, failed) {
		t.Fatalf("failing build: %v", err)
	}
	if err := s.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkdirat(s.resultFd, "empty", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Symlinkat("a", s.resultFd, "link"); err != nil {
		t.Fatal(err)
	}
	after := time.Now().Add(time.Second)
	got := resultsByID(t, s)
	if want := []string{"a", "b"}; !slices.Equal(ids(got), want) {
		t.Fatalf("Results = %v, want %v", ids(got), want)
	}
	for _, r := range got {
		if r.Created.Before(before) || r.Created.After(after) || r.LastUsed.Before(r.Created.Add(-time.Millisecond)) || r.LastUsed.After(after) {
			t.Errorf("%s: Created %v LastUsed %v, want both in [%v, %v], LastUsed ≥ Created", r.ID, r.Created, r.LastUsed, before, after)
		}
	}
	// Breaking off the loop early is allowed.
	n := 0
	for range s.Results() {
		n++
		break
	}
	if n != 1 {
		t.Errorf("loop broken off after %d results", n)
	}
	s.Close()
	for _, err := range s.Results() {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Results of a closed store: %v, want ErrClosed", err)
		}
	}
}

// Result(id) and a Build on base id mark it used; the mark survives Close
// and Open; an unused result keeps its time; and a use costs no commit.
func TestLastUsedAcrossReopen(t *testing.T) {
	s, fsys := newStore(t)
	for _, id := range []string{"old", "read", "base"} {
		buildEmpty(t, s, id, "")
	}
	first := resultsByID(t, s)
	time.Sleep(20 * time.Millisecond)
	commits := commitCount(t, s)
	for range 50 {
		if _, err := s.Result("read"); err != nil {
			t.Fatal(err)
		}
	}
	if c := commitCount(t, s); commits >= 0 && c > commits+1 { // the periodic commit may fall in between
		t.Errorf("50 Result calls made %d transaction commits, want none", c-commits)
	}
	buildEmpty(t, s, "child", "base")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(t.Context(), fsys.Path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	now := resultsByID(t, s2)
	if !now["old"].LastUsed.Equal(first["old"].LastUsed) || !now["old"].Created.Equal(first["old"].Created) {
		t.Errorf("unused result's times changed: %+v, then %+v", first["old"], now["old"])
	}
	for _, id := range []string{"read", "base"} {
		if !now[id].LastUsed.After(first[id].LastUsed) {
			t.Errorf("%s: LastUsed %v after use, was %v before: not marked used (across Close/Open)", id, now[id].LastUsed, first[id].LastUsed)
		}
		if !now[id].Created.Equal(first[id].Created) {
			t.Errorf("%s: Created moved from %v to %v", id, first[id].Created, now[id].Created)
		}
	}
	// A step can touch result/<id> only to "now": it cannot make a
	// result look older than its last use (setting mtime back leaves
	// the ctime, which is LastUsed, at the present).
	past := time.Now().Add(-100 * time.Hour)
	if err := os.Chtimes(s2.Root()+"/result/read", past, past); err != nil {
		t.Fatal(err)
	}
	if got := resultsByID(t, s2)["read"].LastUsed; got.Before(now["read"].LastUsed) {
		t.Errorf("setting result/read's times back moved LastUsed back to %v", got)
	}
}

// commitCount returns how many transactions the filesystem of s has
// committed, from /sys/fs/btrfs/<fsid>/commit_stats, or -1 if the kernel
// does not say (before 6.0).
func commitCount(t testing.TB, s *Store) int {
	t.Helper()
	var info ioctl.FsInfoArgs
	if err := ioctl.FsInfo(s.rootFd, &info); err != nil {
		t.Fatal(err)
	}
	u := info.Fsid
	fsid := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	b, err := os.ReadFile("/sys/fs/btrfs/" + fsid + "/commit_stats")
	if err != nil {
		t.Logf("no commit statistics (%v): commits not counted", err)
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "commits "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("commit_stats without a commits line: %q", b)
	return -1
}
