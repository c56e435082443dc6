package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Target statuses.
const (
	statusPass        = "PASS"
	statusFail        = "FAIL"
	statusNotMeasured = "NOT MEASURED"
)

// A target is one of the performance targets, checked against this
// run's numbers.
type target struct {
	chart  string // the chart row it colours: "<workload>/<column>", or ""
	what   string
	goal   string // as the report prints it: "≥ 30×"
	atMost bool   // the value must be at most limit, rather than at least
	limit  float64
	values []float64 // one ratio per round that measured it
	status string
	reason string // why it was not measured
}

func (t *target) value() float64 { return median(t.values) }

// check sets t's status from its values, or reason when there are none.
func (t *target) check(reason string) {
	switch {
	case len(t.values) == 0:
		t.status, t.reason = statusNotMeasured, reason
	case t.atMost && t.value() <= t.limit, !t.atMost && t.value() >= t.limit:
		t.status = statusPass
	default:
		t.status = statusFail
	}
}

// analysis is what the report says about a run.
type analysis struct {
	rs      *results
	targets []*target
	// reported holds, when the analysis is rebuilt from a report
	// (-chart-from), the median ratios that report printed, by
	// "<workload>/<column>"; rs is empty then.
	reported map[string]float64
}

// storeName is the sub-benchmark of w that is btrstore's.
func storeName(w *workload) string { return w.benchName(w.implFor(colBtrstore)) }

// speedups returns, per round, col's time over btrstore's in workload w:
// how many times faster btrstore was in that round.
func (a *analysis) speedups(w *workload, col string) []float64 {
	other := w.implFor(col)
	if other == "" {
		return nil
	}
	return a.ratios(w.benchName(other), storeName(w), "ns/op")
}

// ratios returns num's unit over den's, per round where both ran.
func (a *analysis) ratios(num, den, unit string) []float64 {
	return a.perRound(func(r int) (float64, bool) {
		n, ok1 := a.rs.metric(num, unit, r)
		d, ok2 := a.rs.metric(den, unit, r)
		return n / d, ok1 && ok2 && d > 0
	})
}

