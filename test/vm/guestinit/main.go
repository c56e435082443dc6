// Command guestinit is PID 1 of a vmtest guest. It prepares the guest (pseudo
// filesystems, kernel modules, the btrfs scratch disk), runs every test binary
// of the plan as a child process, prints one result line per binary and the
// exit sentinel, and powers the machine off.
//
// The harness builds it with CGO_ENABLED=0: the initramfs has no libc for it.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/btrstore/btrstore/test/vm/internal/plan"
	"golang.org/x/sys/unix"
)

const scratch = "/mnt/scratch"

func main() {
	start, initUptime := time.Now(), uptime()
	code := run(start, initUptime)
	// The sentinel goes on a line of its own even if a test left a partial line.
	fmt.Printf("\n%s%d\n", plan.Exit, code)
	unix.Sync()
	// PID 1 must never exit (the kernel panics); power off instead. qemu exits.
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run(start time.Time, initUptime float64) int {
	p, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: %v\n", err)
		return plan.ExitSetupFailed
	}
	env := append([]string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		// The btrfs test fixture makes its images and mounts under os.TempDir():
		// put them on the btrfs disk, not on the rootfs in RAM.
		"TMPDIR=" + scratch,
	}, p.Env...)

	fmt.Printf("%s uptime=%.3f init=%.3f\n", plan.Started, uptime(), initUptime)
	code := 0
	for _, t := range p.Tests {
		args := p.Args
		if left := budget(p, start); left > 0 {
			args = append([]string{"-test.timeout=" + left.String()}, args...)
		}
		t0 := time.Now()
		exit := runChild(t.Binary, args, env, t.Dir)
		fmt.Printf("%s %s exit=%d time=%s\n", plan.Result, t.Name, exit, time.Since(t0).Round(time.Millisecond))
		if exit != 0 {
			code = plan.ExitTestsFailed
		}
	}
	return code
}

// budget is the -test.timeout of the next test binary: what is left of the
// harness's timeout for the whole VM, keeping a margin so that the binary's
// timeout panic (its goroutines) reaches the console before qemu is killed.
// Not go test's default of 10 minutes: under TCG on a busy 2-core host the
// store's tests alone have taken 9.5 minutes. Zero means no timeout.
func budget(p plan.Plan, start time.Time) time.Duration {
	if p.TimeoutSeconds <= 0 {
		return 0
	}
	total := time.Duration(p.TimeoutSeconds * float64(time.Second))
	left := total*9/10 - time.Since(start) - 5*time.Second
	return max(left, time.Second).Round(time.Second)
}

func setup() (plan.Plan, error) {
	var p plan.Plan
	if err := mountPseudo(); err != nil {
		return p, err
	}
	b, err := os.ReadFile(plan.Path)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%s: %w", plan.Path, err)
	}
	if err := seedRandom(p.RandomSeed); err != nil {
		return p, err
	}
	if err := loadModules(p.Modules); err != nil {
		return p, err
	}
	return p, mountScratch()
}

func uptime() float64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return float64(ts.Nano()) / 1e9
}
