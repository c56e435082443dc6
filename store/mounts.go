package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/btrstore/btrstore/kernel"
	"golang.org/x/sys/unix"
)

// maxDetach bounds the mounts detachMounts detaches for one entry.
const maxDetach = 256

// detachMounts detaches (umount2 MNT_DETACH) every mount on or below the
// entry name of dirFd, which a build step left there: shallowest first,
// which takes the mounts below it along. A mount is detached only once it
// is proven to be below dirFd: its mount point is reached from dirFd
// without following a symlink or crossing another mount, and the mount
// found there has the id that /proc/self/mountinfo lists for that path.
// Detaching needs CAP_SYS_ADMIN; without it the error says so. Each
// detached mount is logged.
func (s *Store) detachMounts(dirFd int, name, display string) error {
	dirPath, ok := fdPath(dirFd)
	if !ok {
		return fmt.Errorf("%s: cannot tell where its directory is (/proc/self/fd), so the mounts below it are not detached: %w",
			display, &fs.PathError{Op: "readlink", Path: "/proc/self/fd", Err: unix.ENOENT})
	}
	target := path.Join(dirPath, name)
	for range maxDetach {
		mounts, err := readMounts()
		if err != nil {
			return err
		}
		var top *kernel.Mount
		for i := range mounts {
			m := &mounts[i]
			if m.MountPoint != target && !strings.HasPrefix(m.MountPoint, target+"/") {
				continue
			}
			if top == nil || strings.Count(m.MountPoint, "/") < strings.Count(top.MountPoint, "/") {
				top = m
			}
		}
		if top == nil {
			return nil
		}
		rel := name + strings.TrimPrefix(top.MountPoint, target)
		if err := s.detachOne(dirFd, rel, display+strings.TrimPrefix(top.MountPoint, target), mounts); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: more than %d mounts below it", display, maxDetach)
}

// detachOne detaches the mount on top at rel below dirFd, after checking
// that mountinfo lists it there.
func (s *Store) detachOne(dirFd int, rel, display string, mounts []kernel.Mount) error {
	dir, base := path.Split(rel)
	pfd := dirFd
	if dir = strings.TrimSuffix(dir, "/"); dir != "" {
		var err error
		if pfd, err = openDirAt(dirFd, dir); err != nil {
			return fmt.Errorf("mount at %s not detached: %w", display, err)
		}
		defer unix.Close(pfd)
	}
	// The last component is crossed into the mount (no RESOLVE_NO_XDEV),
	// but still never through a symlink.
	fd, err := openMountRoot(pfd, base)
	if err != nil {
		return fmt.Errorf("mount at %s not detached: %w", display, &fs.PathError{Op: "open", Path: display, Err: err})
	}
	defer unix.Close(fd)
	id, err := mountID(fd)
	if err != nil {
		return fmt.Errorf("mount at %s not detached: %w", display, &fs.PathError{Op: "mount id", Path: display, Err: err})
	}
	var m *kernel.Mount
	for i := range mounts {
		if uint64(mounts[i].ID) == id {
			m = &mounts[i]
		}
	}
	if m == nil || m.MountPoint != path.Join(mustFdPath(pfd), base) {
		return fmt.Errorf("mount at %s not detached: the mount found there (id %d) is not the one /proc/self/mountinfo lists: %w",
			display, id, &fs.PathError{Op: "umount2", Path: display, Err: unix.ESTALE})
	}
	// umount2 takes a path: the descriptor's /proc link names exactly the
	// mount opened and checked.
	if err := unix.Unmount("/proc/self/fd/"+strconv.Itoa(fd), unix.MNT_DETACH); err != nil {
		err = &fs.PathError{Op: "umount2", Path: display, Err: err}
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("a %s mount (from %s) is left at %s, and detaching it needs CAP_SYS_ADMIN: %w", m.FSType, m.Source, display, err)
		}
		return fmt.Errorf("a %s mount (from %s) is left at %s: %w", m.FSType, m.Source, display, err)
	}
	s.log.Info("detached a mount a build left below the store", "path", display, "fsType", m.FSType, "source", m.Source, "mountID", m.ID)
	return nil
}

// openMountRoot opens name in dirFd with O_PATH, crossing a mount on it
// but not following a symlink.
func openMountRoot(dirFd int, name string) (int, error) {
	if !openat2Missing.Load() {
		how := unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
		for {
			fd, err := unix.Openat2(dirFd, name, &how)
			if err == unix.EINTR || err == unix.EAGAIN {
				continue
			}
			if err != unix.ENOSYS {
				return fd, err
			}
			openat2Missing.Store(true)
			break
		}
	}
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return -1, unix.EXDEV
	}
	return openat(dirFd, name, unix.O_PATH)
}

// mustFdPath is fdPath, or "" when the path is unknown (which then
// matches no mount point).
func mustFdPath(fd int) string {
	p, _ := fdPath(fd)
	return p
}

// readMounts parses /proc/self/mountinfo.
func readMounts() ([]kernel.Mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return kernel.ParseMountInfo(bytes.NewReader(b))
}

// fileID identifies a directory as the kernel resolves it: device,
// inode and mount (0 where statx has no mount id, Linux < 5.8). Two
// paths with the same fileID lead to the same directory through the same
// mount: one that a mount or symlink hides or replaces has another.
type fileID struct{ dev, ino, mnt uint64 }

