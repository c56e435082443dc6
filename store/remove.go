package store

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// removeEntry removes name from dirFd whatever it is: a file, a plain
// directory tree, or a subvolume with nested subvolumes (read-only ones
// included). An absent entry is not an error.
//
// It is the store's only recursive removal, and it is safe against what a
// build step may leave: it never follows a symlink and never descends
// across a mount (openDirAt); mounts on or below the entry are detached
// (only those reached from dirFd, see detachMounts); immutable and
// append-only flags are cleared (CAP_LINUX_IMMUTABLE); read-only
// subvolumes are made writable and missing owner write and search
// permission restored where the kernel asks for them. Each of these is
// tried once, when the kernel refuses, so that the usual removal costs no
// more than its system calls. What it could not remove is in the error,
// by path relative to the root: dir is dirFd's ("result-tmp/b3").
func (s *Store) removeEntry(dirFd int, dir, name string) error {
	return s.remove(dirFd, name, path.Join(dir, name))
}

// remove is removeEntry with display naming the entry in errors.
func (s *Store) remove(dirFd int, name, display string) error {
	detached := false
	for {
		var stx unix.Statx_t
		err := unix.Statx(dirFd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_INO, &stx)
		if err == unix.ENOENT {
			return nil
		}
		if err != nil {
			return &fs.PathError{Op: "statx", Path: display, Err: err}
		}
		// A mount on the entry: stat describes the mounted root, and
		// nothing below may be touched until it is gone.
		mounted := stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
		if !mounted {
			var mountHit bool
			mountHit, err = s.removeKind(dirFd, name, display, &stx)
			if !mountHit || detached {
				return err
			}
			// EBUSY or EXDEV for this entry: a mount on or below it
			// that the kernel did not flag (Linux < 5.8) or that
			// rmdir will not drop.
		} else if detached {
			return fmt.Errorf("%s is still a mount point after detaching the mounts listed there: %w",
				display, &fs.PathError{Op: "statx", Path: display, Err: unix.EBUSY})
		}
		detached = true
		if derr := s.detachMounts(dirFd, name, display); derr != nil {
			return errors.Join(err, derr)
		}
	}
}

// removeKind removes the entry that stx describes. mountHit reports that
// the entry's own removal failed with EBUSY or EXDEV, the sign of a mount.
func (s *Store) removeKind(dirFd int, name, display string, stx *unix.Statx_t) (mountHit bool, err error) {
	switch {
	case stx.Mode&unix.S_IFMT != unix.S_IFDIR:
		return s.unlink(dirFd, name, display, 0, stx.Mode&unix.S_IFMT == unix.S_IFREG)
	case stx.Ino == ioctl.BTRFS_FIRST_FREE_OBJECTID:
		return s.deleteSubvolume(dirFd, name, display)
	}
	fd, err := openDirAt(dirFd, name)
	if err != nil {
		if errors.Is(err, unix.EACCES) && s.restoreSearch(dirFd, name, display) {
			fd, err = openDirAt(dirFd, name)
		}
		if err != nil {
			return errors.Is(err, unix.EXDEV), err
		}
	}
	names, err := readDirNames(fd)
	var errs []error
	if err != nil {
		errs = append(errs, &fs.PathError{Op: "readdir", Path: display, Err: err})
	}
	for _, n := range names {
		if err := s.remove(fd, n, display+"/"+n); err != nil {
			errs = append(errs, err)
		}
	}
	unix.Close(fd)
	if len(errs) > 0 {
		return false, errors.Join(errs...)
	}
	return s.unlink(dirFd, name, display, unix.AT_REMOVEDIR, false)
}

