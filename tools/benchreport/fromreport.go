package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// redrawChart writes the chart of the PERFORMANCE.md at mdPath to
// chartPath, without running anything (-chart-from).
func redrawChart(mdPath, chartPath string) error {
	md, err := os.ReadFile(mdPath)
	if err != nil {
		return err
	}
	a, legend, err := analysisFromReport(string(md))
	if err != nil {
		return fmt.Errorf("%s: %w", mdPath, err)
	}
	if err := os.WriteFile(chartPath, renderChart(chartTitle, legend, a.bars()), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s from %s\n", chartPath, mdPath)
	return nil
}

var (
	reportRounds = regexp.MustCompile(`in (\d+) round\(s\)`)
	reportDate   = regexp.MustCompile(`, (\d{4}-\d\d-\d\d) \d\d:\d\d UTC`)
	reportCores  = regexp.MustCompile(`, (\d+) cores,`)
	cellRatio    = regexp.MustCompile(`\(([0-9.]+)×\)$`)
)

// analysisFromReport reads back what the chart shows from a report that
// markdown wrote: the median ratios in brackets of "Median time per
// operation", and the measured value and status of every target. The
// analysis has no per-round results; its bars are the chart's. It also
// returns the chart's legend for that run.
func analysisFromReport(md string) (*analysis, []string, error) {
	a := newAnalysis(newResults(1)) // the targets, none measured
	a.reported = make(map[string]float64)
	// First cell → cells, over every table. The first row wins: the
	// table of median times comes before the others that name operations
	// (variants, allocations).
	rows := map[string][]string{}
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if _, seen := rows[cells[0]]; !seen {
			rows[cells[0]] = cells
		}
	}
	for _, t := range a.targets {
		cells, ok := rows[t.what]
		if !ok || len(cells) != 5 || t.chart == "" {
			continue
		}
		status, _, _ := strings.Cut(strings.TrimPrefix(cells[4], "**"), "**") // "**FAIL**", "**NOT MEASURED**: why"
		if status == statusNotMeasured {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(cells[2], "×"), 64)
		if err != nil {
			return nil, nil, fmt.Errorf("target %q: measured %q: %v", t.what, cells[2], err)
		}
		t.values, t.status = []float64{v}, status
	}
	for _, key := range []string{"create", "snapshot", "delete", "build", "cache", "deletewait"} {
		w := workloadByKey(key)
		cells, ok := rows[w.title]
		if !ok || len(cells) != 1+len(columns) {
			return nil, nil, fmt.Errorf("no row %q with %d cells in the table of median times", w.title, 1+len(columns))
		}
		for i, col := range columns[1:] {
			// cells[1] is btrstore's own column, with no ratio.
			if m := cellRatio.FindStringSubmatch(cells[i+2]); m != nil {
				v, err := strconv.ParseFloat(m[1], 64)
				if err != nil {
					return nil, nil, fmt.Errorf("%s, %s: %v", w.title, col.heading, err)
				}
				a.reported[key+"/"+col.key] = v
			}
		}
	}
	var rounds, cores int
	var date string
	if m := reportRounds.FindStringSubmatch(md); m != nil {
		rounds, _ = strconv.Atoi(m[1])
	}
	if m := reportCores.FindStringSubmatch(md); m != nil {
		cores, _ = strconv.Atoi(m[1])
	}
	if m := reportDate.FindStringSubmatch(md); m != nil {
		date = m[1]
	}
	if rounds == 0 || cores == 0 || date == "" {
		return nil, nil, fmt.Errorf("no round count, core count or date in the header")
	}
	return a, chartLegend(rounds, date, cores), nil
}
