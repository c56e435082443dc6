package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

const sampleOutput = `goos: linux
goarch: amd64
pkg: github.com/btrstore/btrstore/ioctl
cpu: AMD EPYC
BenchmarkCreate
BenchmarkCreate/impl=btrstore
BenchmarkCreate/impl=btrstore-2         	     100	     29349 ns/op	       4 B/op	       1 allocs/op
PASS
`

func TestParseOutputResult(t *testing.T) {
	res := parseOutput([]byte(sampleOutput), "BenchmarkCreate/impl=btrstore")
	if res.skip != "" || res.err != "" {
		t.Fatalf("skip %q err %q", res.skip, res.err)
	}
	want := map[string]float64{"ns/op": 29349, "B/op": 4, "allocs/op": 1}
	for unit, v := range want {
		if res.metrics[unit] != v {
			t.Errorf("%s = %v, want %v", unit, res.metrics[unit], v)
		}
	}
}

func TestParseOutputCustomMetrics(t *testing.T) {
	out := "BenchmarkBuildParallel/builders=8/impl=store-2   100  2000000 ns/op  480.5 builds/s  900 B/op  30 allocs/op\n"
	res := parseOutput([]byte(out), "BenchmarkBuildParallel/builders=8/impl=store")
	if res.metrics["builds/s"] != 480.5 {
		t.Fatalf("metrics %v", res.metrics)
	}
}

func TestParseOutputSkip(t *testing.T) {
	out := `BenchmarkBuild
BenchmarkBuild/impl=cli-sudo
    bench_test.go:362: no sudo on this machine (exec: "sudo": executable file not found in $PATH)
--- SKIP: BenchmarkBuild/impl=cli-sudo
PASS
`
	res := parseOutput([]byte(out), "BenchmarkBuild/impl=cli-sudo")
	if !strings.HasPrefix(res.skip, "no sudo on this machine") || res.metrics != nil {
		t.Fatalf("got %+v", res)
	}
}

func TestParseOutputFail(t *testing.T) {
	out := `BenchmarkBuild/impl=cli
    bench_test.go:10: btrfs subvolume snapshot: exit status 1
--- FAIL: BenchmarkBuild/impl=cli
--- FAIL: BenchmarkBuild
FAIL
`
	res := parseOutput([]byte(out), "BenchmarkBuild/impl=cli")
	if res.err != "btrfs subvolume snapshot: exit status 1" {
		t.Fatalf("got %+v", res)
	}
}

func TestBenchPattern(t *testing.T) {
	got := benchPattern("BenchmarkBuildParallel/builders=8/impl=naive-layout")
	want := `^BenchmarkBuildParallel$/^builders=8$/^impl=naive-layout$`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestRoundOrderInterleaves(t *testing.T) {
	var ws []*workload
	for i := range workloads {
		ws = append(ws, &workloads[i])
	}
	all := jobs(ws, false, true)
	const rounds = 5
	firsts := map[string]bool{}
	for r := range rounds {
		order := roundOrder(all, r, rounds)
		seen := map[string]int{}
		for _, j := range order {
			seen[j.name]++
		}
		for _, j := range all {
			want := 1
			if j.im.once && r != rounds/2 {
				want = 0
			}
			if seen[j.name] != want {
				t.Errorf("round %d runs %s %d times, want %d", r, j.name, seen[j.name], want)
			}
		}
		firsts[order[0].name] = true
	}
	if len(firsts) < 3 {
		t.Errorf("rounds start with only %v", firsts)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

// fakeResults is a run of every job in two rounds, cli-sudo skipped, with
// the store ten times faster than everything.
func fakeResults() *results {
	rs := newResults(2)
	for i := range workloads {
		w := &workloads[i]
		for _, im := range w.impls {
			name := w.benchName(im.name)
			for r := range 2 {
				if im.name == "cli-sudo" {
					rs.add(name, r, result{skip: "no sudo on this machine"})
					continue
				}
				ns := 1e6 * float64(10+r)
				if im.col == colBtrstore || strings.HasSuffix(im.name, "store") {
					ns /= 10
				}
				rs.add(name, r, result{metrics: map[string]float64{
					"ns/op": ns, "allocs/op": 1, "B/op": 8, "builds/s": 1e9 / ns,
					"median-store/bare": 1.02, "store/bare": 1.03, "store-ns/op": 4e6, "bare-ns/op": 3.9e6,
					"store-cpu-ns/op": 2e6, "bare-cpu-ns/op": 1.9e6, "cpu-ns/build": 2e6,
				}})
			}
		}
	}
	return rs
}

func TestAnalysis(t *testing.T) {
	a := newAnalysis(fakeResults())
	statuses := map[string]string{}
	for _, tg := range a.targets {
		statuses[tg.what] = tg.status
		if tg.status == statusNotMeasured && tg.reason == "" {
			t.Errorf("%s: not measured without a reason", tg.what)
		}
	}
	if s := statuses["build cycle: store faster than the `sudo -n btrfs` CLI"]; s != statusNotMeasured {
		t.Errorf("sudo target: %s", s)
	}
	if s := statuses["build cycle: store time / bare ioctl sequence (BenchmarkPaired, median cycle)"]; s != statusPass {
		t.Errorf("paired target: %s", s)
	}
	if s := statuses["create: store faster than the `btrfs` CLI"]; s != statusFail {
		t.Errorf("create vs cli (10×, goal 30×): %s", s)
	}
}

func TestReportRenders(t *testing.T) {
	a := newAnalysis(fakeResults())
	rep := &report{a: a, m: machine{cores: 2, kernel: "6.18"}, rounds: 2, command: "benchreport", chart: chartFile}
	md := string(rep.markdown())
	for _, want := range []string{"## Targets", "| build cycle |", "NOT MEASURED", "## How it should scale with more cores", "/s on 4 cores", "performance.svg"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "NaN") {
		t.Error("report prints NaN")
	}
}

// svgText parses an SVG document and returns the text of its <text>
// elements, failing the test if it is not well-formed XML with an <svg>
// root.
func svgText(t *testing.T, doc []byte) []string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var texts []string
	depth, inText := 0, false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if depth == 0 && tok.Name.Local != "svg" {
				t.Fatalf("root element <%s>, want <svg>", tok.Name.Local)
			}
			depth++
			if inText = tok.Name.Local == "text"; inText {
				texts = append(texts, "")
			}
		case xml.EndElement:
			depth--
			inText = false
		case xml.CharData:
			if inText {
				texts[len(texts)-1] += string(tok)
			}
		}
	}
	return texts
}

