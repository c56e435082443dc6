package receive

import (
	"bytes"
	"context"
	"errors"
	"github.com/btrstore/btrstore/internal/treecmp"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/sendstream"
)

func TestMain(m *testing.M) {
	time.Local = time.UTC // Dump's times, compared with TZ=UTC btrfs receive --dump
	btrfstest.Main(m)
}

// scene is a filesystem with a source subvolume in two read-only states.
type scene struct {
	fs     *btrfstest.FS
	s1, s2 string // read-only snapshots: populated, then mutated
	recv   string // an empty directory to receive into
}

func newScene(t *testing.T, opts ...btrfstest.Option) *scene {
	t.Helper()
	fsys := btrfstest.New(t, append([]btrfstest.Option{btrfstest.Size(2 << 30)}, opts...)...)
	src := filepath.Join(fsys.Path, "src")
	must(t, ioctl.CreateSubvolume(src))
	populate(t, src)
	s := &scene{fs: fsys, s1: filepath.Join(fsys.Path, "s1"), s2: filepath.Join(fsys.Path, "s2"), recv: filepath.Join(fsys.Path, "recv")}
	must(t, ioctl.Snapshot(src, s.s1, ioctl.SnapshotReadOnly))
	mutate(t, src)
	must(t, ioctl.Snapshot(src, s.s2, ioctl.SnapshotReadOnly))
	must(t, os.Mkdir(s.recv, 0o755))
	return s
}

func cli(t testing.TB, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("btrfs", args...)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("btrfs %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func requireCLI(t testing.TB) {
	if _, err := exec.LookPath("btrfs"); err != nil {
		btrfstest.SkipOrFail(t, "btrfs command not found (btrfs-progs): %v", err)
	}
}

// checkDump compares sendstream.Dump with btrfs receive --dump.
func checkDump(t testing.TB, stream []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "stream")
	must(t, os.WriteFile(f, stream, 0o600))
	want := cli(t, "receive", "--dump", "-f", f)
	var got bytes.Buffer
	if err := sendstream.Dump(&got, bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	if bytes.Count(stream, []byte(sendstream.Magic)) > 1 && bytes.HasPrefix(got.Bytes(), want) {
		return // btrfs receive --dump stops after the first of concatenated streams
	}
	if got.String() != string(want) {
		gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Errorf("dump line %d:\n got %q\nwant %q", i+1, gl[i], wl[i])
				return
			}
		}
		t.Errorf("dump: %d lines, btrfs receive --dump %d", len(gl), len(wl))
	}
}

// checkReceived: read-only, received UUID as the source's.
func checkReceived(t testing.TB, path, source string) {
	t.Helper()
	got, err := ioctl.SubvolumeInfo(path)
	must(t, err)
	src, err := ioctl.SubvolumeInfo(source)
	must(t, err)
	want := src.ReceivedUUID
	if want.IsZero() {
		want = src.UUID
	}
	if !got.ReadOnly || got.ReceivedUUID != want || got.STransID != src.CTransID {
		t.Errorf("%s: read-only %v, received UUID %v stransid %d; want read-only, %v, %d",
			path, got.ReadOnly, got.ReceivedUUID, got.STransID, want, src.CTransID)
	}
}

