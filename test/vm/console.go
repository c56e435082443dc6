package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/btrstore/btrstore/test/vm/internal/plan"
)

const tailLines = 40

// console follows the guest's serial output: it keeps the last lines for the
// failure report and picks out the markers the guest init prints.
type console struct {
	start      time.Time // qemu start
	tail       []string
	exit       int  // the sentinel's code
	sawExit    bool // false: the guest never finished (panic, hang, init crash)
	firstTest  time.Duration
	uptime     float64 // guest CLOCK_BOOTTIME when the first test started
	initUptime float64 // guest CLOCK_BOOTTIME when the init started
	results    map[string]pkgResult
	resultList []string // package names in the order they ran
}

type pkgResult struct {
	Exit int
	Time string
}

func newConsole(start time.Time) *console {
	return &console{start: start, results: map[string]pkgResult{}}
}

func (c *console) line(s string) {
	c.tail = append(c.tail, s)
	if len(c.tail) > tailLines {
		c.tail = c.tail[1:]
	}
	// Firmware or kernel output without a newline may precede a marker.
	for _, m := range []string{plan.Exit, plan.Started + " ", plan.Result + " "} {
		if i := strings.Index(s, m); i > 0 {
			s = s[i:]
			break
		}
	}
	switch {
	case strings.HasPrefix(s, plan.Exit):
		if code, err := strconv.Atoi(strings.TrimSpace(s[len(plan.Exit):])); err == nil {
			c.exit, c.sawExit = code, true
		}
	case strings.HasPrefix(s, plan.Started+" "):
		c.firstTest = time.Since(c.start)
		for _, f := range strings.Fields(s)[1:] {
			switch k, v, _ := strings.Cut(f, "="); k {
			case "uptime":
				c.uptime, _ = strconv.ParseFloat(v, 64)
			case "init":
				c.initUptime, _ = strconv.ParseFloat(v, 64)
			}
		}
	case strings.HasPrefix(s, plan.Result+" "):
		// BTRSTORE-VMTEST-RESULT <name> exit=<code> time=<duration>
		f := strings.Fields(s)
		if len(f) != 4 {
			return
		}
		code, _ := strconv.Atoi(strings.TrimPrefix(f[2], "exit="))
		c.results[f[1]] = pkgResult{Exit: code, Time: strings.TrimPrefix(f[3], "time=")}
		c.resultList = append(c.resultList, f[1])
	}
}
