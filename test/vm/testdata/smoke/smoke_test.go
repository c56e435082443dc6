// Package smoke checks, inside a vmtest guest, what the privileged tests rely
// on: a btrfs TMPDIR, btrfs-progs, and loop devices.
package smoke

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func inVM(t *testing.T) {
	if os.Getenv("BTRSTORE_VMTEST") == "" {
		t.Skip("runs only in a vmtest guest (go run ./test/vm)")
	}
}

func TestScratchIsBtrfs(t *testing.T) {
	inVM(t)
	f := filepath.Join(os.TempDir(), "smoke")
	if err := os.WriteFile(f, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(f, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.BTRFS_SUPER_MAGIC {
		t.Fatalf("%s: statfs magic %#x, want btrfs %#x", f, st.Type, unix.BTRFS_SUPER_MAGIC)
	}
}

func TestBtrfsProgs(t *testing.T) {
	inVM(t)
	for _, tool := range []string{"mkfs.btrfs", "btrfs"} {
		out, err := exec.Command(tool, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", tool, err, out)
		}
		t.Logf("%s", out)
	}
}

func TestLoopControl(t *testing.T) {
	inVM(t)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Fatal(err)
	}
}

// TestWorkingDir checks that the test runs in its package directory, with
// its testdata beside it, as under go test.
func TestWorkingDir(t *testing.T) {
	inVM(t)
	b, err := os.ReadFile("testdata/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "hello from the host\n" {
		t.Errorf("testdata/hello.txt = %q", b)
	}
}
