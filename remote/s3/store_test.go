package s3_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/internal/treecmp"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/remote"
	"github.com/btrstore/btrstore/remote/s3"
	"github.com/btrstore/btrstore/remote/s3/s3test"
	"github.com/btrstore/btrstore/store"
)

// The store's Export and Import over a real S3 server (versitygw), with
// two stores on two loop-mounted filesystems: the end-to-end
// test. (The store's own tests cover the same over remote.NewDir, with
// the failure cases.)

var (
	e2eKey     = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	e2eTrusted = store.ImportOptions{TrustedKeys: []ed25519.PublicKey{e2eKey.Public().(ed25519.PublicKey)}}
)

// readCounter counts the bytes read from blobs.
type readCounter struct {
	remote.Remote
	n atomic.Int64
}

func (c *readCounter) GetBlob(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := c.Remote.GetBlob(ctx, name)
	if err != nil {
		return nil, err
	}
	return &countedBlob{rc, c}, nil
}

type countedBlob struct {
	io.ReadCloser
	c *readCounter
}

func (b *countedBlob) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.n.Add(int64(n))
	return n, err
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	fsys := btrfstest.New(t)
	s, err := store.Open(context.Background(), fsys.Path, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStoreExportImport(t *testing.T) {
	btrfstest.RequireRoot(t)
	srv := s3test.Start(t)
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	r, err := s3.New(ctx, config(srv, bucket, "fleet/"))
	if err != nil {
		t.Fatal(err)
	}
	counted := &readCounter{Remote: r}

	a := openStore(t)
	big := make([]byte, 8<<20)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	if err := a.Build(ctx, "r1", "", func(ctx context.Context, dir string) error {
		for i := range 20 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprint("f", i)), big[i<<10:i<<11], 0o644); err != nil {
				return err
			}
		}
		return os.WriteFile(filepath.Join(dir, "big"), big, 0o600)
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.Build(ctx, "r2", "r1", func(ctx context.Context, dir string) error {
		return os.WriteFile(filepath.Join(dir, "f3"), []byte("r2 was here"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r1", "r2", "r2"} { // the second r2 uploads nothing
		if err := a.Export(ctx, id, r, store.ExportOptions{SigningKey: e2eKey}); err != nil {
			t.Fatal(err)
		}
	}
	size := func(id string) int64 {
		data, err := r.GetManifest(ctx, remote.EscapeName(id))
		if err != nil {
			t.Fatal(err)
		}
		m, err := remote.Verify(data, e2eTrusted.TrustedKeys)
		if err != nil {
			t.Fatal(err)
		}
		return m.Size
	}
	s1, s2 := size("r1"), size("r2")

	check := func(t *testing.T, b *store.Store, id string) {
		t.Helper()
		want, _ := a.Result(id)
		got, err := b.Result(id)
		if err != nil {
			t.Fatal(err)
		}
		treecmp.Compare(t, want, got)
		info, err := ioctl.SubvolumeInfo(got)
		if err != nil {
			t.Fatal(err)
		}
		if !info.ReadOnly || info.ReceivedUUID == (ioctl.UUID{}) {
			t.Errorf("%s: read-only %v, received UUID %v", id, info.ReadOnly, info.ReceivedUUID)
		}
	}
	t.Run("empty host", func(t *testing.T) {
		b := openStore(t)
		counted.n.Store(0)
		if err := b.Import(ctx, "r2", counted, e2eTrusted); err != nil {
			t.Fatal(err)
		}
		check(t, b, "r1")
		check(t, b, "r2")
		if got := counted.n.Load(); got != s1+s2 {
			t.Errorf("transferred %d bytes, want %d", got, s1+s2)
		}
		t.Logf("empty host: %d bytes transferred (r1 %d + r2 %d)", counted.n.Load(), s1, s2)
	})
	t.Run("host with r1", func(t *testing.T) {
		c := openStore(t)
		if err := c.Import(ctx, "r1", r, e2eTrusted); err != nil {
			t.Fatal(err)
		}
		counted.n.Store(0)
		if err := c.Import(ctx, "r2", counted, e2eTrusted); err != nil {
			t.Fatal(err)
		}
		check(t, c, "r2")
		if got := counted.n.Load(); got != s2 {
			t.Errorf("transferred %d bytes, want the increment's %d", got, s2)
		}
		t.Logf("host with r1: %d bytes transferred for r2", counted.n.Load())
		if err := c.Import(ctx, "r2", r, e2eTrusted); !errors.Is(err, fs.ErrExist) {
			t.Errorf("second Import: %v, want fs.ErrExist", err)
		}
		if err := c.Import(ctx, "r3", r, e2eTrusted); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Import of an unknown id: %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("flipped byte in the stored blob", func(t *testing.T) {
		data, err := r.GetManifest(ctx, remote.EscapeName("r1"))
		if err != nil {
			t.Fatal(err)
		}
		m, _ := remote.Verify(data, e2eTrusted.TrustedKeys)
		cl, err := srv.Client()
		if err != nil {
			t.Fatal(err)
		}
		key := "fleet/blobs/" + m.Blob
		obj, err := cl.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		blob, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		blob[len(blob)/3] ^= 1
		if _, err := cl.PutObject(ctx, bucket, key, bytes.NewReader(blob), int64(len(blob)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		d := openStore(t)
		if err := d.Import(ctx, "r1", r, e2eTrusted); !errors.Is(err, store.ErrUntrusted) {
			t.Fatalf("Import: %v, want ErrUntrusted", err)
		}
		if _, err := d.Result("r1"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("r1 published: %v", err)
		}
		if left, _ := os.ReadDir(filepath.Join(d.Root(), "result-tmp")); len(left) > 0 {
			t.Errorf("result-tmp holds %d entries", len(left))
		}
	})
}