func apply(t testing.TB, stream []byte, dir string, opts Options) []string {
	t.Helper()
	got, err := Apply(context.Background(), bytes.NewReader(stream), dir, opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return got
}

func send(t testing.TB, path string, opts ioctl.SendOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	must(t, ioctl.Send(context.Background(), &b, path, opts))
	return b.Bytes()
}

// TestKernelStreamsApply: streams made by btrfs send (proto 1, 2, and 2
// with compressed data on a zstd mount), full then incremental, applied by
// Apply, give the same trees; the dumps match btrfs receive --dump.
func TestKernelStreamsApply(t *testing.T) {
	requireCLI(t)
	for _, c := range []struct {
		name  string
		mount string
		args  []string
	}{
		{"proto1", "", []string{"--proto", "1"}},
		{"proto2", "", []string{"--proto", "2"}},
		{"proto2-compressed", "compress=zstd", []string{"--proto", "2", "--compressed-data"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var opts []btrfstest.Option
			if c.mount != "" {
				opts = append(opts, btrfstest.MountOptions(c.mount))
			}
			s := newScene(t, opts...)
			full := cli(t, append(append([]string{"send", "-q"}, c.args...), s.s1)...)
			inc := cli(t, append(append([]string{"send", "-q"}, c.args...), "-p", s.s1, s.s2)...)
			checkDump(t, full)
			checkDump(t, inc)
			if got := apply(t, full, s.recv, Options{}); len(got) != 1 || got[0] != filepath.Join(s.recv, "s1") {
				t.Fatalf("received %v", got)
			}
			apply(t, inc, s.recv, Options{})
			treecmp.Compare(t, s.s1, filepath.Join(s.recv, "s1"), treecmp.KernelSent()...)
			treecmp.Compare(t, s.s2, filepath.Join(s.recv, "s2"), treecmp.KernelSent()...)
			checkReceived(t, filepath.Join(s.recv, "s1"), s.s1)
			checkReceived(t, filepath.Join(s.recv, "s2"), s.s2)
			if c.name == "proto2-compressed" && !bytes.Contains(full, []byte{byte(sendstream.CmdEncodedWrite), 0}) {
				t.Error("no encoded write in the compressed stream")
			}
		})
	}
}

// TestSendCLIReceive: ioctl.Send's streams are accepted by btrfs receive.
func TestSendCLIReceive(t *testing.T) {
	requireCLI(t)
	s := newScene(t, btrfstest.MountOptions("compress=zstd"))
	for _, opts := range []ioctl.SendOptions{{Version: 1}, {Compressed: true}} {
		dir := filepath.Join(s.recv, "v"+string(rune('0'+opts.Version)))
		must(t, os.Mkdir(dir, 0o755))
		for _, step := range []struct {
			src, parent string
		}{{s.s1, ""}, {s.s2, s.s1}} {
			o := opts
			o.Parent = step.parent
			stream := send(t, step.src, o)
			f := filepath.Join(t.TempDir(), "stream")
			must(t, os.WriteFile(f, stream, 0o600))
			cli(t, "receive", "-f", f, dir)
			treecmp.Compare(t, step.src, filepath.Join(dir, filepath.Base(step.src)), treecmp.KernelSent()...)
			checkDump(t, stream)
		}
	}
}

// TestSendApply: ioctl.Send into Apply through a pipe, every version the
// kernel offers, plain and compressed.
func TestSendApply(t *testing.T) {
	s := newScene(t, btrfstest.MountOptions("compress=zstd"))
	for _, opts := range []ioctl.SendOptions{{Version: 1}, {}, {Compressed: true}} {
		dir := filepath.Join(s.recv, strings.ReplaceAll(strings.Trim(strings.ReplaceAll(
			strings.ReplaceAll(strings.ReplaceAll(fmtOpts(opts), " ", "-"), ":", ""), "{", ""), "}"), "--", "-"))
		must(t, os.Mkdir(dir, 0o755))
		for _, step := range []struct{ src, parent string }{{s.s1, ""}, {s.s2, s.s1}} {
			o := opts
			o.Parent = step.parent
			pr, pw := io.Pipe()
			var copy bytes.Buffer
			go func() { pw.CloseWithError(ioctl.Send(context.Background(), io.MultiWriter(pw, &copy), step.src, o)) }()
			got, err := Apply(context.Background(), pr, dir, Options{})
			if err != nil {
				t.Fatalf("%+v: %v", o, err)
			}
			if len(got) != 1 {
				t.Fatalf("received %v", got)
			}
			treecmp.Compare(t, step.src, got[0], treecmp.KernelSent()...)
			checkReceived(t, got[0], step.src)
			if _, err := exec.LookPath("btrfs"); err == nil {
				checkDump(t, copy.Bytes())
			}
		}
	}
}

func fmtOpts(o ioctl.SendOptions) string {
	s := "v" + string(rune('0'+o.Version))
	if o.Compressed {
		s += "-compressed"
	}
	return s
}

// TestCompressedFallback: compressed extents of every algorithm, passed
// through (v2 --compressed-data), written by ENCODED_WRITE and, with
// Options.Decompress, decompressed by Apply (zlib and the LZO1X
// decompressor; zstd without Options.Zstd fails with ErrNoDecompressor and
// leaves nothing: the zstd module's TestCompressedFallbackZstd receives it).
func TestCompressedFallback(t *testing.T) {
	for _, alg := range []string{"zlib", "zstd", "lzo"} {
		t.Run(alg, func(t *testing.T) {
			fsys := btrfstest.New(t, btrfstest.MountOptions("compress-force="+alg))
			src := filepath.Join(fsys.Path, "src")
			must(t, ioctl.CreateSubvolume(src))
			write(t, filepath.Join(src, "a"), compressible(1<<20, 1))
			write(t, filepath.Join(src, "b"), append(compressible(200000, 3), random(5000, 4)...))
			write(t, filepath.Join(src, "c"), bytes.Repeat([]byte("0123456789"), 777))
			f, err := os.OpenFile(filepath.Join(src, "d"), os.O_CREATE|os.O_WRONLY, 0o644)
			must(t, err)
			_, err = f.WriteAt(compressible(40000, 5), 300000) // unaligned, after a hole
			must(t, err)
			f.Close()
			ro := filepath.Join(fsys.Path, "ro")
			must(t, ioctl.Snapshot(src, ro, ioctl.SnapshotReadOnly))
			stream := send(t, ro, ioctl.SendOptions{Compressed: true})
			if !bytes.Contains(stream, []byte{byte(sendstream.CmdEncodedWrite), 0}) {
				t.Fatal("no encoded write in the stream")
			}
			for _, decompress := range []bool{false, true} {
				dir := filepath.Join(fsys.Path, "recv-"+map[bool]string{false: "encoded", true: "decompressed"}[decompress])
				must(t, os.Mkdir(dir, 0o755))
				if alg == "zstd" && decompress {
					_, err := Apply(context.Background(), bytes.NewReader(stream), dir, Options{Decompress: true})
					if !errors.Is(err, ErrNoDecompressor) || !errors.Is(err, errors.ErrUnsupported) || errors.Is(err, fs.ErrInvalid) {
						t.Errorf("Apply of zstd extents without Options.Zstd: %v, want ErrNoDecompressor (errors.ErrUnsupported)", err)
					}
					assertEmpty(t, dir)
					continue
				}
				got := apply(t, stream, dir, Options{Decompress: decompress})
				treecmp.Compare(t, ro, got[0])
			}
		})
	}
}

// TestApplyCancelled: a cancelled receive returns ctx's error and leaves
// nothing in dir.
func TestApplyCancelled(t *testing.T) {
	s := newScene(t)
	stream := send(t, s.s1, ioctl.SendOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	r := &cancelAfter{r: bytes.NewReader(stream), n: len(stream) / 2, cancel: cancel}
	_, err := Apply(ctx, r, s.recv, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Apply: %v", err)
	}
	assertEmpty(t, s.recv)
}

type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	p = p[:min(len(p), 4096)]
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

func assertEmpty(t testing.TB, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	must(t, err)
	if len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("%s not empty after a failed receive: %v", dir, names)
	}
}

// TestDiffTreesDetects: the comparison sees each kind of change mutate
// makes, so that the round-trip tests can fail.
func TestDiffTreesDetects(t *testing.T) {
	s := newScene(t)
	diffs := strings.Join(treecmp.Diff(t, s.s1, s.s2), "\n")
	for _, want := range []string{
		"missing sock", "extra many/aa", "extra d2moved", "fifo:", "null:", "link:",
		"small:", "comp:", "sparse:", "big:", "extra d3", "empty:",
	} {
		if !strings.Contains(diffs, want) {
			t.Errorf("difference %q not found in:\n%s", want, diffs)
		}
	}
	if d := treecmp.Diff(t, s.s1, s.s1); len(d) != 0 {
		t.Errorf("a tree differs from itself: %v", d)
	}
}

// TestCloneSourcesAcrossSubvolumes: a full stream sent with a clone source
// (ioctl.SendOptions.CloneSources) carries clone commands from that
// subvolume; Apply finds its received copy by received UUID and shares the
// extents again.
func TestCloneSourcesAcrossSubvolumes(t *testing.T) {
	fsys := btrfstest.New(t)
	lib, app := filepath.Join(fsys.Path, "lib"), filepath.Join(fsys.Path, "app")
	must(t, ioctl.CreateSubvolume(lib))
	write(t, filepath.Join(lib, "big"), random(1<<20, 5))
	libRO := filepath.Join(fsys.Path, "lib-ro")
	must(t, ioctl.Snapshot(lib, libRO, ioctl.SnapshotReadOnly))
	must(t, ioctl.CreateSubvolume(app))
	reflink(t, filepath.Join(libRO, "big"), filepath.Join(app, "shared"))
	write(t, filepath.Join(app, "own"), []byte("own"))
	appRO := filepath.Join(fsys.Path, "app-ro")
	must(t, ioctl.Snapshot(app, appRO, ioctl.SnapshotReadOnly))

	libStream := send(t, libRO, ioctl.SendOptions{})
	appStream := send(t, appRO, ioctl.SendOptions{CloneSources: []string{libRO}})
	if len(appStream) > 512<<10 {
		t.Errorf("app stream of %d bytes: the shared file was not sent as a clone", len(appStream))
	}
	recv := filepath.Join(fsys.Path, "recv")
	must(t, os.Mkdir(recv, 0o755))
	// Without lib received, the clone source is unknown.
	if _, err := Apply(context.Background(), bytes.NewReader(appStream), recv, Options{}); !errors.Is(err, ErrUnknownSource) {
		t.Errorf("clone source absent: %v", err)
	}
	assertEmpty(t, recv)
	apply(t, libStream, recv, Options{})
	apply(t, appStream, recv, Options{})
	treecmp.Compare(t, appRO, filepath.Join(recv, "app-ro"))
	if _, err := os.Stat(filepath.Join(recv, "app-ro", "shared")); err != nil {
		t.Error(err)
	}
}

// TestSeveralSubvolumesInOneStream: `btrfs send s1 s2` (two subvolumes in
// one stream) is received as two subvolumes; a failure in the second
// removes the first too.
func TestSeveralSubvolumesInOneStream(t *testing.T) {
	requireCLI(t)
	s := newScene(t)
	both := cli(t, "send", "-q", s.s1, s.s2)
	checkDump(t, both)
	got := apply(t, both, s.recv, Options{})
	if len(got) != 2 {
		t.Fatalf("received %v", got)
	}
	treecmp.Compare(t, s.s1, filepath.Join(s.recv, "s1"), treecmp.KernelSent()...)
	treecmp.Compare(t, s.s2, filepath.Join(s.recv, "s2"), treecmp.KernelSent()...)
	checkReceived(t, filepath.Join(s.recv, "s2"), s.s2)

	other := filepath.Join(s.fs.Path, "other")
	must(t, os.Mkdir(other, 0o755))
	_, err := Apply(context.Background(), bytes.NewReader(both[:len(both)-100]), other, Options{})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated in the second subvolume: %v", err)
	}
	assertEmpty(t, other)
}
