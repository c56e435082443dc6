package sendstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
)

var (
	// ErrCorrupt: the stream is not a valid send stream. Every format
	// error matches it and fs.ErrInvalid.
	ErrCorrupt = errors.New("invalid send stream")
	// ErrChecksum: a command's CRC32C does not match (also ErrCorrupt).
	ErrChecksum = errors.New("send stream checksum mismatch")
)

// FormatError describes what is wrong in a stream and where.
type FormatError struct {
	Offset int64 // of the command (or header) in the stream
	Cmd    Cmd   // 0 when the command header itself is at fault
	Msg    string
	crc    bool
}

func (e *FormatError) Error() string {
	if e.Cmd != 0 {
		return fmt.Sprintf("send stream: offset %d: %v: %s", e.Offset, e.Cmd, e.Msg)
	}
	return fmt.Sprintf("send stream: offset %d: %s", e.Offset, e.Msg)
}

func (e *FormatError) Unwrap() []error {
	if e.crc {
		return []error{ErrChecksum, ErrCorrupt, fs.ErrInvalid}
	}
	return []error{ErrCorrupt, fs.ErrInvalid}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the kernel's crc32c(0, p): CRC32C with seed 0 and no final
// inversion, which is the standard CRC32C's complement with seed ~0.
func crc32c(p []byte) uint32 { return ^crc32.Update(0xffffffff, castagnoli, p) }

// Reader decodes a send stream. Not safe for concurrent use.
type Reader struct {
	r       io.Reader
	off     int64 // bytes consumed
	version uint32
	inside  bool // a stream header was read and its END not yet
	started bool
	buf     []byte // the current command, header included
	cmd     Command
	err     error // sticky
}

// NewReader returns a Reader of the stream (or concatenated streams) in r.
// It reads r in command-sized pieces; wrap r in a bufio.Reader if small
// reads are expensive.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Version returns the version of the stream being read (0 before the first
// call to Next).
func (r *Reader) Version() uint32 { return r.version }

// Offset returns the number of bytes consumed so far.
func (r *Reader) Offset() int64 { return r.off }

func (r *Reader) fail(cmd Cmd, at int64, format string, args ...any) error {
	r.err = &FormatError{Offset: at, Cmd: cmd, Msg: fmt.Sprintf(format, args...)}
	return r.err
}

// readFull reads len(p) bytes; a stream that ends inside them gives
// io.ErrUnexpectedEOF, one that ends before them io.EOF.
func (r *Reader) readFull(p []byte) error {
	n, err := io.ReadFull(r.r, p)
	r.off += int64(n)
	return err
}

// Next returns the next command, checked (see the package documentation).
// After the END of a stream it reads the header of the next one, if any: at
// a clean end of input after an END it returns io.EOF. An input that ends
// anywhere else gives io.ErrUnexpectedEOF; a malformed one a *FormatError.
// Errors are sticky.
func (r *Reader) Next() (*Command, error) {
	if r.err != nil {
		return nil, r.err
	}
	if !r.inside {
		err := r.readHeader()
		switch {
		case err == nil:
			r.started, r.inside = true, true
		case err == io.EOF && r.started:
			r.err = io.EOF
			return nil, io.EOF
		case err == io.EOF:
			return nil, r.fail(0, r.off, "empty stream")
		default:
			if r.err == nil {
				r.err = err
			}
			return nil, r.err
		}
	}
	c, err := r.readCommand()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // inside a stream, before its END
		}
		if r.err == nil {
			r.err = err
		}
		return nil, r.err
	}
	if c.Type == CmdEnd {
		r.inside = false
	}
	return c, nil
}

func (r *Reader) readHeader() error {
	var h [HeaderSize]byte
	at := r.off
	if err := r.readFull(h[:]); err != nil {
		return err
	}
	if string(h[:len(Magic)]) != Magic {
		return r.fail(0, at, "bad magic %q", h[:len(Magic)])
	}
	v := binary.LittleEndian.Uint32(h[len(Magic):])
	if v == 0 || v > MaxVersion {
		return r.fail(0, at, "unsupported stream version %d", v)
	}
	r.version = v
	return nil
}

