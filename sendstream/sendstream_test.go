package sendstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The streams in testdata were made by `btrfs send` (btrfs-progs 6.2,
// kernel 6.18) from small subvolumes holding every kind of file, and the
// .dump files by `TZ=UTC btrfs receive --dump -f`.
func testStreams(t testing.TB) []string {
	t.Helper()
	names, err := filepath.Glob("testdata/*.stream")
	if err != nil || len(names) == 0 {
		t.Fatalf("no test streams: %v", err)
	}
	return names
}

func readAll(t testing.TB, data []byte) []Command {
	t.Helper()
	r := NewReader(bytes.NewReader(data))
	var cmds []Command
	for {
		c, err := r.Next()
		if err == io.EOF {
			return cmds
		}
		if err != nil {
			t.Fatalf("after %d commands: %v", len(cmds), err)
		}
		cc := *c
		cc.Data = bytes.Clone(c.Data)
		cc.XattrData = bytes.Clone(c.XattrData)
		cmds = append(cmds, cc)
	}
}

func TestDumpMatchesBtrfsReceive(t *testing.T) {
	saved := time.Local
	time.Local = time.UTC
	defer func() { time.Local = saved }()
	for _, name := range testStreams(t) {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(strings.TrimSuffix(name, ".stream") + ".dump")
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := Dump(&got, bytes.NewReader(data)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if strings.HasPrefix(name, "testdata/multi") {
			// btrfs receive --dump stops after the first of concatenated
			// streams; Dump goes on.
			if !strings.HasPrefix(got.String(), string(want)) || got.Len() == len(want) {
				t.Errorf("%s: dump of the first stream differs, or the second is missing", name)
			}
			continue
		}
		if got.String() != string(want) {
			gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
			for i := range min(len(gl), len(wl)) {
				if gl[i] != wl[i] {
					t.Errorf("%s line %d:\n got %q\nwant %q", name, i+1, gl[i], wl[i])
					break
				}
			}
			if len(gl) != len(wl) {
				t.Errorf("%s: %d lines, want %d", name, len(gl), len(wl))
			}
		}
	}
}

// TestRoundTrip re-encodes every kernel stream with the Writer and expects
// the same bytes: the Writer follows the kernel's attribute order.
func TestRoundTrip(t *testing.T) {
	for _, name := range testStreams(t) {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		version := binary.LittleEndian.Uint32(data[len(Magic):])
		var out bytes.Buffer
		var w *Writer
		types := map[Cmd]bool{}
		for _, c := range readAll(t, data) {
			types[c.Type] = true
			if w == nil { // a new stream: concatenated ones have their own headers
				if w, err = NewWriter(&out, version); err != nil {
					t.Fatal(err)
				}
			}
			err := w.WriteCommand(&c)
			if c.Type == CmdEnd {
				w = nil
			}
			if err != nil {
				t.Fatalf("%s: %v: %v", name, c.Type, err)
			}
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Errorf("%s: re-encoded stream differs (%d bytes, kernel's %d)", name, out.Len(), len(data))
		}
		if !types[CmdEnd] || !types[CmdSubvol] && !types[CmdSnapshot] {
			t.Errorf("%s: commands %v", name, types)
		}
	}
}

// corrupt returns a copy of the first command-bearing stream with f applied.
func smallStream(t testing.TB) []byte {
	data, err := os.ReadFile("testdata/small-v2.stream")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// rewrite builds a version-v stream of the given commands.
func rewrite(t testing.TB, v uint32, cmds ...*Command) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(&b, v)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		if err := w.WriteCommand(c); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// rawCommand builds a command with a correct CRC from raw attribute bytes.
func rawCommand(cmd Cmd, attrs []byte) []byte {
	b := make([]byte, CommandHeaderSize, CommandHeaderSize+len(attrs))
	b = append(b, attrs...)
	binary.LittleEndian.PutUint32(b, uint32(len(attrs)))
	binary.LittleEndian.PutUint16(b[4:], uint16(cmd))
	binary.LittleEndian.PutUint32(b[6:], crc32c(b))
	return b
}

func header(v uint32) []byte {
	return binary.LittleEndian.AppendUint32([]byte(Magic), v)
}

func tlv(a Attr, v []byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(a))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func readErr(data []byte) (int, error) {
	r := NewReader(bytes.NewReader(data))
	n := 0
	for {
		_, err := r.Next()
		if err != nil {
			return n, err
		}
		n++
	}
}

func TestReaderRejects(t *testing.T) {
	good := smallStream(t)
	end := rawCommand(CmdEnd, nil)
	u64 := func(x uint64) []byte { return binary.LittleEndian.AppendUint64(nil, x) }
	path := tlv(AttrPath, []byte("f"))
	flipCRC := bytes.Clone(good)
	flipCRC[HeaderSize+20] ^= 1 // inside the first command
	hugeLen := append(header(2), 0xff, 0xff, 0xff, 0xff, byte(CmdWrite), 0, 0, 0, 0, 0)
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"bad magic", append([]byte("btrfs-strean\x00"), 1, 0, 0, 0), ErrCorrupt},
		{"version 0", header(0), ErrCorrupt},
		{"version 4", header(4), ErrCorrupt},
		{"truncated header", good[:10], io.ErrUnexpectedEOF},
		{"no commands, no end", header(1), io.ErrUnexpectedEOF},
		{"truncated command", good[:HeaderSize+15], io.ErrUnexpectedEOF},
		{"truncated before end", good[:len(good)-CommandHeaderSize], io.ErrUnexpectedEOF},
		{"bad crc", flipCRC, ErrChecksum},
		{"absurd length", hugeLen, ErrCorrupt},
		{"v1 length over 64K", append(header(1), rawCommand(CmdWrite, make([]byte, 70000))...), ErrCorrupt},
		{"unknown command", append(header(1), rawCommand(CmdFallocate, path)...), ErrCorrupt},
		{"unknown attribute", append(header(1), rawCommand(CmdMkfile, tlv(AttrFallocateMode, u64(0)[:4]))...), ErrCorrupt},
		{"attribute not of the command", append(header(1), rawCommand(CmdMkfile, append(bytes.Clone(path), tlv(AttrSize, u64(1))...))...), ErrCorrupt},
		{"repeated attribute", append(header(1), rawCommand(CmdMkfile, append(bytes.Clone(path), path...))...), ErrCorrupt},
		{"missing attribute", append(header(1), rawCommand(CmdTruncate, path)...), ErrCorrupt},
		{"short u64", append(header(1), rawCommand(CmdTruncate, append(bytes.Clone(path), tlv(AttrSize, []byte{1, 2, 3})...))...), ErrCorrupt},
		{"attribute past the command", append(header(1), rawCommand(CmdMkfile, []byte{byte(AttrPath), 0, 200, 0, 'f'})...), ErrCorrupt},
		{"half attribute header", append(header(1), rawCommand(CmdMkfile, append(bytes.Clone(path), 1))...), ErrCorrupt},
		{"NUL in path", append(header(1), rawCommand(CmdMkfile, tlv(AttrPath, []byte("a\x00b")))...), ErrCorrupt},
		{"garbage after end", append(append(header(1), end...), 'x'), io.ErrUnexpectedEOF},
	} {
		_, err := readErr(c.data)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if c.want == ErrCorrupt && !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("%s: %v does not match fs.ErrInvalid", c.name, err)
		}
	}
	// Concatenated streams are read through.
	two := append(bytes.Clone(good), good...)
	n1, err1 := readErr(good)
	n2, err2 := readErr(two)
	if err1 != io.EOF || err2 != io.EOF || n2 != 2*n1 {
		t.Errorf("one stream: %d, %v; two: %d, %v", n1, err1, n2, err2)
	}
}

