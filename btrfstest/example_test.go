package btrfstest_test

// This file is a complete example of a test package that uses the fixture,
// written as tests (not Example functions: New, RunAs and Start need the
// test's testing.TB, which an Example does not have). A package of yours
// needs, once, the TestMain that this directory's btrfstest_test.go holds:
//
//	func TestMain(m *testing.M) { btrfstest.Main(m) }
//
// Run as root with BTRFS_TEST_REQUIRE=1 they must pass; as another user they
// skip, naming what is missing.

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

// Functions that a child process runs are registered at init, so that the
// re-executed test binary has them too.
func init() {
	// example-write writes args[1] to the file args[0].
	btrfstest.Register("example-write", func(args []string) error {
		return os.WriteFile(args[0], []byte(args[1]), 0o644)
	})
	// example-hold says it is ready, then waits to be killed.
	btrfstest.Register("example-hold", func(args []string) error {
		os.Stdout.WriteString("ready\n")
		time.Sleep(time.Minute)
		return errors.New("not killed")
	})
}

// TestExampleNew gets a fresh, empty btrfs, removed when the test ends.
func TestExampleNew(t *testing.T) {
	t.Parallel()
	fsys := btrfstest.New(t, btrfstest.Size(256<<20), btrfstest.MountOptions("user_subvol_rm_allowed"))

	var st unix.Statfs_t
	if err := unix.Statfs(fsys.Path, &st); err != nil {
		t.Fatal(err)
	}
	if uint32(st.Type) != unix.BTRFS_SUPER_MAGIC { // Type is int32 on 32-bit architectures
		t.Fatalf("%s: filesystem type %#x, want btrfs", fsys.Path, st.Type)
	}
	// Path is the top-level subvolume, whose root directory is inode 256.
	var sb unix.Stat_t
	if err := unix.Stat(fsys.Path, &sb); err != nil {
		t.Fatal(err)
	}
	if sb.Ino != 256 {
		t.Fatalf("%s: inode %d, want 256 (a subvolume root)", fsys.Path, sb.Ino)
	}
	entries, err := os.ReadDir(fsys.Path)
	if err != nil || len(entries) != 0 {
		t.Fatalf("fresh filesystem holds %v (err %v), want nothing", entries, err)
	}
	if !strings.HasPrefix(fsys.Device, "/dev/loop") {
		t.Fatalf("Device %q, want a loop device", fsys.Device)
	}
}

// TestExampleRunAs checks what a user may do, from a child process with
// another uid and chosen capabilities.
func TestExampleRunAs(t *testing.T) {
	t.Parallel()
	fsys := btrfstest.New(t, btrfstest.Size(256<<20))
	nobody := btrfstest.Cred{UID: 65534, GID: 65534}

	// The top directory is root's, mode 0755: nobody cannot write there...
	_, err := btrfstest.RunAs(t, nobody, "example-write", filepath.Join(fsys.Path, "denied"), "x")
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("uid 65534 wrote in root's directory: err %v", err)
	}
	if _, err := os.Stat(filepath.Join(fsys.Path, "denied")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("denied write left a file: %v", err)
	}

	// ...but with CAP_DAC_OVERRIDE it can.
	withCap := nobody
	withCap.Caps = []uintptr{unix.CAP_DAC_OVERRIDE}
	if _, err := btrfstest.RunAs(t, withCap, "example-write", filepath.Join(fsys.Path, "allowed"), "y"); err != nil {
		t.Fatal(err)
	}
	var sb unix.Stat_t
	if err := unix.Stat(filepath.Join(fsys.Path, "allowed"), &sb); err != nil {
		t.Fatal(err)
	}
	if sb.Uid != 65534 {
		t.Fatalf("file made by the child is owned by uid %d, want 65534", sb.Uid)
	}
}

// TestExampleStart kills a child process once it is ready, as a crash test
// does mid-operation.
func TestExampleStart(t *testing.T) {
	t.Parallel()
	child := btrfstest.Start(t, "example-hold", nil)
	child.WaitReady(t, 30*time.Second)
	child.Kill()
	if !child.Wait(10 * time.Second) {
		t.Fatal("child did not end after SIGKILL")
	}
	if !child.Killed() {
		t.Fatalf("child ended with %v, want killed; stderr:\n%s", child.State(), child.Stderr())
	}
}

// TestExampleSkipOrFail shows the rule for checks of your own: skip where
// the machine lacks something (here a kernel before 5.8), fail instead under
// BTRFS_TEST_REQUIRE=1.
func TestExampleSkipOrFail(t *testing.T) {
	if !btrfstest.KernelAtLeast(5, 8) {
		btrfstest.SkipOrFail(t, "needs kernel 5.8 or later")
	}
	if btrfstest.KernelAtLeast(1000, 0) {
		t.Fatal("KernelAtLeast(1000, 0) holds")
	}
}
