package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
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

// Chart geometry, in pixels. The font is drawn at scale 2: 10×14 letters.
const (
	chartScale  = 2
	chartWidth  = 1280
	chartMargin = 24
	rowHeight   = 26
	barHeight   = 16
	groupGap    = 10
)

var (
	colorBackground = color.RGBA{255, 255, 255, 255}
	colorText       = color.RGBA{30, 30, 30, 255}
	colorMuted      = color.RGBA{120, 120, 120, 255}
	colorGrid       = color.RGBA{225, 225, 225, 255}
	colorAxis       = color.RGBA{60, 60, 60, 255}
	colorPass       = color.RGBA{46, 160, 67, 255}
	colorFail       = color.RGBA{215, 58, 73, 255}
	colorInfo       = color.RGBA{91, 139, 214, 255}
	colorTarget     = color.RGBA{0, 0, 0, 255}
)

// renderChart draws bars as a horizontal bar chart on a log scale: each
// bar starts at 1× and ends at its ratio (to the left of 1× when btrstore
// is the slower), green when it meets its target, red when it does not,
// blue when it has none; a black tick marks the target.
func renderChart(title string, legend []string, bars []bar) *image.RGBA {
	const s = chartScale
	lineH := glyphH*s + 8
	labelW := 0
	for _, b := range bars {
		labelW = max(labelW, textWidth(b.label, s))
	}
	valueW := textWidth("00000.0× FAIL", s)
	x0 := chartMargin + labelW + 16
	x1 := chartWidth - chartMargin - valueW - 16

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

	top := chartMargin + (2+len(legend))*lineH + 8
	height := top
	for i, b := range bars {
		if i > 0 && b.group != bars[i-1].group {
			height += groupGap
		}
		height += rowHeight
	}
	axisY := height + 4
	height = axisY + lineH + 8 + chartMargin

	img := image.NewRGBA(image.Rect(0, 0, chartWidth, height))
	fillRect(img, 0, 0, chartWidth, height, colorBackground)
	drawText(img, chartMargin, chartMargin, title, colorText, s)
	for i, l := range legend {
		drawText(img, chartMargin, chartMargin+(i+1)*lineH+4, l, colorMuted, s)
	}

	// Grid: a line per decade, labelled under the axis; 1× darker.
	for d := lo; d <= hi; d++ {
		x := xpos(math.Pow(10, d))
		c := colorGrid
		if d == 0 {
			c = colorAxis
		}
		fillRect(img, x, top-4, 1, axisY-top+4, c)
		label := decadeLabel(d)
		drawText(img, x-textWidth(label, s)/2, axisY+6, label, colorMuted, s)
	}
	fillRect(img, x0, axisY, x1-x0+1, 1, colorAxis)

	y := top
	for i, b := range bars {
		if i > 0 && b.group != bars[i-1].group {
			fillRect(img, chartMargin, y+groupGap/2-1, chartWidth-2*chartMargin, 1, colorGrid)
			y += groupGap
		}
		textY := y + (rowHeight-glyphH*s)/2
		drawText(img, x0-16-textWidth(b.label, s), textY, b.label, colorText, s)
		if b.value <= 0 {
			drawText(img, xpos(1)+8, textY, b.note, colorMuted, s)
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
		barY := y + (rowHeight-barHeight)/2
		fillRect(img, min(one, end), barY, max(abs(end-one), 2), barHeight, c)
		if b.target > 0 {
			fillRect(img, xpos(b.target)-1, y+1, 3, rowHeight-2, colorTarget)
		}
		value := formatRatio(b.value)
		if b.status != "" {
			value += " " + b.status
		}
		drawText(img, x1+16, textY, value, c, s)
		y += rowHeight
	}
	return img
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

// writePNG encodes img as a PNG file at path.
func writePNG(path string, img image.Image) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
