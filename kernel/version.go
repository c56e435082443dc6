package kernel

import "github.com/btrstore/btrstore/internal/kversion"

// Version is a Linux version, with int fields Major, Minor and Patch:
// 6.18.44 is {6, 18, 44}. The zero value means unknown and sorts before
// every real version. Its methods are pure and safe for concurrent use.
//
// The parser is btrstore's internal/kversion, which the test fixture shares.
type Version kversion.Version

// Running returns the version of the running kernel, parsed from the release
// field of the uname system call. It is computed once per process; later
// calls return the same result.
//
// Privilege: none. Concurrency: safe.
func Running() (Version, error) {
	v, err := kversion.Running()
	return Version(v), err
}

// ParseVersion parses a kernel release string as uname -r prints it, such as
// "6.18.44-fc-v657", "6.1.0-28-cloud-amd64", "6.12.111+deb12-cloud-amd64" or
// "6.8-rc1". It reads the leading major.minor[.patch] and ignores what
// follows; a missing patch level is 0. Major and minor are required.
//
// Privilege: none. Concurrency: safe.
func ParseVersion(release string) (Version, error) {
	v, err := kversion.Parse(release)
	return Version(v), err
}

// AtLeast reports whether v is major.minor or later, whatever its patch
// level.
func (v Version) AtLeast(major, minor int) bool {
	return kversion.Version(v).AtLeast(major, minor)
}

// Compare returns -1, 0 or +1 as v is older than, the same as or newer than
// o, comparing major, then minor, then patch.
func (v Version) Compare(o Version) int {
	return kversion.Version(v).Compare(kversion.Version(o))
}

// String formats v as "6.18.44".
func (v Version) String() string { return kversion.Version(v).String() }
