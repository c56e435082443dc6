package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// vmKernel returns the kernel to boot in the harness's own tests: the first
// of VMTEST_KERNELS, else 6.12. Without qemu, btrfs-progs, or the kernel in
// the cache these tests skip (fetch it once with `make vmtest`), unless
// BTRFS_TEST_REQUIRE=1, where they fetch the kernel and fail if they cannot.
func vmKernel(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM: not in -short mode")
	}
	require := os.Getenv("BTRFS_TEST_REQUIRE") == "1"
	unavailable := t.Skipf
	if require {
		unavailable = t.Fatalf
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		unavailable("qemu-system-x86_64 not found")
	}
	if _, err := lookTool("mkfs.btrfs"); err != nil {
		unavailable("%v", err)
	}
	name, _, _ := strings.Cut(os.Getenv("VMTEST_KERNELS"), ",")
	if name == "" {
		name = "6.12"
	}
	a, err := lookupArch("amd64")
	if err != nil {
		t.Fatal(err)
	}
	get := cachedKernel
	if require {
		get = getKernel
	}
	if _, err := get(a, name); err != nil {
		unavailable("%v (fetch it: go run ./test/vm -kernels %s ./test/vm/testdata/smoke)", err, name)
	}
	return name
}

// runHarness runs the command in-process and returns its exit code and output.
func runHarness(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(context.Background(), args, &out, &out)
	t.Logf("vmtest %s: exit %d\n%s", strings.Join(args, " "), code, out.String())
	return code, out.String()
}

func mustContain(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func TestSmoke(t *testing.T) {
	k := vmKernel(t)
	code, out := runHarness(t, "-kernels", k, "-timeout", "3m", "-v", "./testdata/smoke")
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	mustContain(t, out, "--- PASS: TestScratchIsBtrfs", "--- PASS: TestBtrfsProgs", "btrfs-progs v", "boot to first test")
}

func TestFailingTestFailsRun(t *testing.T) {
	k := vmKernel(t)
	code, out := runHarness(t, "-kernels", k, "-timeout", "3m", "./testdata/fail")
	if code == 0 {
		t.Fatal("exit 0 for a package with a failing test")
	}
	mustContain(t, out, "--- FAIL: TestFail", "FAIL  github.com/btrstore/btrstore/test/vm/testdata/fail (exit 1")
}

func TestRunSelectsTests(t *testing.T) {
	k := vmKernel(t)
	code, out := runHarness(t, "-kernels", k, "-timeout", "3m", "-v", "-run", "TestPass$", "./testdata/fail")
	if code != 0 {
		t.Fatalf("exit %d, want 0 with only the passing test selected", code)
	}
	mustContain(t, out, "--- PASS: TestPass")
	if strings.Contains(out, "TestFail") {
		t.Error("-run TestPass$ ran TestFail")
	}
}

func TestKernelPanicFails(t *testing.T) {
	k := vmKernel(t)
	code, out := runHarness(t, "-kernels", k, "-timeout", "3m", "-run", "TestPanic", "./testdata/crash")
	if code == 0 {
		t.Fatal("exit 0 after a kernel panic")
	}
	mustContain(t, out, "without printing the exit sentinel", "console lines:", "Kernel panic")
}

func TestHangTimesOut(t *testing.T) {
	t.Parallel() // mostly waiting for the timeout
	k := vmKernel(t)
	const timeout = 30 * time.Second
	start := time.Now()
	code, out := runHarness(t, "-kernels", k, "-timeout", timeout.String(), "-run", "TestHalt", "./testdata/crash")
	if code == 0 {
		t.Fatal("exit 0 after the guest halted")
	}
	// Building the binaries comes before the timeout starts: allow for it.
	if took := time.Since(start); took > timeout+time.Minute {
		t.Errorf("took %v with -timeout %v", took, timeout)
	}
	mustContain(t, out, "timed out after 30s", "console lines:", "reboot: System halted")
}
