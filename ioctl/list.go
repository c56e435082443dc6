package ioctl

import (
	"errors"
	"iter"
	"path"

	"github.com/btrstore/btrstore/internal/beneath"
	"golang.org/x/sys/unix"
)

// listMethod selects how Subvolumes discovers nested subvolumes.
type listMethod int

const (
	listAuto       listMethod = iota // tree search if permitted, else listUser
	listTreeSearch                   // TREE_SEARCH + INO_LOOKUP: CAP_SYS_ADMIN
	listUser                         // GET_SUBVOL_ROOTREF + INO_LOOKUP_USER: no privilege, 4.18
)

// Subvolumes yields every subvolume below the subvolume at path, parents
// before their children, with Path relative to path ("a", "a/b"). The
// iteration stops at the first error, which it yields.
//
// Privilege: with CAP_SYS_ADMIN the root tree is searched directly (and
// every nested subvolume is found, whatever the directory permissions or
// mounts). Without it the unprivileged ioctls are used, and the listing
// shows what the caller can reach, as libbtrfsutil's does: a subvolume in a
// directory the caller cannot search, or that it cannot open, is skipped
// with everything below it; so is a place where something else is mounted
// (another filesystem, or another subvolume bind-mounted there), which is
// checked by opening without crossing a mount or following a symlink, and
// by comparing the filesystem's fsid and the subvolume's id with what the
// root tree says. Kernel: 4.18. Concurrency: safe; subvolumes created or
// deleted during the iteration may or may not be seen, and one deleted
// meanwhile is skipped, never an error.
func Subvolumes(path string) iter.Seq2[SubvolInfo, error] {
	return subvolumes(path, listAuto)
}

// ListOptions modify SubvolumesWith. The zero value lists as Subvolumes
// does.
type ListOptions struct {
	// Top, if not 0, lists the subvolumes below the subvolume with this id
	// instead of below the subvolume at the path, with Path relative to
	// it, as libbtrfsutil's iterator with a top id; the path may then be
	// any directory on the filesystem. BTRFS_FS_TREE_OBJECTID (5) lists
	// the whole filesystem, as `btrfs subvolume list` does. Another id
	// than that of the subvolume at the path needs CAP_SYS_ADMIN (an error
	// matching fs.ErrPermission without it); an id that names no
	// subvolume gives an error matching fs.ErrNotExist.
	Top uint64

	// PostOrder yields every subvolume after the subvolumes below it
	// (children before parents, libbtrfsutil's
	// BTRFS_UTIL_SUBVOLUME_ITERATOR_POST_ORDER): the order in which they
	// can be deleted one by one.
	PostOrder bool
}

// SubvolumesWith is Subvolumes with options: a top subvolume given by id,
// post-order.
//
// Privilege, kernel and concurrency: as Subvolumes, and see
// ListOptions.Top.
func SubvolumesWith(path string, opts ListOptions) iter.Seq2[SubvolInfo, error] {
	return subvolumesWith(path, listAuto, opts)
}

// SubvolumesAtWith is SubvolumesWith for the entry name in the directory
// open as dirFd (name "." for dirFd itself).
func SubvolumesAtWith(dirFd int, name string, opts ListOptions) iter.Seq2[SubvolInfo, error] {
	return func(yield func(SubvolInfo, error) bool) {
		fd, err := openDir(dirFd, name)
		if err != nil {
			yield(SubvolInfo{}, pathErr("open", name, err))
			return
		}
		defer unix.Close(fd)
		walk(fd, name, listAuto, opts, yield)
	}
}

func subvolumes(top string, method listMethod) iter.Seq2[SubvolInfo, error] {
	return subvolumesWith(top, method, ListOptions{})
}

func subvolumesWith(top string, method listMethod, opts ListOptions) iter.Seq2[SubvolInfo, error] {
	return func(yield func(SubvolInfo, error) bool) {
		fd, err := openDir(unix.AT_FDCWD, top)
		if err != nil {
			yield(SubvolInfo{}, pathErr("open", top, err))
			return
		}
		defer unix.Close(fd)
		walk(fd, top, method, opts, yield)
	}
}

