package ioctl

import (
	"encoding/binary"
	"errors"
	"path"
	"strings"

	"github.com/btrstore/btrstore/internal/beneath"
	"golang.org/x/sys/unix"
)

// DeleteFlags modify DeleteSubvolume.
type DeleteFlags uint64

const (
	// DeleteRecursive deletes the subvolumes nested below the target
	// first, deepest first, as libbtrfsutil does.
	DeleteRecursive DeleteFlags = 1 << 0

	// DeleteFlagsMask is every flag DeleteSubvolume knows.
	DeleteFlagsMask = DeleteRecursive
)

// maxHeldFds bounds the fds a recursive delete keeps open on the nested
// subvolumes between the target and the one it works on; a level whose fd
// was closed is opened again, from the nearest open one, when the delete
// comes back to it. So depth is no limit, and the fds used stay bounded.
const maxHeldFds = 8

// DeleteSubvolume deletes the subvolume at path. The kernel unlinks it at
// once and frees its space in the background, after the next transaction
// commit; WaitDeleted waits for that (DeleteSubvolumeIDs gives the ids to
// wait for). Without DeleteRecursive, a subvolume that holds other
// subvolumes gives ENOTEMPTY.
//
// It deletes only what path names. The last element of path must be the
// name of a subvolume in its directory: "", "." and ".." (also as "x/.",
// "x/sub/..", "x/./") give an error matching fs.ErrInvalid; a symlink, a
// plain directory or a file give ErrNotSubvolume, and a mount point gives
// ErrMountPoint, both also matching fs.ErrInvalid — without following the
// symlink or entering the mount. All of these, and unknown flags (EINVAL),
// are found before anything is deleted. The directories leading to the
// last element are the caller's: resolved as open(2) does.
//
// DeleteRecursive descends by file descriptors, never by path: each nested
// subvolume is found by its id (GET_SUBVOL_ROOTREF, INO_LOOKUP_USER),
// opened below its parent without following a symlink or crossing a mount,
// checked to be the subvolume with that id, and deleted by id
// (SNAP_DESTROY_V2) or, where that is refused, by (directory fd, name). The
// depth of the tree is no limit (a path longer than PATH_MAX is fine), and at
// most about a dozen fds are open at a time.
//
// Privilege: CAP_SYS_ADMIN, or a mount with user_subvol_rm_allowed and
// write and search permission on the subvolume's root directory and its
// parent (EPERM otherwise); DeleteRecursive also needs search permission on
// the directories holding the nested subvolumes. Kernel: 4.18 for
// DeleteRecursive (5.7 to delete by id). Concurrency: safe; a recursive
// delete racing creates below the target can fail with ENOTEMPTY, and one
// that finds a nested subvolume replaced meanwhile stops with an error
// rather than delete what it did not find.
//
// Errors are *fs.PathError with Op "BTRFS_IOC_SNAP_DESTROY" (ENOTEMPTY,
// EPERM: errors.Is(err, fs.ErrPermission), ErrNotSubvolume, ErrMountPoint).
func DeleteSubvolume(path string, flags DeleteFlags) error {
	_, err := deletePath(path, flags, false)
	return err
}

// DeleteSubvolumeIDs is DeleteSubvolume that also returns the ids of the
// subvolumes it deleted, deepest first and the target last, so that
// WaitDeleted can wait for exactly those. On error it returns the ids
// deleted before the error. An id is missing only when the caller could
// not open the target subvolume to learn it (no read permission, kernel
// before 6.10) and the delete did not need to.
//
// Privilege, kernel and concurrency: as DeleteSubvolume.
func DeleteSubvolumeIDs(path string, flags DeleteFlags) ([]uint64, error) {
	return deletePath(path, flags, true)
}

func deletePath(path string, flags DeleteFlags, wantIDs bool) ([]uint64, error) {
	const op = "BTRFS_IOC_SNAP_DESTROY"
	if flags&^DeleteFlagsMask != 0 {
		return nil, pathErr(op, path, unix.EINVAL)
	}
	dir, name := beneath.Split(path)
	if err := beneath.CheckName(name); err != nil {
		return nil, pathErr(op, path, err)
	}
	fd, err := openDir(unix.AT_FDCWD, dir)
	if err != nil {
		return nil, pathErr("open", dir, err)
	}
	defer unix.Close(fd)
	return deleteAt(fd, name, flags, path, wantIDs)
}

