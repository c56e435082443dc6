package main

import (
	"fmt"
	"os"

	"github.com/btrstore/btrstore/internal/beneath"
	"golang.org/x/sys/unix"
)

// runChild runs one test binary and returns its exit code (128+signal if it
// was killed, -1 if it could not start).
//
// As PID 1 the init inherits every orphaned process of the tests and must reap
// them, so it waits for any child rather than using exec.Cmd.Wait, which would
// race with that reaping; zombies that are not the test binary are discarded.
func runChild(bin string, args, env []string, dir string) int {
	console := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	proc, err := os.StartProcess(bin, append([]string{bin}, args...), &os.ProcAttr{Dir: dir, Env: env, Files: console})
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: %v\n", err)
		return -1
	}
	for {
		var ws unix.WaitStatus
		pid, err := beneath.Retry2(func() (int, error) { return unix.Wait4(-1, &ws, 0, nil) })
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmtest init: wait: %v\n", err)
			return -1
		}
		if pid != proc.Pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}
