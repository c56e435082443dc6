package btrfstest

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"
)

// ForExample is New for Example functions, which get no testing.TB: it
// returns the mount point of a fresh loop-mounted btrfs and the function
// that unmounts and removes it (defer it). A failure panics, which fails
// the example. Examples cannot skip themselves: name them in
// SkipRootExamples.
//
// Privilege, kernel and concurrency: as New.
func ForExample(opts ...Option) (mnt string, remove func()) {
	tb := &exampleTB{}
	fsys := New(tb, opts...)
	return fsys.Path, func() {
		for _, fn := range slices.Backward(tb.cleanups) {
			fn()
		}
	}
}

// exampleTB is the testing.TB that ForExample gives New: cleanups are
// collected for remove, failures panic.
type exampleTB struct {
	testing.TB // nil: a method not defined below panics
	cleanups   []func()
}

func (e *exampleTB) Helper()                           {}
func (e *exampleTB) Cleanup(fn func())                 { e.cleanups = append(e.cleanups, fn) }
func (e *exampleTB) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (e *exampleTB) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (e *exampleTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (e *exampleTB) Skipf(format string, args ...any)  { panic(fmt.Sprintf(format, args...)) }

// SkipRootExamples adds the examples matching pattern (those that use
// ForExample, which needs root) to -test.skip when the test binary does not
// run as root, unless BTRFS_TEST_REQUIRE=1, where they run and fail as a
// test that needs root does. Call it in TestMain before Main.
//
// Concurrency: TestMain only.
func SkipRootExamples(pattern string) {
	if os.Geteuid() == 0 || os.Getenv("BTRFS_TEST_REQUIRE") == "1" {
		return
	}
	flag.Parse()
	skip := pattern
	if old := flag.Lookup("test.skip").Value.String(); old != "" {
		skip = old + "|" + skip
	}
	flag.Set("test.skip", skip)
}