// readCommand reads and checks one command.
func (r *Reader) readCommand() (*Command, error) {
	at := r.off
	if cap(r.buf) < CommandHeaderSize {
		r.buf = make([]byte, CommandHeaderSize, 4096)
	}
	r.buf = r.buf[:CommandHeaderSize]
	if err := r.readFull(r.buf); err != nil {
		return nil, err
	}
	length := binary.LittleEndian.Uint32(r.buf[0:])
	typ := Cmd(binary.LittleEndian.Uint16(r.buf[4:]))
	want := binary.LittleEndian.Uint32(r.buf[6:])
	if int64(length) > int64(maxCommandSize(r.version)-CommandHeaderSize) {
		return nil, r.fail(0, at, "command length %d exceeds the version %d limit of %d", length, r.version, maxCommandSize(r.version)-CommandHeaderSize)
	}
	// Grow the buffer as the bytes arrive, not by what length claims.
	total := CommandHeaderSize + int(length)
	for len(r.buf) < total {
		n := min(total-len(r.buf), 64<<10)
		start := len(r.buf)
		if cap(r.buf) < start+n {
			nb := make([]byte, start, max(2*cap(r.buf), start+n))
			copy(nb, r.buf)
			r.buf = nb
		}
		r.buf = r.buf[:start+n]
		if err := r.readFull(r.buf[start:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	r.buf[6], r.buf[7], r.buf[8], r.buf[9] = 0, 0, 0, 0
	if got := crc32c(r.buf); got != want {
		r.err = &FormatError{Offset: at, Cmd: typ, Msg: fmt.Sprintf("crc32c %#08x, header says %#08x", got, want), crc: true}
		return nil, r.err
	}
	binary.LittleEndian.PutUint32(r.buf[6:], want)
	if typ == CmdUnspec || typ > maxCmd[r.version] {
		return nil, r.fail(0, at, "unknown command %d in a version %d stream", uint16(typ), r.version)
	}
	c := &r.cmd
	*c = Command{Type: typ}
	if err := r.decode(c, r.buf[CommandHeaderSize:], at); err != nil {
		return nil, err
	}
	return c, nil
}

// decode parses the attributes of c from p.
func (r *Reader) decode(c *Command, p []byte, at int64) error {
	allowed := allowedAttrs[c.Type]
	for len(p) > 0 {
		if len(p) < 2 {
			return r.fail(c.Type, at, "truncated attribute header")
		}
		a := Attr(binary.LittleEndian.Uint16(p))
		p = p[2:]
		if a == 0 || a > maxAttr[r.version] {
			return r.fail(c.Type, at, "unknown attribute %d in a version %d stream", uint16(a), r.version)
		}
		if allowed&(1<<a) == 0 {
			return r.fail(c.Type, at, "attribute %d not allowed in this command", uint16(a))
		}
		if c.present&(1<<a) != 0 {
			return r.fail(c.Type, at, "attribute %d repeated", uint16(a))
		}
		c.present |= 1 << a
		var v []byte
		if a == AttrData && r.version >= 2 {
			v, p = p, nil // unsized, runs to the end of the command
		} else {
			if len(p) < 2 {
				return r.fail(c.Type, at, "truncated attribute header")
			}
			n := int(binary.LittleEndian.Uint16(p))
			p = p[2:]
			if n > len(p) {
				return r.fail(c.Type, at, "attribute %d length %d exceeds the command's remaining %d bytes", uint16(a), n, len(p))
			}
			v, p = p[:n], p[n:]
		}
		k := attrKind[a]
		if sz := kindSize[k]; sz != 0 && len(v) != sz {
			return r.fail(c.Type, at, "attribute %d has %d bytes, want %d", uint16(a), len(v), sz)
		}
		if k == kString {
			for _, b := range v {
				if b == 0 {
					return r.fail(c.Type, at, "attribute %d: NUL byte in a path or name", uint16(a))
				}
			}
		}
		setAttr(c, a, v)
	}
	if missing := requiredAttrs[c.Type] &^ c.present; missing != 0 {
		for a := Attr(1); a < 64; a++ {
			if missing&(1<<a) != 0 {
				return r.fail(c.Type, at, "missing attribute %d", uint16(a))
			}
		}
	}
	return nil
}

func setAttr(c *Command, a Attr, v []byte) {
	u64 := func() uint64 { return binary.LittleEndian.Uint64(v) }
	u32 := func() uint32 { return binary.LittleEndian.Uint32(v) }
	ts := func() Timespec {
		return Timespec{Sec: int64(binary.LittleEndian.Uint64(v)), Nsec: binary.LittleEndian.Uint32(v[8:])}
	}
	switch a {
	case AttrUUID:
		c.UUID = UUID(v)
	case AttrCtransid:
		c.Ctransid = u64()
	case AttrIno:
		c.Ino = u64()
	case AttrSize:
		c.Size = u64()
	case AttrMode:
		c.Mode = u64()
	case AttrUID:
		c.UID = u64()
	case AttrGID:
		c.GID = u64()
	case AttrRdev:
		c.Rdev = u64()
	case AttrCtime:
		c.Ctime = ts()
	case AttrMtime:
		c.Mtime = ts()
	case AttrAtime:
		c.Atime = ts()
	case AttrOtime:
		c.Otime = ts()
	case AttrXattrName:
		c.XattrName = string(v)
	case AttrXattrData:
		c.XattrData = v
	case AttrPath:
		c.Path = string(v)
	case AttrPathTo:
		c.PathTo = string(v)
	case AttrPathLink:
		c.PathLink = string(v)
	case AttrFileOffset:
		c.FileOffset = u64()
	case AttrData:
		c.Data = v
	case AttrCloneUUID:
		c.CloneUUID = UUID(v)
	case AttrCloneCtransid:
		c.CloneCtransid = u64()
	case AttrClonePath:
		c.ClonePath = string(v)
	case AttrCloneOffset:
		c.CloneOffset = u64()
	case AttrCloneLen:
		c.CloneLen = u64()
	case AttrFallocateMode:
		c.FallocateMode = u32()
	case AttrFileattr:
		c.Fileattr = u64()
	case AttrUnencodedFileLen:
		c.UnencodedFileLen = u64()
	case AttrUnencodedLen:
		c.UnencodedLen = u64()
	case AttrUnencodedOffset:
		c.UnencodedOffset = u64()
	case AttrCompression:
		c.Compression = u32()
	case AttrEncryption:
		c.Encryption = u32()
	case AttrVerityAlgorithm:
		c.VerityAlgorithm = v[0]
	case AttrVerityBlockSize:
		c.VerityBlockSize = u32()
	case AttrVeritySaltData:
		c.VeritySalt = v
	case AttrVeritySigData:
		c.VeritySig = v
	}
}
