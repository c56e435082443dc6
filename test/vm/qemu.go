package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// runVM boots k with the initramfs and the scratch disk, streams the serial
// console to out, and returns what the console said. The VM is killed when
// timeout passes; that, like any run without the exit sentinel, is a failure.
func runVM(ctx context.Context, a Arch, k Kernel, initrd, disk string, timeout time.Duration, out io.Writer) (*console, error) {
	qemu, err := exec.LookPath(a.QEMU)
	if err != nil {
		return nil, fmt.Errorf("%s not found (install %s)", a.QEMU, a.QEMUPackage)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, qemuArgs(a, k, initrd, disk)...)
	// Stdin stays /dev/null: qemu must not put the user's terminal in raw mode.
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout // qemu's own errors belong in the console tail
	cmd.WaitDelay = 5 * time.Second
	// If the harness dies without cleaning up (SIGKILL, SIGPIPE), so does qemu.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	start := time.Now()
	con := newConsole(start)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// Read until qemu closes the pipe, whatever the lines' length: stopping
	// early would block qemu's console writes.
	rd := bufio.NewReader(stdout)
	for {
		line, err := rd.ReadString('\n')
		if line != "" {
			line = stripEscapes(strings.TrimRight(line, "\r\n"))
			fmt.Fprintln(out, line)
			con.line(line)
		}
		if err != nil {
			break
		}
	}
	err = cmd.Wait()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return con, fmt.Errorf("timed out after %v", timeout)
	case ctx.Err() != nil:
		return con, ctx.Err()
	case err != nil:
		return con, fmt.Errorf("qemu: %w", err)
	case !con.sawExit:
		return con, errors.New("the guest stopped without printing the exit sentinel (kernel panic or init crash)")
	}
	return con, nil
}

// qemuArgs is qemu's command line: the serial console on stdout, the
// scratch disk as the first virtio disk, no other devices.
func qemuArgs(a Arch, k Kernel, initrd, disk string) []string {
	accel := os.Getenv("VMTEST_ACCEL")
	if accel == "" || !a.native() {
		accel = "tcg" // works everywhere, including without /dev/kvm access
	}
	machine := slices.Clone(a.Machine)
	if i := slices.Index(machine, "-cpu"); i >= 0 && accel == "kvm" {
		machine[i+1] = "host"
	}
	return slices.Concat([]string{"-accel", accel}, machine, []string{
		"-nographic", "-nodefaults", "-no-reboot", // panic=-1 reboots: qemu exits instead
		"-serial", "stdio",
		"-m", "2G", "-smp", "2",
		"-kernel", k.Image,
		"-initrd", initrd,
		"-append", "console=" + a.Console + " panic=-1 quiet",
		"-drive", "file=" + disk + ",format=raw,if=none,id=scratch,cache=unsafe",
		"-device", a.DiskDevice + ",drive=scratch",
	})
}

// escapes are the terminal control sequences the firmware writes to the
// serial port (reset, clear screen): they would clear the user's terminal.
var escapes = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])`)

func stripEscapes(s string) string { return escapes.ReplaceAllString(s, "") }
