// Package mountinfo parses /proc/<pid>/mountinfo (proc_pid_mountinfo(5)),
// decoding the kernel's octal escapes. It is a leaf package (standard
// library only), so that the library (kernel.MountOf, the store) and the
// test fixture (btrfstest, which kernel's tests import) share one
// parser. kernel.Mount is this package's Mount.
//
// Everything here is safe for concurrent use; [Read] needs no privilege.
package mountinfo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of /proc/self/mountinfo, with the octal escapes (\040
// for a space) decoded.
type Mount struct {
	ID, ParentID int    // mount ids, as statx(2) reports with STATX_MNT_ID
	Major, Minor uint32 // st_dev of the filesystem's root; see kernel.MountOf for btrfs
	Root         string // the directory of the filesystem mounted here, e.g. "/a" for a bind mount of /a or btrfs subvol=/a
	MountPoint   string // where it is mounted, relative to the process's root
	FSType       string // "btrfs", "ext4", ...
	Source       string // "/dev/loop3", "tmpfs", "none"
	Options      []string
	SuperOptions []string
}

// HasOption reports whether opt is among m's per-mount options or its
// filesystem's super options. An opt without "=" also matches "opt=value":
// HasOption("subvol") is true for "subvol=/a", HasOption("subvol=/a") only
// for that value. "ro" and "rw" are in both lists; either "ro" makes the
// mount read-only.
func (m Mount) HasOption(opt string) bool {
	for _, list := range [][]string{m.Options, m.SuperOptions} {
		for _, o := range list {
			if o == opt {
				return true
			}
			if name, _, ok := strings.Cut(o, "="); ok && name == opt {
				return true
			}
		}
	}
	return false
}

// OnOrBelow reports whether m is mounted on the absolute path dir or below
// it (dir without a trailing slash).
func (m Mount) OnOrBelow(dir string) bool {
	return m.MountPoint == dir || strings.HasPrefix(m.MountPoint, dir+"/")
}

// Read parses /proc/self/mountinfo, read in one go (the kernel makes a
// consistent snapshot of a read that fits its buffer).
func Read() ([]Mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return Parse(bytes.NewReader(b))
}

// Parse parses the format of /proc/<pid>/mountinfo. A line that does not
// have the fields of that format gives an error naming its line number;
// empty lines are skipped.
func Parse(r io.Reader) ([]Mount, error) {
	var mounts []Mount
	sc := bufio.NewScanner(r)
	// A line holds up to three paths, each up to PATH_MAX escaped 4-fold.
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		m, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", n, err)
		}
		mounts = append(mounts, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return mounts, nil
}

// parseLine parses
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// whose fields are separated by single spaces: the kernel escapes spaces
// inside fields, so splitting on one space keeps empty fields in place.
func parseLine(line string) (Mount, error) {
	var m Mount
	before, after, ok := strings.Cut(line, " - ")
	if !ok {
		return m, errors.New(`no " - " separator`)
	}
	pre := strings.Split(before, " ")
	post := strings.Split(after, " ")
	if len(pre) < 6 {
		return m, fmt.Errorf("%d fields before the separator, want at least 6", len(pre))
	}
	if len(post) < 3 {
		return m, fmt.Errorf("%d fields after the separator, want 3", len(post))
	}
	var err error
	if m.ID, err = strconv.Atoi(pre[0]); err != nil {
		return m, fmt.Errorf("mount id: %w", err)
	}
	if m.ParentID, err = strconv.Atoi(pre[1]); err != nil {
		return m, fmt.Errorf("parent id: %w", err)
	}
	major, minor, ok := strings.Cut(pre[2], ":")
	if !ok {
		return m, fmt.Errorf("device %q is not major:minor", pre[2])
	}
	maj, err := strconv.ParseUint(major, 10, 32)
	if err != nil {
		return m, fmt.Errorf("device major: %w", err)
	}
	mnr, err := strconv.ParseUint(minor, 10, 32)
	if err != nil {
		return m, fmt.Errorf("device minor: %w", err)
	}
	m.Major, m.Minor = uint32(maj), uint32(mnr)
	m.Root = Unescape(pre[3])
	m.MountPoint = Unescape(pre[4])
	m.Options = splitOptions(pre[5])
	m.FSType = Unescape(post[0])
	m.Source = Unescape(post[1])
	// Super options are the last field; anything between is from a newer
	// kernel and ignored.
	m.SuperOptions = splitOptions(post[len(post)-1])
	return m, nil
}

func splitOptions(s string) []string {
	if s == "" {
		return nil
	}
	opts := strings.Split(s, ",")
	for i, o := range opts {
		opts[i] = Unescape(o)
	}
	return opts
}

// Unescape decodes the kernel's \ooo escapes in a mountinfo field (three
// octal digits, as for space, tab, newline and backslash) and leaves
// anything else as it is.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			if s[i+1] <= '3' { // fits in a byte
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }
