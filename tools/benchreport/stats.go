package main

import (
	"fmt"
	"maps"
	"math"
	"slices"
)

// median returns the median of xs (the mean of the middle two for an even
// count), or NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// results holds every job's result of every round.
type results struct {
	rounds int
	byName map[string][]*result // sub-benchmark → result per round, nil where it did not run
}

func newResults(rounds int) *results {
	return &results{rounds: rounds, byName: make(map[string][]*result)}
}

func (rs *results) add(name string, round int, r result) {
	if rs.byName[name] == nil {
		rs.byName[name] = make([]*result, rs.rounds)
	}
	rs.byName[name][round] = &r
}

// metric returns name's value of unit in round r, if it ran and printed it.
func (rs *results) metric(name, unit string, r int) (float64, bool) {
	rounds := rs.byName[name]
	if rounds == nil || rounds[r] == nil || rounds[r].metrics == nil {
		return 0, false
	}
	v, ok := rounds[r].metrics[unit]
	return v, ok
}

// values returns name's values of unit, one per round that printed it.
func (rs *results) values(name, unit string) []float64 {
	var vs []float64
	for r := range rs.rounds {
		if v, ok := rs.metric(name, unit, r); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

// median returns the median over rounds of name's unit, and whether any
// round measured it.
func (rs *results) median(name, unit string) (float64, bool) {
	vs := rs.values(name, unit)
	return median(vs), len(vs) > 0
}

// why returns why name has no measurement: its skip reason or its error,
// or "".
func (rs *results) why(name string) string {
	for _, r := range rs.byName[name] {
		switch {
		case r == nil:
		case r.skip != "":
			return "skipped: " + r.skip
		case r.err != "":
			return "failed: " + r.err
		}
	}
	if rs.byName[name] == nil {
		return "not run"
	}
	return ""
}

// skipped reports whether name was skipped in some round: then it is not
// run again (a missing sudo does not come back).
func (rs *results) skipped(name string) bool {
	for _, r := range rs.byName[name] {
		if r != nil && r.skip != "" {
			return true
		}
	}
	return false
}

// failures lists every failed job, by name and round.
func (rs *results) failures() []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(rs.byName)) {
		for r, res := range rs.byName[name] {
			if res != nil && res.err != "" {
				out = append(out, fmt.Sprintf("%s (round %d): %s", name, r+1, res.err))
			}
		}
	}
	return out
}

// formatRatio prints a ratio with three significant digits or so:
// 0.953×, 1.28×, 52.3×, 8473×.
func formatRatio(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f×", v)
	case v >= 10:
		return fmt.Sprintf("%.1f×", v)
	case v >= 1:
		return fmt.Sprintf("%.2f×", v)
	default:
		return fmt.Sprintf("%.3f×", v)
	}
}

// formatDuration prints nanoseconds in the unit that suits them.
func formatDuration(ns float64) string {
	switch {
	case math.IsNaN(ns):
		return "—"
	case ns >= 1e9:
		return fmt.Sprintf("%.1f s", ns/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	default:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
}
