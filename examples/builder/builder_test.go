package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/store"
)

func TestMain(m *testing.M) { btrfstest.Main(m) }

// captureStdout runs fn and returns what it printed, echoing it to the test
// log so that `make demo-vm` shows the build.
func captureStdout(t *testing.T, fn func() error) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	err = fn()
	os.Stdout = old
	w.Close()
	out := <-done
	r.Close()
	t.Logf("builder output:\n%s", out)
	return string(out), err
}

// newStoreAndSpec opens a store on a fresh filesystem, closed in t's
// cleanup, and parses specJSON.
func newStoreAndSpec(t *testing.T, specJSON []byte) (*store.Store, *Spec) {
	t.Helper()
	fsys := btrfstest.New(t)
	spec, err := parseSpec(specJSON)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), fsys.Path, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, spec
}

// TestDemo runs the embedded default build twice: the first run builds every
// step, the second finds every result cached. `make demo-vm` runs it in the VM.
func TestDemo(t *testing.T) {
	ctx := context.Background()
	s, spec := newStoreAndSpec(t, defaultSpec)
	first, err := captureStdout(t, func() error { return run(ctx, s, spec) })
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(first, "built in"); n != len(spec.Steps) {
		t.Errorf("first run built %d steps, want %d", n, len(spec.Steps))
	}
	second, err := captureStdout(t, func() error { return run(ctx, s, spec) })
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(second, "cached"); n != len(spec.Steps) {
		t.Errorf("second run cached %d steps, want %d", n, len(spec.Steps))
	}
	// The last result holds the work of every step, and the cache kept the
	// download.
	last := stepChain(spec)[len(spec.Steps)-1]
	res, err := s.Result(last)
	if err != nil {
		t.Fatal(err)
	}
	report, err := os.ReadFile(filepath.Join(res, "rootfs/report"))
	if err != nil || string(report) != "all 101 lines present\n" {
		t.Errorf("report = %q, %v", report, err)
	}
	lease, err := s.Cache(ctx, "downloads", store.Owner{UID: os.Getuid(), GID: os.Getgid()})
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(ctx)
	if b, err := os.ReadFile(filepath.Join(lease.Path(), "payload")); err != nil || !bytes.Equal(b, []byte("fetched payload\n")) {
		t.Errorf("cache payload = %q, %v", b, err)
	}
}

// stepChain returns the ids of spec's steps.
func stepChain(spec *Spec) []string {
	var ids []string
	parent := ""
	for _, st := range spec.Steps {
		parent = stepID(parent, spec, st)
		ids = append(ids, parent)
	}
	return ids
}

func TestFailingStepReportsLog(t *testing.T) {
	ctx := context.Background()
	s, spec := newStoreAndSpec(t, []byte(`{"steps":[{"run":"echo preparing; echo bad thing >&2; exit 3"}]}`))
	out, err := captureStdout(t, func() error { return run(ctx, s, spec) })
	if err == nil || !strings.Contains(err.Error(), "bad thing") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("error %v does not carry the step's log and status", err)
	}
	if !strings.Contains(out, "FAILED") {
		t.Errorf("output does not report the failure:\n%s", out)
	}
	if _, err := s.Result(stepChain(spec)[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed step left a result: %v", err)
	}
}

func TestParseSpecRejects(t *testing.T) {
	for _, bad := range []string{
		`{}`,
		`{"steps":[{"run":" "}]}`,
		`{"steps":[{"run":"x","caches":[{"name":"c","target":"/abs"}]}]}`,
		`{"steps":[{"run":"x","caches":[{"name":"c","target":"a/../../b"}]}]}`,
		`{"chroot":true,"steps":[{"run":"x"}]}`,
		`{"steps":[{"run":"x"}],"unknown":1}`,
	} {
		if _, err := parseSpec([]byte(bad)); err == nil {
			t.Errorf("parseSpec(%s) accepted", bad)
		}
	}
}

// -prune-below: on a filesystem filled with results, the builder prunes
// the least recently used until the target is free, and says which; above
// the target it prunes nothing.
func TestPruneBelow(t *testing.T) {
	fsys := btrfstest.New(t, btrfstest.Size(512<<20))
	ctx := context.Background()
	s, err := store.Open(ctx, fsys.Path, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 8
	for i := range n {
		if err := s.Build(ctx, fmt.Sprintf("result-%d", i), "", func(_ context.Context, dir string) error {
			b := make([]byte, 32<<20)
			rand.Read(b)
			return os.WriteFile(filepath.Join(dir, "data"), b, 0o644)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CompleteDeletes(ctx); err != nil {
		t.Fatal(err)
	}
	free, err := s.FreeSpace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := captureStdout(t, func() error { return pruneBelow(ctx, s, free-1) })
	if err != nil || !strings.Contains(out, "nothing to prune") {
		t.Errorf("above the target: %v, output %q", err, out)
	}
	target := free + 10 // about two results' worth (6.25% each)
	out, err = captureStdout(t, func() error { return pruneBelow(ctx, s, target) })
	if err != nil {
		t.Fatal(err)
	}
	now, err := s.FreeSpace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if now < target {
		t.Errorf("free %.1f%% after pruning, want ≥ %.1f%%", now, target)
	}
	for _, id := range []string{"result-0", "result-1"} {
		if !strings.Contains(out, "pruned "+id) {
			t.Errorf("output does not name %s as pruned:\n%s", id, out)
		}
	}
	if strings.Contains(out, "pruned result-7") {
		t.Errorf("the most recently used result was pruned:\n%s", out)
	}
}