// unlink unlinks a file (flags 0) or removes an empty directory
// (AT_REMOVEDIR). If the kernel refuses for want of permission, it clears
// the immutable and append-only flags of the entry (regular files and
// directories only: nothing else is opened) and of dirFd, restores the
// owner's write and search permission on dirFd, and tries again.
func (s *Store) unlink(dirFd int, name, display string, flags int, regular bool) (mountHit bool, err error) {
	err = unix.Unlinkat(dirFd, name, flags)
	if err == unix.EPERM || err == unix.EACCES {
		var uerr error
		if regular || flags&unix.AT_REMOVEDIR != 0 {
			uerr = s.unprotectEntry(dirFd, name, display, flags&unix.AT_REMOVEDIR != 0)
		}
		if perr := s.unlockParent(dirFd, display); uerr == nil {
			uerr = perr
		}
		if uerr != nil {
			return false, fmt.Errorf("%w; %w", &fs.PathError{Op: "unlinkat", Path: display, Err: err}, uerr)
		}
		err = unix.Unlinkat(dirFd, name, flags)
	}
	switch err {
	case nil, unix.ENOENT:
		return false, nil
	case unix.EBUSY:
		return true, &fs.PathError{Op: "unlinkat", Path: display, Err: err}
	}
	return false, &fs.PathError{Op: "unlinkat", Path: display, Err: err}
}

// unprotectEntry clears the immutable and append-only flags of the
// regular file or directory name in dirFd.
func (s *Store) unprotectEntry(dirFd int, name, display string, dir bool) error {
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY
	if dir {
		flags = unix.O_RDONLY | unix.O_DIRECTORY
	}
	fd, err := openBeneath(dirFd, name, flags)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// Only regular files and directories are opened: a device or a FIFO
	// planted in the entry's place since its stat fails the check below
	// (and opening it had no effect: O_NONBLOCK, O_NOCTTY).
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "fstat", Path: display, Err: err}
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
		return nil
	}
	if changed, err := clearProtection(fd, display); err != nil {
		return err
	} else if changed {
		s.log.Info("cleared the immutable or append-only flag a build left", "path", display)
	}
	return nil
}

// unlockParent makes the directory open as dirFd one that entries can be
// removed from: not immutable or append-only, with the owner's write and
// search permission. display is the path of an entry in it.
func (s *Store) unlockParent(dirFd int, display string) error {
	parent := path.Dir(display)
	changed, err := clearProtection(dirFd, parent)
	if err != nil {
		return err
	}
	if changed {
		s.log.Info("cleared the immutable or append-only flag a build left", "path", parent)
	}
	if _, err := addOwnerPerms(dirFd, 0o300, parent); err != nil {
		return err
	}
	return nil
}

// restoreSearch gives the owner read and search permission on directory
// name in dirFd again (a build step may leave a directory 0000), through
// an O_PATH descriptor, so that it can be listed; it reports whether it
// changed anything.
func (s *Store) restoreSearch(dirFd int, name, display string) bool {
	fd, err := openBeneath(dirFd, name, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&0o500 == 0o500 {
		return false
	}
	// fchmod does not take an O_PATH descriptor; its /proc link does,
	// and names exactly the directory opened.
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), st.Mode&0o7777|0o700) == nil
}

// deleteSubvolume deletes a subvolume and every subvolume nested in it. A
// plain delete first: the kernel refuses with ENOTEMPTY when there are
// nested subvolumes, which are rare, and only then are they looked for.
// When the kernel refuses for want of permission, the subvolume is made
// deletable (see unlockSubvolume) and tried again.
func (s *Store) deleteSubvolume(dirFd int, name, display string) (mountHit bool, err error) {
	nestedDone, unlocked := false, false
	for {
		err := ioctl.DeleteSubvolumeAt(dirFd, name, 0)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return false, nil
		case errors.Is(err, unix.ENOTEMPTY) && !nestedDone:
			nestedDone = true
			if nerr := s.deleteNested(dirFd, name, display); nerr != nil {
				return false, nerr
			}
		case (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EROFS)) && !unlocked:
			unlocked = true
			if uerr := s.unlockSubvolume(dirFd, name, display); uerr != nil {
				return false, fmt.Errorf("%w; %w", renamePathErr(err, display), uerr)
			}
		default:
			return errors.Is(err, unix.EBUSY), renamePathErr(err, display)
		}
	}
}

