package ioctl

import (
	"errors"
	"math"
	"path"

	"golang.org/x/sys/unix"
)

// SubvolumeID returns the id of the subvolume holding path, which may be
// any file or directory on btrfs: a subvolume's root directory, a plain
// directory, a file (as libbtrfsutil's btrfs_util_subvolume_get_id, which
// needs the path opened; here a non-directory is reached through its
// directory, so read permission on it is not needed).
//
// Privilege: none beyond resolving path (INO_LOOKUP of the root directory
// is allowed to everyone). Kernel: any. Concurrency: safe.
func SubvolumeID(path string) (uint64, error) {
	fd, err := openOnFS(path)
	if err != nil {
		return 0, pathErr("open", path, err)
	}
	defer unix.Close(fd)
	return subvolumeIDFd(fd, path)
}

// SubvolumeIDFd is SubvolumeID for an open file or directory. Errors are
// *fs.PathError with an empty Path, as for every Fd form.
func SubvolumeIDFd(fd int) (uint64, error) { return subvolumeIDFd(fd, "") }

func subvolumeIDFd(fd int, display string) (uint64, error) {
	const op = "BTRFS_IOC_INO_LOOKUP"
	if err := CheckBtrfs(fd); err != nil {
		return 0, pathErr(op, display, err)
	}
	id, err := subvolumeID(fd)
	if err != nil {
		return 0, pathErr(op, display, err)
	}
	return id, nil
}

// validSubvolumeID reports whether id can name a subvolume: the top level
// (5) or a tree id in the range the kernel gives subvolumes.
func validSubvolumeID(id uint64) bool {
	return id == BTRFS_FS_TREE_OBJECTID || id >= BTRFS_FIRST_FREE_OBJECTID && id <= BTRFS_LAST_FREE_OBJECTID
}

// SubvolumePath returns the path of subvolume id relative to the
// filesystem's top level (subvolume 5, whose own path is ""), as
// libbtrfsutil's btrfs_util_subvolume_get_path and the path column of
// `btrfs subvolume list` give it: the same whichever subvolume is mounted.
// fsPath is any path on the filesystem; id 0 means the subvolume holding
// fsPath (libbtrfsutil asks for a subvolume's root directory there; any
// path in it will do here).
//
// An id that names no subvolume, or one that is deleted (its path is
// gone), gives an error matching fs.ErrNotExist.
//
// Privilege: CAP_SYS_ADMIN (tree search and INO_LOOKUP upwards); without
// it an error matching fs.ErrPermission. Kernel: any. Concurrency: safe;
// a subvolume moved or deleted during the call gives its old path, its new
// one, or fs.ErrNotExist.
func SubvolumePath(fsPath string, id uint64) (string, error) {
	fd, err := openOnFS(fsPath)
	if err != nil {
		return "", pathErr("open", fsPath, err)
	}
	defer unix.Close(fd)
	return subvolumePathFd(fd, id, fsPath)
}

// SubvolumePathFd is SubvolumePath for an open file or directory.
func SubvolumePathFd(fd int, id uint64) (string, error) { return subvolumePathFd(fd, id, "") }

func subvolumePathFd(fd int, id uint64, display string) (string, error) {
	const op = "BTRFS_IOC_TREE_SEARCH"
	if err := CheckBtrfs(fd); err != nil {
		return "", pathErr(op, display, err)
	}
	if id == 0 {
		var err error
		if id, err = subvolumeID(fd); err != nil {
			return "", pathErr("BTRFS_IOC_INO_LOOKUP", display, err)
		}
	}
	if !validSubvolumeID(id) {
		return "", pathErr(op, display, unix.ENOENT)
	}
	p, err := pathByID(fd, id)
	if err != nil {
		return "", pathErr(op, display, err)
	}
	return p, nil
}

// rootBackref returns subvolume id's parent and its ROOT_BACKREF (the
// directory and name it has in the parent), or ENOENT when it has none:
// the top level, a deleted subvolume, or no subvolume (CAP_SYS_ADMIN).
func rootBackref(fd int, id uint64) (parent uint64, ref rootRef, err error) {
	found, ok := false, false
	err = searchAll(fd, nil, rootTreeKey(id, BTRFS_ROOT_BACKREF_KEY), func(h *SearchHeader, data []byte) bool {
		found = true
		parent = h.Offset
		ref, ok = parseRootRef(data)
		return false
	})
	switch {
	case err != nil:
		return 0, rootRef{}, err
	case !found:
		return 0, rootRef{}, unix.ENOENT
	case !ok:
		return 0, rootRef{}, errBadSearchResult
	}
	return parent, ref, nil
}

