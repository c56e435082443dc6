package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A job is one sub-benchmark run in one process: `<pkg>.test -test.bench
// ^Bench$/^sub=impl$ -test.count 1`, so that the order of the
// implementations can change from round to round.
type job struct {
	w         *workload
	im        impl
	name      string // the sub-benchmark's full name
	benchtime int
	env       []string
	excluded  string // why this run leaves the job out, or ""
}

// A result is what one job printed: the benchmark's metrics, or why it
// was skipped, or how it failed.
type result struct {
	metrics map[string]float64 // unit → value: "ns/op", "allocs/op", "builds/s", ...
	skip    string
	err     string
}

// benchTimeout bounds one job: the longest, the CLI's subvolume sync,
// takes about 30 s.
const benchTimeout = 10 * time.Minute

// buildBinaries compiles the test binary of each package in pkgs (package
// directories relative to root) into dir with `go test -c`, once for the
// whole run, in the package's directory: so in its own module.
func buildBinaries(ctx context.Context, root, dir string, pkgs []string) (map[string]string, error) {
	bins := make(map[string]string)
	for _, pkg := range pkgs {
		bin := filepath.Join(dir, strings.ReplaceAll(pkg, "/", "-")+".test")
		cmd := exec.CommandContext(ctx, goCommand(), "test", "-c", "-o", bin, ".")
		cmd.Dir = filepath.Join(root, pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go test -c ./%s: %v\n%s", pkg, err, out)
		}
		bins[pkg] = bin
	}
	return bins, nil
}

// goCommand is the go command: $GO (as make passes it) or go.
func goCommand() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// benchPattern is the -test.bench pattern that selects exactly name: each
// level anchored, as the testing package splits the pattern at slashes.
func benchPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// run runs j with the test binary bin in the package directory dir (as go
// test does), appending what it printed to raw.
func (j *job) run(ctx context.Context, bin, dir string, raw io.Writer) result {
	ctx, cancel := context.WithTimeout(ctx, benchTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"-test.run", "^$",
		"-test.bench", benchPattern(j.name),
		"-test.benchtime", strconv.Itoa(j.benchtime)+"x",
		"-test.benchmem",
		"-test.count", "1",
		"-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), j.env...)
	out, err := cmd.CombinedOutput()
	fmt.Fprintf(raw, "# %s %s benchtime=%dx %s\n", filepath.Base(bin), j.name, j.benchtime, strings.Join(j.env, " "))
	raw.Write(out)
	res := parseOutput(out, j.name)
	switch {
	case ctx.Err() != nil:
		res.err = fmt.Sprintf("timed out after %v", benchTimeout)
	case err != nil && res.err == "":
		res.err = fmt.Sprintf("%v: %s", err, lastLines(out, 8))
	case err == nil && res.metrics == nil && res.skip == "" && res.err == "":
		res.err = "no benchmark result in the output: " + lastLines(out, 8)
	}
	return res
}

// benchLine matches a benchmark result line: name, -GOMAXPROCS suffix,
// iterations, then value-unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// parseOutput reads the -test.v output of a run of the sub-benchmark name:
// its result line, or the log lines before its "--- SKIP" or "--- FAIL".
func parseOutput(out []byte, name string) result {
	var res result
	var logs []string // the indented log lines since the last name line
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "    "):
			logs = append(logs, strings.TrimSpace(line))
		case verdictOf(line, "SKIP", name):
			res.skip = logText(logs)
		case verdictOf(line, "FAIL", name):
			res.err = logText(logs)
		case strings.HasPrefix(line, "Benchmark"):
			m := benchLine.FindStringSubmatch(line)
			if m == nil {
				logs = nil // a name line: logs that follow are its own
				continue
			}
			if m[1] != name {
				continue
			}
			res.metrics = parseMetrics(m[3])
		}
	}
	return res
}

// verdictOf reports whether line is "--- <verdict>: <name>", possibly
// followed by a duration.
func verdictOf(line, verdict, name string) bool {
	f := strings.Fields(line)
	return len(f) >= 3 && f[0] == "---" && f[1] == verdict+":" && f[2] == name
}

// parseMetrics reads "29349 ns/op	4 B/op	1 allocs/op" into a map by unit.
func parseMetrics(s string) map[string]float64 {
	fields := strings.Fields(s)
	metrics := make(map[string]float64)
	for i := 0; i+1 < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			continue
		}
		metrics[fields[i+1]] = v
	}
	return metrics
}

// logText joins a test's log lines, without their "file.go:NN: " prefix.
func logText(lines []string) string {
	var msgs []string
	for _, l := range lines {
		if i := strings.Index(l, ".go:"); i >= 0 {
			if j := strings.Index(l[i:], ": "); j >= 0 {
				l = l[i+j+2:]
			}
		}
		msgs = append(msgs, l)
	}
	return strings.Join(msgs, "; ")
}

// lastLines returns the last n non-empty lines of out, on one line.
func lastLines(out []byte, n int) string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// jobs returns the jobs of every workload in ws, with the benchtimes of a
// full run or of -quick; with -quick or sync unset, the once jobs are
// excluded (they take 30 s).
func jobs(ws []*workload, quick, sync bool) []*job {
	var js []*job
	for _, w := range ws {
		for _, im := range w.impls {
			excluded := ""
			switch {
			case im.once && quick:
				excluded = "not run with -quick (it takes about 30 s)"
			case im.once && !sync:
				excluded = "not run: -sync=false (it takes about 30 s)"
			}
			bt := w.benchtime
			if quick {
				bt = w.quickBenchtime
			}
			if im.benchtime != 0 {
				bt = im.benchtime
			}
			js = append(js, &job{w: w, im: im, name: w.benchName(im.name), benchtime: bt, env: im.env, excluded: excluded})
		}
	}
	return js
}

// roundOrder returns the jobs of round r of n, interleaved: the list
// rotated by r/n of its length, and reversed in odd rounds, so that no
// implementation always runs first, or always right after the same one.
// The once jobs run only in the middle round.
func roundOrder(all []*job, r, n int) []*job {
	var js []*job
	for _, j := range all {
		if !j.im.once || r == n/2 {
			js = append(js, j)
		}
	}
	if len(js) == 0 {
		return js
	}
	k := r * len(js) / n
	js = slices.Concat(js[k:], js[:k])
	if r%2 == 1 {
		slices.Reverse(js)
	}
	return js
}
