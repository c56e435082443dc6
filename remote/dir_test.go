package remote_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/remote"
	"github.com/btrstore/btrstore/remote/remotetest"
)

func TestDirConformance(t *testing.T) {
	remotetest.Run(t, func(t *testing.T) remote.Remote {
		dir := t.TempDir()
		r, err := remote.NewDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		// After each subtest, no temporary file may be left behind.
		t.Cleanup(func() {
			for _, sub := range []string{"blobs", "manifests"} {
				entries, _ := os.ReadDir(filepath.Join(dir, sub))
				for _, e := range entries {
					if strings.HasPrefix(e.Name(), ".") {
						t.Errorf("left behind: %s/%s", sub, e.Name())
					}
				}
			}
		})
		return r
	})
}

func TestNewDir(t *testing.T) {
	if _, err := remote.NewDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NewDir(missing) = %v, want fs.ErrNotExist", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.NewDir(file); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("NewDir(file) = %v, want fs.ErrInvalid", err)
	}

	// A crash leaves temporary files: NewDir removes those a day old,
	// keeps younger ones (a live upload on another machine), and never
	// lists either.
	dir := t.TempDir()
	if _, err := remote.NewDir(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "blobs", ".tmp-stale")
	fresh := filepath.Join(dir, "manifests", ".tmp-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	r, err := remote.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file not removed: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file removed: %v", err)
	}
	if names, err := r.ListManifests(context.Background(), ""); err != nil || len(names) != 0 {
		t.Errorf("ListManifests = %q, %v; want none (temporary files are not manifests)", names, err)
	}
}
