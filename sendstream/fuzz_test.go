package sendstream

import (
	"bytes"
	"io"
	"reflect"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the Reader (seeded with real kernel
// streams in testdata/fuzz/FuzzReader): it must never panic, and whatever
// it accepts must re-encode, with the Writer, to a stream that reads back
// to the same commands.
func FuzzReader(f *testing.F) {
	f.Add(append(header(1), rawCommand(CmdEnd, nil)...))
	f.Fuzz(checkReencode)
}

// FuzzAttributes fuzzes the attributes of one command, wrapped with a
// correct CRC so that the attribute parser, not the checksum, is tested.
func FuzzAttributes(f *testing.F) {
	f.Add(uint8(1), uint16(CmdMkfile), tlv(AttrPath, []byte("f")))
	f.Add(uint8(2), uint16(CmdWrite), append(append(tlv(AttrPath, []byte("f")), tlv(AttrFileOffset, make([]byte, 8))...), byte(AttrData), 0, 'x'))
	f.Add(uint8(2), uint16(CmdEncodedWrite), tlv(AttrPath, []byte("f")))
	f.Add(uint8(3), uint16(CmdEnableVerity), tlv(AttrPath, []byte("f")))
	f.Fuzz(func(t *testing.T, version uint8, cmd uint16, attrs []byte) {
		data := append(header(uint32(version%4)), rawCommand(Cmd(cmd), attrs)...)
		checkReencode(t, append(data, rawCommand(CmdEnd, nil)...))
	})
}

func checkReencode(t *testing.T, data []byte) {
	{
		r := NewReader(bytes.NewReader(data))
		var out bytes.Buffer
		var w *Writer
		var cmds []Command
		for {
			c, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
			if w == nil {
				var werr error
				if w, werr = NewWriter(&out, r.Version()); werr != nil {
					t.Fatal(werr)
				}
			}
			if err := w.WriteCommand(c); err != nil {
				t.Fatalf("accepted %v does not re-encode: %v", c.Type, err)
			}
			if c.Type == CmdEnd {
				w = nil
			}
			cc := *c
			cc.Data, cc.XattrData = bytes.Clone(c.Data), bytes.Clone(c.XattrData)
			cc.VeritySalt, cc.VeritySig = bytes.Clone(c.VeritySalt), bytes.Clone(c.VeritySig)
			cmds = append(cmds, cc)
		}
		r2 := NewReader(&out)
		for i := range cmds {
			c, err := r2.Next()
			if err != nil {
				t.Fatalf("re-encoded command %d: %v", i, err)
			}
			if !reflect.DeepEqual(normalize(*c), normalize(cmds[i])) {
				t.Fatalf("command %d: %+v, was %+v", i, *c, cmds[i])
			}
		}
		if _, err := r2.Next(); err != io.EOF && len(cmds) > 0 {
			t.Fatalf("re-encoded stream: %v after %d commands", err, len(cmds))
		}
	}
}

func normalize(c Command) Command {
	for _, p := range []*[]byte{&c.Data, &c.XattrData, &c.VeritySalt, &c.VeritySig} {
		if len(*p) == 0 {
			*p = nil
		}
	}
	return c
}

// FuzzDump: Dump never panics, whatever the input.
func FuzzDump(f *testing.F) {
	f.Add(append(header(2), rawCommand(CmdEnd, nil)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Dump(io.Discard, bytes.NewReader(data))
	})
}