// walk runs the listing from the subvolume open as fd (or from the
// subvolume opts.Top, fd being any directory on its filesystem), naming
// fd top in errors.
func walk(fd int, top string, method listMethod, opts ListOptions, yield func(SubvolInfo, error) bool) {
	check := checkSubvolume
	if opts.Top != 0 {
		check = CheckBtrfs
	}
	if err := check(fd); err != nil {
		yield(SubvolInfo{}, pathErr("list", top, err))
		return
	}
	own, err := subvolumeID(fd)
	if err != nil {
		yield(SubvolInfo{}, pathErr("BTRFS_IOC_INO_LOOKUP", top, err))
		return
	}
	id := own
	if opts.Top != 0 && opts.Top != own {
		id = opts.Top
		method = listTreeSearch // the unprivileged ioctls see fd's subvolume only
		found := false
		if validSubvolumeID(id) {
			found, err = rootItem(fd, id, nil)
		}
		if err == nil && !found {
			err = unix.ENOENT
		}
		if err != nil {
			yield(SubvolInfo{}, pathErr("BTRFS_IOC_TREE_SEARCH", top, err))
			return
		}
	}
	if method == listAuto {
		method = listTreeSearch
		var args SearchArgs // probe: a one-item search of our own root item
		args.Key = rootTreeKey(id, BTRFS_ROOT_ITEM_KEY)
		args.Key.Nr_items = 1
		if err := TreeSearch(fd, &args); errors.Is(err, unix.EPERM) {
			method = listUser
		}
	}
	w := walker{top: top, yield: yield, postOrder: opts.PostOrder}
	if method == listTreeSearch {
		w.treeSearch(fd, id, "")
	} else {
		w.user(fd, "")
	}
}

type walker struct {
	fsid      *[BTRFS_FSID_SIZE]byte // of the listed filesystem (unprivileged walk)
	top       string
	yield     func(SubvolInfo, error) bool
	postOrder bool // yield children before their parent
	stopped   bool
}

func (w *walker) emit(info SubvolInfo, err error) bool {
	if w.stopped {
		return false
	}
	if err != nil {
		err = pathErr("list", path.Join(w.top, info.Path), err)
	}
	if !w.yield(info, err) || err != nil {
		w.stopped = true
	}
	return !w.stopped
}

// treeSearch walks the ROOT_REF items of subvolume id depth-first, reading
// each child's root item, all through fd (any fd on the filesystem).
func (w *walker) treeSearch(fd int, id uint64, rel string) {
	type child struct {
		id  uint64
		ref rootRef
	}
	var children []child
	bad := false
	err := searchAll(fd, nil, rootTreeKey(id, BTRFS_ROOT_REF_KEY), func(h *SearchHeader, data []byte) bool {
		ref, ok := parseRootRef(data)
		bad = bad || !ok
		children = append(children, child{h.Offset, ref})
		return ok
	})
	if err == nil && bad {
		err = errBadSearchResult
	}
	if err != nil {
		w.emit(SubvolInfo{Path: rel}, err)
		return
	}
	for _, c := range children {
		dir, err := inoLookupPath(fd, id, c.ref.dirid)
		if err == unix.ENOENT {
			// The directory holding it is gone, so it is too (a
			// directory holding a subvolume cannot be removed), or
			// the parent subvolume itself was deleted meanwhile.
			continue
		}
		info := SubvolInfo{ID: c.id, ParentID: id, DirID: c.ref.dirid, Name: c.ref.name,
			Path: path.Join(rel, dir, c.ref.name)}
		if err == nil {
			var found bool
			found, err = rootItem(fd, c.id, &info)
			if err == nil && !found {
				continue // deleted since the ROOT_REF was read
			}
		}
		if w.postOrder && err == nil {
			w.treeSearch(fd, c.id, info.Path)
			if w.stopped || !w.emit(info, nil) {
				return
			}
			continue
		}
		if !w.emit(info, err) {
			return
		}
		w.treeSearch(fd, c.id, info.Path)
		if w.stopped {
			return
		}
	}
}

// rootrefs lists the subvolumes directly below the subvolume open as fd
// (GET_SUBVOL_ROOTREF, 4.18, no privilege), all pages of them.
func rootrefs(fd int) ([]Rootref, error) {
	var refs []Rootref
	var args GetSubvolRootrefArgs
	for {
		err := beneath.Retry(func() error { return GetSubvolRootref(fd, &args) })
		if err != nil && err != unix.EOVERFLOW {
			return refs, err
		}
		n := min(int(args.Num_items), len(args.Rootref))
		refs = append(refs, args.Rootref[:n]...)
		if err == nil || n == 0 {
			return refs, nil
		}
		args.Min_treeid = args.Rootref[n-1].Treeid + 1
	}
}

