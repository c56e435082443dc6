// Package zstd decompresses btrfs' zstd extents for package receive, in
// its own module (github.com/btrstore/btrstore/receive/zstd) so that the
// zstd implementation, github.com/klauspost/compress, is not a
// requirement of the library's module. Pass Decompress as
// receive.Options.Zstd:
//
//	received, err := receive.Apply(ctx, r, dir, receive.Options{Zstd: zstd.Decompress})
//
// Apply needs it only when it writes a zstd extent decompressed: with
// Options.Decompress, or when the kernel refuses BTRFS_IOC_ENCODED_WRITE
// (before 5.18, or without CAP_SYS_ADMIN).
//
// Releases of this module are tagged receive/zstd/vX.Y.Z.
package zstd

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/btrstore/btrstore/receive"
)

// maxWindow bounds the memory one frame may ask for: btrfs compresses at
// most 128 KiB into one extent, with a window no larger.
const maxWindow = 8 << 20

// decoders holds idle streaming decoders: one is made per concurrent call.
var decoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxWindow))
	if err != nil {
		return err
	}
	return d
}}

var _ receive.Decompressor = Decompress

// Decompress is a receive.Decompressor for zstd: it decompresses src, the
// data of one extent (a zstd frame padded with zeros to a sector), into
// dst until dst is full or the frame ends, and returns how many bytes it
// wrote. Unprivileged; no kernel involved. Safe for concurrent use.
func Decompress(dst, src []byte) (int, error) {
	v := decoders.Get()
	d, ok := v.(*zstd.Decoder)
	if !ok {
		return 0, v.(error)
	}
	defer decoders.Put(d)
	if err := d.Reset(bytes.NewReader(src)); err != nil {
		return 0, err
	}
	n, err := io.ReadFull(d, dst)
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = nil // src ended before dst was full
	case n > 0 && errors.Is(err, zstd.ErrMagicMismatch):
		err = nil // the frame ended; the zeros that pad it to a sector follow
	}
	return n, err
}
