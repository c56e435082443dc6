package main

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
)

const (
	harnessPkg = "github.com/btrstore/btrstore/test/vm"
	initPkg    = harnessPkg + "/guestinit"
)

// TestPkg is a package whose test binary runs in the guest.
type TestPkg struct {
	ImportPath string
	Dir        string // source directory on the host
	RelDir     string // Dir relative to the module root: the working directory in the guest
	Binary     string // built test binary on the host; "" if the build failed
	BuildErr   error
}

// Name is the binary's file name in the guest: unique per package.
func (p TestPkg) Name() string {
	return strings.NewReplacer("/", "_", ".", "_").Replace(p.RelDir) + ".test"
}

// listTestPkgs expands the package patterns and keeps the packages that have
// test files. The harness's own packages are left out: they run qemu on the
// host and mean nothing inside the guest.
func listTestPkgs(patterns []string) ([]TestPkg, error) {
	args := append([]string{"list", "-e", "-json=ImportPath,Dir,TestGoFiles,XTestGoFiles,Module,Error"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	var pkgs []TestPkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath, Dir           string
			TestGoFiles, XTestGoFiles []string
			Module                    *struct{ Dir string }
			Error                     *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list: %w", err)
		}
		if isHarness(p.ImportPath) {
			continue
		}
		tp := TestPkg{ImportPath: p.ImportPath, Dir: p.Dir, RelDir: p.ImportPath}
		if p.Module != nil {
			tp.RelDir, _ = filepath.Rel(p.Module.Dir, p.Dir)
		}
		switch {
		case p.Error != nil:
			tp.BuildErr = errors.New(p.Error.Err)
		case len(p.TestGoFiles)+len(p.XTestGoFiles) == 0:
			continue
		}
		pkgs = append(pkgs, tp)
	}
	return pkgs, nil
}

// isHarness reports whether path is the harness or one of its packages, but
// not one of its testdata packages, which are meant to run in the guest.
func isHarness(path string) bool {
	inHarness := path == harnessPkg || strings.HasPrefix(path, harnessPkg+"/")
	return inHarness && !strings.Contains(path, "/testdata/")
}

// buildTests builds each package's test binary for goarch into dir, in
// parallel. A package that fails to build keeps its error; the others still
// run.
func buildTests(pkgs []TestPkg, goarch, dir string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for i := range pkgs {
		p := &pkgs[i]
		if p.BuildErr != nil {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			bin := filepath.Join(dir, p.Name())
			if err := goBuild(bin, p.ImportPath, goarch, "test", "-c"); err != nil {
				p.BuildErr = err
				return
			}
			p.Binary = bin
		})
	}
	wg.Wait()
}

// buildInit builds the guest init for goarch from the harness's own source
// (see harnessSource), in the harness's module: the working directory's
// module, whose tests run, need not require btrstore, or may require another
// version of it.
func buildInit(goarch, dir string) (string, error) {
	src, err := harnessSource()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "init")
	return bin, goBuildIn(src, bin, initPkg, goarch, "build")
}

// goBuild runs "go <verb...> -o bin pkg" for the guest: linux/goarch and
// static, since the initramfs has no C library for a cgo binary's loader.
// Without VCS stamping: a user other than the checkout's owner would get
// git's "dubious ownership" refusal, and the guest has no use for it.
func goBuild(bin, pkg, goarch string, verb ...string) error {
	return goBuildIn("", bin, pkg, goarch, verb...)
}

// goBuildIn is goBuild run in the directory dir ("": the working directory).
// Outside the working directory it builds in dir's module alone (no
// workspace) and leaves its go.mod as it is: it may be in the read-only
// module cache.
func goBuildIn(dir, bin, pkg, goarch string, verb ...string) error {
	args := slices.Concat(verb, []string{"-buildvcs=false", "-o", bin, pkg})
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if dir != "" {
		cmd.Env = append(cmd.Env, "GOWORK=off", "GOFLAGS=-mod=readonly")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return checkStatic(bin)
}

// checkStatic refuses a dynamically linked binary: it has a PT_INTERP.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (has PT_INTERP): it must build with CGO_ENABLED=0", bin)
		}
	}
	return nil
}
