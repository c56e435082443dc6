package receive

import (
	"bytes"
	"context"
	"errors"
	"github.com/btrstore/btrstore/internal/treecmp"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/sendstream"
	"golang.org/x/sys/unix"
)

// stream encodes a version-2 stream: SUBVOL "x" (unless the first command
// is a subvol or snapshot), the commands, END.
func stream(t testing.TB, cmds ...*sendstream.Command) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := sendstream.NewWriter(&b, 2)
	must(t, err)
	if len(cmds) == 0 || (cmds[0].Type != sendstream.CmdSubvol && cmds[0].Type != sendstream.CmdSnapshot) {
		must(t, w.WriteCommand(&sendstream.Command{Type: sendstream.CmdSubvol, Path: "x", UUID: sendstream.UUID{1}, Ctransid: 7}))
	}
	for _, c := range cmds {
		must(t, w.WriteCommand(c))
	}
	must(t, w.WriteCommand(&sendstream.Command{Type: sendstream.CmdEnd}))
	return b.Bytes()
}

func cmd(typ sendstream.Cmd, path string, f ...func(*sendstream.Command)) *sendstream.Command {
	c := &sendstream.Command{Type: typ, Path: path}
	for _, fn := range f {
		fn(c)
	}
	return c
}

// boxState describes everything beside and outside the receive directory.
func boxState(t testing.TB, box string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(box, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(box, p)
		if rel == "recv" {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		line := rel + " " + strings.TrimSpace(string(rune('0'+st.Mode>>12))) + " " + fs.FileMode(st.Mode&0o7777).String()
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			b, _ := os.ReadFile(p)
			line += " " + string(b)
		}
		if x := treecmp.Xattrs(t, p); x != "" && st.Mode&unix.S_IFMT != unix.S_IFLNK {
			line += " " + x
		}
		lines = append(lines, line)
		return nil
	})
	must(t, err)
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestHostileStreams: streams that try to reach outside the receive
// directory, or are malformed, are refused; nothing outside dir changes
// (a canary beside it, a subvolume elsewhere) and dir is left empty.
func TestHostileStreams(t *testing.T) {
	fsys := btrfstest.New(t)
	box := filepath.Join(fsys.Path, "box")
	recv := filepath.Join(box, "recv")
	must(t, os.MkdirAll(recv, 0o755))
	canary := filepath.Join(box, "canary")
	write(t, canary, []byte("canary"))
	// A read-only subvolume outside the allowed sources, with a secret.
	other := filepath.Join(fsys.Path, "other")
	must(t, ioctl.CreateSubvolume(other))
	write(t, filepath.Join(other, "secret"), bytes.Repeat([]byte("secret"), 1000))
	otherRO := filepath.Join(fsys.Path, "other-ro")
	must(t, ioctl.Snapshot(other, otherRO, ioctl.SnapshotReadOnly))
	oi, err := ioctl.SubvolumeInfo(otherRO)
	must(t, err)
	otherUUID := sendstream.UUID(oi.UUID)

	good := stream(t, cmd(sendstream.CmdMkfile, "f"),
		cmd(sendstream.CmdWrite, "f", func(c *sendstream.Command) { c.Data = []byte("data") }))
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-12] ^= 0x40 // inside the write command
	absurd := append([]byte("btrfs-stream\x00\x02\x00\x00\x00"), 0xff, 0xff, 0xff, 0xff, byte(sendstream.CmdWrite), 0, 0, 0, 0, 0)
	data := func(s string) func(*sendstream.Command) {
		return func(c *sendstream.Command) { c.Data = []byte(s) }
	}
	link := func(s string) func(*sendstream.Command) {
		return func(c *sendstream.Command) { c.PathLink = s }
	}
	abs := canary

	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"dotdot mkfile", stream(t, cmd(sendstream.CmdMkfile, "../canary2")), ErrUnsafePath},
		{"dotdot deep", stream(t, cmd(sendstream.CmdMkdir, "d"), cmd(sendstream.CmdMkfile, "d/../../../x")), ErrUnsafePath},
		{"absolute path", stream(t, cmd(sendstream.CmdMkfile, "/tmp/evil")), ErrUnsafePath},
		{"dot component", stream(t, cmd(sendstream.CmdMkfile, "./f")), ErrUnsafePath},
		{"subvol name dotdot", stream(t, &sendstream.Command{Type: sendstream.CmdSubvol, Path: "../evil"}), ErrUnsafePath},
		{"subvol name with slash", stream(t, &sendstream.Command{Type: sendstream.CmdSubvol, Path: "a/b"}), ErrUnsafePath},
		{"write through symlink", stream(t, cmd(sendstream.CmdSymlink, "l", link(abs)),
			cmd(sendstream.CmdWrite, "l", data("pwned"))), ErrUnsafePath},
		{"truncate through symlink", stream(t, cmd(sendstream.CmdSymlink, "l", link("../../canary")),
			cmd(sendstream.CmdTruncate, "l")), ErrUnsafePath},
		{"mkfile through symlinked dir", stream(t, cmd(sendstream.CmdSymlink, "d", link(box)),
			cmd(sendstream.CmdMkfile, "d/evil")), unix.ENOTDIR}, // a symlink is not opened as a directory
		{"rename through symlinked dir", stream(t, cmd(sendstream.CmdMkfile, "f"), cmd(sendstream.CmdSymlink, "d", link(box)),
			cmd(sendstream.CmdRename, "f", func(c *sendstream.Command) { c.PathTo = "d/f" })), unix.ENOTDIR},
		{"rename to dotdot", stream(t, cmd(sendstream.CmdMkfile, "f"),
			cmd(sendstream.CmdRename, "f", func(c *sendstream.Command) { c.PathTo = "../f" })), ErrUnsafePath},
		{"link to outside", stream(t, cmd(sendstream.CmdLink, "h", link("../../canary"))), ErrUnsafePath},
		{"link through symlink", stream(t, cmd(sendstream.CmdSymlink, "d", link(box)),
			cmd(sendstream.CmdLink, "h", link("d/canary"))), unix.ENOTDIR},
		{"clone from unknown UUID", stream(t, cmd(sendstream.CmdMkfile, "f"),
			cmd(sendstream.CmdClone, "f", func(c *sendstream.Command) {
				c.CloneUUID, c.ClonePath, c.CloneLen = sendstream.UUID{9, 9}, "secret", 4096
			})), ErrUnknownSource},
		{"clone from a subvolume outside the sources", stream(t, cmd(sendstream.CmdMkfile, "f"),
			cmd(sendstream.CmdClone, "f", func(c *sendstream.Command) {
				c.CloneUUID, c.ClonePath, c.CloneLen = otherUUID, "secret", 4096
			})), ErrUnknownSource},
		{"clone source path through dotdot", stream(t, cmd(sendstream.CmdMkfile, "f"),
			cmd(sendstream.CmdClone, "f", func(c *sendstream.Command) {
				c.CloneUUID, c.ClonePath, c.CloneLen = sendstream.UUID{1}, "../../canary", 4096
			})), ErrUnsafePath},
		{"snapshot of unknown parent", stream(t, &sendstream.Command{Type: sendstream.CmdSnapshot, Path: "x",
			UUID: sendstream.UUID{2}, CloneUUID: otherUUID}), ErrUnknownSource},
		{"bad crc", badCRC, sendstream.ErrChecksum},
		{"truncated", good[:len(good)-20], io.ErrUnexpectedEOF},
		{"no end", good[:len(good)-10], io.ErrUnexpectedEOF},
		{"absurd length", absurd, sendstream.ErrCorrupt},
		{"absurd truncate", stream(t, cmd(sendstream.CmdMkfile, "f"),
			cmd(sendstream.CmdTruncate, "f", func(c *sendstream.Command) { c.Size = 1 << 63 })), fs.ErrInvalid},
		{"absurd write offset", stream(t, cmd(sendstream.CmdMkfile, "f"),
			cmd(sendstream.CmdWrite, "f", func(c *sendstream.Command) { c.FileOffset, c.Data = 1<<63, []byte("x") })), fs.ErrInvalid},
		{"absurd encoded lengths", stream(t, cmd(sendstream.CmdMkfile, "f"),
			cmd(sendstream.CmdEncodedWrite, "f", func(c *sendstream.Command) {
				c.UnencodedLen, c.UnencodedFileLen, c.Compression, c.Data = 1<<40, 1<<40, sendstream.CompressionZstd, []byte("x")
			})), nil},
		{"command before subvol", func() []byte {
			var b bytes.Buffer
			w, _ := sendstream.NewWriter(&b, 1)
			w.WriteCommand(cmd(sendstream.CmdMkfile, "f"))
			w.WriteCommand(&sendstream.Command{Type: sendstream.CmdEnd})
			return b.Bytes()
		}(), sendstream.ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := boxState(t, box)
			got, err := Apply(context.Background(), bytes.NewReader(c.data), recv, Options{})
			if err == nil {
				t.Fatalf("accepted, received %v", got)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("error %v, want %v", err, c.want)
			}
			if after := boxState(t, box); after != before {
				t.Errorf("outside the receive dir:\nbefore\n%s\nafter\n%s", before, after)
			}
			assertEmpty(t, recv)
		})
	}
	b, err := os.ReadFile(filepath.Join(otherRO, "secret"))
	if err != nil || !bytes.HasPrefix(b, []byte("secret")) {
		t.Errorf("other subvolume: %v", err)
	}
	// The same well-formed stream is accepted.
	if got, err := Apply(context.Background(), bytes.NewReader(good), recv, Options{}); err != nil || len(got) != 1 {
		t.Errorf("good stream: %v, %v", got, err)
	}
	// A symlink's mode is never changed through it.
	chmodLink := stream(t, &sendstream.Command{Type: sendstream.CmdSubvol, Path: "y", UUID: sendstream.UUID{3}},
		cmd(sendstream.CmdSymlink, "l", link(abs)), cmd(sendstream.CmdChmod, "l", func(c *sendstream.Command) { c.Mode = 0o777 }))
	before := boxState(t, box)
	if _, err := Apply(context.Background(), bytes.NewReader(chmodLink), recv, Options{}); err != nil {
		t.Errorf("chmod of a symlink: %v", err)
	}
	if after := boxState(t, box); after != before {
		t.Errorf("chmod through a symlink changed %s", after)
	}
	// A subvolume outside dir may be cloned from when Options.Sources
	// allows it.
	cloneOther := stream(t, &sendstream.Command{Type: sendstream.CmdSubvol, Path: "z", UUID: sendstream.UUID{4}},
		cmd(sendstream.CmdMkfile, "f"),
		cmd(sendstream.CmdClone, "f", func(c *sendstream.Command) {
			c.CloneUUID, c.ClonePath, c.CloneLen = otherUUID, "secret", 4096
		}))
	if _, err := Apply(context.Background(), bytes.NewReader(cloneOther), recv, Options{Sources: []string{fsys.Path}}); err != nil {
		t.Errorf("clone from an allowed source: %v", err)
	} else if b, _ := os.ReadFile(filepath.Join(recv, "z", "f")); !bytes.HasPrefix(b, []byte("secretsecret")) || len(b) != 4096 {
		t.Errorf("cloned content %q...", b[:min(len(b), 12)])
	}
	// And a second receive of it finds the name taken.
	if _, err := Apply(context.Background(), bytes.NewReader(good), recv, Options{}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second receive: %v", err)
	}
}

