package main

import (
	"os"
)

// diskSize is the scratch disk's apparent size. The file is sparse, so only
// what the tests write takes host space; mkfs.btrfs needs at least 110 MiB and
// the tests put their own loop-mounted images on it.
const diskSize = 4 << 30

// makeDisk creates a fresh sparse image at path. The guest init formats it
// with the guest's own mkfs.btrfs: on the host, mkfs.btrfs checks whether
// the file is mounted by stat'ing every loop device's backing file, and a
// user who may not reach one of them (another user's loop-mounted image
// under a private directory) gets "cannot check mount status".
func makeDisk(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(diskSize); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
