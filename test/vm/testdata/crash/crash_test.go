// Package crash brings the guest down the two ways the harness must survive:
// a kernel panic (qemu exits without the exit sentinel) and a halt (qemu
// keeps running until the harness's timeout). Select one with -run.
package crash

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// inVM guards the host: these tests must never run outside a vmtest guest.
func inVM(t *testing.T) {
	if os.Getenv("BTRSTORE_VMTEST") == "" || os.Getenv("TMPDIR") != "/mnt/scratch" {
		t.Skip("runs only in a vmtest guest (go run ./test/vm)")
	}
}

func TestPanic(t *testing.T) {
	inVM(t)
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0); err != nil {
		t.Fatal(err)
	}
	select {}
}

func TestHalt(t *testing.T) {
	inVM(t)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_HALT); err != nil {
		t.Fatal(err)
	}
	select {}
}
