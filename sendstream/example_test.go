package sendstream_test

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/btrstore/btrstore/sendstream"
)

// A stream written with the Writer, read back command by command, and
// dumped as `btrfs receive --dump` prints it.
func Example() {
	var stream bytes.Buffer
	w, err := sendstream.NewWriter(&stream, 2)
	if err != nil {
		panic(err)
	}
	for _, c := range []*sendstream.Command{
		{Type: sendstream.CmdSubvol, Path: "demo", UUID: sendstream.UUID{0xab}, Ctransid: 7},
		{Type: sendstream.CmdMkfile, Path: "o257-7-0"},
		{Type: sendstream.CmdRename, Path: "o257-7-0", PathTo: "hello.txt"},
		{Type: sendstream.CmdWrite, Path: "hello.txt", Data: []byte("hello\n")},
		{Type: sendstream.CmdChmod, Path: "hello.txt", Mode: 0o644},
		{Type: sendstream.CmdEnd},
	} {
		if err := w.WriteCommand(c); err != nil {
			panic(err)
		}
	}

	r := sendstream.NewReader(bytes.NewReader(stream.Bytes()))
	for {
		c, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Printf("%v %q\n", c.Type, c.Path)
	}
	if err := sendstream.Dump(os.Stdout, &stream); err != nil {
		panic(err)
	}
	// Output:
	// subvol "demo"
	// mkfile "o257-7-0"
	// rename "o257-7-0"
	// write "hello.txt"
	// chmod "hello.txt"
	// end ""
	// subvol          ./demo                          uuid=ab000000-0000-0000-0000-000000000000 transid=7
	// mkfile          ./demo/o257-7-0
	// rename          ./demo/o257-7-0                 dest=./demo/hello.txt
	// write           ./demo/hello.txt                offset=0 len=6
	// chmod           ./demo/hello.txt                mode=644
}