// pathByID resolves subvolume id's path from the top level by following
// ROOT_BACKREF items upwards, as libbtrfsutil does (CAP_SYS_ADMIN). A
// subvolume without a backref (deleted, or none) gives ENOENT.
func pathByID(fd int, id uint64) (string, error) {
	var elems []string
	for id != BTRFS_FS_TREE_OBJECTID {
		parent, ref, err := rootBackref(fd, id)
		if err != nil {
			return "", err
		}
		dir, err := inoLookupPath(fd, parent, ref.dirid)
		if err != nil {
			return "", err
		}
		elems = append(elems, path.Join(dir, ref.name))
		id = parent
		if len(elems) > math.MaxUint16 {
			return "", unix.ELOOP // a corrupt tree; never in practice
		}
	}
	p := ""
	for i := len(elems) - 1; i >= 0; i-- {
		p = path.Join(p, elems[i])
	}
	return p, nil
}

// SubvolumeInfoByID returns the subvolume with the given id on the
// filesystem holding fsPath (any path on it), with Path relative to the
// filesystem's top level as SubvolumePath gives it. id 0 means the
// subvolume holding fsPath, and then it is SubvolumeInfo with Path filled
// in where the caller may resolve it; this is the libbtrfsutil
// btrfs_util_subvolume_get_info(path, id) equivalent.
//
// A subvolume that is deleted but not yet cleaned (DeletedSubvolumes) is
// still found, with ParentID, DirID, Name and Path empty, as libbtrfsutil
// reports it; an id that names no subvolume gives an error matching
// fs.ErrNotExist.
//
// Privilege: CAP_SYS_ADMIN (tree search of the root tree) for any other id
// than that of the subvolume holding fsPath, an error matching
// fs.ErrPermission without it; none for that one (GET_SUBVOL_INFO), whose
// Path then stays empty. Kernel: 4.18. Concurrency: safe.
func SubvolumeInfoByID(fsPath string, id uint64) (SubvolInfo, error) {
	fd, err := openOnFS(fsPath)
	if err != nil {
		return SubvolInfo{}, pathErr("open", fsPath, err)
	}
	defer unix.Close(fd)
	return subvolumeInfoByID(fd, id, fsPath)
}

// SubvolumeInfoByIDFd is SubvolumeInfoByID for an open file or directory.
// SubvolumeInfoByIDFd(fd, 0) is the fd form of SubvolumeInfo that fills in
// Path (SubvolumeInfoFd leaves it empty, and needs the subvolume's root
// directory).
func SubvolumeInfoByIDFd(fd int, id uint64) (SubvolInfo, error) {
	return subvolumeInfoByID(fd, id, "")
}

func subvolumeInfoByID(fd int, id uint64, display string) (SubvolInfo, error) {
	const op = "BTRFS_IOC_TREE_SEARCH"
	if err := CheckBtrfs(fd); err != nil {
		return SubvolInfo{}, pathErr(op, display, err)
	}
	own, err := subvolumeID(fd)
	if err != nil {
		return SubvolInfo{}, pathErr("BTRFS_IOC_INO_LOOKUP", display, err)
	}
	if id == 0 || id == own {
		var args GetSubvolInfoArgs
		if err := GetSubvolInfo(fd, &args); err != nil {
			return SubvolInfo{}, pathErr("BTRFS_IOC_GET_SUBVOL_INFO", display, err)
		}
		info := infoFromArgs(&args)
		p, err := pathByID(fd, info.ID)
		switch {
		case err == nil:
			info.Path = p
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.ENOENT):
			// Unprivileged, or deleted meanwhile: no path.
		default:
			return info, pathErr(op, display, err)
		}
		return info, nil
	}
	if !validSubvolumeID(id) {
		return SubvolInfo{}, pathErr(op, display, unix.ENOENT)
	}
	info := SubvolInfo{ID: id}
	found, err := rootItem(fd, id, &info)
	if err == nil && !found {
		err = unix.ENOENT
	}
	if err != nil {
		return SubvolInfo{}, pathErr(op, display, err)
	}
	if id == BTRFS_FS_TREE_OBJECTID {
		return info, nil
	}
	parent, ref, err := rootBackref(fd, id)
	if err == unix.ENOENT {
		return info, nil // deleted, not yet cleaned
	}
	if err != nil {
		return SubvolInfo{}, pathErr(op, display, err)
	}
	info.ParentID, info.DirID, info.Name = parent, ref.dirid, ref.name
	p, err := pathByID(fd, id)
	switch {
	case err == nil:
		info.Path = p
	case err == unix.ENOENT: // deleted meanwhile
	default:
		return SubvolInfo{}, pathErr(op, display, err)
	}
	return info, nil
}
