package store

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/btrstore/btrstore/internal/beneath"
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
// by path relative to the root: dirPath is dirFd's ("result-tmp/b3", "."
// for the root).
func (s *Store) removeEntry(dirFd int, dirPath, name string) error {
	return s.remove(dir{dirFd, dirPath}, name)
}

// remove is removeEntry on d.
func (s *Store) remove(d dir, name string) error {
	detached := false
	for {
		var stx unix.Statx_t
		err := unix.Statx(d.fd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_INO, &stx)
		if err == unix.ENOENT {
			return nil
		}
		if err != nil {
			return &fs.PathError{Op: "statx", Path: d.join(name), Err: err}
		}
		// A mount on the entry: stat describes the mounted root, and
		// nothing below may be touched until it is gone.
		mounted := stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
		if !mounted {
			var mountHit bool
			mountHit, err = s.removeKind(d, name, &stx)
			if !mountHit || detached {
				return err
			}
			// EBUSY or EXDEV for this entry: a mount on or below it
			// that the kernel did not flag (Linux < 5.8) or that
			// rmdir will not drop.
		} else if detached {
			p := d.join(name)
			return fmt.Errorf("%s is still a mount point after detaching the mounts listed there: %w",
				p, &fs.PathError{Op: "statx", Path: p, Err: unix.EBUSY})
		}
		detached = true
		if derr := s.detachMounts(d, name); derr != nil {
			return errors.Join(err, derr)
		}
	}
}

// removeKind removes the entry that stx describes. mountHit reports that
// the entry's own removal failed with EBUSY or EXDEV, the sign of a mount.
func (s *Store) removeKind(d dir, name string, stx *unix.Statx_t) (mountHit bool, err error) {
	switch {
	case stx.Mode&unix.S_IFMT != unix.S_IFDIR:
		return s.unlink(d, name, 0, stx.Mode&unix.S_IFMT == unix.S_IFREG)
	case stx.Ino == ioctl.BTRFS_FIRST_FREE_OBJECTID:
		return s.deleteSubvolume(d, name)
	}
	return s.removeDir(d, name)
}

// maxRemoveFds bounds the directory descriptors that removeDir holds at
// once, however deep the tree: a build step can leave a chain of
// directories tens of thousands deep, and one descriptor a level would
// exhaust the process's (EMFILE, here and in every other goroutine).
const maxRemoveFds = 32

// rmFrame is a directory removeDir is in: one per level of the walk.
type rmFrame struct {
	dir             // fd -1 while closed, to bound the descriptors held
	name     string // in the parent frame's directory (frame 0's: in removeDir's d)
	dev, ino uint64 // what was opened, checked when it is opened again
	names    []string
	listed   bool
	failed   bool // something below could not be removed: keep the directory
}

// openDir opens directory name in dirFd for removal, giving the owner
// search permission back if it lacks it.
func openDir(dirFd int, name string) (int, error) {
	fd, err := openDirAt(dirFd, name)
	if err != nil && errors.Is(err, unix.EACCES) && restoreSearch(dirFd, name) {
		fd, err = openDirAt(dirFd, name)
	}
	return fd, err
}

