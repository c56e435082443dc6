package main

import (
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// mountPseudo mounts what the tests and btrfs-progs expect: device nodes
// (loop devices appear in /dev), /proc (mountinfo), /sys and a /tmp.
func mountPseudo() error {
	for _, m := range []struct{ fstype, dir string }{
		{"devtmpfs", "/dev"},
		{"proc", "/proc"},
		{"sysfs", "/sys"},
		{"tmpfs", "/tmp"},
		{"tmpfs", "/run"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return os.MkdirAll("/root", 0o700)
}

// mountScratch formats the blank disk the harness attached as the first
// virtio disk with the guest's mkfs.btrfs and mounts it. virtio_blk probes
// asynchronously, so wait for the node to appear (generously: an emulated
// foreign CPU is slow).
func mountScratch() error {
	const dev = "/dev/vda"
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(dev); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within 60s (virtio_blk not loaded?)", dev)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// -K: no discard, which would only make qemu punch holes in a file that
	// is all holes.
	mkfs := exec.Command("/usr/sbin/mkfs.btrfs", "-q", "-K", "-L", "vmtest", dev)
	if out, err := mkfs.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.btrfs %s: %w\n%s", dev, err, out)
	}
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, scratch, "btrfs", 0, ""); err != nil {
		return fmt.Errorf("mount %s on %s as btrfs: %w", dev, scratch, err)
	}
	return nil
}