// renamePathErr puts display as the path of the ioctl's *fs.PathError,
// which has only the entry's name.
func renamePathErr(err error, display string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: display, Err: pe.Err}
	}
	return err
}

// unlockSubvolume makes subvolume name in dirFd deletable where the
// kernel refuses: writable (a read-only subvolume needs CAP_SYS_ADMIN to
// be deleted), not immutable or append-only (refused even with
// CAP_SYS_ADMIN), with its owner's write and search permission on its root
// (checked without CAP_SYS_ADMIN), and the same for dirFd. Only the
// store's temporary entries are ever unlocked: results and caches are
// renamed there first.
func (s *Store) unlockSubvolume(dirFd int, name, display string) error {
	fd, err := openDirAt(dirFd, name)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var errs []error
	if err := s.makeWritable(fd, display); err != nil {
		errs = append(errs, err)
	}
	if changed, err := clearProtection(fd, display); err != nil {
		errs = append(errs, err)
	} else if changed {
		s.log.Info("cleared the immutable or append-only flag a build left", "path", display)
	}
	if _, err := addOwnerPerms(fd, 0o300, display); err != nil {
		errs = append(errs, err)
	}
	if err := s.unlockParent(dirFd, display); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// makeWritable clears the read-only flag of the subvolume open as fd, if
// set (owner or CAP_FOWNER).
func (s *Store) makeWritable(fd int, display string) error {
	flags, err := ioctl.SubvolGetflags(fd)
	if err != nil {
		return &fs.PathError{Op: "BTRFS_IOC_SUBVOL_GETFLAGS", Path: display, Err: err}
	}
	if flags&ioctl.BTRFS_SUBVOL_RDONLY == 0 {
		return nil
	}
	if err := ioctl.SubvolSetflags(fd, flags&^ioctl.BTRFS_SUBVOL_RDONLY); err != nil {
		return &fs.PathError{Op: "BTRFS_IOC_SUBVOL_SETFLAGS", Path: display, Err: err}
	}
	return nil
}

// deleteNested deletes the subvolumes nested in subvolume name of dirFd,
// deepest first, so that each is empty when it is deleted. Their paths
// come from the kernel; their parent directories are opened as openDirAt
// does, so that a symlink or mount in the way is never followed.
func (s *Store) deleteNested(dirFd int, name, display string) error {
	fd, err := openDirAt(dirFd, name)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var nested []string
	var readOnly []string // read-only ones, which may hold others
	for info, err := range ioctl.SubvolumesAt(fd, ".") {
		if err != nil {
			return renamePathErr(err, display)
		}
		nested = append(nested, info.Path)
		if info.ReadOnly {
			readOnly = append(readOnly, info.Path)
		}
	}
	// Nothing can be deleted from a read-only subvolume (EROFS): make
	// the top one and the nested read-only ones writable first. They
	// are all about to go.
	if err := s.makeWritable(fd, display); err != nil {
		return err
	}
	for _, p := range readOnly {
		if nfd, err := openDirAt(fd, p); err == nil {
			err = s.makeWritable(nfd, display+"/"+p)
			unix.Close(nfd)
			if err != nil {
				return err
			}
		}
	}
	var errs []error
	detached := false
	// Pre-order lists parents before children: delete in reverse.
	for i := len(nested) - 1; i >= 0; i-- {
		dir, base := path.Split(nested[i])
		dir = strings.TrimSuffix(dir, "/")
		sub := display + "/" + nested[i]
		pfd := fd
		if dir != "" {
			pfd, err = openDirAt(fd, dir)
			if errors.Is(err, unix.EXDEV) && !detached {
				// A mount hides the way: detach what is below the
				// subvolume, once, and look again.
				detached = true
				if derr := s.detachMounts(dirFd, name, display); derr != nil {
					return derr
				}
				pfd, err = openDirAt(fd, dir)
			}
			if err != nil {
				errs = append(errs, renamePathErr(err, display+"/"+dir))
				continue
			}
		}
		_, err := s.deleteSubvolume(pfd, base, sub)
		if pfd != fd {
			unix.Close(pfd)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