// perRound returns f(r) for each round where it is defined.
func (a *analysis) perRound(f func(r int) (float64, bool)) []float64 {
	var vs []float64
	for r := range a.rs.rounds {
		if v, ok := f(r); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

// parallelFull is the full name of BenchmarkBuildParallel's sub-benchmark
// with builders builders in layout.
func parallelFull(builders int, layout string) string {
	return workloadByKey("parallel").benchName(parallelName(builders, layout))
}

// parallelScaling returns, per round, the store's throughput with n
// builders over its throughput with one.
func (a *analysis) parallelScaling(n int) []float64 {
	return a.ratios(parallelFull(n, "store"), parallelFull(1, "store"), "builds/s")
}

// parallelVsBest returns, per round, the store's throughput with n
// builders over the best bare layout's at the same concurrency.
func (a *analysis) parallelVsBest(n int) []float64 {
	return a.perRound(func(r int) (float64, bool) {
		s, ok := a.rs.metric(parallelFull(n, "store"), "builds/s", r)
		best := 0.0
		for _, layout := range parallelLayouts[1:] {
			if v, ok := a.rs.metric(parallelFull(n, layout), "builds/s", r); ok {
				best = math.Max(best, v)
			}
		}
		return s / best, ok && best > 0
	})
}

// pairedName is BenchmarkPaired's sub-benchmark for cycle.
func pairedName(cycle string) string { return workloadByKey("paired").benchName(cycle) }

// newAnalysis checks every target against rs.
func newAnalysis(rs *results) *analysis {
	a := &analysis{rs: rs}
	add := func(t *target, reason string) {
		t.check(reason)
		a.targets = append(a.targets, t)
	}
	for _, cycle := range []struct{ key, name string }{{"build", "build cycle"}, {"cache", "cache cycle"}} {
		name := pairedName(cycle.key)
		add(&target{
			chart: cycle.key + "/" + colBare,
			what:  cycle.name + ": store time / bare ioctl sequence (BenchmarkPaired, median cycle)",
			goal:  "≤ 1.05×", atMost: true, limit: 1.05,
			values: rs.values(name, "median-store/bare"),
		}, rs.why(name))
	}
	vsCLI := []struct {
		key, col, name string
		limit          float64
	}{
		{"build", colCLI, "build cycle", 1.8},
		{"cache", colCLI, "cache cycle", 4},
		{"create", colCLI, "create", 30},
		{"delete", colCLI, "delete", 30},
		{"build", colSudo, "build cycle", 5},
		{"cache", colSudo, "cache cycle", 10},
	}
	for _, c := range vsCLI {
		w := workloadByKey(c.key)
		cli := "`btrfs` CLI"
		if c.col == colSudo {
			cli = "`sudo -n btrfs` CLI"
		}
		add(&target{
			chart: c.key + "/" + c.col,
			what:  fmt.Sprintf("%s: store faster than the %s", c.name, cli),
			goal:  fmt.Sprintf("≥ %g×", c.limit), limit: c.limit,
			values: a.speedups(w, c.col),
		}, a.whyNot(w, c.col))
	}
	dw := workloadByKey("deletewait")
	add(&target{
		chart: "deletewait/" + colCLI,
		what:  "CompleteDeletes after deleting 10 results: faster than `btrfs subvolume sync`",
		goal:  "≥ 1000×", limit: 1000,
		values: a.speedups(dw, colCLI),
	}, a.whyNot(dw, colCLI))
	top := parallelBuilders[len(parallelBuilders)-1]
	add(&target{
		chart: "parallel/scaling",
		what:  fmt.Sprintf("%d parallel builders: store throughput over one builder's", top),
		goal:  "≥ 1.4×", limit: 1.4,
		values: a.parallelScaling(top),
	}, firstReason(rs.why(parallelFull(top, "store")), rs.why(parallelFull(1, "store"))))
	add(&target{
		chart: "parallel/best",
		what:  fmt.Sprintf("%d parallel builders: store throughput over the bare sequence's in its best layout", top),
		goal:  "≥ 0.9×", limit: 0.9,
		values: a.parallelVsBest(top),
	}, rs.why(parallelFull(top, "store")))
	// Issue 11: one builder must not pay for the layout that lets several
	// scale, and several must keep the gain over the seed's layout.
	build := workloadByKey("build")
	add(&target{
		what: "one builder: store build cycle over the bare sequence on the seed's layout (naive layout)",
		goal: "≥ 1×", limit: 1,
		values: a.ratios(build.benchName("naive-layout"), storeName(build), "ns/op"),
	}, firstReason(rs.why(build.benchName("naive-layout")), rs.why(storeName(build))))
	add(&target{
		what: "one builder: store build cycle over dennwc/btrfs running the seed's sequence",
		goal: "≥ 1×", limit: 1,
		values: a.speedups(build, colDennwc),
	}, a.whyNot(build, colDennwc))
	add(&target{
		what: fmt.Sprintf("%d parallel builders: store throughput over the bare sequence's on the seed's layout", top),
		goal: "≥ 1.3×", limit: 1.3,
		values: a.ratios(parallelFull(top, "store"), parallelFull(top, "naive-layout"), "builds/s"),
	}, firstReason(rs.why(parallelFull(top, "store")), rs.why(parallelFull(top, "naive-layout"))))
	allocs := &target{what: "allocs/op of the ioctl wrappers reported", goal: "reported"}
	for _, key := range []string{"create", "snapshot", "delete"} {
		w := workloadByKey(key)
		if _, ok := rs.median(storeName(w), "allocs/op"); !ok {
			allocs.status, allocs.reason = statusNotMeasured, rs.why(storeName(w))
		}
	}
	if allocs.status == "" {
		allocs.status = statusPass
	}
	a.targets = append(a.targets, allocs)
	return a
}

// whyNot says why workload w has no ratio for col: the reason of whichever
// of the two sub-benchmarks did not run.
func (a *analysis) whyNot(w *workload, col string) string {
	if why := a.rs.why(w.benchName(w.implFor(col))); why != "" {
		return why
	}
	if why := a.rs.why(storeName(w)); why != "" {
		return why
	}
	return "no round measured both"
}

// targetFor returns the target that colours chart row key, or nil.
func (a *analysis) targetFor(key string) *target {
	for _, t := range a.targets {
		if t.chart == key {
			return t
		}
	}
	return nil
}

// failed reports whether a target was measured and missed.
func (a *analysis) failed() bool {
	return slices.ContainsFunc(a.targets, func(t *target) bool { return t.status == statusFail })
}

// bars returns the chart's rows: for every workload, btrstore's speedup
// over each alternative; then the parallel scaling.
func (a *analysis) bars() []bar {
	var bars []bar
	for _, key := range []string{"create", "snapshot", "delete", "build", "cache", "deletewait"} {
		w := workloadByKey(key)
		for _, col := range columns[1:] {
			if w.implFor(col.key) == "" {
				continue
			}
			b := bar{group: key, label: chartLabel(w, col.key)}
			values := a.speedups(w, col.key)
			if v, ok := a.reported[key+"/"+col.key]; ok {
				values = []float64{v}
			}
			t := a.targetFor(key + "/" + col.key)
			if t != nil && col.key == colBare {
				// The bare target is checked on the paired cycles,
				// which noise moves least: chart those.
				values = nil
				for _, v := range t.values {
					values = append(values, 1/v)
				}
				b.label += " (paired)"
			}
			if t != nil {
				b.target, b.status = t.limit, t.status
				if t.atMost {
					b.target = 1 / t.limit
				}
			}
			if len(values) == 0 {
				b.note = shortReason(a.whyNot(w, col.key))
			} else {
				b.value = median(values)
			}
			bars = append(bars, b)
		}
	}
	top := parallelBuilders[len(parallelBuilders)-1]
	for _, p := range []struct{ key, label string }{
		{"parallel/scaling", fmt.Sprintf("%d builders vs 1", top)},
		{"parallel/best", fmt.Sprintf("%d builders vs best bare layout", top)},
	} {
		// The parallel rows are their targets' values.
		t := a.targetFor(p.key)
		b := bar{group: "parallel", label: p.label, target: t.limit, status: t.status}
		if len(t.values) == 0 {
			b.note = "not measured"
		} else {
			b.value = t.value()
		}
		bars = append(bars, b)
	}
	return bars
}

// chartLabels name the workloads on the chart.
var chartLabels = map[string]string{
	"create":     "create",
	"snapshot":   "read-only snapshot",
	"delete":     "delete",
	"build":      "build cycle",
	"cache":      "cache cycle",
	"deletewait": "delete 10, wait",
}

var chartColumns = map[string]string{
	colBare:   "vs bare ioctls",
	colDennwc: "vs dennwc/btrfs",
	colCLI:    "vs btrfs CLI",
	colSudo:   "vs sudo -n btrfs",
}

func chartLabel(w *workload, col string) string {
	return chartLabels[w.key] + " " + chartColumns[col]
}

// shortReason turns the reason a ratio is missing into a few words for
// the chart.
func shortReason(why string) string {
	switch {
	case containsAny(why, "-quick"):
		return "not run with -quick"
	case containsAny(why, "-sync=false"):
		return "not run: -sync=false"
	case containsAny(why, "no sudo"):
		return "not measured: no sudo"
	case containsAny(why, "sudo -n true"):
		return "not measured: sudo asks for a password"
	case containsAny(why, "failed"):
		return "not measured: failed"
	}
	return "not measured: skipped"
}

func containsAny(s string, subs ...string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
}

// firstReason returns the first non-empty reason.
func firstReason(reasons ...string) string {
	for _, r := range reasons {
		if r != "" {
			return r
		}
	}
	return ""
}
