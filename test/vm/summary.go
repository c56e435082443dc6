package main

import (
	"fmt"
	"io"
	"time"
)

// report is the outcome of one kernel of the matrix.
type report struct {
	arch    string // GOARCH
	pkgs    []TestPkg
	kernel  string
	release string
	con     *console // nil if the VM never started
	wall    time.Duration
	err     error // the VM run failed: no kernel, timeout, panic...
}

// summarize prints one block per kernel and reports whether everything passed:
// every package built and exited 0 on every kernel, and every VM finished.
func summarize(w io.Writer, reports []report) bool {
	allOK := true
	fmt.Fprintln(w, "\nvmtest summary:")
	for _, r := range reports {
		status := "ok"
		if r.err != nil || r.con == nil || r.con.exit != 0 {
			status = "FAIL"
			allOK = false
		}
		fmt.Fprintf(w, "%s %s kernel %s (%s): wall %v", status, r.arch, r.kernel, r.release, r.wall.Round(10*time.Millisecond))
		if r.con != nil && r.con.firstTest > 0 {
			fmt.Fprintf(w, ", boot to first test %v (guest: kernel %.2fs + init %.2fs)",
				r.con.firstTest.Round(10*time.Millisecond), r.con.initUptime, r.con.uptime-r.con.initUptime)
		}
		if r.err != nil {
			fmt.Fprintf(w, ": %v", r.err)
		}
		fmt.Fprintln(w)
		for _, p := range r.pkgs {
			res, ran := pkgResult{}, false
			if r.con != nil {
				res, ran = r.con.results[p.ImportPath]
			}
			switch {
			case p.BuildErr != nil:
				fmt.Fprintf(w, "    FAIL  %s (build failed)\n", p.ImportPath)
				allOK = false
			case !ran:
				fmt.Fprintf(w, "    ----  %s (no result)\n", p.ImportPath)
				allOK = false
			case res.Exit != 0:
				fmt.Fprintf(w, "    FAIL  %s (exit %d, %s)\n", p.ImportPath, res.Exit, res.Time)
				allOK = false
			default:
				fmt.Fprintf(w, "    ok    %s (%s)\n", p.ImportPath, res.Time)
			}
		}
	}
	return allOK
}
