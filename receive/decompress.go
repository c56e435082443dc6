package receive

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"io/fs"

	"github.com/btrstore/btrstore/sendstream"
)

// maxUnencoded bounds what one encoded write may decompress to: btrfs
// compresses at most 128 KiB (BTRFS_MAX_UNCOMPRESSED) into one extent.
const maxUnencoded = 128 << 10

// decoder decompresses encoded writes when the kernel cannot take them as
// they are. Not safe for concurrent use.
type decoder struct {
	zstd Decompressor // Options.Zstd
	buf  []byte
}

// decode returns the bytes an encoded write stands for: its data
// decompressed to UnencodedLen bytes, of which UnencodedFileLen from
// UnencodedOffset go into the file.
func (d *decoder) decode(c *sendstream.Command) ([]byte, error) {
	if c.Encryption != 0 {
		return nil, fmt.Errorf("encoded write with encryption %d: %w", c.Encryption, fs.ErrInvalid)
	}
	if c.UnencodedLen > maxUnencoded || c.UnencodedOffset > c.UnencodedLen ||
		c.UnencodedFileLen > c.UnencodedLen-c.UnencodedOffset {
		return nil, fmt.Errorf("encoded write: unencoded length %d, offset %d, file length %d: %w",
			c.UnencodedLen, c.UnencodedOffset, c.UnencodedFileLen, fs.ErrInvalid)
	}
	n := int(c.UnencodedLen)
	// btrfs compresses the file's bytes, not the sector-rounded extent
	// (UnencodedLen): the data may decompress to less, and the kernel
	// reads the rest as zeros. What the file needs must be there.
	need := int(c.UnencodedOffset + c.UnencodedFileLen)
	if cap(d.buf) < n {
		d.buf = make([]byte, maxUnencoded)
	}
	out := d.buf[:n]
	clear(out)
	readNeeded := func(r io.Reader) error {
		got, err := io.ReadFull(r, out)
		if got >= need {
			return nil
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	var err error
	switch c.Compression {
	case sendstream.CompressionNone:
		if len(c.Data) < n {
			return nil, fmt.Errorf("encoded write: %d bytes of data for %d: %w", len(c.Data), n, fs.ErrInvalid)
		}
		out = c.Data[:n]
	case sendstream.CompressionZlib:
		var zr io.ReadCloser
		if zr, err = zlib.NewReader(bytes.NewReader(c.Data)); err == nil {
			err = readNeeded(zr)
			zr.Close()
		}
	case sendstream.CompressionZstd:
		if d.zstd == nil {
			return nil, ErrNoDecompressor
		}
		var got int
		got, err = d.zstd(out, c.Data)
		switch {
		case got > len(out):
			err = fmt.Errorf("the zstd decompressor wrote %d bytes into %d", got, len(out))
		case got >= need:
			err = nil
		case err == nil:
			err = io.ErrUnexpectedEOF
		}
	default:
		if c.Compression < sendstream.CompressionLZO4K || c.Compression > sendstream.CompressionLZO64K {
			return nil, fmt.Errorf("encoded write with compression %d: %w", c.Compression, fs.ErrInvalid)
		}
		sector := 4096 << (c.Compression - sendstream.CompressionLZO4K)
		var got []byte
		if got, err = btrfsLZO(c.Data, sector, n); err == nil {
			if len(got) < need {
				err = io.ErrUnexpectedEOF
			}
			copy(out, got)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("decompressing an encoded write (compression %d): %v: %w", c.Compression, err, fs.ErrInvalid)
	}
	return out[c.UnencodedOffset : c.UnencodedOffset+c.UnencodedFileLen], nil
}
