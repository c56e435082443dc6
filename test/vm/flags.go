package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// options are the command line.
type options struct {
	arches   []Arch
	kernels  []string // nil: each architecture's DefaultKernels
	timeout  time.Duration
	pkgs     []string // patterns for go list
	testArgs []string // for every test binary
}

func parseArgs(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("vmtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./test/vm [flags] [packages] [-- test binary flags]")
		fs.PrintDefaults()
	}
	defArch := os.Getenv("VMTEST_ARCH")
	if defArch == "" {
		defArch = "amd64"
		if _, err := lookupArch(runtime.GOARCH); err == nil {
			defArch = runtime.GOARCH
		}
	}
	archList := fs.String("arch", defArch, "comma-separated guest architectures (GOARCH names: amd64, arm64, ppc64le, s390x), the kernels of each booted in turn (env VMTEST_ARCH)")
	kernels := fs.String("kernels", os.Getenv("VMTEST_KERNELS"), "comma-separated kernels to boot, one VM each (env VMTEST_KERNELS; default 6.1,6.12 on amd64, 6.1 on the others; VMTEST_KERNEL=path overrides)")
	timeout := fs.Duration("timeout", 20*time.Minute, "time limit for each VM, boot included")
	runRE := fs.String("run", "", "run only the tests matching this regexp (as go test -run)")
	verbose := fs.Bool("v", false, "verbose test output")
	count := fs.Int("count", 0, "run each test this many times (as go test -count)")
	bench := fs.String("bench", "", "run the benchmarks matching this regexp (off by default)")
	short := fs.Bool("short", false, "tell the tests to be short")
	var o options
	if i := slices.Index(args, "--"); i >= 0 {
		o.testArgs = passThrough(args[i+1:])
		args = args[:i]
	}
	// Go's flag package stops at the first package argument; allow flags after
	// packages too, as go test does, by parsing the remaining args repeatedly.
	for {
		if err := fs.Parse(args); err != nil {
			return o, err
		}
		if fs.NArg() == 0 {
			break
		}
		o.pkgs = append(o.pkgs, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if *timeout <= 0 {
		return o, fmt.Errorf("-timeout must be positive")
	}
	o.timeout = *timeout
	for _, name := range strings.Split(*archList, ",") {
		a, err := lookupArch(name)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return o, err
		}
		o.arches = append(o.arches, a)
	}
	if *kernels != "" {
		o.kernels = strings.Split(*kernels, ",")
	}
	if os.Getenv("VMTEST_KERNEL") != "" {
		if len(o.arches) != 1 {
			err := fmt.Errorf("VMTEST_KERNEL is for one -arch, not %s", *archList)
			fmt.Fprintln(stderr, err)
			return o, err
		}
		o.kernels = []string{"VMTEST_KERNEL"}
	}
	if len(o.pkgs) == 0 {
		o.pkgs = []string{"./..."}
	}
	var t []string
	if *runRE != "" {
		t = append(t, "-test.run="+*runRE)
	}
	if *verbose {
		t = append(t, "-test.v")
	}
	if *count > 0 {
		t = append(t, fmt.Sprintf("-test.count=%d", *count))
	}
	if *bench != "" {
		t = append(t, "-test.bench="+*bench)
	}
	if *short {
		t = append(t, "-test.short")
	}
	o.testArgs = append(t, o.testArgs...)
	return o, nil
}

// hostOnlyFlags would point the guest at host paths or fight the harness's
// own timeout (which it passes to the binaries itself).
var hostOnlyFlags = []string{"testlogfile", "paniconexit0", "timeout", "outputdir", "gocoverdir"}

// passThrough turns test flags into test binary flags (-run -> -test.run) and
// drops the host-only ones, so that flags written for go test work here.
func passThrough(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if !strings.HasPrefix(args[i], "-") {
			out = append(out, args[i]) // the value of the previous flag
			continue
		}
		name := strings.TrimPrefix(strings.TrimLeft(args[i], "-"), "test.")
		key, _, hasValue := strings.Cut(name, "=")
		if slices.Contains(hostOnlyFlags, key) {
			if !hasValue && key != "paniconexit0" && i+1 < len(args) {
				i++ // "-test.timeout 10m": skip the value too
			}
			continue
		}
		out = append(out, "-test."+name)
	}
	return out
}
