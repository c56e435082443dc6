package store

import (
	"fmt"
	"io/fs"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// workVol is the work subvolume of a build (or a cache clone) as the
// store created it: open, so that it can be found wherever a step moves
// it, and identified, so that what is at its name can be checked to be it.
type workVol struct {
	fd       int    // open on its root; -1 if not made
	id       uint64 // its subvolume id
	uuid     ioctl.UUID
	parent   ioctl.UUID // its source's UUID, if it is a snapshot
	verified bool       // its name was checked to hold it, so removing the name removes it
}

// close closes the subvolume's descriptor, if open.
func (w *workVol) close() {
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
}

// identify opens name in dirFd as the subvolume just created there and
// records what it is.
func (w *workVol) identify(dirFd int, name string) error {
	fd, err := openDirAt(dirFd, name)
	if err != nil {
		return err
	}
	info, err := ioctl.SubvolumeInfoFd(fd)
	if err != nil {
		unix.Close(fd)
		return &fs.PathError{Op: "BTRFS_IOC_GET_SUBVOL_INFO", Path: name, Err: err}
	}
	w.fd, w.id, w.uuid, w.parent = fd, info.ID, info.UUID, info.ParentUUID
	return nil
}

// openVerified opens name in dirFd, without following a symlink or
// crossing a mount, and checks that it is the subvolume w: the one the
// store created, not one a step put in its place. what names it in
// errors, which match ErrWorkReplaced.
func (w *workVol) openVerified(dirFd int, name, what string) (int, error) {
	fd, err := openDirAt(dirFd, name)
	if err != nil {
		return -1, fmt.Errorf("%w: %s %s (%w)", ErrWorkReplaced, what, describeEntry(dirFd, name), err)
	}
	info, err := ioctl.SubvolumeInfoFd(fd)
	switch {
	case err != nil:
		err = fmt.Errorf("%w: %s is not the subvolume the store created (%w)", ErrWorkReplaced, what, err)
	case info.ID != w.id || info.UUID != w.uuid:
		err = fmt.Errorf("%w: %s is subvolume %d, not %d, which the store created", ErrWorkReplaced, what, info.ID, w.id)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	w.verified = true
	return fd, nil
}
