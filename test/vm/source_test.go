package main

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestBuildInitElsewhere builds the guest init from a working directory in
// another module that does not require btrstore, as `go run
// github.com/btrstore/btrstore/test/vm@VERSION ./...` does from a user's
// module: the init must come from the harness's own source, not from the
// working directory's module.
func TestBuildInitElsewhere(t *testing.T) {
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n\ngo 1.25.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(other)
	bin, err := buildInit(runtime.GOARCH, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(bin); err != nil || st.Size() == 0 {
		t.Fatalf("guest init %s: %v, %v", bin, st, err)
	}
}
