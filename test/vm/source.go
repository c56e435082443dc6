package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
)

// modulePath is the module the harness belongs to.
const modulePath = "github.com/btrstore/btrstore"

// harnessSource returns the directory of the harness's own source (test/vm
// of the btrstore module it was built from), however it was started:
//
//   - go run ./test/vm in a btrstore checkout;
//   - go run github.com/btrstore/btrstore/test/vm from another module that
//     requires btrstore (or replaces it with a local copy);
//   - go run github.com/btrstore/btrstore/test/vm@VERSION from any directory,
//     where the working directory's module need not require btrstore at all.
//
// The guest init is built from there, so that it always matches the harness,
// while the tests are built from the working directory's module.
func harnessSource() (string, error) {
	// The compiler records this file's absolute path, unless -trimpath: the
	// checkout, the replacement's directory, or the module cache.
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Dir(file)
		if _, err := os.Stat(filepath.Join(dir, "guestinit", "main.go")); err == nil {
			return dir, nil
		}
	}
	// Built with -trimpath, or that source is gone: fetch the version the
	// binary was built from into the module cache.
	mod, err := harnessModule()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "mod", "download", "-json", mod)
	// Outside any module or workspace: only the module cache is wanted.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	var dl struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &dl); jerr == nil && dl.Error != "" {
		err = errors.New(dl.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", mod, err)
	}
	return filepath.Join(dl.Dir, "test", "vm"), nil
}

// harnessModule returns path@version of the btrstore module the binary was
// built from, from its build information.
func harnessModule() (string, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", errors.New("the harness binary has no build information")
	}
	m := &bi.Main
	if m.Path != modulePath {
		m = nil
		for _, d := range bi.Deps {
			if d.Path == modulePath {
				m = d
			}
		}
	}
	if m == nil {
		return "", fmt.Errorf("%s is not in the harness's build information", modulePath)
	}
	if m.Replace != nil {
		m = m.Replace
	}
	if m.Version == "" || m.Version == "(devel)" || strings.HasSuffix(m.Version, "+dirty") {
		return "", fmt.Errorf("the harness was built from a local copy of %s (version %q) whose source is not at the recorded path: run it from that copy, without -trimpath", modulePath, m.Version)
	}
	return m.Path + "@" + m.Version, nil
}