// TestReaderDoesNotAllocateClaimedLength: a header claiming a large command
// followed by a few bytes must not make the reader allocate the claim.
func TestReaderDoesNotAllocateClaimedLength(t *testing.T) {
	data := append(header(2), 0x00, 0xf0, 0x02, 0x00, byte(CmdWrite), 0, 0, 0, 0, 0) // 192 KiB - 4 KiB
	data = append(data, 1, 2, 3)
	allocs := testing.AllocsPerRun(5, func() { readErr(data) })
	var ms runtimeMem
	before := ms.read()
	for range 20 {
		readErr(data)
	}
	if grew := ms.read() - before; grew > 20*100<<10 {
		t.Errorf("20 reads of a 3-byte command claiming 188 KiB allocated %d bytes (%v allocs each)", grew, allocs)
	}
}

func TestWriterRejects(t *testing.T) {
	var b bytes.Buffer
	w, _ := NewWriter(&b, 1)
	n := b.Len()
	for _, c := range []*Command{
		{Type: CmdFallocate, Path: "f"},
		{Type: CmdMkfile, Path: "a\x00b"},
		{Type: CmdWrite, Path: "f", Data: make([]byte, 70000)},
		{Type: Cmd(99)},
	} {
		if err := w.WriteCommand(c); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("%v: %v", c.Type, err)
		}
	}
	if b.Len() != n {
		t.Errorf("rejected commands wrote %d bytes", b.Len()-n)
	}
	if _, err := NewWriter(&b, 4); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("version 4: %v", err)
	}
	// A v2 write of 100 KiB is fine (unsized data).
	data := rewrite(t, 2, &Command{Type: CmdWrite, Path: "f", Data: make([]byte, 100<<10)}, &Command{Type: CmdEnd})
	cmds := readAll(t, data)
	if len(cmds) != 2 || len(cmds[0].Data) != 100<<10 {
		t.Errorf("v2 large write read back as %d commands", len(cmds))
	}
}

func TestCRCIsKernels(t *testing.T) {
	// crc32c(0, "123456789") without final inversion, as the kernel's
	// crc32c(0, ...) computes it: the standard check value 0xe3069283 is
	// for seed ~0 with inversion.
	if got, want := crc32c([]byte("123456789")), ^crcStd("123456789", 0); got != want {
		t.Errorf("crc32c = %#x, want %#x", got, want)
	}
}
