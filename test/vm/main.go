package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
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

	pkgs, err := listTestPkgs(o.pkgs)
	if err == nil && len(pkgs) == 0 {
		err = fmt.Errorf("no packages with tests in %v", o.pkgs)
	}
	if err != nil {
		fmt.Fprintln(stderr, "vmtest:", err)
		return 1
	}
	buildTests(pkgs, tmp)
	built := 0
	for _, p := range pkgs {
		if p.BuildErr != nil {
			fmt.Fprintf(stderr, "vmtest: %s: %v\n", p.ImportPath, p.BuildErr)
		} else {
			built++
		}
	}
	if built == 0 {
		fmt.Fprintln(stderr, "vmtest: no test binary built")
		return 1
	}
	initBin, err := buildInit(tmp)
	if err != nil {
		fmt.Fprintln(stderr, "vmtest: guest init:", err)
		return 1
	}
	tools, err := hostTools(guestTools)
	if err != nil {
		fmt.Fprintln(stderr, "vmtest:", err)
		return 1
	}

	var reports []report
	for _, name := range o.kernels {
		r := runKernel(ctx, name, o, pkgs, initBin, tools, tmp, stdout)
		if r.err != nil {
			fmt.Fprintf(stderr, "vmtest: kernel %s: %v\n", name, r.err)
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
	if !summarize(stdout, pkgs, reports) {
		return 1
	}
	return 0
}

// runKernel boots one kernel of the matrix with a fresh disk.
func runKernel(ctx context.Context, name string, o options, pkgs []TestPkg, initBin string, tools []File, tmp string, out io.Writer) report {
	r := report{kernel: name}
	k, err := getKernel(name)
	if err != nil {
		r.err = err
		return r
	}
	r.release = k.Release
	mods, err := resolveModules(k, neededModules)
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
	fmt.Fprintf(out, "vmtest: booting %s (%s)\n", name, k.Release)
	start := time.Now()
	r.con, r.err = runVM(ctx, k, initrd, disk, o.timeout, out)
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
