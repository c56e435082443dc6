// Command benchreport runs btrstore's benchmarks against what btrstore
// replaces — the bare ioctl sequence, github.com/dennwc/btrfs, and the
// btrfs command forked per operation, with and without sudo — as
// interleaved rounds, checks the performance targets, and writes
// docs/PERFORMANCE.md and the chart docs/performance.svg. It is what
// `make bench` runs, from the tools module (github.com/btrstore/btrstore/tools,
// which holds it and the dennwc/btrfs benchmarks, tools/bench/dennwc, so
// that neither is in the library's module graph), as root (the benchmarks
// mount loop devices):
//
//	cd tools
//	go run ./benchreport              # 7 rounds, 5 to 8 minutes
//	go run ./benchreport -rounds 15   # steadier medians
//	go run ./benchreport -quick       # smoke test of the tooling, under 2 minutes
//	go run ./benchreport -chart-from ../docs/PERFORMANCE.md  # only redraw the chart
//
// It finds the repository as the directory of the btrstore go.mod above
// the working directory, and compiles each package's test binary in that
// package's directory, whichever module holds it.
//
// The test binaries are compiled once with `go test -c`; every round runs
// each sub-benchmark in its own process with -test.count 1, in an order
// that changes from round to round. Medians are over rounds, and ratios are
// medians of per-round ratios. `btrfs subvolume sync` takes about 30 s, so
// it runs in one round only (-sync=false leaves it out).
//
// -quick runs one round of a few operations each and writes to a temporary
// directory unless -out is given: its numbers mean nothing, it checks that
// every benchmark runs and that the report and chart render.
//
// -chart-from FILE runs nothing: it reads the ratios and target results
// back from a PERFORMANCE.md this command wrote and writes the chart
// performance.svg beside it (or into -out), for when the chart changes
// but the numbers need not.
//
// The exit status is 1 when a benchmark failed or nothing could be
// measured, and, with -strict, when a measured target was missed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run() error {
	rounds := flag.Int("rounds", 7, "number of interleaved rounds")
	quick := flag.Bool("quick", false, "smoke test: one round of a few operations, report to a temporary directory")
	out := flag.String("out", "", "directory for PERFORMANCE.md and performance.svg (default docs/ of the module; a temporary directory with -quick)")
	chartFrom := flag.String("chart-from", "", "run nothing: redraw performance.svg from this PERFORMANCE.md (into its directory, or -out)")
	sync := flag.Bool("sync", true, "run the CLI's `btrfs subvolume sync` (about 30 s) in one round")
	strict := flag.Bool("strict", false, "exit 1 when a measured target is missed")
	only := flag.String("only", "", "run only the workloads whose key matches this regexp (create, snapshot, delete, build, cache, deletewait, paired, parallel)")
	flag.Parse()
	if *chartFrom != "" {
		dir := *out
		if dir == "" {
			dir = filepath.Dir(*chartFrom)
		}
		return redrawChart(*chartFrom, filepath.Join(dir, chartFile))
	}
	if *quick {
		*rounds = 1
	}
	if *rounds < 1 {
		return fmt.Errorf("-rounds %d: need at least one", *rounds)
	}
	onlyRE, err := regexp.Compile(*only)
	if err != nil {
		return fmt.Errorf("-only: %v", err)
	}
	start := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "benchreport: not root: the benchmarks need to mount loop devices and will skip")
	}
	var ws []*workload
	pkgSet := map[string]bool{}
	var pkgs []string
	for i := range workloads {
		if w := &workloads[i]; onlyRE.MatchString(w.key) {
			ws = append(ws, w)
			for _, im := range w.impls {
				if pkg := w.pkgOf(im); !pkgSet[pkg] {
					pkgSet[pkg] = true
					pkgs = append(pkgs, pkg)
				}
			}
		}
	}
	if len(ws) == 0 {
		return fmt.Errorf("-only %q matches no workload", *only)
	}

	work, err := os.MkdirTemp("", "benchreport-")
	if err != nil {
		return err
	}
	outDir := *out
	switch {
	case outDir == "" && *quick:
		outDir = work
	case outDir == "":
		outDir = filepath.Join(root, "docs")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchreport: compiling test binaries of %s\n", strings.Join(pkgs, ", "))
	bins, err := buildBinaries(ctx, root, work, pkgs)
	if err != nil {
		return err
	}
	defer func() {
		for _, bin := range bins {
			os.Remove(bin)
		}
	}()
	rawPath := filepath.Join(work, "raw.txt")
	raw, err := os.Create(rawPath)
	if err != nil {
		return err
	}
	defer raw.Close()

	m := describeMachine(root)
	all := jobs(ws, *quick, *sync)
	rs := newResults(*rounds)
	measured := 0
	for r := range *rounds {
		order := roundOrder(all, r, *rounds)
		for i, j := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if rs.skipped(j.name) {
				continue
			}
			if j.excluded != "" {
				rs.add(j.name, r, result{skip: j.excluded})
				continue
			}
			t0 := time.Now()
			pkg := j.w.pkgOf(j.im)
			res := j.run(ctx, bins[pkg], filepath.Join(root, pkg), raw)
			rs.add(j.name, r, res)
			state := "ok"
			switch {
			case res.err != "":
				state = "FAILED: " + res.err
			case res.skip != "":
				state = "skipped: " + res.skip
			default:
				measured++
			}
			fmt.Fprintf(os.Stderr, "[round %d/%d %2d/%d %6.1fs] %s %s: %s\n", r+1, *rounds, i+1, len(order),
				time.Since(t0).Seconds(), pkg, j.name, state)
		}
	}
	m.loadEnd = loadAverage()

	a := newAnalysis(rs)
	rep := &report{
		a: a, m: m, rounds: *rounds, quick: *quick, sync: *sync,
		elapsed: time.Since(start), command: commandLine(), chart: chartFile,
	}
	mdPath := filepath.Join(outDir, "PERFORMANCE.md")
	if err := os.WriteFile(mdPath, rep.markdown(), 0o644); err != nil {
		return err
	}
	chartPath := filepath.Join(outDir, chartFile)
	chart := renderChart(chartTitle, chartLegend(*rounds, m.date.Format("2006-01-02"), m.cores), a.bars())
	if err := os.WriteFile(chartPath, chart, 0o644); err != nil {
		return err
	}
	fmt.Print(rep.summary())
	fmt.Printf("\nwrote %s and %s; raw output in %s\n", mdPath, chartPath, rawPath)

	if f := rs.failures(); len(f) > 0 {
		return fmt.Errorf("%d benchmark run(s) failed:\n  %s", len(f), strings.Join(f, "\n  "))
	}
	if measured == 0 {
		return fmt.Errorf("nothing was measured (see the skip reasons above)")
	}
	if *strict && a.failed() {
		return fmt.Errorf("a measured target was missed (-strict)")
	}
	return nil
}

// moduleRoot finds the directory of the btrstore go.mod at or above the
// working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/btrstore/btrstore\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from inside the btrstore module: no go.mod of github.com/btrstore/btrstore above the working directory")
		}
		dir = parent
	}
}

// commandLine is how this run was started, for the report's header.
func commandLine() string {
	args := []string{"go run ./benchreport"}
	flag.Visit(func(f *flag.Flag) {
		if f.Name != "out" {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	return strings.Join(args, " ")
}