// removeDir removes the plain directory name in d and everything
// below it, depth first, without recursion and holding at most
// maxRemoveFds descriptors: a directory whose descriptor was closed to
// stay within the bound is opened again from its nearest open ancestor,
// below it (openBeneath: no symlink, no mount crossed), and checked to be
// the one opened before. Entries other than plain directories go to
// remove. What cannot be removed is reported (capped, see errList) and
// the directories holding it stay.
func (s *Store) removeDir(d dir, name string) (mountHit bool, err error) {
	fd, err := openDir(d.fd, name)
	if err != nil {
		return errors.Is(err, unix.EXDEV), err
	}
	var errs errList
	frames := make([]rmFrame, 0, 8)
	open := 0
	push := func(in dir, fd int, name string) {
		var st unix.Stat_t
		unix.Fstat(fd, &st)
		frames = append(frames, rmFrame{dir: dir{fd, in.join(name)}, name: name, dev: uint64(st.Dev), ino: st.Ino})
		open++
		for i := 0; open > maxRemoveFds && i < len(frames)-1; i++ {
			if frames[i].fd >= 0 {
				unix.Close(frames[i].fd)
				frames[i].fd = -1
				open--
			}
		}
	}
	// ensureOpen opens frame i again if it was closed.
	ensureOpen := func(i int) error {
		if frames[i].fd >= 0 {
			return nil
		}
		n, err := s.reopenFrames(d.fd, frames, i)
		open += n
		for j := 0; open > maxRemoveFds && j < i; j++ {
			if frames[j].fd >= 0 {
				unix.Close(frames[j].fd)
				frames[j].fd = -1
				open--
			}
		}
		return err
	}
	push(d, fd, name)
	for len(frames) > 0 {
		i := len(frames) - 1
		top := &frames[i]
		if err := ensureOpen(i); err != nil {
			errs.add(err)
			top.failed, top.listed, top.names = true, true, nil
		}
		if !top.listed {
			top.listed = true
			names, err := readDirNames(top.fd)
			if err != nil {
				errs.add(&fs.PathError{Op: "readdir", Path: top.path, Err: err})
				top.failed = true
			}
			top.names = names
		}
		if len(top.names) > 0 {
			n := top.names[len(top.names)-1]
			top.names = top.names[:len(top.names)-1]
			var stx unix.Statx_t
			err := unix.Statx(top.fd, n, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_INO, &stx)
			if err == unix.ENOENT {
				continue
			}
			if err != nil {
				errs.add(&fs.PathError{Op: "statx", Path: top.join(n), Err: err})
				top.failed = true
				continue
			}
			if stx.Mode&unix.S_IFMT == unix.S_IFDIR && stx.Ino != ioctl.BTRFS_FIRST_FREE_OBJECTID &&
				stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
				cfd, err := openDir(top.fd, n)
				if err == nil {
					push(top.dir, cfd, n)
					continue
				}
				if !errors.Is(err, unix.EXDEV) {
					errs.add(err)
					top.failed = true
					continue
				}
				// A mount the kernel did not flag: remove detaches it.
			}
			if err := s.remove(top.dir, n); err != nil {
				errs.add(err)
				top.failed = true
			}
			continue
		}
		// Everything below is handled: the directory goes, from its
		// parent.
		if top.fd >= 0 {
			unix.Close(top.fd)
			open--
		}
		f := frames[i]
		frames = frames[:i]
		if f.failed {
			if i > 0 {
				frames[i-1].failed = true
			}
			continue
		}
		if i == 0 {
			hit, err := s.unlink(d, f.name, unix.AT_REMOVEDIR, false)
			if err != nil {
				errs.add(err)
			}
			return hit && errs.n == 1, errs.err()
		}
		if err := ensureOpen(i - 1); err != nil {
			errs.add(err)
			frames[i-1].failed = true
			continue
		}
		parent := frames[i-1].dir
		hit, err := s.unlink(parent, f.name, unix.AT_REMOVEDIR, false)
		if hit {
			// A mount on the emptied directory: detach, try again.
			if derr := s.detachMounts(parent, f.name); derr != nil {
				err = errors.Join(err, derr)
			} else {
				_, err = s.unlink(parent, f.name, unix.AT_REMOVEDIR, false)
			}
		}
		if err != nil {
			errs.add(err)
			frames[i-1].failed = true
		}
	}
	return false, errs.err()
}

// reopenFrames opens frame i of a removal again, and the closed frames
// just above it (up to maxRemoveFds/2 in all, so that climbing back up
// does not walk the whole path at each level): from the nearest open
// ancestor (or dirFd), several components per openat2 call while the
// frames are not kept, then one by one. Each frame kept is checked to be
// the directory it was. It returns the number of descriptors it left
// open.
func (s *Store) reopenFrames(dirFd int, frames []rmFrame, i int) (opened int, err error) {
	j := i - 1
	for j >= 0 && frames[j].fd < 0 {
		j--
	}
	start := dirFd
	if j >= 0 {
		start = frames[j].fd
	}
	lo := max(j+1, i-maxRemoveFds/2+1)
	cur, k := start, j+1
	for k < lo {
		var b strings.Builder
		m := k
		for m < lo && b.Len()+1+len(frames[m].name) < 3000 {
			if b.Len() > 0 {
				b.WriteByte('/')
			}
			b.WriteString(frames[m].name)
			m++
		}
		fd, err := openBeneath(cur, b.String(), unix.O_RDONLY|unix.O_DIRECTORY)
		if cur != start {
			unix.Close(cur)
		}
		if err != nil {
			return opened, fmt.Errorf("%s: opening it again: %w", frames[m-1].path, err)
		}
		cur, k = fd, m
		if err := frames[m-1].same(fd); err != nil {
			unix.Close(fd)
			return opened, err
		}
	}
	for ; k <= i; k++ {
		fd, err := openDirAt(cur, frames[k].name)
		if cur != start && (k == 0 || cur != frames[k-1].fd) {
			unix.Close(cur) // the last chunk's descriptor
		}
		if err == nil {
			err = frames[k].same(fd)
			if err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			return opened, fmt.Errorf("%s: opening it again: %w", frames[k].path, err)
		}
		frames[k].fd = fd
		opened++
		cur = fd
	}
	return opened, nil
}

