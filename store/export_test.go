package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/btrstore/btrstore/internal/treecmp"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/remote"
)

// testKey is the signing key of the export tests; otherKey one nobody
// trusts.
var (
	testKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	otherKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	trusted  = ImportOptions{TrustedKeys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}}
	signed   = ExportOptions{SigningKey: testKey}
)

// countingRemote is a Remote that counts what goes through it, and can
// run a hook once a blob read passes a number of bytes.
type countingRemote struct {
	remote.Remote
	puts, gets   atomic.Int64 // PutBlob and GetBlob calls
	putN, readN  atomic.Int64 // bytes stored, bytes read from blobs
	mu           sync.Mutex   // guards onRead
	onRead       func(n int64)
	manifestGets atomic.Int64
}

func (c *countingRemote) PutBlob(ctx context.Context, name string, r io.Reader) (int64, error) {
	c.puts.Add(1)
	n, err := c.Remote.PutBlob(ctx, name, r)
	c.putN.Add(n)
	return n, err
}

func (c *countingRemote) GetBlob(ctx context.Context, name string) (io.ReadCloser, error) {
	c.gets.Add(1)
	rc, err := c.Remote.GetBlob(ctx, name)
	if err != nil {
		return nil, err
	}
	return &countingBlob{ReadCloser: rc, c: c}, nil
}

func (c *countingRemote) GetManifest(ctx context.Context, name string) ([]byte, error) {
	c.manifestGets.Add(1)
	return c.Remote.GetManifest(ctx, name)
}

type countingBlob struct {
	io.ReadCloser
	c *countingRemote
}

func (b *countingBlob) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	total := b.c.readN.Add(int64(n))
	b.c.mu.Lock()
	hook := b.c.onRead
	b.c.mu.Unlock()
	if hook != nil {
		hook(total)
	}
	return n, err
}

func newDirRemote(t testing.TB) *countingRemote {
	t.Helper()
	r, err := remote.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &countingRemote{Remote: r}
}

// buildR1R2 builds r1 (a few MiB of files) and r2 on r1 (one file
// changed, one added, one removed) in s.
func buildR1R2(t testing.TB, s *Store) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	err := s.Build(ctx, "r1", "", func(ctx context.Context, dir string) error {
		if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, "sub/deep"), 0o755); err != nil {
			return err
		}
		for i := range 50 {
			if err := writeFile(dir, fmt.Sprintf("sub/f%02d", i), strings.Repeat("x", i*100)); err != nil {
				return err
			}
		}
		if err := os.Symlink("sub/f01", filepath.Join(dir, "link")); err != nil {
			return err
		}
		return writeFile(dir, "sub/deep/gone", "removed in r2")
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Build(ctx, "r2", "r1", func(ctx context.Context, dir string) error {
		if err := writeFile(dir, "sub/f03", "changed in r2"); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(dir, "sub/deep/gone")); err != nil {
			return err
		}
		return writeFile(dir, "new", "added in r2")
	})
	if err != nil {
		t.Fatal(err)
	}
}

// exportBoth exports r1 then r2 from s to r.
func exportBoth(t testing.TB, s *Store, r remote.Remote) {
	t.Helper()
	for _, id := range []string{"r1", "r2"} {
		if err := s.Export(context.Background(), id, r, signed); err != nil {
			t.Fatal(err)
		}
	}
}