// TestApplySyntheticV2: the commands kernels rarely send — fallocate
// (allocate, keep size, punch hole), fileattr and update_extent (ignored,
// as btrfs receive does), attributes of the subvolume's root ("") — are
// applied.
func TestApplySyntheticV2(t *testing.T) {
	fsys := btrfstest.New(t)
	recv := filepath.Join(fsys.Path, "recv")
	must(t, os.Mkdir(recv, 0o755))
	ts := sendstream.Timespec{Sec: 1600000000, Nsec: 7}
	data := random(16384, 9)
	s := stream(t,
		cmd(sendstream.CmdMkfile, "f"),
		cmd(sendstream.CmdWrite, "f", func(c *sendstream.Command) { c.Data = data }),
		cmd(sendstream.CmdFallocate, "f", func(c *sendstream.Command) {
			c.FallocateMode, c.FileOffset, c.Size = unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 8192
		}),
		cmd(sendstream.CmdFallocate, "f", func(c *sendstream.Command) { c.FallocateMode, c.FileOffset, c.Size = 0, 16384, 4096 }),
		cmd(sendstream.CmdFileattr, "f", func(c *sendstream.Command) { c.Fileattr = 0x10 }),
		cmd(sendstream.CmdUpdateExtent, "f", func(c *sendstream.Command) { c.Size = 4096 }),
		cmd(sendstream.CmdMksock, "sock"),
		cmd(sendstream.CmdSetXattr, "", func(c *sendstream.Command) { c.XattrName, c.XattrData = "user.root", []byte("r") }),
		cmd(sendstream.CmdChmod, "", func(c *sendstream.Command) { c.Mode = 0o711 }),
		cmd(sendstream.CmdChown, "", func(c *sendstream.Command) { c.UID, c.GID = 12, 34 }),
		cmd(sendstream.CmdUtimes, "", func(c *sendstream.Command) { c.Atime, c.Mtime, c.Ctime = ts, ts, ts }),
	)
	got, err := Apply(context.Background(), bytes.NewReader(s), recv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(got[0], "f"))
	must(t, err)
	want := bytes.Clone(data)
	clear(want[4096:12288])
	want = append(want, make([]byte, 4096)...)
	if !bytes.Equal(b, want) {
		t.Errorf("f: %d bytes, differs from the expected %d", len(b), len(want))
	}
	var st unix.Stat_t
	must(t, unix.Stat(got[0], &st))
	if st.Mode&0o7777 != 0o711 || st.Uid != 12 || st.Gid != 34 || int64(st.Mtim.Sec) != ts.Sec || int64(st.Mtim.Nsec) != int64(ts.Nsec) {
		t.Errorf("root: mode %o owner %d:%d mtime %v", st.Mode&0o7777, st.Uid, st.Gid, st.Mtim)
	}
	if x := treecmp.Xattrs(t, got[0]); x != "user.root=r" {
		t.Errorf("root xattrs %q", x)
	}
	must(t, unix.Lstat(filepath.Join(got[0], "sock"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		t.Errorf("sock: mode %o", st.Mode)
	}
	_, holes := treecmp.FileHash(t, filepath.Join(got[0], "f"), 20480)
	if holes != "0-1,3-4" { // the preallocated tail reads as a hole too
		t.Errorf("f data map %q, want a hole at blocks 1-2", holes)
	}
}
