// Package remotetest is the conformance suite every remote.Remote
// implementation passes: run it from the implementation's tests with a
// constructor that returns a fresh, empty remote.
package remotetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/btrstore/btrstore/remote"
)

// LargeBlob is the size of the largest blob the suite writes: more than
// 16 MiB, so that an S3 multipart upload has more than one part.
const LargeBlob = 17<<20 + 12345

// Run runs the suite. newRemote returns an empty remote, distinct for each
// call; it is called once per subtest, and the remote is not shared
// between subtests, which may run in parallel.
func Run(t *testing.T, newRemote func(t *testing.T) remote.Remote) {
	ctx := context.Background()

	t.Run("BlobRoundTrip", func(t *testing.T) {
		r := newRemote(t)
		for _, size := range []int{0, 1, 4096, LargeBlob} {
			name := fmt.Sprintf("blob-%d", size)
			data := randomBytes(size, uint64(size))
			// A reader of unknown size that hands out odd-sized chunks.
			n, err := r.PutBlob(ctx, name, &chunkReader{data: data, chunk: 7919})
			if err != nil {
				t.Fatalf("PutBlob(%s): %v", name, err)
			}
			if n != int64(size) {
				t.Errorf("PutBlob(%s) = %d bytes, want %d", name, n, size)
			}
			if got, err := r.StatBlob(ctx, name); err != nil || got != int64(size) {
				t.Errorf("StatBlob(%s) = %d, %v; want %d", name, got, err, size)
			}
			if got := readBlob(t, r, name); !bytes.Equal(got, data) {
				t.Errorf("GetBlob(%s): %d bytes differ from the %d put", name, len(got), size)
			}
		}
	})

	t.Run("BlobReplace", func(t *testing.T) {
		r := newRemote(t)
		mustPut(t, r, "b", []byte("first version"))
		mustPut(t, r, "b", []byte("second"))
		if got := readBlob(t, r, "b"); string(got) != "second" {
			t.Errorf("after replace: %q, want %q", got, "second")
		}
		if got, err := r.StatBlob(ctx, "b"); err != nil || got != 6 {
			t.Errorf("StatBlob after replace = %d, %v; want 6", got, err)
		}
	})

	t.Run("Absent", func(t *testing.T) {
		r := newRemote(t)
		mustPut(t, r, "present", []byte("x"))
		if err := r.CreateManifest(ctx, "present", []byte("m")); err != nil {
			t.Fatal(err)
		}
		checks := map[string]error{}
		_, checks["GetBlob"] = r.GetBlob(ctx, "absent")
		_, checks["StatBlob"] = r.StatBlob(ctx, "absent")
		checks["DeleteBlob"] = r.DeleteBlob(ctx, "absent")
		_, checks["GetManifest"] = r.GetManifest(ctx, "absent")
		checks["DeleteManifest"] = r.DeleteManifest(ctx, "absent")
		for op, err := range checks {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s(absent) = %v, want fs.ErrNotExist", op, err)
			}
		}
		if rc, err := r.GetBlob(ctx, "absent"); err == nil {
			rc.Close()
		}
	})

	t.Run("InvalidNames", func(t *testing.T) {
		r := newRemote(t)
		for _, name := range []string{"", ".", "..", ".hidden", "a/b", "../x", "a b", "a\x00b", "é", strings.Repeat("a", remote.MaxName+1)} {
			errs := map[string]error{}
			_, errs["PutBlob"] = r.PutBlob(ctx, name, bytes.NewReader([]byte("x")))
			_, errs["GetBlob"] = r.GetBlob(ctx, name)
			_, errs["StatBlob"] = r.StatBlob(ctx, name)
			errs["DeleteBlob"] = r.DeleteBlob(ctx, name)
			errs["CreateManifest"] = r.CreateManifest(ctx, name, []byte("x"))
			_, errs["GetManifest"] = r.GetManifest(ctx, name)
			errs["DeleteManifest"] = r.DeleteManifest(ctx, name)
			for op, err := range errs {
				if !errors.Is(err, fs.ErrInvalid) {
					t.Errorf("%s(%q) = %v, want fs.ErrInvalid", op, name, err)
				}
			}
		}
		expectNames(t, r, nil, nil)
		// The longest valid name, and every valid byte, work.
		for _, name := range []string{strings.Repeat("a", remote.MaxName), "AZaz09._~%-", remote.EscapeName("any id/\x00\xff")} {
			mustPut(t, r, name, []byte(name))
			if got := readBlob(t, r, name); string(got) != name {
				t.Errorf("blob %q = %q", name, got)
			}
			if err := r.CreateManifest(ctx, name, []byte(name)); err != nil {
				t.Errorf("CreateManifest(%q): %v", name, err)
			}
		}
	})

	t.Run("ManifestCreateOnly", func(t *testing.T) {
		r := newRemote(t)
		if err := r.CreateManifest(ctx, "m1", []byte("first")); err != nil {
			t.Fatal(err)
		}
		err := r.CreateManifest(ctx, "m1", []byte("second"))
		if !errors.Is(err, fs.ErrExist) {
			t.Fatalf("second CreateManifest = %v, want fs.ErrExist", err)
		}
		if got, err := r.GetManifest(ctx, "m1"); err != nil || string(got) != "first" {
			t.Errorf("GetManifest = %q, %v; want %q (the first publisher wins)", got, err, "first")
		}
		if err := r.DeleteManifest(ctx, "m1"); err != nil {
			t.Fatal(err)
		}
		if err := r.CreateManifest(ctx, "m1", []byte("third")); err != nil {
			t.Fatalf("CreateManifest after delete: %v", err)
		}
		if got, _ := r.GetManifest(ctx, "m1"); string(got) != "third" {
			t.Errorf("GetManifest after re-create = %q, want %q", got, "third")
		}
		big := make([]byte, remote.MaxManifestSize+1)
		if err := r.CreateManifest(ctx, "big", big); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("CreateManifest of %d bytes = %v, want fs.ErrInvalid", len(big), err)
		}
	})

	t.Run("ManifestConcurrentCreate", func(t *testing.T) {
		r := newRemote(t)
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				errs[i] = r.CreateManifest(ctx, "race", []byte(fmt.Sprintf("writer %d", i)))
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("writers %d and %d both created the manifest", winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, fs.ErrExist):
				t.Errorf("writer %d: %v, want nil or fs.ErrExist", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no writer created the manifest")
		}
		if got, _ := r.GetManifest(ctx, "race"); string(got) != fmt.Sprintf("writer %d", winner) {
			t.Errorf("manifest = %q, want the winner's (writer %d)", got, winner)
		}
	})

	t.Run("ListAndDelete", func(t *testing.T) {
		r := newRemote(t)
		expectNames(t, r, nil, nil)
		for _, n := range []string{"b-2", "a-1", "b-1", "b"} {
			mustPut(t, r, n, []byte(n))
		}
		for _, n := range []string{"m-b", "m-a", "other"} {
			if err := r.CreateManifest(ctx, n, []byte(n)); err != nil {
				t.Fatal(err)
			}
		}
		expectNames(t, r, []string{"a-1", "b", "b-1", "b-2"}, []string{"m-a", "m-b", "other"})
		if got, err := r.ListBlobs(ctx, "b-"); err != nil || !slices.Equal(got, []string{"b-1", "b-2"}) {
			t.Errorf("ListBlobs(b-) = %q, %v", got, err)
		}
		if got, err := r.ListManifests(ctx, "m-"); err != nil || !slices.Equal(got, []string{"m-a", "m-b"}) {
			t.Errorf("ListManifests(m-) = %q, %v", got, err)
		}
		if got, err := r.ListManifests(ctx, "zzz"); err != nil || len(got) != 0 {
			t.Errorf("ListManifests(zzz) = %q, %v; want none", got, err)
		}
		if err := r.DeleteBlob(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		if err := r.DeleteManifest(ctx, "other"); err != nil {
			t.Fatal(err)
		}
		expectNames(t, r, []string{"a-1", "b-1", "b-2"}, []string{"m-a", "m-b"})
		if _, err := r.StatBlob(ctx, "b"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("StatBlob after delete = %v, want fs.ErrNotExist", err)
		}
	})

	t.Run("FailedPutLeavesNothing", func(t *testing.T) {
		r := newRemote(t)
		mustPut(t, r, "keep", []byte("old content"))
		boom := errors.New("source failed")
		for _, name := range []string{"new", "keep"} {
			src := io.MultiReader(bytes.NewReader(randomBytes(LargeBlob, 1)), errReader{boom})
			if _, err := r.PutBlob(ctx, name, src); !errors.Is(err, boom) {
				t.Errorf("PutBlob(%s) from a failing reader = %v, want the reader's error", name, err)
			}
		}
		if _, err := r.StatBlob(ctx, "new"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("StatBlob(new) after failed put = %v, want fs.ErrNotExist", err)
		}
		if got := readBlob(t, r, "keep"); string(got) != "old content" {
			t.Errorf("blob keep after a failed replace = %d bytes, want the old content", len(got))
		}
		expectNames(t, r, []string{"keep"}, nil)
	})

	t.Run("CancelMidPut", func(t *testing.T) {
		r := newRemote(t)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		// Cancels once past the first 16 MiB part, then keeps yielding.
		src := &cancelReader{r: bytes.NewReader(randomBytes(LargeBlob, 2)), after: 16<<20 + 1, cancel: cancel}
		if _, err := r.PutBlob(cctx, "cancelled", src); !errors.Is(err, context.Canceled) {
			t.Errorf("PutBlob cancelled midway = %v, want context.Canceled", err)
		}
		if _, err := r.StatBlob(ctx, "cancelled"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("StatBlob after cancelled put = %v, want fs.ErrNotExist", err)
		}
		expectNames(t, r, nil, nil)
		// Every method refuses a done context.
		if _, err := r.PutBlob(cctx, "x", bytes.NewReader(nil)); !errors.Is(err, context.Canceled) {
			t.Errorf("PutBlob with a done ctx = %v, want context.Canceled", err)
		}
		if err := r.CreateManifest(cctx, "x", []byte("x")); !errors.Is(err, context.Canceled) {
			t.Errorf("CreateManifest with a done ctx = %v, want context.Canceled", err)
		}
		if _, err := r.ListManifests(cctx, ""); !errors.Is(err, context.Canceled) {
			t.Errorf("ListManifests with a done ctx = %v, want context.Canceled", err)
		}
		expectNames(t, r, nil, nil)
	})

	t.Run("ConcurrentPutSameName", func(t *testing.T) {
		r := newRemote(t)
		a, b := randomBytes(1<<20, 3), randomBytes(1<<20+1, 4)
		var wg sync.WaitGroup
		for _, data := range [][]byte{a, b, a, b} {
			wg.Go(func() {
				if _, err := r.PutBlob(ctx, "shared", bytes.NewReader(data)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if got := readBlob(t, r, "shared"); !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			t.Errorf("blob after concurrent puts is %d bytes of neither content", len(got))
		}
	})
}

func expectNames(t *testing.T, r remote.Remote, blobs, manifests []string) {
	t.Helper()
	ctx := context.Background()
	if got, err := r.ListBlobs(ctx, ""); err != nil || !slices.Equal(got, orEmpty(blobs)) {
		t.Errorf("ListBlobs = %q, %v; want %q", got, err, blobs)
	}
	if got, err := r.ListManifests(ctx, ""); err != nil || !slices.Equal(got, orEmpty(manifests)) {
		t.Errorf("ListManifests = %q, %v; want %q", got, err, manifests)
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func mustPut(t *testing.T, r remote.Remote, name string, data []byte) {
	t.Helper()
	if _, err := r.PutBlob(context.Background(), name, bytes.NewReader(data)); err != nil {
		t.Fatalf("PutBlob(%s): %v", name, err)
	}
}

func readBlob(t *testing.T, r remote.Remote, name string) []byte {
	t.Helper()
	rc, err := r.GetBlob(context.Background(), name)
	if err != nil {
		t.Fatalf("GetBlob(%s): %v", name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading blob %s: %v", name, err)
	}
	return data
}

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

type chunkReader struct {
	data  []byte
	chunk int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.data)
	c.data = c.data[n:]
	return n, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type cancelReader struct {
	r      io.Reader
	after  int64
	n      int64
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}
