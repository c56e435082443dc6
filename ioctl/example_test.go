package ioctl_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/btrstore/btrstore/ioctl"
)

func ExampleUUID_String() {
	u := ioctl.UUID{0xa9, 0x1a, 0xab, 0x00, 0x47, 0x92, 0x68, 0x40, 0xbc, 0x19, 0x0a, 0x43, 0xba, 0xe1, 0x80, 0xe2}
	fmt.Println(u)
	fmt.Println(ioctl.UUID{})
	// Output:
	// a91aab00-4792-6840-bc19-0a43bae180e2
	// -
}

// Snapshot, then delete and wait until the space is really free. (Needs a
// btrfs at /mnt and CAP_SYS_ADMIN, so it is not run as a test.)
func ExampleSnapshot() {
	err := ioctl.Snapshot("/mnt/base", "/mnt/snap", ioctl.SnapshotReadOnly)
	if errors.Is(err, fs.ErrExist) {
		fmt.Println("snap exists already")
	} else if err != nil {
		panic(err)
	}
	info, err := ioctl.SubvolumeInfo("/mnt/snap")
	if err != nil {
		panic(err)
	}
	if err := ioctl.DeleteSubvolume("/mnt/snap", 0); err != nil {
		panic(err)
	}
	if err := ioctl.WaitDeleted(context.Background(), "/mnt", info.ID); err != nil {
		panic(err)
	}
}
