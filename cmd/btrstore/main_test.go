package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/remote"
	"github.com/btrstore/btrstore/store"
)

func TestMain(m *testing.M) { btrfstest.Main(m) }

func TestS3ConfigFromEnv(t *testing.T) {
	env := map[string]string{
		"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk",
		"AWS_DEFAULT_REGION": "eu-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
	}
	rf := remoteFlags{bucket: "b"}
	cfg := rf.s3Config(func(k string) string { return env[k] })
	if cfg.AccessKey != "ak" || cfg.SecretKey != "sk" || cfg.Region != "eu-1" || cfg.Endpoint != "http://127.0.0.1:9000" || cfg.Bucket != "b" {
		t.Errorf("config from env: %+v", cfg)
	}
	env["AWS_REGION"], env["AWS_ENDPOINT_URL_S3"] = "eu-2", "s3.example:443"
	rf.region = "flag-region"
	cfg = rf.s3Config(func(k string) string { return env[k] })
	if cfg.Region != "flag-region" || cfg.Endpoint != "s3.example:443" {
		t.Errorf("flags and AWS_ENDPOINT_URL_S3 first: %+v", cfg)
	}
	if err := run(context.Background(), []string{"import", "-trust", strings.Repeat("A", 43) + "=", "x"}, func(string) string { return "" },
		&bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, fs.ErrInvalid) || !strings.Contains(err.Error(), "no remote") {
		t.Errorf("import without a remote: %v", err)
	}
}

func TestKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	var out bytes.Buffer
	if err := keygen(path, &out); err != nil {
		t.Fatal(err)
	}
	if err := keygen(path, &out); !errors.Is(err, fs.ErrExist) {
		t.Errorf("keygen over an existing file: %v, want fs.ErrExist", err)
	}
	priv, err := readSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(t.TempDir(), "pub")
	if err := os.WriteFile(pubFile, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := parseTrusted(strings.TrimSpace(out.String()) + "," + pubFile)
	if err != nil {
		t.Fatal(err)
	}
	want := priv.Public().(ed25519.PublicKey)
	if len(keys) != 2 || !keys[0].Equal(want) || !keys[1].Equal(want) {
		t.Errorf("trusted keys %v, want twice %v", keys, want)
	}
	if _, err := parseTrusted("bm90IGEga2V5"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("a bad trusted key: %v, want fs.ErrInvalid", err)
	}
}

