package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
)

// The crash test of Prune: a child process opens the store and prunes
// one result at a time (Prune with Limit 1, in a loop), logging each id
// it was told was pruned, and the parent kills it with SIGKILL at a
// random moment after its Open. After each kill: every entry of result/
// is a complete, read-only result; no result the child reported pruned
// is there; Open repairs (result-tmp empty) and lists exactly what is in
// result/.

const (
	pruneCrashChildName = "store.pruneCrashChild"
	pruneCrashFiles     = 20
	pruneCrashLog       = "prune.log" // in state/: "pruned <id>" lines
)

func init() { btrfstest.Register(pruneCrashChildName, pruneCrashChild) }

// pruneCrashChild prunes the store at args[0] one result at a time,
// printing "ready" once open and appending "pruned <id>" to
// state/prune.log after each Prune returns (a SIGKILL loses no write that
// returned: the page cache outlives the process).
func pruneCrashChild(args []string) error {
	ctx := context.Background()
	s, err := Open(ctx, args[0], Config{})
	if err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(s.StateDir(), pruneCrashLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	fmt.Println("ready")
	for {
		ids, err := s.Prune(ctx, PruneOptions{Limit: 1})
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return s.Close()
		}
		for _, id := range ids {
			if _, err := log.WriteString("pruned " + id + "\n"); err != nil {
				return err
			}
		}
	}
}

func TestPruneCrash(t *testing.T) {
	btrfstest.RequireRoot(t)
	fsys := btrfstest.New(t)
	ctx := t.Context()
	s, err := Open(ctx, fsys.Path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	const results = 150
	for i := range results {
		if err := s.Build(ctx, fmt.Sprintf("r%02d", i), "", func(_ context.Context, dir string) error {
			for j := range pruneCrashFiles {
				if err := writeFile(dir, "f"+strconv.Itoa(j), strings.Repeat("x", 3000)); err != nil {
					return err
				}
			}
			return writeFile(dir, "DONE", "")
		}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	pruned := map[string]bool{}
	kills := 0
	for round := 0; round < 20; round++ {
		killed := runPruneCrashChild(t, fsys.Path, time.Duration(rng.IntN(2000))*time.Microsecond)
		log, err := os.ReadFile(filepath.Join(fsys.Path, stateDir, pruneCrashLog))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(log)) {
			if id, ok := strings.CutPrefix(strings.TrimSpace(line), "pruned "); ok {
				pruned[id] = true
			}
		}
		if killed {
			kills++
		}
		left := checkPruneCrashState(t, fsys.Path, pruned)
		t.Logf("round %d: killed %v, %d results left, %d reported pruned", round, killed, len(left), len(pruned))
		if t.Failed() || len(left) == 0 {
			break
		}
	}
	if kills == 0 {
		t.Error("no run of the child was killed: the test tested nothing")
	}
}

// runPruneCrashChild starts the child on root, kills it delay after it
// says it is ready, and reports whether the kill ended it (rather than
// the child's running out of results first).
func runPruneCrashChild(t *testing.T, root string, delay time.Duration) (killed bool) {
	t.Helper()
	c := btrfstest.Start(t, pruneCrashChildName, nil, root)
	c.WaitReady(t, time.Minute)
	select {
	case <-time.After(delay):
		c.Kill()
	case <-c.Exited():
	}
	if !c.Wait(time.Minute) {
		t.Fatal("the child did not end after SIGKILL")
	}
	if !c.Killed() && !c.State().Success() {
		t.Fatalf("child: %v\n%s", c.State(), c.Stderr())
	}
	return c.Killed()
}

// checkPruneCrashState checks what a killed Prune left, and what Open
// makes of it, and returns the results left.
func checkPruneCrashState(t *testing.T, root string, pruned map[string]bool) []string {
	t.Helper()
	left := entries(t, filepath.Join(root, resultDir))
	for _, id := range left {
		snap := filepath.Join(root, resultDir, id, snapshotName)
		if pruned[id] {
			t.Errorf("%s was reported pruned and is still in result/", id)
		}
		ro, err := ioctl.ReadOnly(snap)
		if err != nil || !ro {
			t.Errorf("result %s: read-only %v, %v; want a complete read-only result", id, ro, err)
			continue
		}
		if names := entries(t, snap); len(names) != pruneCrashFiles+1 || !slices.Contains(names, "DONE") {
			t.Errorf("result %s holds %d entries, want %d with DONE: half deleted", id, len(names), pruneCrashFiles+1)
		}
	}
	s, err := Open(t.Context(), root, Config{})
	if err != nil {
		t.Fatalf("Open after the kill: %v", err)
	}
	defer s.Close()
	if names := entries(t, filepath.Join(root, resultTmpDir)); len(names) != 0 {
		t.Errorf("result-tmp after Open: %v", names)
	}
	listed := ids(resultsByID(t, s))
	if !slices.Equal(listed, left) {
		t.Errorf("Results after Open = %v, result/ held %v", listed, left)
	}
	return left
}
