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
	if got := cli("results", "-root", b.Path); got != "r1\nr2\n" {
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