// manifestOf reads and verifies id's manifest on r.
func manifestOf(t testing.TB, r remote.Remote, id string) remote.Manifest {
	t.Helper()
	data, err := r.GetManifest(context.Background(), manifestName(id))
	if err != nil {
		t.Fatal(err)
	}
	m, err := remote.Verify(data, trusted.TrustedKeys)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkImported checks that id in dst is a read-only received copy of id
// in src, identical as a tree.
func checkImported(t testing.TB, src, dst *Store, id string) {
	t.Helper()
	want, err := src.Result(id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dst.Result(id)
	if err != nil {
		t.Fatalf("%s not imported: %v", id, err)
	}
	treecmp.Compare(t, want, got, treecmp.KernelSent()...)
	info, err := ioctl.SubvolumeInfo(got)
	if err != nil {
		t.Fatal(err)
	}
	srcInfo, err := ioctl.SubvolumeInfo(want)
	if err != nil {
		t.Fatal(err)
	}
	if !info.ReadOnly {
		t.Errorf("imported %s is writable", id)
	}
	if info.ReceivedUUID != srcInfo.UUID && info.ReceivedUUID != srcInfo.ReceivedUUID {
		t.Errorf("imported %s: received UUID %v, want the sender's %v", id, info.ReceivedUUID, srcInfo.UUID)
	}
}

// checkNoLeftovers fails t if result-tmp holds anything.
func checkNoLeftovers(t testing.TB, s *Store) {
	t.Helper()
	if left := entries(t, filepath.Join(s.Root(), resultTmpDir)); len(left) > 0 {
		t.Errorf("result-tmp holds %q", left)
	}
}

func TestExportImportChain(t *testing.T) {
	ctx := context.Background()
	a, _ := newStore(t)
	buildR1R2(t, a)
	r := newDirRemote(t)
	exportBoth(t, a, r)

	m1, m2 := manifestOf(t, r, "r1"), manifestOf(t, r, "r2")
	if m1.Parent != nil {
		t.Errorf("r1 exported against %+v, want a full stream", m1.Parent)
	}
	if m2.Parent == nil || m2.Parent.ID != "r1" || m2.Parent.UUID != m1.UUID {
		t.Errorf("r2's parent is %+v, want r1 (%v)", m2.Parent, m1.UUID)
	}
	if m2.Size*4 > m1.Size {
		t.Errorf("r2's increment is %d bytes, r1's full stream %d: not an increment", m2.Size, m1.Size)
	}
	t.Logf("r1 full stream %d bytes, r2 increment %d bytes", m1.Size, m2.Size)

	// Idempotent: nothing new uploaded.
	puts := r.puts.Load()
	exportBoth(t, a, r)
	if n := r.puts.Load(); n != puts {
		t.Errorf("exporting again uploaded %d blobs", n-puts)
	}

	t.Run("empty host", func(t *testing.T) {
		b, _ := newStore(t)
		r.readN.Store(0)
		if err := b.Import(ctx, "r2", r, trusted); err != nil {
			t.Fatal(err)
		}
		checkImported(t, a, b, "r1") // brought first
		checkImported(t, a, b, "r2")
		if got, want := r.readN.Load(), m1.Size+m2.Size; got != want {
			t.Errorf("read %d bytes, want r1's and r2's streams, %d", got, want)
		}
		checkNoLeftovers(t, b)
		// B can export what it imported: r2's identity is A's.
		r2b := newDirRemote(t)
		exportBoth(t, b, r2b)
		if mb := manifestOf(t, r2b, "r2"); mb.UUID != m2.UUID || mb.Parent == nil || mb.Parent.UUID != m1.UUID {
			t.Errorf("re-export from B: %+v, want identity %v on %v", mb, m2.UUID, m1.UUID)
		}
		// and a third host can import that, as A's r2.
		c, _ := newStore(t)
		if err := c.Import(ctx, "r2", r2b, trusted); err != nil {
			t.Fatal(err)
		}
		checkImported(t, a, c, "r2")
	})
	t.Run("host with r1", func(t *testing.T) {
		c, _ := newStore(t)
		if err := c.Import(ctx, "r1", r, trusted); err != nil {
			t.Fatal(err)
		}
		r.readN.Store(0)
		if err := c.Import(ctx, "r2", r, trusted); err != nil {
			t.Fatal(err)
		}
		if got := r.readN.Load(); got != m2.Size {
			t.Errorf("read %d bytes, want r2's increment alone, %d", got, m2.Size)
		}
		t.Logf("host with r1: %d bytes transferred for r2 (full chain: %d)", r.readN.Load(), m1.Size+m2.Size)
		checkImported(t, a, c, "r2")
		checkNoLeftovers(t, c)
	})
	t.Run("independent r1", func(t *testing.T) {
		d, _ := newStore(t)
		err := d.Build(ctx, "r1", "", func(ctx context.Context, dir string) error {
			return writeFile(dir, "mine", "built here")
		})
		if err != nil {
			t.Fatal(err)
		}
		r.readN.Store(0)
		if err := d.Import(ctx, "r2", r, trusted); err != nil {
			t.Fatal(err)
		}
		// The sender's r1 came along, as a base only.
		if got, want := r.readN.Load(), m1.Size+m2.Size; got != want {
			t.Errorf("read %d bytes, want r1's and r2's streams, %d", got, want)
		}
		checkImported(t, a, d, "r2")
		if got := readFile(t, filepath.Join(d.Root(), resultDir, "r1", snapshotName, "mine")); got != "built here" {
			t.Errorf("local r1 changed: %q", got)
		}
		checkNoLeftovers(t, d)
		if n := len(subvolumes(t, d.Root())); n != 2 {
			t.Errorf("%d subvolumes after import, want r1 and r2: %v", n, subvolumes(t, d.Root()))
		}
	})
}

// An Export from a host whose base is not the remote's (built
// independently) sends a full stream.
func TestExportIndependentBaseIsFull(t *testing.T) {
	a, _ := newStore(t)
	buildR1R2(t, a)
	b, _ := newStore(t)
	buildR1R2(t, b)
	r := newDirRemote(t)
	if err := a.Export(context.Background(), "r1", r, signed); err != nil {
		t.Fatal(err)
	}
	if err := b.Export(context.Background(), "r2", r, signed); err != nil {
		t.Fatal(err)
	}
	if m := manifestOf(t, r, "r2"); m.Parent != nil {
		t.Errorf("r2 from B sent against A's r1: %+v", m.Parent)
	}
	c, _ := newStore(t)
	if err := c.Import(context.Background(), "r2", r, trusted); err != nil {
		t.Fatal(err)
	}
	checkImported(t, b, c, "r2")
}

func TestImportUntrusted(t *testing.T) {
	ctx := context.Background()
	a, _ := newStore(t)
	buildR1R2(t, a)
	good := newDirRemote(t)
	exportBoth(t, a, good)
	goodM1, err := good.GetManifest(ctx, manifestName("r1"))
	if err != nil {
		t.Fatal(err)
	}
	m1 := manifestOf(t, good, "r1")
	blob := readBlob(t, good, m1.Blob)

	cases := map[string]func(t *testing.T, r remote.Remote){
		"unsigned": func(t *testing.T, r remote.Remote) {
			var env map[string]any
			if err := json.Unmarshal(goodM1, &env); err != nil {
				t.Fatal(err)
			}
			delete(env, "key")
			delete(env, "signature")
			putManifest(t, r, "r1", mustJSON(t, env))
		},
		"wrong key": func(t *testing.T, r remote.Remote) {
			data, err := m1.Sign(otherKey)
			if err != nil {
				t.Fatal(err)
			}
			putManifest(t, r, "r1", data)
		},
		"flipped byte in manifest": func(t *testing.T, r remote.Remote) {
			data := bytes.Clone(goodM1)
			i := bytes.Index(data, []byte(`"size":`)) + len(`"size":`)
			data[i]++ // a digit
			putManifest(t, r, "r1", data)
		},
		"flipped byte in blob": func(t *testing.T, r remote.Remote) {
			putManifest(t, r, "r1", goodM1)
			bad := bytes.Clone(blob)
			bad[len(bad)/2] ^= 0x40
			putBlob(t, r, m1.Blob, bad)
		},
		"flipped byte in blob's header": func(t *testing.T, r remote.Remote) {
			putManifest(t, r, "r1", goodM1)
			bad := bytes.Clone(blob)
			bad[20] ^= 1
			putBlob(t, r, m1.Blob, bad)
		},
		"blob cut short": func(t *testing.T, r remote.Remote) {
			putManifest(t, r, "r1", goodM1)
			putBlob(t, r, m1.Blob, blob[:len(blob)-1])
		},
		"parent not an id": func(t *testing.T, r remote.Remote) {
			bad := m1
			bad.Parent = &remote.Source{ID: "../../escape", UUID: m1.UUID}
			data, err := bad.Sign(testKey)
			if err != nil {
				t.Fatal(err)
			}
			putManifest(t, r, "r1", data)
		},
		"manifest of another id": func(t *testing.T, r remote.Remote) {
			other := m1
			other.ID = "r0"
			data, err := other.Sign(testKey)
			if err != nil {
				t.Fatal(err)
			}
			putManifest(t, r, "r1", data)
		},
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			r := newDirRemote(t)
			putBlob(t, r, m1.Blob, blob)
			setup(t, r)
			b, _ := newStore(t)
			err := b.Import(ctx, "r1", r, trusted)
			if !errors.Is(err, ErrUntrusted) {
				t.Fatalf("Import: %v, want ErrUntrusted", err)
			}
			if _, err := b.Result("r1"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("r1 published: %v", err)
			}
			checkNoLeftovers(t, b)
			if n := len(subvolumes(t, b.Root())); n != 0 {
				t.Errorf("subvolumes left: %v", subvolumes(t, b.Root()))
			}
		})
	}
	t.Run("no trusted keys", func(t *testing.T) {
		b, _ := newStore(t)
		if err := b.Import(ctx, "r1", good, ImportOptions{}); !errors.Is(err, ErrUntrusted) {
			t.Fatalf("Import: %v, want ErrUntrusted", err)
		}
		checkNoLeftovers(t, b)
	})
}

