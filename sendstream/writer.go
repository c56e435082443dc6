package sendstream

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"math"
)

// Writer encodes a send stream. Not safe for concurrent use.
type Writer struct {
	w       io.Writer
	version uint32
	buf     []byte
}

// NewWriter writes the stream header of the given version (1 to 3) to w
// and returns a Writer for its commands.
func NewWriter(w io.Writer, version uint32) (*Writer, error) {
	if version == 0 || version > MaxVersion {
		return nil, fmt.Errorf("send stream version %d: %w", version, fs.ErrInvalid)
	}
	h := make([]byte, HeaderSize)
	copy(h, Magic)
	binary.LittleEndian.PutUint32(h[len(Magic):], version)
	if _, err := w.Write(h); err != nil {
		return nil, err
	}
	return &Writer{w: w, version: version}, nil
}

// WriteCommand encodes c: its required attributes (in the kernel's order),
// then the optional ones that c has (see Command.Set). It refuses, with an
// error matching fs.ErrInvalid and before writing anything, a command or
// attribute the version lacks, a value too long for its 16-bit length, a
// NUL in a path or name, and a command larger than the version's limit.
func (w *Writer) WriteCommand(c *Command) error {
	if c.Type == CmdUnspec || c.Type > maxCmd[w.version] {
		return fmt.Errorf("command %v in a version %d stream: %w", c.Type, w.version, fs.ErrInvalid)
	}
	s := specs[c.Type]
	b := append(w.buf[:0], make([]byte, CommandHeaderSize)...)
	var err error
	for _, a := range s.attrs {
		if s.optional&(1<<a) != 0 && !c.Has(a) {
			continue
		}
		if b, err = w.putAttr(b, c, a); err != nil {
			return err
		}
	}
	if len(b) > maxCommandSize(w.version) {
		return fmt.Errorf("%v command of %d bytes exceeds the version %d limit: %w", c.Type, len(b), w.version, fs.ErrInvalid)
	}
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)-CommandHeaderSize))
	binary.LittleEndian.PutUint16(b[4:], uint16(c.Type))
	binary.LittleEndian.PutUint32(b[6:], 0)
	binary.LittleEndian.PutUint32(b[6:], crc32c(b))
	w.buf = b
	_, err = w.w.Write(b)
	return err
}

func (w *Writer) putAttr(b []byte, c *Command, a Attr) ([]byte, error) {
	if a > maxAttr[w.version] {
		return nil, fmt.Errorf("attribute %d in a version %d stream: %w", a, w.version, fs.ErrInvalid)
	}
	var v []byte
	var scratch [16]byte
	u64 := func(x uint64) []byte { binary.LittleEndian.PutUint64(scratch[:], x); return scratch[:8] }
	u32 := func(x uint32) []byte { binary.LittleEndian.PutUint32(scratch[:], x); return scratch[:4] }
	ts := func(t Timespec) []byte {
		binary.LittleEndian.PutUint64(scratch[:], uint64(t.Sec))
		binary.LittleEndian.PutUint32(scratch[8:], t.Nsec)
		return scratch[:12]
	}
	str := func(s string) ([]byte, error) {
		for i := 0; i < len(s); i++ {
			if s[i] == 0 {
				return nil, fmt.Errorf("attribute %d: NUL in %q: %w", a, s, fs.ErrInvalid)
			}
		}
		return []byte(s), nil
	}
	var err error
	switch a {
	case AttrUUID:
		v = c.UUID[:]
	case AttrCtransid:
		v = u64(c.Ctransid)
	case AttrIno:
		v = u64(c.Ino)
	case AttrSize:
		v = u64(c.Size)
	case AttrMode:
		v = u64(c.Mode)
	case AttrUID:
		v = u64(c.UID)
	case AttrGID:
		v = u64(c.GID)
	case AttrRdev:
		v = u64(c.Rdev)
	case AttrCtime:
		v = ts(c.Ctime)
	case AttrMtime:
		v = ts(c.Mtime)
	case AttrAtime:
		v = ts(c.Atime)
	case AttrOtime:
		v = ts(c.Otime)
	case AttrXattrName:
		v, err = str(c.XattrName)
	case AttrXattrData:
		v = c.XattrData
	case AttrPath:
		v, err = str(c.Path)
	case AttrPathTo:
		v, err = str(c.PathTo)
	case AttrPathLink:
		v, err = str(c.PathLink)
	case AttrFileOffset:
		v = u64(c.FileOffset)
	case AttrData:
		v = c.Data
	case AttrCloneUUID:
		v = c.CloneUUID[:]
	case AttrCloneCtransid:
		v = u64(c.CloneCtransid)
	case AttrClonePath:
		v, err = str(c.ClonePath)
	case AttrCloneOffset:
		v = u64(c.CloneOffset)
	case AttrCloneLen:
		v = u64(c.CloneLen)
	case AttrFallocateMode:
		v = u32(c.FallocateMode)
	case AttrFileattr:
		v = u64(c.Fileattr)
	case AttrUnencodedFileLen:
		v = u64(c.UnencodedFileLen)
	case AttrUnencodedLen:
		v = u64(c.UnencodedLen)
	case AttrUnencodedOffset:
		v = u64(c.UnencodedOffset)
	case AttrCompression:
		v = u32(c.Compression)
	case AttrEncryption:
		v = u32(c.Encryption)
	case AttrVerityAlgorithm:
		scratch[0] = c.VerityAlgorithm
		v = scratch[:1]
	case AttrVerityBlockSize:
		v = u32(c.VerityBlockSize)
	case AttrVeritySaltData:
		v = c.VeritySalt
	case AttrVeritySigData:
		v = c.VeritySig
	}
	if err != nil {
		return nil, err
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(a))
	if a == AttrData && w.version >= 2 {
		return append(b, v...), nil
	}
	if len(v) > math.MaxUint16 {
		return nil, fmt.Errorf("attribute %d of %d bytes: %w", a, len(v), fs.ErrInvalid)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...), nil
}
