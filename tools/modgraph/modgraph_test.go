package modgraph

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const lib = "github.com/btrstore/btrstore"

// allowedRoots are the modules the library may require.
var allowedRoots = []string{"golang.org/x/sys", "github.com/go-logr/logr"}

// consumer makes a module in a temp dir whose main package imports pkgs
// (import paths), with the library replaced by this checkout, resolves it
// with `go mod tidy`, and returns `go list -m all` and `go mod graph`.
func consumer(t *testing.T, pkgs ...string) (modules []string, graph [][2]string) {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gomod := "module example.com/consumer\n\ngo 1.25.0\n\nrequire " + lib + " v0.0.0\n\nreplace " + lib + " => " + repo + "\n"
	var src strings.Builder
	src.WriteString("package main\n\nimport (\n")
	for _, p := range pkgs {
		src.WriteString("\t_ \"" + p + "\"\n")
	}
	src.WriteString(")\n\nfunc main() {}\n")
	for name, data := range map[string]string{"go.mod": gomod, "main.go": src.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return string(out)
	}
	run("mod", "tidy")
	run("build", "./...")
	modules = strings.Fields(run("list", "-m", "-f", "{{.Path}}", "all"))
	for _, line := range strings.Split(strings.TrimSpace(run("mod", "graph")), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			graph = append(graph, [2]string{f[0], f[1]})
		}
	}
	return modules, graph
}

// modPath is the path of a `go mod graph` node, path@version.
func modPath(node string) string {
	p, _, _ := strings.Cut(node, "@")
	return p
}

// allowed returns the consumer, the library, allowedRoots and every module
// reachable from them in graph except through the library.
func allowed(graph [][2]string) map[string]bool {
	ok := map[string]bool{"example.com/consumer": true, lib: true}
	queue := slices.Clone(allowedRoots)
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		if ok[m] {
			continue // seen, or the library (whose requirements are what is checked)
		}
		ok[m] = true
		for _, e := range graph {
			if modPath(e[0]) == m && !ok[modPath(e[1])] {
				queue = append(queue, modPath(e[1]))
			}
		}
	}
	return ok
}

// TestConsumerModuleGraph: consumers of the library's packages (store and
// ioctl; receive and remote; every other package) get x/sys and logr,
// and what those require, and nothing else: the benchmarks' dennwc/btrfs,
// receive/zstd's klauspost/compress and remote/s3's minio-go are in
// modules of their own.
func TestConsumerModuleGraph(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkgs []string
	}{
		{"store+ioctl", []string{lib + "/store", lib + "/ioctl"}},
		{"receive+remote", []string{lib + "/receive", lib + "/remote"}},
		{"all", []string{lib + "/store", lib + "/ioctl", lib + "/kernel", lib + "/cache",
			lib + "/receive", lib + "/remote", lib + "/sendstream"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			modules, graph := consumer(t, tc.pkgs...)
			ok := allowed(graph)
			for _, m := range modules {
				if !ok[m] {
					t.Errorf("go list -m all has %s: only %v (and their requirements) are allowed", m, allowedRoots)
				}
			}
			for _, want := range allowedRoots {
				if !slices.Contains(modules, want) {
					t.Errorf("go list -m all lacks %s: %v", want, modules)
				}
			}
			t.Logf("go list -m all: %v", modules)
		})
	}
}

// TestAllowedSeesRequirements: the check sees a module that the library
// pulls in beyond x/sys and logr (here klauspost/compress, through the
// nested module receive/zstd), so TestConsumerModuleGraph can fail.
func TestAllowedSeesRequirements(t *testing.T) {
	graph := [][2]string{
		{"example.com/consumer", lib + "@v0.0.0"},
		{"example.com/consumer", lib + "/receive/zstd@v0.0.0"},
		{lib + "/receive/zstd@v0.0.0", "github.com/klauspost/compress@v1.20.4"},
		{lib + "@v0.0.0", "golang.org/x/sys@v0.47.0"},
		{"golang.org/x/sys@v0.47.0", "example.com/sysdep@v1.0.0"},
	}
	ok := allowed(graph)
	for m, want := range map[string]bool{
		"golang.org/x/sys": true, "example.com/sysdep": true, "github.com/go-logr/logr": true,
		lib + "/receive/zstd": false, "github.com/klauspost/compress": false,
	} {
		if ok[m] != want {
			t.Errorf("allowed[%s] = %v, want %v", m, ok[m], want)
		}
	}
}
