package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/btrstore/btrstore/test/vm/internal/plan"
)

func main() {
	// On ^C or a CI's SIGTERM: kill qemu, remove the temporary files, report.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the command; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, stderr)
	if err != nil {
		return 2
	}
	tmp, err := os.MkdirTemp("", "btrstore-vmtest-")
	if err != nil {
		fmt.Fprintln(stderr, "vmtest:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	listed, err := listTestPkgs(o.pkgs)
	if err == nil && len(listed) == 0 {
		err = fmt.Errorf("no packages with tests in %v", o.pkgs)
	}
	if err != nil {
		fmt.Fprintln(stderr, "vmtest:", err)
		return 1
	}
	var reports []report
	for _, a := range o.arches {
		reports = append(reports, runArch(ctx, a, o, listed, tmp, stdout, stderr)...)
		if ctx.Err() != nil {
			break
		}
	}
	if !summarize(stdout, reports) {
		return 1
	}
	return 0
}

// runArch builds the tests for a and boots each of its kernels.
func runArch(ctx context.Context, a Arch, o options, listed []TestPkg, tmp string, stdout, stderr io.Writer) []report {
	fail := func(err error) []report {
		fmt.Fprintf(stderr, "vmtest: %s: %v\n", a.GOARCH, err)
		return []report{{arch: a.GOARCH, kernel: "-", err: err}}
	}
	dir := filepath.Join(tmp, a.GOARCH)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	pkgs := slices.Clone(listed)
	start := time.Now()
	buildTests(pkgs, a.GOARCH, dir)
	built := 0
	for _, p := range pkgs {
		if p.BuildErr != nil {
			fmt.Fprintf(stderr, "vmtest: %s: %s: %v\n", a.GOARCH, p.ImportPath, p.BuildErr)
		} else {
			built++
		}
	}
	if built == 0 {
		return fail(errors.New("no test binary built"))
	}
	initBin, err := buildInit(a.GOARCH, dir)
	if err != nil {
		return fail(fmt.Errorf("guest init: %w", err))
	}
	files, err := tools(a)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "vmtest: %s: tests built and tools ready in %v\n", a.GOARCH, time.Since(start).Round(10*time.Millisecond))
	kernels := o.kernels
	if kernels == nil {
		kernels = a.DefaultKernels
	}
	var reports []report
	for _, name := range kernels {
		r := runKernel(ctx, a, name, o, pkgs, initBin, files, dir, stdout)
		if r.err != nil {
			fmt.Fprintf(stderr, "vmtest: %s kernel %s: %v\n", a.GOARCH, name, r.err)
			if r.con != nil {
				fmt.Fprintf(stderr, "vmtest: last %d console lines:\n", len(r.con.tail))
				for _, l := range r.con.tail {
					fmt.Fprintln(stderr, "  | "+l)
				}
			}
		}
		reports = append(reports, r)
		if ctx.Err() != nil {
			break
		}
	}
	return reports
}

// runKernel boots one kernel of the matrix with a fresh disk.
func runKernel(ctx context.Context, a Arch, name string, o options, pkgs []TestPkg, initBin string, tools []File, tmp string, out io.Writer) report {
	r := report{arch: a.GOARCH, kernel: name, pkgs: pkgs}
	k, err := getKernel(a, name)
	if err != nil {
		r.err = err
		return r
	}
	r.release = k.Release
	mods, err := resolveModules(k, a.Modules)
	if err != nil {
		r.err = err
		return r
	}
	p := plan.Plan{
		Args:           o.testArgs,
		Env:            forwardedEnv(name),
		TimeoutSeconds: o.timeout.Seconds(),
		RandomSeed:     make([]byte, 64),
	}
	rand.Read(p.RandomSeed)
	initrd := filepath.Join(tmp, "initrd-"+k.Release+".cpio")
	if err := writeInitramfs(initrd, initBin, pkgs, mods, tools, p); err != nil {
		r.err = fmt.Errorf("initramfs: %w", err)
		return r
	}
	defer os.Remove(initrd)
	disk := filepath.Join(tmp, "disk-"+k.Release+".img")
	if err := makeDisk(disk); err != nil {
		r.err = err
		return r
	}
	defer os.Remove(disk)
	fmt.Fprintf(out, "vmtest: booting %s %s (%s)\n", a.GOARCH, name, k.Release)
	start := time.Now()
	r.con, r.err = runVM(ctx, a, k, initrd, disk, o.timeout, out)
	r.wall = time.Since(start)
	return r
}

// forwardedEnv is the environment the tests get from the host: the
// BTRFS_TEST_* switches (BTRFS_TEST_REQUIRE=1 makes skips failures), and
// BTRSTORE_VMTEST naming the kernel, for tests that want to know.
func forwardedEnv(kernel string) []string {
	env := []string{"BTRSTORE_VMTEST=" + kernel}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "BTRFS_TEST_") {
			env = append(env, kv)
		}
	}
	return env
}
