package kversion

import (
	"os"
	"strings"
	"sync"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		release string
		want    Version
	}{
		{"6.18.44-fc-v657", Version{6, 18, 44}},
		{"6.1.0-28-cloud-amd64", Version{6, 1, 0}},
		{"6.12.111+deb12-cloud-amd64", Version{6, 12, 111}},
		{"5.15.0-1057-azure", Version{5, 15, 0}},
		{"4.18.0-553.el8_10.x86_64", Version{4, 18, 0}},
		{"3.10.0-1160.el7.x86_64", Version{3, 10, 0}},
		{"6.8.0-rc1", Version{6, 8, 0}},
		{"6.8-rc1", Version{6, 8, 0}},
		{"6.13", Version{6, 13, 0}},
		{"6.13.", Version{6, 13, 0}},
		{"4.9.337", Version{4, 9, 337}},
		{"2.6.32.71", Version{2, 6, 32}},
		{"6.6.30_1", Version{6, 6, 30}},
		{"10.0.0", Version{10, 0, 0}},
	} {
		got, err := Parse(tt.release)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.release, got, err, tt.want)
		}
	}
	for _, bad := range []string{
		"", "6", "6.", "6-rc1", ".6.1", "v6.1.0", "six.one", "6.x", " 6.1",
		"99999999999999999999.1.0",
	} {
		if got, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", bad, got)
		} else if !strings.Contains(err.Error(), bad) {
			t.Errorf("Parse(%q) error %q does not quote the release", bad, err)
		}
	}
}

func TestRunningMatchesOsrelease(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Skipf("cannot read the second source: %v", err)
	}
	want, err := Parse(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			got, err := Running()
			if err != nil || got != want {
				t.Errorf("Running() = %v, %v; want %v from /proc/sys/kernel/osrelease", got, err, want)
			}
		})
	}
	wg.Wait()
	if n := unameReads.Load(); n != 1 {
		t.Errorf("uname read %d times, want once", n)
	}
}

func TestCompare(t *testing.T) {
	for _, tt := range []struct {
		a, b Version
		want int
	}{
		{Version{6, 13, 0}, Version{6, 13, 0}, 0},
		{Version{6, 12, 99}, Version{6, 13, 0}, -1},
		{Version{6, 13, 1}, Version{6, 13, 0}, +1},
		{Version{5, 20, 0}, Version{6, 0, 0}, -1},
		{Version{10, 0, 0}, Version{9, 99, 99}, +1},
		{Version{}, Version{0, 0, 1}, -1},
	} {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := tt.b.Compare(tt.a); got != -tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestAtLeast(t *testing.T) {
	v := Version{6, 13, 2}
	for _, tt := range []struct {
		major, minor int
		want         bool
	}{
		{6, 13, true}, {6, 12, true}, {5, 99, true}, {6, 14, false}, {7, 0, false},
	} {
		if got := v.AtLeast(tt.major, tt.minor); got != tt.want {
			t.Errorf("%v.AtLeast(%d, %d) = %v, want %v", v, tt.major, tt.minor, got, tt.want)
		}
	}
	if !(Version{6, 13, 0}).AtLeast(6, 13) {
		t.Error("6.13.0 is not at least 6.13")
	}
}

func TestVersionString(t *testing.T) {
	if got := (Version{6, 18, 44}).String(); got != "6.18.44" {
		t.Errorf("String() = %q", got)
	}
}
