package ioctl

import (
	"golang.org/x/sys/unix"
)

// DeletedSubvolumes returns the ids of the subvolumes of the filesystem
// holding fsPath (any path on it) that are deleted but not yet cleaned:
// unlinked, their space not yet freed, as `btrfs subvolume list -d` lists
// them. WaitDeleted waits for them. An orphan item that is not a
// subvolume's (a free space cache inode's) is not listed, as in
// libbtrfsutil.
//
// Privilege: CAP_SYS_ADMIN (tree search of the root tree's orphan items);
// without it an error matching fs.ErrPermission. Kernel: any. Concurrency:
// safe; a subvolume deleted or cleaned during the call may or may not be
// listed.
func DeletedSubvolumes(fsPath string) ([]uint64, error) {
	fd, err := openOnFS(fsPath)
	if err != nil {
		return nil, pathErr("open", fsPath, err)
	}
	defer unix.Close(fd)
	return deletedSubvolumesFd(fd, fsPath)
}

// DeletedSubvolumesFd is DeletedSubvolumes for an open file or directory.
func DeletedSubvolumesFd(fd int) ([]uint64, error) { return deletedSubvolumesFd(fd, "") }

func deletedSubvolumesFd(fd int, display string) ([]uint64, error) {
	const op = "BTRFS_IOC_TREE_SEARCH"
	if err := CheckBtrfs(fd); err != nil {
		return nil, pathErr(op, display, err)
	}
	orphans, err := deletedIDs(fd)
	if err != nil {
		return nil, pathErr(op, display, err)
	}
	ids := []uint64{}
	for _, id := range orphans {
		if !validSubvolumeID(id) {
			continue
		}
		found, err := rootItem(fd, id, nil)
		if err != nil {
			return nil, pathErr(op, display, err)
		}
		if found {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
