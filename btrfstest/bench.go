package btrfstest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Names returns n names, prefix followed by the index (prefix0, prefix1,
// ...). Benchmarks make them before the timer starts, so that no
// implementation pays for formatting its arguments.
func Names(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = prefix + strconv.Itoa(i)
	}
	return names
}

// Paths is Names joined to dir.
func Paths(dir, prefix string, n int) []string {
	paths := Names(prefix, n)
	for i, name := range paths {
		paths[i] = filepath.Join(dir, name)
	}
	return paths
}

// Fill writes count files f0, f1, ... of size bytes each into dir: what
// makes a snapshot source or a deleted subvolume realistic in a benchmark
// (above max_inline, 2048 bytes, each file has an extent to share or free).
func Fill(dir string, count, size int) error {
	content := []byte(strings.Repeat("x", size))
	for i := range count {
		if err := os.WriteFile(filepath.Join(dir, "f"+strconv.Itoa(i)), content, 0o644); err != nil {
			return err
		}
	}
	return nil
}
