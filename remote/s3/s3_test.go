package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/btrstore/btrstore/remote"
	"github.com/btrstore/btrstore/remote/remotetest"
	"github.com/btrstore/btrstore/remote/s3"
	"github.com/btrstore/btrstore/remote/s3/s3test"
)

func config(srv *s3test.Server, bucket, prefix string) s3.Config {
	return s3.Config{
		Endpoint:  srv.Endpoint,
		Region:    srv.Region,
		Bucket:    bucket,
		Prefix:    prefix,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
		Insecure:  true,
	}
}

// pendingUploads lists the multipart uploads not completed nor aborted.
func pendingUploads(t *testing.T, srv *s3test.Server, bucket string) []string {
	t.Helper()
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for u := range c.ListIncompleteUploads(context.Background(), bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("listing multipart uploads: %v", u.Err)
		}
		keys = append(keys, u.Key)
	}
	return keys
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	// Every subtest gets its own bucket, half of them under a prefix; after
	// each, no multipart upload may be left pending.
	n := 0
	remotetest.Run(t, func(t *testing.T) remote.Remote {
		n++
		bucket := srv.NewBucket(t)
		prefix := ""
		if n%2 == 0 {
			prefix = "fleet/a/"
		}
		r, err := s3.New(ctx, config(srv, bucket, prefix))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if left := pendingUploads(t, srv, bucket); len(left) > 0 {
				t.Errorf("multipart uploads left pending: %q", left)
			}
		})
		return r
	})
}