// skipUser reports whether an error met while reaching a nested subvolume
// means that the unprivileged walk skips it: it was deleted meanwhile
// (ENOENT), the caller cannot reach it (EACCES, EPERM), or its place is
// not what the root tree says (a mount: EXDEV; a symlink: ELOOP, ENOTDIR).
func skipUser(err error) bool {
	switch err {
	case unix.ENOENT, unix.EACCES, unix.EPERM, unix.EXDEV, unix.ELOOP, unix.ENOTDIR:
		return true
	}
	return false
}

// user walks the subvolumes below the subvolume open as fd with the
// unprivileged ioctls: GET_SUBVOL_ROOTREF lists the children's ids and
// directories, INO_LOOKUP_USER resolves their paths, and each child is
// opened (below fd, no symlink, no mount), checked to be on this
// filesystem with the id the root tree gave, and asked for GET_SUBVOL_INFO
// and its own children.
func (w *walker) user(fd int, rel string) {
	refs, err := rootrefs(fd)
	if err == unix.ENOENT {
		return // this subvolume was deleted meanwhile
	}
	if err != nil {
		w.emit(SubvolInfo{Path: rel}, err)
		return
	}
	if w.fsid == nil {
		var fsInfo FsInfoArgs
		if err := FsInfo(fd, &fsInfo); err != nil {
			w.emit(SubvolInfo{Path: rel}, err)
			return
		}
		w.fsid = &fsInfo.Fsid
	}
	for _, r := range refs {
		lookup := InoLookupUserArgs{Dirid: r.Dirid, Treeid: r.Treeid}
		err := beneath.Retry(func() error { return InoLookupUser(fd, &lookup) })
		if skipUser(err) {
			continue
		}
		if err != nil {
			if !w.emit(SubvolInfo{ID: r.Treeid, Path: rel}, err) {
				return
			}
			continue
		}
		childRel := path.Join(cstring(lookup.Path[:]), cstring(lookup.Name[:]))
		info, cfd, err := w.openChild(fd, childRel, r.Treeid)
		if skipUser(err) {
			continue
		}
		info.Path = path.Join(rel, childRel)
		if w.postOrder && err == nil {
			w.user(cfd, info.Path)
			unix.Close(cfd)
			if w.stopped || !w.emit(info, nil) {
				return
			}
			continue
		}
		if !w.emit(info, err) {
			if cfd >= 0 {
				unix.Close(cfd)
			}
			return
		}
		w.user(cfd, info.Path)
		unix.Close(cfd)
		if w.stopped {
			return
		}
	}
}

// openChild opens the nested subvolume id at rel below fd for the
// unprivileged walk and reads its info. A place that holds something else
// than that subvolume of this filesystem gives EXDEV (skipped).
func (w *walker) openChild(fd int, rel string, id uint64) (info SubvolInfo, cfd int, err error) {
	info.ID = id
	cfd, err = beneath.OpenDir(fd, rel)
	if err != nil {
		return info, -1, err
	}
	var fsInfo FsInfoArgs
	if err = CheckBtrfs(cfd); err == ErrNotBtrfs {
		err = unix.EXDEV
	} else if err == nil {
		err = FsInfo(cfd, &fsInfo)
		if err == nil && fsInfo.Fsid != *w.fsid {
			err = unix.EXDEV
		}
	}
	if err == nil {
		var args GetSubvolInfoArgs
		err = beneath.Retry(func() error { return GetSubvolInfo(cfd, &args) })
		if err == nil {
			info = infoFromArgs(&args)
			if info.ID != id {
				err = unix.EXDEV
			}
		}
	}
	if err != nil {
		unix.Close(cfd)
		return SubvolInfo{ID: id}, -1, err
	}
	return info, cfd, nil
}

// SubvolumesAt is Subvolumes for the subvolume name in the directory open
// as dirFd (name "." for dirFd itself), with Path relative to it.
func SubvolumesAt(dirFd int, name string) iter.Seq2[SubvolInfo, error] {
	return SubvolumesAtWith(dirFd, name, ListOptions{})
}
