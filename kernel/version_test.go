package kernel

import (
	"os"
	"strings"
	"testing"
)

// The parser's cases are in internal/kversion; these check that the kernel
// package's names and methods reach it.

func TestParseVersion(t *testing.T) {
	if got, err := ParseVersion("6.12.111+deb12-cloud-amd64"); err != nil || got != (KernelVersion{6, 12, 111}) {
		t.Errorf("ParseVersion = %v, %v; want 6.12.111", got, err)
	}
	if got, err := ParseVersion("v6.1.0"); err == nil || !strings.Contains(err.Error(), `"v6.1.0"`) {
		t.Errorf("ParseVersion(v6.1.0) = %v, %v; want an error quoting the release", got, err)
	}
}

func TestVersionMatchesOsrelease(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Skipf("cannot read the second source: %v", err)
	}
	want, err := ParseVersion(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Version(); err != nil || got != want {
		t.Errorf("Version() = %v, %v; want %v from /proc/sys/kernel/osrelease", got, err, want)
	}
}

func TestKernelVersionMethods(t *testing.T) {
	v := KernelVersion{6, 13, 2}
	if !v.AtLeast(6, 13) || v.AtLeast(6, 14) {
		t.Errorf("%v.AtLeast wrong", v)
	}
	if v.Compare(KernelVersion{6, 13, 1}) != +1 || v.Compare(v) != 0 || v.Compare(KernelVersion{7, 0, 0}) != -1 {
		t.Errorf("%v.Compare wrong", v)
	}
	if got := v.String(); got != "6.13.2" {
		t.Errorf("String() = %q", got)
	}
}