// same checks that fd is the directory the frame was.
func (f *rmFrame) same(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if uint64(st.Dev) != f.dev || st.Ino != f.ino {
		return fmt.Errorf("%s was replaced during its removal: %w", f.path, &fs.PathError{Op: "open", Path: f.path, Err: unix.ESTALE})
	}
	return nil
}

// maxErrs bounds the errors an errList keeps.
const maxErrs = 8

// errList collects the errors of a removal, keeping the first maxErrs:
// one unremovable tree can hold thousands of entries, each its own error.
type errList struct {
	errs []error
	n    int
}

func (l *errList) add(err error) {
	l.n++
	if len(l.errs) < maxErrs {
		l.errs = append(l.errs, err)
	}
}

// err joins the errors kept and says how many were left out.
func (l *errList) err() error {
	if l.n == 0 {
		return nil
	}
	err := errors.Join(l.errs...)
	if l.n > len(l.errs) {
		err = fmt.Errorf("%w\n(and %d more errors)", err, l.n-len(l.errs))
	}
	return err
}

// unlink unlinks a file (flags 0) or removes an empty directory
// (AT_REMOVEDIR). If the kernel refuses for want of permission, it clears
// the immutable and append-only flags of the entry (regular files and
// directories only: nothing else is opened) and of d, restores the
// owner's write and search permission on d, and tries again.
func (s *Store) unlink(d dir, name string, flags int, regular bool) (mountHit bool, err error) {
	err = unix.Unlinkat(d.fd, name, flags)
	if err == unix.EPERM || err == unix.EACCES {
		var uerr error
		if regular || flags&unix.AT_REMOVEDIR != 0 {
			uerr = s.unprotectEntry(d, name, flags&unix.AT_REMOVEDIR != 0)
		}
		if perr := s.unlockParent(d); uerr == nil {
			uerr = perr
		}
		if uerr != nil {
			return false, fmt.Errorf("%w; %w", &fs.PathError{Op: "unlinkat", Path: d.join(name), Err: err}, uerr)
		}
		err = unix.Unlinkat(d.fd, name, flags)
	}
	switch err {
	case nil, unix.ENOENT:
		return false, nil
	case unix.EBUSY:
		return true, &fs.PathError{Op: "unlinkat", Path: d.join(name), Err: err}
	}
	return false, &fs.PathError{Op: "unlinkat", Path: d.join(name), Err: err}
}

// unprotectEntry clears the immutable and append-only flags of the
// regular file or directory name in d.
func (s *Store) unprotectEntry(d dir, name string, isDir bool) error {
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY
	if isDir {
		flags = unix.O_RDONLY | unix.O_DIRECTORY
	}
	fd, err := openBeneath(d.fd, name, flags)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// Only regular files and directories are opened: a device or a FIFO
	// planted in the entry's place since its stat fails the check below
	// (and opening it had no effect: O_NONBLOCK, O_NOCTTY).
	p := d.join(name)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "fstat", Path: p, Err: err}
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
		return nil
	}
	if changed, err := clearProtection(fd, p); err != nil {
		return err
	} else if changed {
		s.log.Info("cleared the immutable or append-only flag a build left", "path", p)
	}
	return nil
}

// unlockParent makes d one that entries can be removed from: not
// immutable or append-only, with the owner's write and search permission.
func (s *Store) unlockParent(d dir) error {
	changed, err := clearProtection(d.fd, d.path)
	if err != nil {
		return err
	}
	if changed {
		s.log.Info("cleared the immutable or append-only flag a build left", "path", d.path)
	}
	_, err = addOwnerPerms(d, 0o300)
	return err
}

// restoreSearch gives the owner read and search permission on directory
// name in dirFd again (a build step may leave a directory 0000), through
// an O_PATH descriptor, so that it can be listed; it reports whether it
// changed anything.
func restoreSearch(dirFd int, name string) bool {
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
// nested subvolumes, which are rare, and only then is the delete made
// recursive (ioctl's, by fds and ids, deepest first), after making the
// read-only ones writable (EROFS otherwise). A mount in the way below it
// is detached once (see detachMounts). When the kernel refuses for want of
// permission, the subvolume, and the nested ones, are made deletable (see
// unlockSubvolume) and the delete tried again.
func (s *Store) deleteSubvolume(d dir, name string) (mountHit bool, err error) {
	if s.deletes == deleteRmdir {
		return s.deleteByRmdir(d, name) // no privilege (see rootless.go)
	}
	var flags ioctl.DeleteFlags
	unlocked, nestedUnlocked, detached := false, false, false
	for {
		_, err := ioctl.DeleteSubvolumeAtIDs(d.fd, name, flags)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return false, nil
		case errors.Is(err, unix.ENOTEMPTY) && flags == 0:
			flags = ioctl.DeleteRecursive
			if nerr := s.unlockNested(d, name, false); nerr != nil {
				return false, nerr
			}
		case errors.Is(err, unix.EXDEV) && flags != 0 && !detached:
			// A mount hides the way to a nested subvolume.
			detached = true
			if derr := s.detachMounts(d, name); derr != nil {
				return false, errors.Join(renameNestedErr(err, d, name), derr)
			}
		case (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EROFS)) &&
			(!unlocked || flags != 0 && !nestedUnlocked):
			var uerr error
			if !unlocked {
				unlocked = true
				uerr = s.unlockSubvolume(d, name)
			}
			if flags != 0 && !nestedUnlocked {
				nestedUnlocked = true
				uerr = errors.Join(uerr, s.unlockNested(d, name, true))
			}
			if uerr != nil {
				return false, fmt.Errorf("%w; %w", renameNestedErr(err, d, name), uerr)
			}
		default:
			return errors.Is(err, unix.EBUSY), renameNestedErr(err, d, name)
		}
	}
}