// DeleteSubvolumeAt is DeleteSubvolume for the entry name in the directory
// open as parentFd. name is one element: with "/" in it, or "", "." or "..",
// it gives an error matching fs.ErrInvalid.
func DeleteSubvolumeAt(parentFd int, name string, flags DeleteFlags) error {
	const op = "BTRFS_IOC_SNAP_DESTROY"
	if flags&^DeleteFlagsMask != 0 {
		return pathErr(op, name, unix.EINVAL)
	}
	if err := beneath.CheckName(name); err != nil {
		return pathErr(op, name, err)
	}
	_, err := deleteAt(parentFd, name, flags, name, false)
	return err
}

// DeleteSubvolumeAtIDs is DeleteSubvolumeIDs for the entry name in the
// directory open as parentFd.
func DeleteSubvolumeAtIDs(parentFd int, name string, flags DeleteFlags) ([]uint64, error) {
	const op = "BTRFS_IOC_SNAP_DESTROY"
	if flags&^DeleteFlagsMask != 0 {
		return nil, pathErr(op, name, unix.EINVAL)
	}
	if err := beneath.CheckName(name); err != nil {
		return nil, pathErr(op, name, err)
	}
	return deleteAt(parentFd, name, flags, name, true)
}

// deleteAt deletes the subvolume name (checked) in parentFd. A
// non-recursive delete is by name; a recursive one by id (see destroy).
func deleteAt(parentFd int, name string, flags DeleteFlags, display string, wantIDs bool) ([]uint64, error) {
	const op = "BTRFS_IOC_SNAP_DESTROY"
	recursive := flags&DeleteRecursive != 0
	id, fd, err := openTarget(parentFd, name, wantIDs, recursive)
	if err != nil {
		return nil, pathErr(op, display, err)
	}
	d := deleter{display: display, byID: true}
	if fd >= 0 {
		err = d.deleteNested(fd, id)
		// Closed before the delete: the kernel cleans a deleted
		// subvolume only once no inode of it is in use, and an fd held
		// across the delete can leave it uncleaned until eviction.
		unix.Close(fd)
		if err != nil {
			return d.removed, err
		}
	}
	if recursive {
		err = d.destroy(parentFd, name, id)
	} else {
		// The kernel finds name in parentFd without crossing a mount
		// or following a symlink: what was checked, unless replaced
		// since by another subvolume, which the caller named as well.
		err = destroyName(parentFd, name)
	}
	if err != nil {
		return d.removed, pathErr(op, display, err)
	}
	if id != 0 {
		d.removed = append(d.removed, id)
	}
	return d.removed, nil
}

