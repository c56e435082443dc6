package ioctl

import (
	"errors"
	"iter"
	"math"
	"path"

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
// every nested subvolume is found, whatever the directory permissions);
// without it the unprivileged ioctls are used, which need search permission
// on the directories holding nested subvolumes (the iteration yields EACCES
// otherwise). Kernel: 4.18. Concurrency: safe,
// but subvolumes created or deleted during the iteration may or may not be
// seen.
func Subvolumes(path string) iter.Seq2[SubvolInfo, error] {
	return subvolumes(path, listAuto)
}

func subvolumes(top string, method listMethod) iter.Seq2[SubvolInfo, error] {
	return func(yield func(SubvolInfo, error) bool) {
		fd, err := openDir(unix.AT_FDCWD, top)
		if err != nil {
			yield(SubvolInfo{}, pathErr("open", top, err))
			return
		}
		defer unix.Close(fd)
		walk(fd, top, method, yield)
	}
}

// walk runs the listing from the subvolume open as fd, naming it top in
// errors.
func walk(fd int, top string, method listMethod, yield func(SubvolInfo, error) bool) {
	if err := checkSubvolume(fd); err != nil {
		yield(SubvolInfo{}, pathErr("list", top, err))
		return
	}
	id, err := subvolumeID(fd)
	if err != nil {
		yield(SubvolInfo{}, pathErr("BTRFS_IOC_INO_LOOKUP", top, err))
		return
	}
	if method == listAuto {
		method = listTreeSearch
		var args SearchArgs // probe: a one-item search of our own root item
		args.Key = SearchKey{Tree_id: BTRFS_ROOT_TREE_OBJECTID, Min_objectid: id, Max_objectid: id,
			Min_type: BTRFS_ROOT_ITEM_KEY, Max_type: BTRFS_ROOT_ITEM_KEY,
			Max_offset: math.MaxUint64, Max_transid: math.MaxUint64, Nr_items: 1}
		if err := TreeSearch(fd, &args); errors.Is(err, unix.EPERM) {
			method = listUser
		}
	}
	w := walker{top: top, yield: yield}
	if method == listTreeSearch {
		w.treeSearch(fd, id, "")
	} else {
		w.user(fd, "")
	}
}

type walker struct {
	top     string
	yield   func(SubvolInfo, error) bool
	stopped bool
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
	err := searchAll(fd, nil, SearchKey{
		Tree_id:      BTRFS_ROOT_TREE_OBJECTID,
		Min_objectid: id, Max_objectid: id,
		Min_type: BTRFS_ROOT_REF_KEY, Max_type: BTRFS_ROOT_REF_KEY,
		Max_offset: math.MaxUint64, Max_transid: math.MaxUint64,
	}, func(h *SearchHeader, data []byte) bool {
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
		info := SubvolInfo{ID: c.id, ParentID: id, DirID: c.ref.dirid, Name: c.ref.name,
			Path: path.Join(rel, dir, c.ref.name)}
		if err == nil {
			var found bool
			found, err = rootItem(fd, c.id, &info)
			if err == nil && !found {
				continue // deleted since the ROOT_REF was read
			}
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

// user walks the subvolumes below the subvolume open as fd with the
// unprivileged ioctls: GET_SUBVOL_ROOTREF lists the children's ids and
// directories, INO_LOOKUP_USER resolves their paths, and each child is
// opened for GET_SUBVOL_INFO and its own children.
func (w *walker) user(fd int, rel string) {
	var refs []Rootref
	args := GetSubvolRootrefArgs{}
	for {
		err := GetSubvolRootref(fd, &args)
		if err != nil && err != unix.EOVERFLOW {
			w.emit(SubvolInfo{Path: rel}, err)
			return
		}
		n := min(int(args.Num_items), len(args.Rootref))
		refs = append(refs, args.Rootref[:n]...)
		if err == nil || n == 0 {
			break
		}
		args.Min_treeid = args.Rootref[n-1].Treeid + 1
	}
	for _, r := range refs {
		lookup := InoLookupUserArgs{Dirid: r.Dirid, Treeid: r.Treeid}
		if err := InoLookupUser(fd, &lookup); err != nil {
			if err == unix.ENOENT {
				continue // deleted meanwhile
			}
			if !w.emit(SubvolInfo{ID: r.Treeid, Path: rel}, err) {
				return
			}
			continue
		}
		childRel := path.Join(cstring(lookup.Path[:]), cstring(lookup.Name[:]))
		info := SubvolInfo{ID: r.Treeid, Path: path.Join(rel, childRel)}
		cfd, err := openDir(fd, childRel)
		if err == unix.ENOENT {
			continue
		}
		if err == nil {
			var args GetSubvolInfoArgs
			if err = GetSubvolInfo(cfd, &args); err == nil {
				info = infoFromArgs(&args)
				info.Path = path.Join(rel, childRel)
			}
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

// SubvolumesAt is Subvolumes for the subvolume name in the directory open
// as dirFd (name "." for dirFd itself), with Path relative to it.
func SubvolumesAt(dirFd int, name string) iter.Seq2[SubvolInfo, error] {
	return func(yield func(SubvolInfo, error) bool) {
		fd, err := openDir(dirFd, name)
		if err != nil {
			yield(SubvolInfo{}, pathErr("open", name, err))
			return
		}
		defer unix.Close(fd)
		walk(fd, name, listAuto, yield)
	}
}
