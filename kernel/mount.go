package kernel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// IsBtrfs reports whether path is on a btrfs filesystem (statfs magic
// BTRFS_SUPER_MAGIC). Errors are *fs.PathError with Op "statfs", so a
// missing path matches fs.ErrNotExist.
//
// Privilege: search permission on the path's directories. Concurrency: safe.
func IsBtrfs(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	return uint32(st.Type) == unix.BTRFS_SUPER_MAGIC, nil // Type is int32 on 32-bit arches, uint32 on s390x
}

// Mount is one line of /proc/self/mountinfo (see proc_pid_mountinfo(5)),
// with the octal escapes (\040 for a space) decoded.
type Mount struct {
	ID, ParentID int    // mount ids, as statx(2) reports with STATX_MNT_ID
	Major, Minor uint32 // st_dev of the filesystem's root; see MountOf for btrfs
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
//
// Concurrency: safe.
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

// ParseMountInfo parses the format of /proc/<pid>/mountinfo. A line that does
// not have the fields of that format gives an error naming its line number.
//
// Concurrency: safe.
func ParseMountInfo(r io.Reader) ([]Mount, error) {
	var mounts []Mount
	sc := bufio.NewScanner(r)
	// A line holds up to three paths, each up to PATH_MAX escaped 4-fold.
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		m, err := parseMountLine(line)
		if err != nil {
			return nil, fmt.Errorf("kernel: mountinfo line %d: %w", n, err)
		}
		mounts = append(mounts, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kernel: read mountinfo: %w", err)
	}
	return mounts, nil
}

// parseMountLine parses
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// whose fields are separated by single spaces: the kernel escapes spaces
// inside fields, so splitting on one space keeps empty fields in place.
func parseMountLine(line string) (Mount, error) {
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
	m.Root = unescapeMountInfo(pre[3])
	m.MountPoint = unescapeMountInfo(pre[4])
	m.Options = splitOptions(pre[5])
	m.FSType = unescapeMountInfo(post[0])
	m.Source = unescapeMountInfo(post[1])
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
		opts[i] = unescapeMountInfo(o)
	}
	return opts
}

// unescapeMountInfo decodes the kernel's \ooo escapes (three octal digits, as
// for space, tab, newline and backslash) and leaves anything else as it is.
func unescapeMountInfo(s string) string {
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

// MountOf returns the mount of the filesystem holding path, from
// /proc/self/mountinfo. path is made absolute and its symbolic links are
// resolved first.
//
// The mount is found by the mount id that statx(2) reports for path
// (STATX_MNT_ID, Linux 5.8), which is exact for bind mounts, mounts stacked
// on the same directory and btrfs subvolumes. On older kernels it is the
// mount whose mount point is the longest prefix of the path (the last one
// mounted there if several are) and whose device is path's st_dev; btrfs is
// exempt from the device match, because it reports an anonymous device of
// each subvolume's own as st_dev (the top one's too), not the device that
// mountinfo shows.
//
// Privilege: search permission on the path's directories. Concurrency: safe.
func MountOf(path string) (Mount, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Mount{}, &fs.PathError{Op: "mountinfo", Path: path, Err: err}
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return Mount{}, err // already a *fs.PathError
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, resolved, 0, unix.STATX_MNT_ID, &stx); err != nil {
		return Mount{}, &fs.PathError{Op: "statx", Path: path, Err: err}
	}
	var mntID uint64
	if stx.Mask&unix.STATX_MNT_ID != 0 {
		mntID = stx.Mnt_id
	}
	btrfs, err := IsBtrfs(resolved)
	if err != nil {
		return Mount{}, err
	}

	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return Mount{}, err
	}
	mounts, err := ParseMountInfo(bytes.NewReader(b))
	if err != nil {
		return Mount{}, err
	}
	m, ok := findMount(mounts, resolved, stx.Dev_major, stx.Dev_minor, mntID, btrfs)
	if !ok {
		return Mount{}, &fs.PathError{Op: "mountinfo", Path: path,
			Err: fmt.Errorf("no mount in /proc/self/mountinfo holds %s (device %d:%d, mount id %d)",
				resolved, stx.Dev_major, stx.Dev_minor, mntID)}
	}
	return m, nil
}

// findMount picks the mount of the resolved absolute path from mounts: by
// mntID when it is not 0, else by longest mount-point prefix and device.
func findMount(mounts []Mount, resolved string, major, minor uint32, mntID uint64, btrfs bool) (Mount, bool) {
	if mntID != 0 {
		for _, m := range mounts {
			if uint64(m.ID) == mntID {
				return m, true
			}
		}
		// Mounted or unmounted since statx: fall back to the prefix match.
	}
	best, bestLen := -1, -1
	for i, m := range mounts {
		if !isPathPrefix(m.MountPoint, resolved) {
			continue
		}
		if !(m.Major == major && m.Minor == minor) && !(btrfs && m.FSType == "btrfs") {
			continue
		}
		// ">=": of mounts on the same point, the last one listed is on top.
		if len(m.MountPoint) >= bestLen {
			best, bestLen = i, len(m.MountPoint)
		}
	}
	if best < 0 {
		return Mount{}, false
	}
	return mounts[best], true
}

// isPathPrefix reports whether dir is path or one of its ancestors, both
// clean and absolute.
func isPathPrefix(dir, path string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir) && path[len(dir)] == '/'
}
