package receive

import (
	"bytes"
	"errors"
	"io/fs"
	"testing"

	"github.com/btrstore/btrstore/sendstream"
)

// TestDecodeZstdPluggable: a zstd extent goes through Options.Zstd; without
// one it fails with ErrNoDecompressor (errors.ErrUnsupported, not
// fs.ErrInvalid); the Decompressor's count decides what is enough.
func TestDecodeZstdPluggable(t *testing.T) {
	cmd := func() *sendstream.Command {
		return &sendstream.Command{Compression: sendstream.CompressionZstd, Data: []byte("compressed"),
			UnencodedLen: 8192, UnencodedOffset: 100, UnencodedFileLen: 5000}
	}
	var d decoder
	if _, err := d.decode(cmd()); !errors.Is(err, ErrNoDecompressor) || !errors.Is(err, errors.ErrUnsupported) || errors.Is(err, fs.ErrInvalid) {
		t.Errorf("decode without Options.Zstd: %v, want ErrNoDecompressor", err)
	}
	pattern := bytes.Repeat([]byte("0123456789abcdef"), 512)
	for _, tc := range []struct {
		name    string
		n       int   // bytes the decompressor writes
		err     error // and returns
		wantErr error // a corrupt extent: fs.ErrInvalid
	}{
		{"full", 8192, nil, nil},
		{"enough-then-short", 5100, nil, nil},
		{"enough-then-corrupt", 5100, errors.New("bad frame"), nil},
		{"short", 5099, nil, fs.ErrInvalid},
		{"corrupt", 10, errors.New("bad frame"), fs.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gotSrc []byte
			d := decoder{zstd: func(dst, src []byte) (int, error) {
				gotSrc = src
				if len(dst) != 8192 {
					t.Errorf("len(dst) = %d, want the unencoded length 8192", len(dst))
				}
				return copy(dst, pattern[:tc.n]), tc.err
			}}
			out, err := d.decode(cmd())
			if string(gotSrc) != "compressed" {
				t.Errorf("decompressor got src %q", gotSrc)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("decode: %v, want %v (fs.ErrInvalid)", err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(out, pattern[100:5100]) {
				t.Errorf("decode: %d bytes, %v; want the 5000 bytes from 100", len(out), err)
			}
		})
	}
}