const fileIDMask = unix.STATX_INO | unix.STATX_MNT_ID

func statxID(stx *unix.Statx_t) fileID {
	id := fileID{dev: uint64(stx.Dev_major)<<32 | uint64(stx.Dev_minor), ino: stx.Ino}
	if stx.Mask&unix.STATX_MNT_ID != 0 {
		id.mnt = stx.Mnt_id
	}
	return id
}

// fdID returns the fileID of the file open as fd.
func fdID(fd int) (fileID, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, fileIDMask, &stx); err != nil {
		return fileID{}, err
	}
	return statxID(&stx), nil
}

// leadsTo reports whether the absolute path p, its last component not
// followed, is want: one statx, which is what keeps handing out paths
// cheap.
func leadsTo(p string, want fileID) bool {
	var stx unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, fileIDMask, &stx) != nil {
		return false
	}
	got := statxID(&stx)
	if want.mnt == 0 || got.mnt == 0 {
		got.mnt, want.mnt = 0, 0
	}
	return got == want
}

// storeDir is one of the store's directories below the root, open as fd.
type storeDir struct {
	name string
	fd   *int
	id   fileID // what Open opened
}

// storeDirs returns the store's directories whose paths it hands out or
// builds on.
func (s *Store) storeDirs() []*storeDir {
	return []*storeDir{&s.dirResult, &s.dirResultTmp, &s.dirCache, &s.dirCacheTmp}
}

// checkDir returns nil if root/<name> leads to the store's directory d,
// as Open opened it: the paths the store hands out below it (Result,
// LogFile, CacheLease.Path, a build's directory) then lead where the
// store works, by descriptor. If a build step has planted a mount on it,
// the mount is detached (CAP_SYS_ADMIN); if it moved the directory
// elsewhere below the root and put something else (a symlink...) in its
// place, that is removed and the directory moved back. Each repair is
// logged. What cannot be repaired gives an error matching
// ErrWorkReplaced; Close and Open then repair what they can.
func (s *Store) checkDir(d *storeDir) error {
	p := s.root + "/" + d.name
	if leadsTo(p, d.id) {
		return nil
	}
	s.repairMu.Lock()
	defer s.repairMu.Unlock()
	if leadsTo(p, d.id) {
		return nil // repaired meanwhile
	}
	err := s.repairDir(d)
	if err == nil && !leadsTo(p, d.id) {
		err = errors.New("it still does not after the repair")
	}
	if err != nil {
		err = fmt.Errorf("%w: %s no longer leads to the store's directory %s (a build step replaced it, or mounted something on it): %w",
			ErrWorkReplaced, p, d.name, err)
		s.log.Error(err, "cannot repair the store's directory; Close and Open again", "dir", d.name)
		return err
	}
	s.log.Info("repaired the store's directory, which a build step had replaced or mounted over", "dir", d.name)
	return nil
}

// repairDir is checkDir's repair.
func (s *Store) repairDir(d *storeDir) error {
	// Mounts exactly on the directory's name, topmost first (mounts
	// below it may be a running build's own, and stay).
	for range maxDetach {
		var stx unix.Statx_t
		if err := unix.Statx(s.rootFd, d.name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &stx); err != nil ||
			stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
			break
		}
		mounts, err := readMounts()
		if err != nil {
			return err
		}
		if err := s.detachOne(s.rootFd, d.name, d.name, mounts); err != nil {
			return err
		}
	}
	if leadsTo(s.root+"/"+d.name, d.id) {
		return nil
	}
	// Moved away, something else in its place?
	var st unix.Stat_t
	if err := unix.Fstat(*d.fd, &st); err != nil || st.Nlink == 0 {
		return fmt.Errorf("the directory was deleted")
	}
	p, ok := fdPath(*d.fd)
	rel, below := strings.CutPrefix(p, s.realRoot+"/")
	if !ok || s.realRoot == "" || !below {
		return fmt.Errorf("the directory was moved to %s, out of the root", p)
	}
	if rel != d.name {
		dir, base := path.Split(rel)
		pfd := s.rootFd
		if dir = strings.TrimSuffix(dir, "/"); dir != "" {
			var err error
			if pfd, err = openDirAt(s.rootFd, dir); err != nil {
				return fmt.Errorf("the directory was moved to %s, which cannot be reached safely: %w", rel, err)
			}
			defer unix.Close(pfd)
		}
		// What is in its place goes: renamed aside first, so that the
		// directory is back at once.
		aside := d.name + ".replaced-" + s.tmpName("")
		if err := moveNoReplace(s.rootFd, d.name, s.rootFd, aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := moveNoReplace(pfd, base, s.rootFd, d.name); err != nil {
			return fmt.Errorf("moving it back from %s: %w", rel, err)
		}
		s.log.Info("moved the store's directory back, which a build step had moved away", "dir", d.name, "from", rel)
		if err := s.removeEntry(s.rootFd, "", aside); err != nil {
			s.log.Error(err, "removing what a build step put in place of the store's directory failed", "entry", aside)
		}
	}
	return nil
}

// checkDirs checks (and repairs) every store directory, for after a build
// step or a lease: a failure is logged.
func (s *Store) checkDirs() {
	for _, d := range s.storeDirs() {
		s.checkDir(d)
	}
}
