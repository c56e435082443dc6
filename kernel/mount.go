package kernel

import (
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/btrstore/btrstore/internal/mountinfo"
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
// with the octal escapes (\040 for a space) decoded. Its fields:
//
//   - ID, ParentID int: mount ids, as statx(2) reports with STATX_MNT_ID;
//   - Major, Minor uint32: st_dev of the filesystem's root (see MountOf for
//     btrfs);
//   - Root string: the directory of the filesystem mounted here, e.g. "/a"
//     for a bind mount of /a or btrfs subvol=/a;
//   - MountPoint string: where it is mounted, relative to the process's root;
//   - FSType string: "btrfs", "ext4", ...;
//   - Source string: "/dev/loop3", "tmpfs", "none";
//   - Options, SuperOptions []string: the per-mount and the filesystem's
//     options.
//
// The parser is btrstore's internal/mountinfo, which the test fixture shares.
type Mount mountinfo.Mount

// HasOption reports whether opt is among m's per-mount options or its
// filesystem's super options. An opt without "=" also matches "opt=value":
// HasOption("subvol") is true for "subvol=/a", HasOption("subvol=/a") only
// for that value. "ro" and "rw" are in both lists; either "ro" makes the
// mount read-only.
//
// Concurrency: safe.
func (m Mount) HasOption(opt string) bool { return mountinfo.Mount(m).HasOption(opt) }

// ParseMountInfo parses the format of /proc/<pid>/mountinfo. A line that does
// not have the fields of that format gives an error naming its line number.
//
// Concurrency: safe.
func ParseMountInfo(r io.Reader) ([]Mount, error) {
	parsed, err := mountinfo.Parse(r)
	if err != nil {
		return nil, err
	}
	mounts := make([]Mount, len(parsed))
	for i, m := range parsed {
		mounts[i] = Mount(m)
	}
	return mounts, nil
}

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

	mounts, err := mountinfo.Read()
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
func findMount(mounts []mountinfo.Mount, resolved string, major, minor uint32, mntID uint64, btrfs bool) (Mount, bool) {
	if mntID != 0 {
		for _, m := range mounts {
			if uint64(m.ID) == mntID {
				return Mount(m), true
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
	return Mount(mounts[best]), true
}

// isPathPrefix reports whether dir is path or one of its ancestors, both
// clean and absolute.
func isPathPrefix(dir, path string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir) && path[len(dir)] == '/'
}