func TestImportErrors(t *testing.T) {
	ctx := context.Background()
	a, _ := newStore(t)
	buildR1R2(t, a)
	r := newDirRemote(t)
	exportBoth(t, a, r)

	if err := a.Import(ctx, "r1", r, trusted); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Import of an existing id: %v, want fs.ErrExist", err)
	}
	b, _ := newStore(t)
	if err := b.Import(ctx, "nope", r, trusted); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Import of an unknown id: %v, want fs.ErrNotExist", err)
	}
	if err := b.Import(ctx, "../r1", r, trusted); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("Import of an invalid id: %v, want fs.ErrInvalid", err)
	}
	if err := a.Export(ctx, "nope", r, signed); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Export of an unknown id: %v, want fs.ErrNotExist", err)
	}
	if err := a.Export(ctx, "r1", r, ExportOptions{}); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("Export without a key: %v, want fs.ErrInvalid", err)
	}

	t.Run("cancel mid-transfer", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		r.readN.Store(0)
		r.mu.Lock()
		r.onRead = func(n int64) {
			if n > 1<<20 {
				cancel()
			}
		}
		r.mu.Unlock()
		defer func() { r.mu.Lock(); r.onRead = nil; r.mu.Unlock() }()
		err := b.Import(cctx, "r1", r, trusted)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Import: %v, want context.Canceled", err)
		}
		if _, err := b.Result("r1"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("r1 published: %v", err)
		}
		checkNoLeftovers(t, b)
	})
	t.Run("cancel mid-export", func(t *testing.T) {
		r2 := newDirRemote(t)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		err := a.Export(cctx, "r1", &cancellingRemote{Remote: r2, cancel: cancel, after: 1 << 20}, signed)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Export: %v, want context.Canceled", err)
		}
		if names, _ := r2.ListManifests(ctx, ""); len(names) > 0 {
			t.Errorf("manifests after a cancelled export: %q", names)
		}
		if names, _ := r2.ListBlobs(ctx, ""); len(names) > 0 {
			t.Errorf("blobs after a cancelled export: %q", names)
		}
	})
}

