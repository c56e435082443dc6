package ioctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
)

// raceListings is how many listings each race test runs.
const raceListings = 1000

// listMany lists top n times with method and returns the first failure,
// also checking that every listed subvolume has an id and a path below top.
func listMany(top string, method listMethod, n int) error {
	for i := range n {
		for info, err := range subvolumes(top, method) {
			if err != nil {
				return fmt.Errorf("listing %d: %w", i, err)
			}
			if info.ID < BTRFS_FIRST_FREE_OBJECTID || info.Path == "" || filepath.IsAbs(info.Path) {
				return fmt.Errorf("listing %d: inconsistent entry %+v", i, info)
			}
		}
	}
	return nil
}

// churn creates and deletes nested subvolumes below dir until stop is
// closed: each worker makes w<k>/c<i>, w<k>/c<i>/x/d and deletes them again.
func churn(t *testing.T, dir string, workers int, stop <-chan struct{}) (wait func() int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	cycles := 0
	for k := range workers {
		w := filepath.Join(dir, "w"+strconv.Itoa(k))
		mustMkdir(t, w)
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := filepath.Join(w, "c"+strconv.Itoa(i))
				if err := CreateSubvolume(c); err != nil {
					t.Error(err)
					return
				}
				if err := os.Mkdir(c+"/x", 0o755); err != nil {
					t.Error(err)
					return
				}
				if err := CreateSubvolume(c + "/x/d"); err != nil {
					t.Error(err)
					return
				}
				if err := DeleteSubvolume(c+"/x/d", 0); err != nil {
					t.Error(err)
					return
				}
				if err := DeleteSubvolume(c, 0); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				cycles++
				mu.Unlock()
			}
		})
	}
	return func() int { wg.Wait(); return cycles }
}

// Issue 9 item 1: listings racing creates and deletes below the listed
// subvolume all succeed.
func TestSubvolumesRaceDeletes(t *testing.T) {
	fsys := btrfstest.New(t)
	top := filepath.Join(fsys.Path, "top")
	mustCreate(t, fsys.Path, "top", "top/stable", "top/stable/inner")
	for _, m := range []struct {
		name   string
		method listMethod
	}{{"treeSearch", listTreeSearch}, {"user", listUser}} {
		t.Run(m.name, func(t *testing.T) {
			stop := make(chan struct{})
			wait := churn(t, top, 2, stop)
			err := listMany(top, m.method, raceListings)
			close(stop)
			cycles := wait()
			if err != nil {
				t.Fatalf("%v (after %d create/delete cycles)", err, cycles)
			}
			t.Logf("%d listings against %d create/delete cycles", raceListings, cycles)
		})
	}
}

var _ = registerChild("list-race", func(args []string) error {
	n, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	// Both paths the child can take: auto (which must choose the
	// unprivileged walk without CAP_SYS_ADMIN) and the walk itself.
	if err := listMany(args[0], listAuto, n/2); err != nil {
		return err
	}
	return listMany(args[0], listUser, n-n/2)
})

// Issue 9 item 1, unprivileged: the same race, listed by uid 1000 without
// capabilities while root creates and deletes.
func TestSubvolumesRaceDeletesUnprivileged(t *testing.T) {
	fsys := btrfstest.New(t)
	top := filepath.Join(fsys.Path, "top")
	mustCreate(t, fsys.Path, "top", "top/stable", "top/stable/inner")
	stop := make(chan struct{})
	wait := churn(t, top, 2, stop)
	out, err := btrfstest.RunAs(t, btrfstest.Cred{UID: testUID, GID: testUID}, "list-race", top, strconv.Itoa(raceListings))
	close(stop)
	cycles := wait()
	if err != nil {
		t.Fatalf("%v (after %d create/delete cycles)\n%s", err, cycles, out)
	}
	t.Logf("%d unprivileged listings against %d create/delete cycles", raceListings, cycles)
	if _, err := os.Stat(top); err != nil {
		t.Fatal(err)
	}
}
