package store

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/btrstore/btrstore/internal/beneath"
	"github.com/btrstore/btrstore/internal/mountinfo"
	"golang.org/x/sys/unix"
)

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
		mounts, err := mountinfo.Read()
		if err != nil {
			return err
		}
		if err := s.detachOne(dir{s.rootFd, "."}, d.name, mounts); err != nil {
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
		pfd, base, err := beneath.OpenParent(s.rootFd, rel)
		if err != nil {
			return fmt.Errorf("the directory was moved to %s, which cannot be reached safely: %w", rel, err)
		}
		defer unix.Close(pfd)
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
		if err := s.removeEntry(s.rootFd, ".", aside); err != nil {
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