func TestPrefixIsolates(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	a, err := s3.New(ctx, config(srv, bucket, "a/"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s3.New(ctx, config(srv, bucket, "b/"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.CreateManifest(ctx, "m", []byte("a's")); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateManifest(ctx, "m", []byte("b's")); err != nil {
		t.Errorf("same name under another prefix: %v", err)
	}
	if _, err := a.PutBlob(ctx, "x", strings.NewReader("blob")); err != nil {
		t.Fatal(err)
	}
	if names, err := b.ListBlobs(ctx, ""); err != nil || len(names) != 0 {
		t.Errorf("b lists %q, %v; want none of a's blobs", names, err)
	}
	// The object keys are the documented ones.
	c, _ := srv.Client()
	for _, key := range []string{"a/manifests/m", "b/manifests/m", "a/blobs/x"} {
		if _, err := c.StatObject(ctx, bucket, key, minio.StatObjectOptions{}); err != nil {
			t.Errorf("object %s: %v", key, err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()

	// A missing bucket.
	if _, err := s3.New(ctx, config(srv, "no-such-bucket", "")); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Errorf("missing bucket: %v, want fs.ErrNotExist naming it", err)
	}
	// Wrong keys.
	cfg := config(srv, srv.NewBucket(t), "")
	cfg.SecretKey = "wrong"
	if _, err := s3.New(ctx, cfg); err == nil {
		t.Error("wrong secret key: no error")
	}
	// Bad configurations change nothing and say why.
	for _, bad := range []s3.Config{
		{Endpoint: "", Bucket: "b"},
		{Endpoint: "host/path", Bucket: "b"},
		{Endpoint: "ftp://host", Bucket: "b"},
		{Endpoint: "http://host/path", Bucket: "b"},
		{Endpoint: "host:1"},
		{Endpoint: "host:1", Bucket: "b"},
		{Endpoint: "host:1", Bucket: "Not_A_Bucket"},
	} {
		if _, err := s3.New(ctx, bad); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("New(%+v) = %v, want fs.ErrInvalid", bad, err)
		}
	}
	// A URL's scheme wins over Insecure.
	cfg = config(srv, srv.NewBucket(t), "")
	cfg.Endpoint, cfg.Insecure = "http://"+srv.Endpoint, false
	if _, err := s3.New(ctx, cfg); err != nil {
		t.Errorf("http:// endpoint with Insecure false: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	_, err = s3.New(context.Background(), s3.Config{Endpoint: addr, Bucket: "results", Insecure: true})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("unreachable endpoint: %v, want an error naming %s", err, addr)
	}
	t.Logf("unreachable endpoint reported after %v: %v", time.Since(start).Round(time.Millisecond), err)

	// A done context stops the retries at once.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = s3.New(ctx, s3.Config{Endpoint: addr, Bucket: "results", Insecure: true})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("unreachable endpoint with a deadline: %v, want an error naming %s", err, addr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("New took %v after its context's 300ms deadline", d)
	}
}

// A cancel while parts are in flight: no object, no pending upload, and
// an existing blob of the name untouched.
func TestCancelMidUpload(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	r, err := s3.New(context.Background(), config(srv, bucket, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutBlob(context.Background(), "b", strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	// The oracle sees an abandoned upload.
	core, err := srv.Core()
	if err != nil {
		t.Fatal(err)
	}
	id, err := core.NewMultipartUpload(context.Background(), bucket, "abandoned", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if left := pendingUploads(t, srv, bucket); len(left) != 1 || left[0] != "abandoned" {
		t.Fatalf("pending uploads = %q, want the abandoned one", left)
	}
	if err := core.AbortMultipartUpload(context.Background(), bucket, "abandoned", id); err != nil {
		t.Fatal(err)
	}
	for _, after := range []int{1, s3.PartSize + 1, 2*s3.PartSize + 1} {
		ctx, cancel := context.WithCancel(context.Background())
		src := &cancelAfter{left: after, cancel: cancel}
		_, err := r.PutBlob(ctx, "b", src)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancel after %d bytes: %v, want context.Canceled", after, err)
		}
		got, _ := r.GetBlob(context.Background(), "b")
		var buf bytes.Buffer
		if got != nil {
			buf.ReadFrom(got)
			got.Close()
		}
		if buf.String() != "old" {
			t.Errorf("cancel after %d bytes: blob now %d bytes, want the old 3", after, buf.Len())
		}
		if left := pendingUploads(t, srv, bucket); len(left) > 0 {
			t.Errorf("cancel after %d bytes: multipart uploads left pending: %q", after, left)
		}
	}
}

// cancelAfter yields zeros forever and cancels after left bytes.
type cancelAfter struct {
	left   int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	clear(p)
	c.left -= len(p)
	if c.left <= 0 {
		c.cancel()
	}
	return len(p), nil
}

// BenchmarkBlob measures streaming a 128 MiB blob of unknown size up to
// and down from a local versitygw (both on this machine's CPU and disk).
func BenchmarkBlob(b *testing.B) {
	srv := s3test.Start(b)
	ctx := context.Background()
	r, err := s3.New(ctx, config(srv, srv.NewBucket(b), ""))
	if err != nil {
		b.Fatal(err)
	}
	const size = 128 << 20
	b.Run("Put", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := r.PutBlob(ctx, "bench", &zeros{left: size}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Get", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			rc, err := r.GetBlob(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil || n != size {
				b.Fatalf("read %d bytes, %v", n, err)
			}
		}
	})
}

// zeros yields left zero bytes, in reads of any size, as a send stream does.
type zeros struct{ left int }

func (z *zeros) Read(p []byte) (int, error) {
	if z.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), z.left)
	clear(p[:n])
	z.left -= n
	return n, nil
}

// A blob part altered in transit is refused by the server (the part's
// CRC32C trailer), and the upload aborted: nothing visible, nothing
// pending. Over plain HTTP this is what guards the bytes on the wire.
func TestCorruptedPartRefused(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	target, _ := url.Parse("http://" + srv.Endpoint)
	var flipped atomic.Int32
	var trailers atomic.Value
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host
		req := pr.Out
		if req.Method == http.MethodPut && req.URL.Query().Has("partNumber") {
			trailers.Store(req.Header.Get("X-Amz-Trailer"))
			req.Body = &flipAt{r: req.Body, at: 1 << 20, done: &flipped}
		}
	}}
	ts := httptest.NewServer(proxy)
	defer ts.Close()

	cfg := config(srv, bucket, "")
	cfg.Endpoint = ts.URL
	r, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.PutBlob(context.Background(), "corrupt", &zeros{left: 3 << 20})
	if err == nil {
		t.Fatal("PutBlob through a corrupting proxy succeeded")
	}
	t.Logf("trailer %q; error: %v", trailers.Load(), err)
	if flipped.Load() == 0 {
		t.Fatal("the proxy flipped nothing: the test tests nothing")
	}
	if _, err := r.StatBlob(context.Background(), "corrupt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("StatBlob after refused upload = %v, want fs.ErrNotExist", err)
	}
	if left := pendingUploads(t, srv, bucket); len(left) > 0 {
		t.Errorf("multipart uploads left pending: %q", left)
	}
}

// flipAt flips one bit of the byte at offset at of r.
type flipAt struct {
	r    io.ReadCloser
	at   int64
	off  int64
	done *atomic.Int32
}

func (f *flipAt) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.off <= f.at && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 1
		f.done.Add(1)
	}
	f.off += int64(n)
	return n, err
}

func (f *flipAt) Close() error { return f.r.Close() }
