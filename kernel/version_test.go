package kernel

import (
	"strings"
	"testing"

	"github.com/btrstore/btrstore/internal/kversion"
)

// The parser's cases are in internal/kversion; these check that the kernel
// package's names and methods reach it.

func TestParseVersion(t *testing.T) {
	if got, err := ParseVersion("6.12.111+deb12-cloud-amd64"); err != nil || got != (Version{6, 12, 111}) {
		t.Errorf("ParseVersion = %v, %v; want 6.12.111", got, err)
	}
	if got, err := ParseVersion("v6.1.0"); err == nil || !strings.Contains(err.Error(), `"v6.1.0"`) {
		t.Errorf("ParseVersion(v6.1.0) = %v, %v; want an error quoting the release", got, err)
	}
}

func TestVersionIsTheRunningKernel(t *testing.T) {
	want, wantErr := kversion.Running() // checked against /proc/sys/kernel/osrelease there
	if got, err := Running(); err != wantErr || got != Version(want) || got.Major == 0 {
		t.Errorf("Running() = %v, %v; want %v, %v", got, err, want, wantErr)
	}
}

func TestVersionMethods(t *testing.T) {
	v := Version{6, 13, 2}
	if !v.AtLeast(6, 13) || v.AtLeast(6, 14) {
		t.Errorf("%v.AtLeast wrong", v)
	}
	if v.Compare(Version{6, 13, 1}) != +1 || v.Compare(v) != 0 || v.Compare(Version{7, 0, 0}) != -1 {
		t.Errorf("%v.Compare wrong", v)
	}
	if got := v.String(); got != "6.13.2" {
		t.Errorf("String() = %q", got)
	}
}
