package store

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/btrstore/btrstore/internal/beneath"
	"github.com/btrstore/btrstore/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// maxDetach bounds the mounts detachMounts detaches for one entry.
const maxDetach = 256

// detachMounts detaches (umount2 MNT_DETACH) every mount on or below the
// entry name of d, which a build step left there: shallowest first,
// which takes the mounts below it along. A mount is detached only once it
// is proven to be below d: its mount point is reached from d without following a symlink or crossing another mount, and the mount
// found there has the id that /proc/self/mountinfo lists for that path.
// Detaching needs CAP_SYS_ADMIN; without it the error says so. Each
// detached mount is logged.
func (s *Store) detachMounts(d dir, name string) error {
	dirPath, ok := fdPath(d.fd)
	if !ok {
		return fmt.Errorf("%s: cannot tell where its directory is (/proc/self/fd), so the mounts below it are not detached: %w",
			d.join(name), &fs.PathError{Op: "readlink", Path: "/proc/self/fd", Err: unix.ENOENT})
	}
	target := path.Join(dirPath, name)
	for range maxDetach {
		mounts, err := mountinfo.Read()
		if err != nil {
			return err
		}
		var top *mountinfo.Mount
		for i := range mounts {
			m := &mounts[i]
			if !m.OnOrBelow(target) {
				continue
			}
			if top == nil || strings.Count(m.MountPoint, "/") < strings.Count(top.MountPoint, "/") {
				top = m
			}
		}
		if top == nil {
			return nil
		}
		if err := s.detachOne(d, name+strings.TrimPrefix(top.MountPoint, target), mounts); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: more than %d mounts below it", d.join(name), maxDetach)
}

// detachOne detaches the mount on top at rel below d, after checking
// that mountinfo lists it there.
func (s *Store) detachOne(d dir, rel string, mounts []mountinfo.Mount) error {
	point := d.join(rel)
	pfd, base, err := beneath.OpenParent(d.fd, rel)
	if err != nil {
		return fmt.Errorf("mount at %s not detached: %w", point, &fs.PathError{Op: "open parent", Path: point, Err: err})
	}
	defer unix.Close(pfd)
	// The last component is crossed into the mount (no RESOLVE_NO_XDEV),
	// but still never through a symlink.
	fd, err := openMountRoot(pfd, base)
	if err != nil {
		return fmt.Errorf("mount at %s not detached: %w", point, &fs.PathError{Op: "open", Path: point, Err: err})
	}
	defer unix.Close(fd)
	id, err := beneath.MountID(fd)
	if err != nil {
		return fmt.Errorf("mount at %s not detached: %w", point, &fs.PathError{Op: "mount id", Path: point, Err: err})
	}
	var m *mountinfo.Mount
	for i := range mounts {
		if uint64(mounts[i].ID) == id {
			m = &mounts[i]
		}
	}
	if m == nil || m.MountPoint != path.Join(mustFdPath(pfd), base) {
		return fmt.Errorf("mount at %s not detached: the mount found there (id %d) is not the one /proc/self/mountinfo lists: %w",
			point, id, &fs.PathError{Op: "umount2", Path: point, Err: unix.ESTALE})
	}
	// umount2 takes a path: the descriptor's /proc link names exactly the
	// mount opened and checked.
	if err := unix.Unmount("/proc/self/fd/"+strconv.Itoa(fd), unix.MNT_DETACH); err != nil {
		err = &fs.PathError{Op: "umount2", Path: point, Err: err}
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("a %s mount (from %s) is left at %s, and detaching it needs CAP_SYS_ADMIN: %w", m.FSType, m.Source, point, err)
		}
		return fmt.Errorf("a %s mount (from %s) is left at %s: %w", m.FSType, m.Source, point, err)
	}
	s.log.Info("detached a mount a build left below the store", "path", point, "fsType", m.FSType, "source", m.Source, "mountID", m.ID)
	return nil
}

// openMountRoot opens the entry name of dirFd with O_PATH, crossing a
// mount on it but not following a symlink (a symlink is opened itself,
// and its mount id then matches no mount listed at name).
func openMountRoot(dirFd int, name string) (int, error) {
	if err := beneath.CheckName(name); err != nil {
		return -1, err
	}
	return beneath.Openat(dirFd, name, unix.O_PATH|unix.O_NOFOLLOW)
}

// mustFdPath is fdPath, or "" when the path is unknown (which then
// matches no mount point).
func mustFdPath(fd int) string {
	p, _ := fdPath(fd)
	return p
}