func TestChartIsSVGWithEveryLabelAsText(t *testing.T) {
	bars := newAnalysis(fakeResults()).bars()
	bars = append(bars, bar{group: "x", label: `<escaped> & "quoted"`, value: 2})
	doc := renderChart("Title", chartLegend(2, "2026-11-27", 2), bars)
	texts := svgText(t, doc)
	want := []string{"Title", "Median of 2 round(s), 2026-11-27, 2 cores.", "0.1×", "1×", "10×"}
	for _, b := range bars {
		want = append(want, b.label)
		if b.value > 0 {
			want = append(want, strings.TrimSpace(formatRatio(b.value)+" "+b.status))
		} else {
			want = append(want, b.note)
		}
	}
	for _, w := range want {
		if !slices.Contains(texts, w) {
			t.Errorf("chart has no text %q; it has %q", w, texts)
		}
	}
	if bytes.Contains(doc, []byte("NaN")) {
		t.Error("chart has NaN")
	}
}

// TestChartFromReport checks that -chart-from draws the same bars from a
// report as the run that wrote it, up to the report's rounding.
func TestChartFromReport(t *testing.T) {
	a := newAnalysis(fakeResults())
	m := machine{cores: 2, kernel: "6.18", date: time.Date(2026, 11, 27, 7, 25, 0, 0, time.UTC)}
	rep := &report{a: a, m: m, rounds: 2, command: "benchreport", chart: chartFile}
	back, legend, err := analysisFromReport(string(rep.markdown()))
	if err != nil {
		t.Fatal(err)
	}
	if want := chartLegend(2, "2026-11-27", 2); !slices.Equal(legend, want) {
		t.Errorf("legend %q, want %q", legend, want)
	}
	want, got := a.bars(), back.bars()
	if len(got) != len(want) {
		t.Fatalf("%d bars from the report, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.label != w.label || g.status != w.status || g.target != w.target || (g.value > 0) != (w.value > 0) ||
			math.Abs(g.value-w.value) > 0.01*w.value {
			t.Errorf("bar %d from the report: %+v, want %+v", i, g, w)
		}
	}
}

// TestChartFromDocs checks that the committed report can be redrawn.
func TestChartFromDocs(t *testing.T) {
	md, err := os.ReadFile("../../docs/PERFORMANCE.md")
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := analysisFromReport(string(md))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range a.bars() {
		if b.value <= 0 {
			t.Errorf("bar %q has no value in docs/PERFORMANCE.md", b.label)
		}
	}
}
