package ioctl

import (
	"fmt"
	"path"

	"github.com/btrstore/btrstore/internal/beneath"
	"golang.org/x/sys/unix"
)

// snapshotRecursive is SnapshotWith with SnapshotRecursive: see there.
func snapshotRecursive(srcFd, dirFd int, name string, opts SnapshotOptions, src, dst string) error {
	const op = "BTRFS_IOC_SNAP_CREATE_V2"
	if err := checkSubvolume(srcFd); err != nil {
		return pathErr(op, src, err)
	}
	srcID, err := subvolumeID(srcFd)
	if err != nil {
		return pathErr("BTRFS_IOC_INO_LOOKUP", src, err)
	}
	// The nested subvolumes, parents first, listed before the top
	// snapshot exists: a destination below src is then not listed.
	var nested []SubvolInfo
	var listErr error
	walk(srcFd, src, listAuto, ListOptions{}, func(info SubvolInfo, err error) bool {
		if err != nil {
			listErr = err
			return false
		}
		nested = append(nested, info)
		return true
	})
	if listErr != nil {
		return listErr
	}
	readOnly := opts.Flags&SnapshotReadOnly != 0
	flags := opts.Flags &^ (SnapshotRecursive | SnapshotReadOnly)
	if err := snapshotOne(srcFd, dirFd, name, flags, opts.QgroupInherit, src, dst); err != nil {
		return err
	}
	err = snapshotNested(srcFd, srcID, dirFd, name, nested, readOnly, dst)
	if err == nil {
		return nil
	}
	if _, cerr := DeleteSubvolumeAtIDs(dirFd, name, DeleteRecursive); cerr != nil {
		return fmt.Errorf("%w; deleting the partial snapshot also failed: %w", err, cerr)
	}
	return err
}

// snapshotNested replaces the placeholders in the new snapshot name (in
// dirFd) by snapshots of the nested subvolumes of the source (open as
// srcFd, id srcID), parents first, then makes them read-only if asked,
// children first.
func snapshotNested(srcFd int, srcID uint64, dirFd int, name string, nested []SubvolInfo, readOnly bool, dst string) error {
	const op = "BTRFS_IOC_SNAP_CREATE_V2"
	dstFd, err := beneath.OpenDir(dirFd, name)
	if err != nil {
		return pathErr("open", dst, err)
	}
	defer unix.Close(dstFd)
	if err := checkSubvolume(dstFd); err != nil {
		return pathErr(op, dst, err)
	}
	type made struct {
		rel string
		id  uint64 // of the new snapshot
	}
	var created []made
	done := map[uint64]bool{srcID: true} // source ids whose snapshot is in place
	for _, sub := range nested {
		if !done[sub.ParentID] {
			continue // its parent was left out: no placeholder to fill
		}
		id, ok, err := snapshotPlaceholder(srcFd, dstFd, sub, path.Join(dst, sub.Path))
		if err != nil {
			return err
		}
		if ok {
			done[sub.ID] = true
			created = append(created, made{sub.Path, id})
		}
	}
	if !readOnly {
		return nil
	}
	for i := len(created) - 1; i >= 0; i-- {
		c := created[i]
		p := path.Join(dst, c.rel)
		fd, err := beneath.OpenDir(dstFd, c.rel)
		if err != nil {
			return pathErr("open", p, err)
		}
		err = checkSnapshotID(fd, c.id)
		if err == nil {
			err = setReadOnlyFd(fd, true, p)
		} else {
			err = pathErr(op, p, err)
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return setReadOnlyFd(dstFd, true, dst)
}

// checkSnapshotID returns EXDEV unless fd is the subvolume id.
func checkSnapshotID(fd int, id uint64) error {
	if err := checkSubvolume(fd); err != nil {
		return err
	}
	got, err := subvolumeID(fd)
	if err != nil {
		return err
	}
	if got != id {
		return unix.EXDEV
	}
	return nil
}

// snapshotPlaceholder snapshots the nested subvolume sub (sub.Path below
// srcFd) into the place of its placeholder at sub.Path below dstFd, and
// returns the new snapshot's id. ok is false when sub is left out: it is
// gone or replaced in the source, or its placeholder is not an empty
// placeholder.
func snapshotPlaceholder(srcFd, dstFd int, sub SubvolInfo, display string) (id uint64, ok bool, err error) {
	const op = "BTRFS_IOC_SNAP_CREATE_V2"
	childFd, err := beneath.OpenDir(srcFd, sub.Path)
	if skipUser(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, pathErr("open", sub.Path, err)
	}
	defer unix.Close(childFd)
	if err := checkSnapshotID(childFd, sub.ID); err != nil {
		if err == unix.EXDEV || err == ErrNotSubvolume {
			return 0, false, nil // replaced meanwhile
		}
		return 0, false, pathErr(op, sub.Path, err)
	}
	dir, name := splitPath(sub.Path)
	parentFd, err := beneath.OpenDir(dstFd, dir)
	if err != nil {
		return 0, false, pathErr("open", display, err)
	}
	defer unix.Close(parentFd)
	var st unix.Stat_t
	if err := unix.Fstatat(parentFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return 0, false, nil
		}
		return 0, false, pathErr("stat", display, err)
	}
	if st.Ino != BTRFS_EMPTY_SUBVOL_DIR_OBJECTID || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, false, nil
	}
	if err := unix.Unlinkat(parentFd, name, unix.AT_REMOVEDIR); err != nil {
		return 0, false, pathErr("rmdir", display, err)
	}
	if err := snapshotOne(childFd, parentFd, name, 0, nil, sub.Path, display); err != nil {
		return 0, false, err
	}
	newFd, err := beneath.OpenDir(parentFd, name)
	if err != nil {
		return 0, false, pathErr("open", display, err)
	}
	defer unix.Close(newFd)
	if id, err = subvolumeID(newFd); err != nil {
		return 0, false, pathErr("BTRFS_IOC_INO_LOOKUP", display, err)
	}
	return id, true, nil
}
