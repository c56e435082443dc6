package store

import (
	"os"

	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// An unchanged cache clone is not saved: Release keeps the current
// version (still winning its generation), which costs no snapshot and no
// transaction commit, and records when on cache/ (see released.go). The clone is marked (ioctl.MarkChangesFd) right
// after its snapshot; the chown that hands it to its owner, if the owner
// differs, is accepted into the mark; Release asks ioctl.ChangedSinceFd.
// Where the answer cannot be had (a kernel before 5.10, an error), the
// clone is saved as if changed. A read may count as a change through the
// access time (relatime): see ioctl.ChangeMark.

// markAndChown marks the fresh clone l.vol and gives its top directory to
// owner, unless it has that owner already (a chown, even a no-op one, is
// a change of the clone that a later listing of it would show through its
// access time).
func (l *CacheLease) markAndChown(owner Owner) error {
	mark, err := ioctl.MarkChangesFd(l.vol.fd)
	l.marked = err == nil
	if err != nil {
		l.s.log.V(1).Info("cannot tell whether a cache clone changes: it is saved on release", "name", l.name, "err", err.Error())
	}
	var st unix.Stat_t
	if err := unix.Fstat(l.vol.fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: l.Path(), Err: err}
	}
	if int(st.Uid) != owner.UID || int(st.Gid) != owner.GID {
		if err := unix.Fchown(l.vol.fd, owner.UID, owner.GID); err != nil {
			return &os.PathError{Op: "chown", Path: l.Path(), Err: err}
		}
		if l.marked && mark.Accept(l.vol.fd) != nil {
			l.marked = false
		}
	}
	l.mark = mark
	return nil
}

// changed reports whether the clone may have changed since it was handed
// out: true unless ioctl.ChangedSinceFd says exactly nothing did.
func (l *CacheLease) changed() bool {
	if !l.marked || l.vol.fd < 0 {
		return true
	}
	changed, err := ioctl.ChangedSinceFd(l.vol.fd, l.mark)
	if err != nil {
		l.s.log.V(1).Info("cannot tell whether a cache clone changed: saving it", "name", l.name, "err", err.Error())
		return true
	}
	return changed
}

// canSnapshotOthers reports whether the store may snapshot a subvolume
// whose root another user owns: CAP_FOWNER, outside a user namespace
// (where it would count only for the uids mapped into it).
func (s *Store) canSnapshotOthers() bool {
	return s.report.CapFowner && !s.report.UserNamespace
}
