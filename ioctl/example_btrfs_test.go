package ioctl_test

import (
	"fmt"
	"path/filepath"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
)

// exampleBtrfs gives an example a fresh loop-mounted btrfs (see
// btrfstest.ForExample; TestMain skips these examples when not root).
func exampleBtrfs() (mnt string, remove func()) {
	return btrfstest.ForExample(btrfstest.Size(256 << 20))
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
