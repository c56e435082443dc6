package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
)

// runAsCommand, set in a child's environment, makes the test binary run
// main with its arguments: the command itself, built without the go tool,
// which the VM guests (make vmtest) do not have.
const runAsCommand = "SENDRECV_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsCommand) == "1" {
		main()
		os.Exit(0)
	}
	btrfstest.Main(m)
}

// TestSendReceiveDump runs the three subcommands on a loop-mounted btrfs:
// a full and an incremental stream through files, and their dump.
func TestSendReceiveDump(t *testing.T) {
	fsys := btrfstest.New(t)
	src := filepath.Join(fsys.Path, "src")
	if err := ioctl.CreateSubvolume(src); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "a"), []byte("one"), 0o644)
	s1, s2 := filepath.Join(fsys.Path, "s1"), filepath.Join(fsys.Path, "s2")
	if err := ioctl.Snapshot(src, s1, ioctl.SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "b"), []byte("two"), 0o644)
	if err := ioctl.Snapshot(src, s2, ioctl.SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(fsys.Path, "dst")
	os.Mkdir(dst, 0o755)
	tmp := t.TempDir()
	full, inc := filepath.Join(tmp, "full"), filepath.Join(tmp, "inc")
	ctx := context.Background()
	if err := send(ctx, []string{"-f", full, s1}); err != nil {
		t.Fatal(err)
	}
	if err := send(ctx, []string{"-f", inc, "-p", s1, s2}); err != nil {
		t.Fatal(err)
	}
	if err := recv(ctx, []string{"-f", full, dst}); err != nil {
		t.Fatal(err)
	}
	if err := recv(ctx, []string{"-f", inc, dst}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"s1/a": "one", "s2/a": "one", "s2/b": "two"} {
		if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "s1/b")); !os.IsNotExist(err) {
		t.Errorf("s1/b: %v", err)
	}
	// dump, through the command: this test binary running main.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "dump", "-f", inc)
	cmd.Env = append(os.Environ(), runAsCommand+"=1")
	out, err := cmd.Output()
	if err != nil || !bytes.Contains(out, []byte("snapshot        ./s2")) || !bytes.Contains(out, []byte("write           ./s2/b")) {
		t.Errorf("dump: %v\n%s", err, out)
	}
}
