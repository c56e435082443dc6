package ioctl

import (
	"encoding/binary"
	"math"

	"golang.org/x/sys/unix"
)

// Offsets in the packed struct btrfs_dir_item (btrfs_tree.h): location
// (a btrfs_disk_key, whose objectid comes first), transid, data_len,
// name_len, type; the name and then the data follow.
const (
	dirItemDataLen = 25
	dirItemNameLen = 27
)

// DefaultSubvolume returns the id of the default subvolume of the
// filesystem holding fsPath (any path on it): the one a mount without
// subvol= or subvolid= mounts, as `btrfs subvolume get-default` prints it.
// A fresh filesystem's default is the top level, 5.
//
// Privilege: CAP_SYS_ADMIN (it reads the "default" entry of the root tree
// directory by tree search); without it an error matching
// fs.ErrPermission. Kernel: any. Concurrency: safe; a concurrent
// SetDefaultSubvolume gives the old or the new id.
func DefaultSubvolume(fsPath string) (uint64, error) {
	fd, err := openOnFS(fsPath)
	if err != nil {
		return 0, pathErr("open", fsPath, err)
	}
	defer unix.Close(fd)
	return defaultSubvolumeFd(fd, fsPath)
}

// DefaultSubvolumeFd is DefaultSubvolume for an open file or directory.
func DefaultSubvolumeFd(fd int) (uint64, error) { return defaultSubvolumeFd(fd, "") }

func defaultSubvolumeFd(fd int, display string) (uint64, error) {
	const op = "BTRFS_IOC_TREE_SEARCH"
	if err := CheckBtrfs(fd); err != nil {
		return 0, pathErr(op, display, err)
	}
	var id uint64
	found, bad := false, false
	err := searchAll(fd, nil, SearchKey{
		Tree_id:      BTRFS_ROOT_TREE_OBJECTID,
		Min_objectid: BTRFS_ROOT_TREE_DIR_OBJECTID, Max_objectid: BTRFS_ROOT_TREE_DIR_OBJECTID,
		Min_type: BTRFS_DIR_ITEM_KEY, Max_type: BTRFS_DIR_ITEM_KEY,
		Max_offset: math.MaxUint64, Max_transid: math.MaxUint64,
	}, func(h *SearchHeader, data []byte) bool {
		// One item holds every entry whose name has this hash.
		for len(data) > 0 {
			if len(data) < SizeofDirItem {
				bad = true
				return false
			}
			le := binary.LittleEndian
			dataLen, nameLen := int(le.Uint16(data[dirItemDataLen:])), int(le.Uint16(data[dirItemNameLen:]))
			if len(data)-SizeofDirItem < nameLen+dataLen {
				bad = true
				return false
			}
			if string(data[SizeofDirItem:SizeofDirItem+nameLen]) == "default" {
				id, found = le.Uint64(data[0:]), true // location.objectid
				return false
			}
			data = data[SizeofDirItem+nameLen+dataLen:]
		}
		return true
	})
	if err == nil && bad {
		err = errBadSearchResult
	}
	if err == nil && !found {
		err = unix.ENOENT
	}
	if err != nil {
		return 0, pathErr(op, display, err)
	}
	return id, nil
}

// SetDefaultSubvolume makes the subvolume at path the default subvolume of
// its filesystem (`btrfs subvolume set-default path`): the one the next
// mount without subvol= or subvolid= mounts. A path that is not a
// subvolume's root directory gives ErrNotSubvolume; nothing is changed.
//
// Privilege: CAP_SYS_ADMIN (EPERM: fs.ErrPermission). Kernel: any.
// Concurrency: safe; the last of concurrent calls wins. It changes what a
// later mount shows, never a current mount.
func SetDefaultSubvolume(path string) error {
	fd, err := openDir(unix.AT_FDCWD, path)
	if err != nil {
		return pathErr("open", path, err)
	}
	defer unix.Close(fd)
	return setDefaultFd(fd, 0, path)
}

// SetDefaultSubvolumeFd is SetDefaultSubvolume for the subvolume open as
// fd (its root directory).
func SetDefaultSubvolumeFd(fd int) error { return setDefaultFd(fd, 0, "") }

// SetDefaultSubvolumeByID makes subvolume id the default subvolume of the
// filesystem holding fsPath (any path on it), as `btrfs subvolume
// set-default id fsPath`; id 5 restores the top level. An id that names no
// subvolume gives an error matching fs.ErrNotExist, and id 0 (which the
// kernel would take for 5) fs.ErrInvalid.
//
// Privilege, kernel and concurrency: as SetDefaultSubvolume.
func SetDefaultSubvolumeByID(fsPath string, id uint64) error {
	fd, err := openOnFS(fsPath)
	if err != nil {
		return pathErr("open", fsPath, err)
	}
	defer unix.Close(fd)
	return setDefaultByIDFd(fd, id, fsPath)
}

// SetDefaultSubvolumeByIDFd is SetDefaultSubvolumeByID for an open file or
// directory.
func SetDefaultSubvolumeByIDFd(fd int, id uint64) error { return setDefaultByIDFd(fd, id, "") }

func setDefaultByIDFd(fd int, id uint64, display string) error {
	if id == 0 {
		return pathErr("BTRFS_IOC_DEFAULT_SUBVOL", display, unix.EINVAL)
	}
	return setDefaultFd(fd, id, display)
}

// setDefaultFd issues DEFAULT_SUBVOL for id, or for the subvolume open as
// fd when id is 0.
func setDefaultFd(fd int, id uint64, display string) error {
	const op = "BTRFS_IOC_DEFAULT_SUBVOL"
	if id == 0 {
		if err := checkSubvolume(fd); err != nil {
			return pathErr(op, display, err)
		}
		var err error
		if id, err = subvolumeID(fd); err != nil {
			return pathErr("BTRFS_IOC_INO_LOOKUP", display, err)
		}
	} else if err := CheckBtrfs(fd); err != nil {
		return pathErr(op, display, err)
	}
	if err := DefaultSubvol(fd, id); err != nil {
		return pathErr(op, display, err)
	}
	return nil
}
