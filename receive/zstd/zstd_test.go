package zstd_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	kzstd "github.com/klauspost/compress/zstd"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/receive"
	"github.com/btrstore/btrstore/receive/zstd"
	"github.com/btrstore/btrstore/sendstream"
)

func TestMain(m *testing.M) { btrfstest.Main(m) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// compressible returns n bytes that compress well but are not all equal.
func compressible(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = "abcdefgh"[(i/512+int(seed))%8]
	}
	return b
}

// TestDecompress: a frame padded with zeros to a sector, as btrfs stores
// it, decompresses into a larger dst (short count, no error), into an
// exact one, and into a smaller one (stops when full); garbage is an
// error; concurrent calls each get their own bytes.
func TestDecompress(t *testing.T) {
	enc, err := kzstd.NewWriter(nil)
	must(t, err)
	plain := compressible(100000, 1)
	frame := enc.EncodeAll(plain, nil)
	padded := append(frame, make([]byte, 4096-len(frame)%4096)...)
	for _, size := range []int{128 << 10, len(plain), 5000} {
		dst := bytes.Repeat([]byte{0xff}, size)
		n, err := zstd.Decompress(dst, padded)
		want := min(size, len(plain))
		if err != nil || n != want || !bytes.Equal(dst[:n], plain[:n]) {
			t.Errorf("Decompress into %d bytes: %d, %v; want %d bytes of the input", size, n, err, want)
		}
	}
	if _, err := zstd.Decompress(make([]byte, 4096), []byte("not a zstd frame at all")); err == nil {
		t.Error("Decompress of garbage: no error")
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			in := compressible(50000, byte(i))
			dst := make([]byte, len(in))
			if n, err := zstd.Decompress(dst, enc.EncodeAll(in, nil)); err != nil || !bytes.Equal(dst[:n], in) || n != len(in) {
				t.Errorf("concurrent Decompress %d: %d, %v", i, n, err)
			}
		})
	}
	wg.Wait()
}

// TestCompressedFallbackZstd: zstd extents passed through (v2
// --compressed-data) and written decompressed by receive.Apply with
// Options.Decompress give the same files; without Options.Zstd the same
// receive fails with receive.ErrNoDecompressor. Root (receive).
func TestCompressedFallbackZstd(t *testing.T) {
	fsys := btrfstest.New(t, btrfstest.MountOptions("compress-force=zstd"))
	src := filepath.Join(fsys.Path, "src")
	must(t, ioctl.CreateSubvolume(src))
	files := map[string][]byte{
		"a": compressible(1<<20, 1),
		"b": compressible(200000, 3),
		"c": bytes.Repeat([]byte("0123456789"), 777),
	}
	for name, data := range files {
		must(t, os.WriteFile(filepath.Join(src, name), data, 0o644))
	}
	f, err := os.OpenFile(filepath.Join(src, "d"), os.O_CREATE|os.O_WRONLY, 0o644)
	must(t, err)
	_, err = f.WriteAt(compressible(40000, 5), 300000) // unaligned, after a hole
	must(t, err)
	must(t, f.Close())
	files["d"] = append(make([]byte, 300000), compressible(40000, 5)...)
	ro := filepath.Join(fsys.Path, "ro")
	must(t, ioctl.Snapshot(src, ro, ioctl.SnapshotReadOnly))
	var stream bytes.Buffer
	must(t, ioctl.Send(context.Background(), &stream, ro, ioctl.SendOptions{Compressed: true}))
	if !bytes.Contains(stream.Bytes(), []byte{byte(sendstream.CmdEncodedWrite), 0}) {
		t.Fatal("no encoded write in the stream")
	}

	none := filepath.Join(fsys.Path, "recv-none")
	must(t, os.Mkdir(none, 0o755))
	_, err = receive.Apply(context.Background(), bytes.NewReader(stream.Bytes()), none, receive.Options{Decompress: true})
	if !errors.Is(err, receive.ErrNoDecompressor) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Apply without Options.Zstd: %v, want ErrNoDecompressor", err)
	}

	dir := filepath.Join(fsys.Path, "recv")
	must(t, os.Mkdir(dir, 0o755))
	got, err := receive.Apply(context.Background(), bytes.NewReader(stream.Bytes()), dir,
		receive.Options{Decompress: true, Zstd: zstd.Decompress})
	if err != nil || len(got) != 1 {
		t.Fatalf("Apply with Options.Zstd: %v, %v", got, err)
	}
	for name, want := range files {
		data, err := os.ReadFile(filepath.Join(got[0], name))
		if err != nil || !bytes.Equal(data, want) {
			t.Errorf("%s: %d bytes, %v; want the %d bytes sent", name, len(data), err, len(want))
		}
	}
}
