package sendstream

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// Dump reads the stream (or concatenated streams) in r and prints each
// command to w as `btrfs receive --dump` (btrfs-progs 6.2) does: the
// command name padded to 16 columns, the path below "." (escaped as C does,
// padded to 32 columns) and the command's values. It stops at the first
// error, after printing the commands before it.
func Dump(w io.Writer, r io.Reader) error {
	bw := bufio.NewWriter(w)
	d := dumper{w: bw}
	sr := NewReader(bufio.NewReaderSize(r, 256<<10))
	for {
		c, err := sr.Next()
		if err == io.EOF {
			return bw.Flush()
		}
		if err != nil {
			bw.Flush()
			return err
		}
		d.command(c)
	}
}

type dumper struct {
	w      *bufio.Writer
	subvol string // "./name" of the subvolume being dumped
}

// escape writes s as btrfs-progs 6.2's print_path_escaped does and returns
// the number of characters written.
func escape(w *bufio.Writer, s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		n++
		switch c {
		case '\a':
			w.WriteString(`\a`)
		case '\b':
			w.WriteString(`\b`)
		case 0x1b:
			w.WriteString(`\e`)
		case '\f':
			w.WriteString(`\f`)
		case '\n':
			w.WriteString(`\n`)
		case '\r':
			w.WriteString(`\r`)
		case '\t':
			w.WriteString(`\t`)
		case '\v':
			w.WriteString(`\v`)
		case ' ':
			w.WriteString(`\ `)
		case '\\':
			w.WriteString(`\\`)
		default:
			if c < 0x20 || c > 0x7e {
				fmt.Fprintf(w, "\\%c%c%c", '0'+(c>>6), '0'+((c>>3)&7), '0'+(c&7))
				n += 3
			} else {
				w.WriteByte(c)
			}
			continue
		}
		n++
	}
	return n
}

// pathCat joins as btrfs-progs' path_cat_out: one trailing slash of each
// part dropped, always one "/" between them.
func pathCat(a, b string) string {
	a = strings.TrimSuffix(a, "/")
	b = strings.TrimSuffix(b, "/")
	return a + "/" + b
}

// head prints the name and path; with more to come it pads to 32 columns.
func (d *dumper) head(title, path string, more bool) {
	fmt.Fprintf(d.w, "%-16s", title)
	n := escape(d.w, path)
	if !more {
		d.w.WriteByte('\n')
		return
	}
	for {
		d.w.WriteByte(' ')
		n++
		if n >= 32 {
			break
		}
	}
}

func dumpTime(t Timespec) string {
	return time.Unix(t.Sec, 0).Format("2006-01-02T15:04:05-0700")
}

func (d *dumper) command(c *Command) {
	full := func(p string) string { return pathCat(d.subvol, p) }
	line := func(format string, args ...any) {
		d.head(c.Type.String(), full(c.Path), true)
		fmt.Fprintf(d.w, format, args...)
		d.w.WriteByte('\n')
	}
	switch c.Type {
	case CmdSubvol:
		d.subvol = pathCat(".", c.Path)
		d.head("subvol", d.subvol, true)
		fmt.Fprintf(d.w, "uuid=%s transid=%d\n", c.UUID, c.Ctransid)
	case CmdSnapshot:
		d.subvol = pathCat(".", c.Path)
		d.head("snapshot", d.subvol, true)
		fmt.Fprintf(d.w, "uuid=%s transid=%d parent_uuid=%s parent_transid=%d\n",
			c.UUID, c.Ctransid, c.CloneUUID, c.CloneCtransid)
	case CmdMkfile, CmdMkdir, CmdMkfifo, CmdMksock, CmdUnlink, CmdRmdir:
		d.head(c.Type.String(), full(c.Path), false)
	case CmdMknod:
		line("mode=%o dev=0x%x", c.Mode, c.Rdev)
	case CmdSymlink, CmdLink:
		d.head(c.Type.String(), full(c.Path), true)
		d.w.WriteString("dest=")
		escape(d.w, c.PathLink)
		d.w.WriteByte('\n')
	case CmdRename:
		d.head("rename", full(c.Path), true)
		d.w.WriteString("dest=")
		escape(d.w, full(c.PathTo))
		d.w.WriteByte('\n')
	case CmdWrite:
		line("offset=%d len=%d", c.FileOffset, len(c.Data))
	case CmdClone:
		line("offset=%d len=%d from=%s clone_offset=%d", c.FileOffset, c.CloneLen, full(c.ClonePath), c.CloneOffset)
	case CmdSetXattr:
		data := c.XattrData
		for i, b := range data { // printf's %.*s stops at a NUL
			if b == 0 {
				data = data[:i]
				break
			}
		}
		line("name=%s data=%s len=%d", c.XattrName, data, len(c.XattrData))
	case CmdRemoveXattr:
		line("name=%s", c.XattrName)
	case CmdTruncate:
		line("size=%d", c.Size)
	case CmdChmod:
		line("mode=%o", c.Mode)
	case CmdChown:
		line("gid=%d uid=%d", c.GID, c.UID)
	case CmdUtimes:
		line("atime=%s mtime=%s ctime=%s", dumpTime(c.Atime), dumpTime(c.Mtime), dumpTime(c.Ctime))
	case CmdUpdateExtent:
		line("offset=%d len=%d", c.FileOffset, c.Size)
	case CmdEncodedWrite:
		line("offset=%d len=%d, unencoded_file_len=%d, unencoded_len=%d, unencoded_offset=%d, compression=%d, encryption=%d",
			c.FileOffset, len(c.Data), c.UnencodedFileLen, c.UnencodedLen, c.UnencodedOffset, c.Compression, c.Encryption)
	case CmdFallocate:
		line("mode=%d offset=%d len=%d", int32(c.FallocateMode), c.FileOffset, c.Size)
	case CmdFileattr:
		line("fileattr=0x%d", c.Fileattr) // sic: btrfs-progs prints decimal after 0x
	case CmdEnableVerity:
		line("algorithm=%d block_size=%d salt_len=%d sig_len=%d", c.VerityAlgorithm, c.VerityBlockSize, len(c.VeritySalt), len(c.VeritySig))
	case CmdEnd:
		// btrfs receive --dump prints nothing for it.
	}
}