// export and import through a directory remote, between two stores.
func TestExportImportCommands(t *testing.T) {
	btrfstest.RequireRoot(t)
	ctx := context.Background()
	a, b := btrfstest.New(t), btrfstest.New(t)
	s, err := store.Open(ctx, a.Path, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct{ id, base string }{{"r1", ""}, {"r2", "r1"}} {
		err := s.Build(ctx, step.id, step.base, func(ctx context.Context, dir string) error {
			return os.WriteFile(filepath.Join(dir, step.id), []byte(step.id), 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	tmp := t.TempDir()
	key, remoteDir := filepath.Join(tmp, "key"), filepath.Join(tmp, "remote")
	if err := os.Mkdir(remoteDir, 0o755); err != nil {
		t.Fatal(err)
	}
	env := func(string) string { return "" }
	cli := func(args ...string) string {
		t.Helper()
		var out, errs bytes.Buffer
		if err := run(ctx, args, env, &out, &errs); err != nil {
			t.Fatalf("btrstore %q: %v; stderr:\n%s", args, err, errs.Bytes())
		}
		return out.String()
	}
	pub := strings.TrimSpace(cli("keygen", "-key", key))
	cli("export", "-root", a.Path, "-key", key, "-dir", remoteDir, "r2", "r1") // exported r1 first
	rd, err := remote.NewDir(remoteDir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := rd.GetManifest(ctx, remote.EscapeName("r2"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := remote.ParseUnverified(data); err != nil || m.Parent == nil || m.Parent.ID != "r1" {
		t.Errorf("r2 exported with parent %+v (%v), want an increment on r1", m.Parent, err)
	}
	cli("import", "-root", b.Path, "-trust", pub, "-dir", remoteDir, "r2")
	if got := resultIDs(t, cli("results", "-root", b.Path)); got != "r1 r2" {
		t.Errorf("results on B: %q, want r1 and r2", got)
	}
	data, err = os.ReadFile(filepath.Join(b.Path, "result", "r2", "snapshot", "r1"))
	if err != nil || string(data) != "r1" {
		t.Errorf("r2 on B: r1's file %q, %v", data, err)
	}
	if out := cli("check", "-root", b.Path); !strings.Contains(out, "btrfs") {
		t.Errorf("check printed %q", out)
	}
	var errs bytes.Buffer
	err = run(ctx, []string{"import", "-root", b.Path, "-trust", pub, "-dir", remoteDir, "r2"}, env, &bytes.Buffer{}, &errs)
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("import again: %v, want fs.ErrExist", err)
	}
}

// resultIDs checks the lines results printed (id, created, last used) and
// returns the ids, space-separated.
func resultIDs(t *testing.T, out string) string {
	t.Helper()
	var ids []string
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) != 3 {
			t.Fatalf("results line %q: want id, created, last used", line)
		}
		created, err1 := time.Parse(time.RFC3339, f[1])
		used, err2 := time.Parse(time.RFC3339, f[2])
		if err1 != nil || err2 != nil || created.IsZero() || used.Before(created) || time.Since(created) > time.Hour {
			t.Fatalf("results line %q: created %v (%v), last used %v (%v)", line, created, err1, used, err2)
		}
		ids = append(ids, f[0])
	}
	return strings.Join(ids, " ")
}

func TestResultsAndPruneCommands(t *testing.T) {
	btrfstest.RequireRoot(t)
	ctx := context.Background()
	fsys := btrfstest.New(t)
	s, err := store.Open(ctx, fsys.Path, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r1", "r2", "r3"} {
		err := s.Build(ctx, id, "", func(ctx context.Context, dir string) error {
			return os.WriteFile(filepath.Join(dir, id), []byte(id), 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // distinct last-use times
	}
	if _, err := s.Result("r1"); err != nil { // r1 is now the most recently used
		t.Fatal(err)
	}
	s.Close()

	env := func(string) string { return "" }
	cli := func(args ...string) (string, error) {
		var out, errs bytes.Buffer
		err := run(ctx, args, env, &out, &errs)
		return out.String(), err
	}
	results := func() string {
		t.Helper()
		out, err := cli("results", "-root", fsys.Path)
		if err != nil {
			t.Fatal(err)
		}
		return resultIDs(t, out)
	}
	if got := results(); got != "r1 r2 r3" {
		t.Fatalf("results: %q, want r1 r2 r3", got)
	}
	for _, bad := range [][]string{{"-limit", "-1"}, {"-min-free", "101"}, {"-used-before", "-1h"}, {"extra"}} {
		if out, err := cli(append([]string{"prune", "-root", fsys.Path}, bad...)...); !errors.Is(err, fs.ErrInvalid) || out != "" {
			t.Errorf("prune %q: %q, %v; want fs.ErrInvalid and nothing deleted", bad, out, err)
		}
	}
	if got := results(); got != "r1 r2 r3" {
		t.Fatalf("results after refused prunes: %q, want r1 r2 r3", got)
	}
	if out, err := cli("prune", "-root", fsys.Path, "-used-before", "1h"); err != nil || out != "" {
		t.Errorf("prune -used-before 1h: %q, %v; want nothing deleted (all used just now)", out, err)
	}
	if out, err := cli("prune", "-root", fsys.Path, "-limit", "1"); err != nil || out != "deleted r2\n" {
		t.Errorf("prune -limit 1: %q, %v; want the least recently used, r2", out, err)
	}
	if got := results(); got != "r1 r3" {
		t.Errorf("results after prune -limit 1: %q, want r1 r3", got)
	}
	if _, err := os.Stat(filepath.Join(fsys.Path, "result", "r2")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("result/r2 after prune: %v, want gone", err)
	}
	if out, err := cli("prune", "-root", fsys.Path); err != nil || out != "deleted r3\ndeleted r1\n" {
		t.Errorf("prune: %q, %v; want r3 then r1 (least recently used first)", out, err)
	}
	if got := results(); got != "" {
		t.Errorf("results after prune: %q, want none", got)
	}
}
