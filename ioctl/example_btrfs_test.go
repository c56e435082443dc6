package ioctl_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
)

// Examples run by `go test` get no testing.T, and btrfstest.New needs one:
// exampleBtrfs gives them a fresh loop-mounted btrfs through exampleTB, which
// turns a failure into a panic (the example fails) and runs the cleanups
// when the example calls the function it returns. These examples need root:
// as another user TestMain skips them (see btrfsExamples), unless
// BTRFS_TEST_REQUIRE=1, where they run and fail.
type exampleTB struct {
	testing.TB // nil: a method not defined below panics
	cleanups   []func()
}

func (e *exampleTB) Helper()                           {}
func (e *exampleTB) Cleanup(fn func())                 { e.cleanups = append(e.cleanups, fn) }
func (e *exampleTB) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (e *exampleTB) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (e *exampleTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (e *exampleTB) Skipf(format string, args ...any)  { panic(fmt.Sprintf(format, args...)) }

// exampleBtrfs returns the mount point of a fresh btrfs and the function
// that unmounts and removes it.
func exampleBtrfs() (mnt string, remove func()) {
	tb := &exampleTB{}
	fsys := btrfstest.New(tb, btrfstest.Size(256<<20))
	return fsys.Path, func() {
		for _, fn := range slices.Backward(tb.cleanups) {
			fn()
		}
	}
}

// Subvolumes lists the subvolumes below a directory, parents first, with
// their paths relative to it. (The btrfs here is a fresh loop device; yours
// is where your btrfs is mounted. Listing every nested subvolume needs
// CAP_SYS_ADMIN; without it the listing shows what the caller can reach.)
func ExampleSubvolumes() {
	mnt, remove := exampleBtrfs()
	defer remove()

	for _, p := range []string{"base", "base/nested", "other"} {
		if err := ioctl.CreateSubvolume(filepath.Join(mnt, p)); err != nil {
			panic(err)
		}
	}
	if err := ioctl.Snapshot(filepath.Join(mnt, "other"), filepath.Join(mnt, "base/snap"), ioctl.SnapshotReadOnly); err != nil {
		panic(err)
	}
	for info, err := range ioctl.Subvolumes(mnt) {
		if err != nil {
			panic(err)
		}
		ro, err := ioctl.ReadOnly(filepath.Join(mnt, info.Path))
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s read-only=%v snapshot=%v\n", info.Path, ro, !info.ParentUUID.IsZero())
	}
	// Output:
	// base read-only=false snapshot=false
	// base/nested read-only=false snapshot=false
	// base/snap read-only=true snapshot=true
	// other read-only=false snapshot=false
}
