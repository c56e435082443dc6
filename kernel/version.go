package kernel

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// KernelVersion is a Linux version: 6.18.44 is {6, 18, 44}. The zero value
// means unknown and sorts before every real version. Its methods are pure
// and safe for concurrent use.
type KernelVersion struct{ Major, Minor, Patch int }

// Version returns the version of the running kernel, parsed from the release
// field of the uname system call. It is computed once per process; later
// calls return the same result.
//
// Privilege: none. Concurrency: safe.
func Version() (KernelVersion, error) { return version() }

var version = sync.OnceValues(readVersion)

// versionReads counts calls of readVersion, so that a test can check that
// Version is computed once.
var versionReads atomic.Int32

func readVersion() (KernelVersion, error) {
	versionReads.Add(1)
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return KernelVersion{}, os.NewSyscallError("uname", err)
	}
	return ParseVersion(unix.ByteSliceToString(uts.Release[:]))
}

// ParseVersion parses a kernel release string as uname -r prints it, such as
// "6.18.44-fc-v657", "6.1.0-28-cloud-amd64", "6.12.111+deb12-cloud-amd64" or
// "6.8-rc1". It reads the leading major.minor[.patch] and ignores what
// follows; a missing patch level is 0. Major and minor are required.
//
// Privilege: none. Concurrency: safe.
func ParseVersion(release string) (KernelVersion, error) {
	var nums [3]int
	rest := release
	n := 0
	for ; n < len(nums); n++ {
		digits := len(rest) - len(strings.TrimLeft(rest, "0123456789"))
		if digits == 0 {
			break
		}
		v, err := strconv.Atoi(rest[:digits])
		if err != nil {
			return KernelVersion{}, fmt.Errorf("kernel: parse release %q: %w", release, err)
		}
		nums[n] = v
		rest = rest[digits:]
		if n == len(nums)-1 || !strings.HasPrefix(rest, ".") {
			n++
			break
		}
		rest = rest[1:]
	}
	if n < 2 {
		return KernelVersion{}, fmt.Errorf("kernel: parse release %q: %w", release, errNoVersion)
	}
	return KernelVersion{Major: nums[0], Minor: nums[1], Patch: nums[2]}, nil
}

var errNoVersion = errors.New("does not start with major.minor")

// AtLeast reports whether v is major.minor or later, whatever its patch
// level.
func (v KernelVersion) AtLeast(major, minor int) bool {
	return v.Compare(KernelVersion{Major: major, Minor: minor}) >= 0
}

// Compare returns -1, 0 or +1 as v is older than, the same as or newer than
// o, comparing major, then minor, then patch.
func (v KernelVersion) Compare(o KernelVersion) int {
	if c := cmp.Compare(v.Major, o.Major); c != 0 {
		return c
	}
	if c := cmp.Compare(v.Minor, o.Minor); c != 0 {
		return c
	}
	return cmp.Compare(v.Patch, o.Patch)
}

// String formats v as "6.18.44".
func (v KernelVersion) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}