// cancellingRemote cancels a context once PutBlob has read after bytes.
type cancellingRemote struct {
	remote.Remote
	cancel func()
	after  int64
}

func (c *cancellingRemote) PutBlob(ctx context.Context, name string, r io.Reader) (int64, error) {
	return c.Remote.PutBlob(ctx, name, &cancellingReader{r: r, c: c})
}

type cancellingReader struct {
	r io.Reader
	c *cancellingRemote
	n int64
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.n += int64(n); r.n > r.c.after {
		r.c.cancel()
	}
	return n, err
}

func TestImportConcurrent(t *testing.T) {
	ctx := context.Background()
	a, _ := newStore(t)
	buildR1R2(t, a)
	r := newDirRemote(t)
	exportBoth(t, a, r)
	b, _ := newStore(t)
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = b.Import(ctx, "r2", r, trusted) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("concurrent Import: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d Imports succeeded, want 1: %v", ok, errs)
	}
	if got := r.gets.Load(); got != 2 {
		t.Errorf("%d blobs fetched, want 2 (r1 and r2 once each)", got)
	}
	checkImported(t, a, b, "r2")
	checkNoLeftovers(t, b)
}

func readBlob(t testing.TB, r remote.Remote, name string) []byte {
	t.Helper()
	rc, err := r.GetBlob(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putBlob(t testing.TB, r remote.Remote, name string, data []byte) {
	t.Helper()
	if _, err := r.PutBlob(context.Background(), name, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

// putManifest stores data as id's manifest, replacing any.
func putManifest(t testing.TB, r remote.Remote, id string, data []byte) {
	t.Helper()
	ctx := context.Background()
	if err := r.DeleteManifest(ctx, manifestName(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := r.CreateManifest(ctx, manifestName(id), data); err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
