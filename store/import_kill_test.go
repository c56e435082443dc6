package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/remote"
)

const importKillChildName = "store.importKillChild"

func init() { btrfstest.Register(importKillChildName, importKillChild) }

// importKillChild imports r2 from the remote directory args[1] into the
// store args[0] and SIGKILLs itself: mid-stream (args[2] "stream", after
// 1 MiB of r1's stream) or once r2 is received and verified, just before
// the rename that publishes it ("received"; r1 was published by then).
func importKillChild(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("want root, remote, mode; got %q", args)
	}
	kill := func() {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		for {
			time.Sleep(time.Hour)
		}
	}
	s, err := Open(context.Background(), args[0], Config{})
	if err != nil {
		return err
	}
	dir, err := remote.NewDir(args[1])
	if err != nil {
		return err
	}
	r := &countingRemote{Remote: dir}
	switch args[2] {
	case "stream":
		r.onRead = func(n int64) {
			if n > 1<<20 {
				kill()
			}
		}
	case "received":
		seen := 0
		s.fail = func(step string) error {
			if step == "import-received" {
				if seen++; seen == 2 { // r1 is published, r2 is not yet
					kill()
				}
			}
			return nil
		}
	default:
		return fmt.Errorf("bad mode %q", args[2])
	}
	err = s.Import(context.Background(), "r2", r, trusted)
	return fmt.Errorf("import returned %v instead of being killed", err)
}

func TestImportKilled(t *testing.T) {
	ctx := context.Background()
	a, _ := newStore(t)
	buildR1R2(t, a)
	remoteDir := t.TempDir()
	dir, err := remote.NewDir(remoteDir)
	if err != nil {
		t.Fatal(err)
	}
	exportBoth(t, a, dir)

	for _, mode := range []string{"stream", "received"} {
		t.Run(mode, func(t *testing.T) {
			fsys := btrfstest.New(t)
			s, err := Open(ctx, fsys.Path, Config{})
			if err != nil {
				t.Fatal(err)
			}
			s.Close() // the child needs the lock
			child := btrfstest.Start(t, importKillChildName, nil, fsys.Path, remoteDir, mode)
			if !child.Wait(60 * time.Second) {
				t.Fatalf("child still running after 60 s")
			}
			if !child.Killed() {
				t.Fatalf("child ended by %v, not SIGKILL; stderr:\n%s", child.State(), child.Stderr())
			}
			if child.Raced() {
				t.Errorf("race in the child:\n%s", child.Stderr())
			}
			tmp := entries(t, filepath.Join(fsys.Path, resultTmpDir))
			if len(tmp) == 0 {
				t.Fatalf("the killed import left nothing in result-tmp: the kill came too late to test anything")
			}
			t.Logf("left by the kill: result-tmp/%q, results %q", tmp, entries(t, filepath.Join(fsys.Path, resultDir)))

			s, err = Open(ctx, fsys.Path, Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Result("r2"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("r2 after Open: %v, want fs.ErrNotExist", err)
			}
			checkNoLeftovers(t, s)
			var want []string
			if mode == "received" { // r1 was published before r2's transfer
				want = []string{"result/r1/snapshot"}
			}
			if got := subvolumes(t, fsys.Path); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("subvolumes after Open: %q, want %q", got, want)
			}
			if err := s.Import(ctx, "r2", dir, trusted); err != nil {
				t.Fatalf("import after the crash: %v", err)
			}
			checkImported(t, a, s, "r2")
			checkNoLeftovers(t, s)
		})
	}
}