// renameNestedErr is renamePathErr for an error of a recursive delete of
// name in d, whose path is name or a path below it: the part below is
// kept.
func renameNestedErr(err error, d dir, name string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if rest, ok := strings.CutPrefix(pe.Path, name+"/"); ok {
			return &fs.PathError{Op: pe.Op, Path: d.join(name) + "/" + rest, Err: pe.Err}
		}
	}
	return renamePathErr(err, d.join(name))
}

// renamePathErr puts path as the path of the ioctl's *fs.PathError,
// which has only the entry's name.
func renamePathErr(err error, path string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: path, Err: pe.Err}
	}
	return err
}

// unlockSubvolume makes subvolume name in d deletable where the kernel
// refuses: writable (a read-only subvolume needs CAP_SYS_ADMIN to be
// deleted), not immutable or append-only (refused even with
// CAP_SYS_ADMIN), with its owner's write and search permission on its root
// (checked without CAP_SYS_ADMIN), and the same for d. Only the store's
// temporary entries are ever unlocked: results and caches are renamed
// there first.
func (s *Store) unlockSubvolume(d dir, name string) error {
	fd, err := openDirAt(d.fd, name)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	sub := dir{fd, d.join(name)}
	var errs []error
	if err := makeWritable(sub); err != nil {
		errs = append(errs, err)
	}
	if changed, err := clearProtection(fd, sub.path); err != nil {
		errs = append(errs, err)
	} else if changed {
		s.log.Info("cleared the immutable or append-only flag a build left", "path", sub.path)
	}
	if _, err := addOwnerPerms(sub, 0o300); err != nil {
		errs = append(errs, err)
	}
	if err := s.unlockParent(d); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// makeWritable clears the read-only flag of subvolume d, if set (owner or
// CAP_FOWNER).
func makeWritable(d dir) error {
	flags, err := ioctl.SubvolGetflags(d.fd)
	if err != nil {
		return &fs.PathError{Op: "BTRFS_IOC_SUBVOL_GETFLAGS", Path: d.path, Err: err}
	}
	if flags&ioctl.BTRFS_SUBVOL_RDONLY == 0 {
		return nil
	}
	if err := ioctl.SubvolSetflags(d.fd, flags&^ioctl.BTRFS_SUBVOL_RDONLY); err != nil {
		return &fs.PathError{Op: "BTRFS_IOC_SUBVOL_SETFLAGS", Path: d.path, Err: err}
	}
	return nil
}

// unlockNested makes the subvolumes nested in subvolume name of d
// deletable where the kernel refuses: the subvolume itself and the
// read-only nested ones writable (nothing can be deleted from a read-only
// subvolume: EROFS); with all, every nested one also as unlockSubvolume
// does (flags, owner permissions, its parent directory). Their paths come
// from the kernel; they are opened as openDirAt does, so that a symlink or
// mount in the way is never followed: one that cannot be opened is left
// to the delete to report.
func (s *Store) unlockNested(d dir, name string, all bool) error {
	fd, err := openDirAt(d.fd, name)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	top := dir{fd, d.join(name)}
	var nested []ioctl.SubvolInfo
	for info, err := range ioctl.SubvolumesAt(fd, ".") {
		if err != nil {
			return renamePathErr(err, top.path)
		}
		if info.ReadOnly || all {
			nested = append(nested, info)
		}
	}
	if err := makeWritable(top); err != nil {
		return err
	}
	var errs []error
	for _, info := range nested {
		sub := top.join(info.Path)
		if all {
			if pfd, base, err := beneath.OpenParent(fd, info.Path); err == nil {
				errs = append(errs, s.unlockSubvolume(dir{pfd, path.Dir(sub)}, base))
				unix.Close(pfd)
			}
		} else if nfd, err := openDirAt(fd, info.Path); err == nil {
			errs = append(errs, makeWritable(dir{nfd, sub}))
			unix.Close(nfd)
		}
	}
	return errors.Join(errs...)
}
