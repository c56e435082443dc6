// Command snapshot shows the native layer on a btrfs directory: it creates a
// subvolume, snapshots it read-only, lists, deletes recursively and waits
// until the kernel has cleaned up, timing each step. `make example-snapshot`
// runs it on a throw-away loop-mounted btrfs.
//
// Usage: snapshot DIR   (DIR on btrfs; needs root or CAP_SYS_ADMIN)
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/btrstore/btrstore/ioctl"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: snapshot DIR (a directory on btrfs)")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "snapshot:", err)
		os.Exit(1)
	}
}

func step(name string, fn func() error) error {
	start := time.Now()
	err := fn()
	fmt.Printf("%-40s %8.3f ms\n", name, float64(time.Since(start).Microseconds())/1000)
	return err
}

func run(dir string) error {
	base := filepath.Join(dir, "demo-base")
	snap := filepath.Join(dir, "demo-snap")
	if err := step("create subvolume demo-base", func() error { return ioctl.CreateSubvolume(base) }); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(base, "hello"), []byte("hello\n"), 0o644); err != nil {
		return err
	}
	if err := step("create nested subvolume demo-base/inner", func() error {
		return ioctl.CreateSubvolume(filepath.Join(base, "inner"))
	}); err != nil {
		return err
	}
	if err := step("read-only snapshot demo-snap", func() error {
		return ioctl.Snapshot(base, snap, ioctl.SnapshotReadOnly)
	}); err != nil {
		return err
	}
	var ids []uint64
	for info, err := range ioctl.Subvolumes(dir) {
		if err != nil {
			return err
		}
		ro := ""
		if info.ReadOnly {
			ro = " (read-only)"
		}
		fmt.Printf("  subvolume %d %s%s\n", info.ID, info.Path, ro)
		ids = append(ids, info.ID)
	}
	for _, p := range []string{snap, base} {
		if err := step("delete recursively "+filepath.Base(p), func() error {
			return ioctl.DeleteSubvolume(p, ioctl.DeleteRecursive)
		}); err != nil {
			return err
		}
	}
	return step("wait until the kernel cleaned them", func() error {
		return ioctl.WaitDeleted(context.Background(), dir, ids...)
	})
}
