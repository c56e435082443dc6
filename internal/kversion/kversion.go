// Package kversion parses Linux kernel release strings and reads the
// running kernel's version once per process. It is a leaf package (it
// imports only x/sys/unix), so that the library (kernel, ioctl) and the test
// fixture (btrfstest, which kernel's tests import) share one
// parser. kernel.Version is this package's Version.
//
// Everything here is safe for concurrent use and needs no privilege.
package kversion

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

// Version is a Linux version: 6.18.44 is {6, 18, 44}. The zero value means
// unknown and sorts before every real version. Its methods are pure.
type Version struct{ Major, Minor, Patch int }

// Running returns the version of the running kernel, parsed from the
// release field of the uname system call. It is computed once per process;
// later calls return the same result.
func Running() (Version, error) { return running() }

var running = sync.OnceValues(readRunning)

// unameReads counts calls of readRunning, so that a test can check that
// Running is computed once.
var unameReads atomic.Int32

func readRunning() (Version, error) {
	unameReads.Add(1)
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return Version{}, os.NewSyscallError("uname", err)
	}
	return Parse(unix.ByteSliceToString(uts.Release[:]))
}

// Parse parses a kernel release string as uname -r prints it, such as
// "6.18.44-fc-v657", "6.1.0-28-cloud-amd64", "6.12.111+deb12-cloud-amd64" or
// "6.8-rc1". It reads the leading major.minor[.patch] and ignores what
// follows; a missing patch level is 0. Major and minor are required. Errors
// quote the release.
func Parse(release string) (Version, error) {
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
			return Version{}, fmt.Errorf("parse kernel release %q: %w", release, err)
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
		return Version{}, fmt.Errorf("parse kernel release %q: %w", release, errNoVersion)
	}
	return Version{Major: nums[0], Minor: nums[1], Patch: nums[2]}, nil
}

var errNoVersion = errors.New("does not start with major.minor")

// AtLeast reports whether v is major.minor or later, whatever its patch
// level.
func (v Version) AtLeast(major, minor int) bool {
	return v.Compare(Version{Major: major, Minor: minor}) >= 0
}

// Compare returns -1, 0 or +1 as v is older than, the same as or newer than
// o, comparing major, then minor, then patch.
func (v Version) Compare(o Version) int {
	if c := cmp.Compare(v.Major, o.Major); c != 0 {
		return c
	}
	if c := cmp.Compare(v.Minor, o.Minor); c != 0 {
		return c
	}
	return cmp.Compare(v.Patch, o.Patch)
}

// String formats v as "6.18.44".
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}
