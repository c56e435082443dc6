package main

import (
	"fmt"
	"os"
	"os/exec"
)

// diskSize is the scratch disk's apparent size. The file is sparse, so only
// what the tests write takes host space; mkfs.btrfs needs at least 110 MiB and
// the tests put their own loop-mounted images on it.
const diskSize = 4 << 30

// makeDisk creates a fresh sparse image at path and formats it as btrfs.
// mkfs.btrfs on a regular file needs no privileges.
func makeDisk(path string) error {
	mkfs, err := lookTool("mkfs.btrfs")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(diskSize); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if out, err := exec.Command(mkfs, "-q", "-L", "vmtest", path).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.btrfs %s: %w\n%s", path, err, out)
	}
	return nil
}
