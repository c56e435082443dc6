package ioctl

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

func TestSendFullAndIncremental(t *testing.T) {
	fsys := btrfstest.New(t)
	a := filepath.Join(fsys.Path, "a")
	mustCreate(t, fsys.Path, "a")
	mustWrite(t, filepath.Join(a, "f"), "hello")
	s1, s2 := filepath.Join(fsys.Path, "s1"), filepath.Join(fsys.Path, "s2")
	if err := Snapshot(a, s1, SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(a, "g"), "world")
	if err := Snapshot(a, s2, SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint32{0, 1, SendStreamVersion()} {
		var full, inc bytes.Buffer
		if err := Send(context.Background(), &full, s1, SendOptions{Version: v}); err != nil {
			t.Fatalf("full v%d: %v", v, err)
		}
		if err := Send(context.Background(), &inc, s2, SendOptions{Version: v, Parent: s1}); err != nil {
			t.Fatalf("incremental v%d: %v", v, err)
		}
		want := v
		if v == 0 {
			want = SendStreamVersion()
		}
		for _, b := range [][]byte{full.Bytes(), inc.Bytes()} {
			if len(b) < 17 || string(b[:13]) != "btrfs-stream\x00" || uint32(b[13]) != want {
				t.Errorf("v%d: stream starts %q", v, b[:min(len(b), 17)])
			}
		}
		if !bytes.Contains(full.Bytes(), []byte("hello")) || bytes.Contains(inc.Bytes(), []byte("hello")) ||
			!bytes.Contains(inc.Bytes(), []byte("world")) {
			t.Errorf("v%d: full stream %d bytes, incremental %d bytes: wrong content", v, full.Len(), inc.Len())
		}
	}
}

func TestSendRefusesWritableAndBadOptions(t *testing.T) {
	fsys := btrfstest.New(t)
	a := filepath.Join(fsys.Path, "a")
	mustCreate(t, fsys.Path, "a")
	ro := filepath.Join(fsys.Path, "ro")
	if err := Snapshot(a, ro, SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	mustMkdir(t, filepath.Join(fsys.Path, "dir"))
	for _, c := range []struct {
		name string
		path string
		opts SendOptions
		want error
	}{
		{"writable", a, SendOptions{}, unix.EPERM},
		{"writable parent", ro, SendOptions{Parent: a}, unix.EPERM},
		{"writable clone source", ro, SendOptions{CloneSources: []string{a}}, unix.EPERM},
		{"not a subvolume", filepath.Join(fsys.Path, "dir"), SendOptions{}, ErrNotSubvolume},
		{"version too high", ro, SendOptions{Version: 99}, fs.ErrInvalid},
		{"compressed v1", ro, SendOptions{Version: 1, Compressed: true}, fs.ErrInvalid},
	} {
		var buf bytes.Buffer
		err := Send(context.Background(), &buf, c.path, c.opts)
		if !errors.Is(err, c.want) || buf.Len() != 0 {
			t.Errorf("%s: %v (%d bytes); want %v", c.name, err, buf.Len(), c.want)
		}
	}
}

type failWriter struct{ n int }

var errSink = errors.New("sink full")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errSink
	}
	return len(p), nil
}

// cancelWriter cancels the context on its first write and then blocks
// writes no more.
type cancelWriter struct{ cancel context.CancelFunc }

func (w cancelWriter) Write(p []byte) (int, error) { w.cancel(); return len(p), nil }

func TestSendWriterErrorAndCancel(t *testing.T) {
	fsys := btrfstest.New(t)
	a := filepath.Join(fsys.Path, "a")
	mustCreate(t, fsys.Path, "a")
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, more than a pipe holds
	mustWrite(t, filepath.Join(a, "big"), string(big))
	ro := filepath.Join(fsys.Path, "ro")
	if err := Snapshot(a, ro, SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	err := Send(context.Background(), &failWriter{n: 4096}, ro, SendOptions{})
	if !errors.Is(err, errSink) {
		t.Errorf("failing writer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = Send(ctx, cancelWriter{cancel}, ro, SendOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// Still usable afterwards.
	if err := Send(context.Background(), io.Discard, ro, SendOptions{}); err != nil {
		t.Error(err)
	}
}