// openTarget checks that name in parentFd is a subvolume, without following
// a symlink or entering a mount, and returns its id and, for a recursive
// delete, an fd on it. The id is read only when wantID or recursive: by
// statx (6.10) where that suffices, else through an fd; it is 0 when the
// caller may not open the subvolume and need not (no recursion).
func openTarget(parentFd int, name string, wantID, recursive bool) (id uint64, fd int, err error) {
	pathFd, err := beneath.Openat(parentFd, name, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return 0, -1, err
	}
	defer unix.Close(pathFd)
	var st unix.Stat_t
	if err := unix.Fstat(pathFd, &st); err != nil {
		return 0, -1, err
	}
	pm, err1 := beneath.MountID(parentFd)
	em, err2 := beneath.MountID(pathFd)
	switch {
	case err1 != nil:
		return 0, -1, err1
	case err2 != nil:
		return 0, -1, err2
	case pm != em:
		return 0, -1, invalid(ErrMountPoint)
	}
	if err := CheckBtrfs(pathFd); err != nil {
		return 0, -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Ino != BTRFS_FIRST_FREE_OBJECTID {
		return 0, -1, invalid(ErrNotSubvolume)
	}
	if !recursive {
		if wantID {
			var stx unix.Statx_t
			if beneath.StatxFd(pathFd, unix.STATX_SUBVOL, &stx) == nil && stx.Mask&unix.STATX_SUBVOL != 0 {
				return stx.Subvol, -1, nil
			}
		} else {
			return 0, -1, nil
		}
	}
	// Reopen through the O_PATH fd: the very directory checked above.
	fd, err = beneath.Openat(pathFd, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if err == unix.EACCES && !recursive {
			return 0, -1, nil // the id stays unknown
		}
		return 0, -1, err
	}
	if id, err = subvolumeID(fd); err != nil {
		unix.Close(fd)
		return 0, -1, err
	}
	if !recursive {
		unix.Close(fd)
		fd = -1
	}
	return id, fd, nil
}

// errReplaced: a nested subvolume found by id is not at the place the
// kernel reported, or is another one: something moved it meanwhile.
var errReplaced = errors.New("nested subvolume moved or replaced during the delete")

// level is one subvolume on the way from the target down to where the
// recursive delete works.
type level struct {
	id    uint64
	dirid uint64 // directory in the parent subvolume that holds it
	rel   string // its path below the parent subvolume, for messages
	fd    int    // -1 while closed (see maxHeldFds)
	refs  []Rootref
	read  bool // refs read
}

type deleter struct {
	display string
	levels  []*level
	held    int // open fds of levels[1:]
	removed []uint64
	byID    bool // SNAP_DESTROY_V2 by id not refused yet
}

// deleteNested deletes every subvolume nested below the subvolume open as
// fd (id), deepest first, descending by fds.
func (d *deleter) deleteNested(fd int, id uint64) error {
	d.levels = []*level{{id: id, fd: fd}}
	defer func() {
		for _, l := range d.levels[1:] {
			if l.fd >= 0 {
				unix.Close(l.fd)
			}
		}
	}()
	for {
		i := len(d.levels) - 1
		cur := d.levels[i]
		cfd, err := d.fd(i)
		if err != nil {
			return err
		}
		if !cur.read {
			cur.refs, err = rootrefs(cfd)
			if err == unix.ENOENT && i > 0 {
				// Deleted meanwhile, by someone else.
				d.drop(i)
				continue
			}
			if err != nil {
				return d.err("BTRFS_IOC_GET_SUBVOL_ROOTREF", i, err)
			}
			cur.read = true
		}
		if len(cur.refs) > 0 {
			r := cur.refs[0]
			child, err := d.open(cfd, r)
			if err == unix.ENOENT {
				cur.refs = cur.refs[1:] // deleted meanwhile
				continue
			}
			if err != nil {
				return d.err("open", i, err)
			}
			d.levels = append(d.levels, child)
			d.held++
			d.evict()
			continue
		}
		if i == 0 {
			return nil // everything below the target is gone
		}
		// A leaf now: delete it from its parent.
		d.drop(i)
		pfd, err := d.fd(i - 1)
		if err != nil {
			return err
		}
		err = d.destroyRef(pfd, cur)
		if err != nil && err != unix.ENOENT {
			d.levels = append(d.levels, cur) // for the message
			return d.err("BTRFS_IOC_SNAP_DESTROY", i, err)
		}
		if err == nil {
			d.removed = append(d.removed, cur.id)
		}
	}
}

// drop closes levels[i], the last, and removes it from its parent's
// refs.
func (d *deleter) drop(i int) {
	if l := d.levels[i]; l.fd >= 0 {
		unix.Close(l.fd)
		l.fd = -1
		d.held--
	}
	d.levels = d.levels[:i]
	parent := d.levels[i-1]
	parent.refs = parent.refs[1:]
}

// fd returns an fd on levels[i], opening it again from its parent if it
// was closed.
func (d *deleter) fd(i int) (int, error) {
	l := d.levels[i]
	if l.fd >= 0 {
		return l.fd, nil
	}
	pfd, err := d.fd(i - 1)
	if err != nil {
		return -1, err
	}
	again, err := d.open(pfd, Rootref{Treeid: l.id, Dirid: l.dirid})
	if err != nil {
		return -1, d.err("open", i, err)
	}
	l.fd = again.fd
	d.held++
	d.evict()
	return l.fd, nil
}

// evict closes the fd of the shallowest open level (not the last two)
// while more than maxHeldFds are open.
func (d *deleter) evict() {
	for j := 1; d.held > maxHeldFds && j < len(d.levels)-2; j++ {
		if l := d.levels[j]; l.fd >= 0 {
			unix.Close(l.fd)
			l.fd = -1
			d.held--
		}
	}
}

// locate finds where subvolume r.Treeid sits below the subvolume open as
// pfd: a directory fd (pfd itself, or one to close: owned true) and the name.
func locate(pfd int, r Rootref) (dirFd int, name, rel string, owned bool, err error) {
	args := InoLookupUserArgs{Dirid: r.Dirid, Treeid: r.Treeid}
	if err := beneath.Retry(func() error { return InoLookupUser(pfd, &args) }); err != nil {
		return -1, "", "", false, err
	}
	dir, name := strings.TrimSuffix(cstring(args.Path[:]), "/"), cstring(args.Name[:])
	rel = path.Join(dir, name)
	if dir == "" {
		return pfd, name, rel, false, nil
	}
	dirFd, err = beneath.OpenDir(pfd, dir)
	if err != nil {
		return -1, name, rel, false, err
	}
	return dirFd, name, rel, true, nil
}

// open opens the nested subvolume r below the subvolume open as pfd, and
// checks that it is that subvolume.
func (d *deleter) open(pfd int, r Rootref) (*level, error) {
	dirFd, name, rel, owned, err := locate(pfd, r)
	if owned {
		defer unix.Close(dirFd)
	}
	l := &level{id: r.Treeid, dirid: r.Dirid, rel: rel, fd: -1}
	if err != nil {
		return l, err
	}
	fd, err := beneath.OpenDir(dirFd, name) // no symlink, no mount
	if err != nil {
		return l, err
	}
	if id, err := subvolumeID(fd); err != nil || id != r.Treeid {
		unix.Close(fd)
		if err == nil {
			err = errReplaced
		}
		return l, err
	}
	l.fd = fd
	return l, nil
}

// destroyRef deletes the (now empty) nested subvolume l below the
// subvolume open as pfd.
func (d *deleter) destroyRef(pfd int, l *level) error {
	dirFd, name, _, owned, err := locate(pfd, Rootref{Treeid: l.id, Dirid: l.dirid})
	if owned {
		defer unix.Close(dirFd)
	}
	if err != nil {
		return err
	}
	return d.destroy(dirFd, name, l.id)
}

// destroy deletes subvolume id, the entry name in dirFd: by id where the
// kernel allows it (5.7; it refuses unprivileged callers, and subvolumes
// whose path from the top level exceeds PATH_MAX), which deletes exactly
// the subvolume that was checked; else by name, after checking once more
// that the name holds that subvolume.
func (d *deleter) destroy(dirFd int, name string, id uint64) error {
	if id == 0 { // unknown: the target, which the caller could not open
		return destroyName(dirFd, name)
	}
	if d.byID {
		var args VolArgsV2
		args.Flags = BTRFS_SUBVOL_SPEC_BY_ID
		binary.NativeEndian.PutUint64(args.Name[:8], id) // the union's subvolid
		err := beneath.Retry(func() error { return SnapDestroyV2(dirFd, &args) })
		switch err {
		case unix.ENOTTY, unix.EPERM, unix.EOPNOTSUPP:
			d.byID = false // by name from now on, which also gives the right error
		case unix.ENAMETOOLONG:
			// The kernel builds the path from the top level in a
			// PATH_MAX buffer: by name, for this one.
		default:
			return err
		}
	}
	fd, err := beneath.OpenDir(dirFd, name)
	if err != nil {
		return err
	}
	got, err := subvolumeID(fd)
	unix.Close(fd)
	if err == nil && got != id {
		err = errReplaced
	}
	if err != nil {
		return err
	}
	return destroyName(dirFd, name)
}

// destroyName is SNAP_DESTROY of name in dirFd.
func destroyName(dirFd int, name string) error {
	var args VolArgs
	if err := setName(args.Name[:], name); err != nil {
		return err
	}
	return beneath.Retry(func() error { return SnapDestroy(dirFd, &args) })
}

// err names levels[i] in an error: the target's display path joined with
// the relative paths down to it.
func (d *deleter) err(op string, i int, err error) error {
	p := d.display
	for _, l := range d.levels[1 : i+1] {
		p = path.Join(p, l.rel)
	}
	return pathErr(op, p, err)
}

// DeleteSubvolumeByID deletes the subvolume with the given id on the
// filesystem holding fsPath (any path on it: a directory, a file).
//
// Privilege: CAP_SYS_ADMIN (or user_subvol_rm_allowed with permissions as
// for DeleteSubvolume). Kernel: 5.7 (SNAP_DESTROY_V2 with
// BTRFS_SUBVOL_SPEC_BY_ID); older kernels give ErrNotSupported (ENOTTY).
// Concurrency: safe.
func DeleteSubvolumeByID(fsPath string, id uint64) error {
	fd, err := openOnFS(fsPath)
	if err != nil {
		return pathErr("open", fsPath, err)
	}
	defer unix.Close(fd)
	return deleteByIDFd(fd, id, fsPath)
}

// DeleteSubvolumeByIDFd is DeleteSubvolumeByID for an open file or
// directory on the filesystem.
func DeleteSubvolumeByIDFd(fd int, id uint64) error { return deleteByIDFd(fd, id, "") }

func deleteByIDFd(fd int, id uint64, fsPath string) error {
	const op = "BTRFS_IOC_SNAP_DESTROY_V2"
	if err := CheckBtrfs(fd); err != nil {
		return pathErr(op, fsPath, err)
	}
	var args VolArgsV2
	args.Flags = BTRFS_SUBVOL_SPEC_BY_ID
	binary.NativeEndian.PutUint64(args.Name[:8], id) // the union's subvolid
	if err := SnapDestroyV2(fd, &args); err != nil {
		return pathErr(op, fsPath, err)
	}
	return nil
}
