package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"unicode/utf8"
)

// A bar is one row of the chart: how many times faster btrstore is than
// an alternative (the alternative's time over btrstore's), and the target
// for that ratio if there is one.
type bar struct {
	group  string  // rows of a group are drawn together
	label  string  // what btrstore is compared with
	value  float64 // the ratio; 0 when it was not measured
	target float64 // 0: no target
	status string  // statusPass or statusFail when there is a target
	note   string  // shown instead of the bar when value is 0
}

// Chart geometry, in SVG user units (pixels at 100%). Text is SVG text in
// the viewer's sans-serif font; its width is only estimated (charWidth per
// character, generous for proportional fonts), to size the label column.
const (
	chartWidth  = 960
	chartMargin = 20
	fontSize    = 14
	charWidth   = 0.6 * fontSize
	lineHeight  = 20
	rowHeight   = 24
	barHeight   = 14
	groupGap    = 10
)

const (
	colorBackground = "#ffffff"
	colorText       = "#1e1e1e"
	colorMuted      = "#787878"
	colorGrid       = "#e1e1e1"
	colorAxis       = "#3c3c3c"
	colorPass       = "#2ea043"
	colorFail       = "#d73a49"
	colorInfo       = "#5b8bd6"
	colorTarget     = "#000000"
)

// chartFile is the chart's file name, beside PERFORMANCE.md.
const chartFile = "performance.svg"

const chartTitle = "How many times faster btrstore is (log scale)"

// chartLegend is the lines under the title: the run, then how to read it.
func chartLegend(rounds int, date string, cores int) []string {
	return []string{
		fmt.Sprintf("Median of %d round(s), %s, %d cores.", rounds, date, cores),
		"Green: meets its target, red: misses it, blue: no target. Black tick: the target.",
		"Left of 1×: btrstore is the slower.",
	}
}

// textWidth estimates the width of s in the chart's font.
func textWidth(s string) int {
	return int(math.Ceil(float64(utf8.RuneCountInString(s)) * charWidth))
}

// svg accumulates the chart's elements.
type svg struct{ bytes.Buffer }

func (w *svg) rect(x, y, width, height int, fill string) {
	fmt.Fprintf(w, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"/>\n", x, y, width, height, fill)
}

// text writes s with its baseline at y, starting at x (anchor "start"),
// ending there ("end") or centred on it ("middle").
func (w *svg) text(x, y int, anchor, fill, s string) {
	fmt.Fprintf(w, "<text x=\"%d\" y=\"%d\" text-anchor=\"%s\" fill=\"%s\">", x, y, anchor, fill)
	xml.EscapeText(w, []byte(s))
	w.WriteString("</text>\n")
}

// renderChart draws bars as an SVG horizontal bar chart on a log scale:
// each bar starts at 1× and ends at its ratio (to the left of 1× when
// btrstore is the slower), green when it meets its target, red when it
// does not, blue when it has none; a black tick marks the target.
func renderChart(title string, legend []string, bars []bar) []byte {
	labelW := 0
	for _, b := range bars {
		labelW = max(labelW, textWidth(b.label))
	}
	valueW := textWidth("00000.0× FAIL")
	x0 := chartMargin + labelW + 12
	x1 := chartWidth - chartMargin - valueW - 12

	// The axis spans whole decades around every value and target, and 1×.
	lo, hi := 0.0, 0.0
	for _, b := range bars {
		for _, v := range []float64{b.value, b.target} {
			if v > 0 {
				lo = math.Min(lo, math.Floor(math.Log10(v)))
				hi = math.Max(hi, math.Ceil(math.Log10(v)))
			}
		}
	}
	lo = math.Min(lo, -1)
	hi = math.Max(hi, 1)
	xpos := func(v float64) int {
		f := (math.Log10(v) - lo) / (hi - lo)
		return x0 + int(math.Round(f*float64(x1-x0)))
	}

	top := chartMargin + (1+len(legend))*lineHeight + 12
	height := top
	for i, b := range bars {
		if i > 0 && b.group != bars[i-1].group {
			height += groupGap
		}
		height += rowHeight
	}
	axisY := height + 4
	height = axisY + lineHeight + chartMargin

	var w svg
	fmt.Fprintf(&w, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "+
		"font-family=\"system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\" font-size=\"%d\">\n",
		chartWidth, height, chartWidth, height, fontSize)
	w.WriteString("<title>")
	xml.EscapeText(&w, []byte(title))
	w.WriteString("</title>\n")
	w.rect(0, 0, chartWidth, height, colorBackground)
	baseline := func(y, h int) int { return y + h/2 + fontSize*7/20 } // centres a line of text in [y, y+h)
	w.WriteString("<g font-weight=\"bold\">\n")
	w.text(chartMargin, baseline(chartMargin, lineHeight), "start", colorText, title)
	w.WriteString("</g>\n")
	for i, l := range legend {
		w.text(chartMargin, baseline(chartMargin+(i+1)*lineHeight, lineHeight), "start", colorMuted, l)
	}

	// Grid: a line per decade, labelled under the axis; 1× darker.
	for d := lo; d <= hi; d++ {
		x := xpos(math.Pow(10, d))
		c := colorGrid
		if d == 0 {
			c = colorAxis
		}
		w.rect(x, top-4, 1, axisY-top+4, c)
		w.text(x, baseline(axisY+2, lineHeight), "middle", colorMuted, decadeLabel(d))
	}
	w.rect(x0, axisY, x1-x0+1, 1, colorAxis)

	y := top
	for i, b := range bars {
		if i > 0 && b.group != bars[i-1].group {
			w.rect(chartMargin, y+groupGap/2-1, chartWidth-2*chartMargin, 1, colorGrid)
			y += groupGap
		}
		textY := baseline(y, rowHeight)
		w.text(x0-12, textY, "end", colorText, b.label)
		if b.value <= 0 {
			w.text(xpos(1)+8, textY, "start", colorMuted, b.note)
			y += rowHeight
			continue
		}
		c := colorInfo
		switch b.status {
		case statusPass:
			c = colorPass
		case statusFail:
			c = colorFail
		}
		one, end := xpos(1), xpos(b.value)
		w.rect(min(one, end), y+(rowHeight-barHeight)/2, max(abs(end-one), 2), barHeight, c)
		if b.target > 0 {
			w.rect(xpos(b.target)-1, y+1, 3, rowHeight-2, colorTarget)
		}
		value := formatRatio(b.value)
		if b.status != "" {
			value += " " + b.status
		}
		w.text(x1+12, textY, "start", c, value)
		y += rowHeight
	}
	w.WriteString("</svg>\n")
	return w.Bytes()
}

// decadeLabel names 10^d as a ratio: 0.1×, 1×, 10×, 1000×.
func decadeLabel(d float64) string {
	if d < 0 {
		return fmt.Sprintf("%g×", math.Pow(10, d))
	}
	return fmt.Sprintf("%.0f×", math.Pow(10, d))
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
