package ioctl

import (
	"time"

	"github.com/btrstore/btrstore/internal/uuidhex"
	"golang.org/x/sys/unix"
)

// UUID is a subvolume UUID; the zero value means none.
type UUID [BTRFS_UUID_SIZE]byte

// IsZero reports whether u is the zero UUID.
func (u UUID) IsZero() bool { return u == UUID{} }

// String formats u as 8-4-4-4-12 lowercase hex, or "-" for the zero UUID
// (as `btrfs subvolume show` prints it).
func (u UUID) String() string {
	if u.IsZero() {
		return "-"
	}
	return uuidhex.Format(u)
}

// SubvolInfo describes a subvolume, from GET_SUBVOL_INFO or from its root
// item in the root tree.
type SubvolInfo struct {
	ID       uint64 // subvolume (tree) id; 5 is the top level
	ParentID uint64 // id of the subvolume holding it; 0 for the top level
	DirID    uint64 // inode of the directory in the parent that holds it
	Name     string // its name in that directory
	// Path is the path of the subvolume: relative to the listed directory
	// for Subvolumes; relative to the filesystem's top level for
	// SubvolumeInfo, where it is empty if the caller lacks CAP_SYS_ADMIN
	// (the path can only be resolved upwards by tree search).
	Path         string
	UUID         UUID
	ParentUUID   UUID // UUID of the snapshot's source, zero if not a snapshot
	ReceivedUUID UUID
	Generation   uint64 // last transaction that changed the subvolume
	CTransID     uint64 // transaction of the last change to the root inode
	OTransID     uint64 // transaction that created it
	STransID     uint64
	RTransID     uint64
	Ctime        time.Time
	Otime        time.Time // creation time
	Stime        time.Time
	Rtime        time.Time
	Flags        uint64 // root item flags
	ReadOnly     bool
}

func btrfsTime(sec uint64, nsec uint32) time.Time {
	if sec == 0 && nsec == 0 {
		return time.Time{}
	}
	return time.Unix(int64(sec), int64(nsec))
}

func infoFromArgs(a *GetSubvolInfoArgs) SubvolInfo {
	return SubvolInfo{
		ID:           a.Treeid,
		ParentID:     a.Parent_id,
		DirID:        a.Dirid,
		Name:         cstring(a.Name[:]),
		UUID:         a.Uuid,
		ParentUUID:   a.Parent_uuid,
		ReceivedUUID: a.Received_uuid,
		Generation:   a.Generation,
		CTransID:     a.Ctransid,
		OTransID:     a.Otransid,
		STransID:     a.Stransid,
		RTransID:     a.Rtransid,
		Ctime:        btrfsTime(a.Ctime.Sec, a.Ctime.Nsec),
		Otime:        btrfsTime(a.Otime.Sec, a.Otime.Nsec),
		Stime:        btrfsTime(a.Stime.Sec, a.Stime.Nsec),
		Rtime:        btrfsTime(a.Rtime.Sec, a.Rtime.Nsec),
		Flags:        a.Flags,
		ReadOnly:     a.Flags&BTRFS_ROOT_SUBVOL_RDONLY != 0,
	}
}

// IsSubvolume reports whether path is the root directory of a subvolume.
// It returns ErrNotBtrfs (wrapped) when path is not on btrfs, so that "not a
// subvolume" and "not btrfs" stay distinct.
//
// Privilege: none beyond resolving path. Kernel: any. Concurrency: safe.
func IsSubvolume(path string) (bool, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return false, pathErr("statfs", path, err)
	}
	if uint32(sfs.Type) != BTRFS_SUPER_MAGIC { // Type is int32 on 32-bit arches, uint32 on s390x
		return false, pathErr("statfs", path, ErrNotBtrfs)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, pathErr("stat", path, err)
	}
	return st.Ino == BTRFS_FIRST_FREE_OBJECTID && st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// SubvolumeInfo returns the subvolume at path.
//
// Privilege: none for the fields from GET_SUBVOL_INFO; Path is filled only
// with CAP_SYS_ADMIN. Kernel: 4.18. Concurrency: safe.
func SubvolumeInfo(path string) (SubvolInfo, error) {
	fd, err := openDir(unix.AT_FDCWD, path)
	if err != nil {
		return SubvolInfo{}, pathErr("open", path, err)
	}
	defer unix.Close(fd)
	info, err := SubvolumeInfoFd(fd)
	if err != nil {
		return info, pathErr("BTRFS_IOC_GET_SUBVOL_INFO", path, err)
	}
	if p, err := pathByID(fd, info.ID); err == nil {
		info.Path = p
	}
	return info, nil
}

// SubvolumeInfoFd is SubvolumeInfo for an open subvolume, without Path (no
// tree search: the cheapest form). SubvolumeInfoByIDFd(fd, 0) is the fd
// form that fills in Path. Its error is the bare cause (ErrNotSubvolume,
// ErrNotBtrfs or an errno).
func SubvolumeInfoFd(fd int) (SubvolInfo, error) {
	if err := checkSubvolume(fd); err != nil {
		return SubvolInfo{}, err
	}
	var args GetSubvolInfoArgs
	if err := GetSubvolInfo(fd, &args); err != nil {
		return SubvolInfo{}, err
	}
	return infoFromArgs(&args), nil
}

// subvolumeID returns the id of the subvolume holding fd (INO_LOOKUP of
// the root directory, which needs no privilege).
func subvolumeID(fd int) (uint64, error) {
	args := InoLookupArgs{Objectid: BTRFS_FIRST_FREE_OBJECTID}
	if err := InoLookup(fd, &args); err != nil {
		return 0, err
	}
	return args.Treeid, nil
}

// IsSubvolumeFd is IsSubvolume for an open file or directory: whether it
// is the root directory of a subvolume. It returns ErrNotBtrfs (wrapped)
// when fd is not on btrfs.
func IsSubvolumeFd(fd int) (bool, error) {
	switch err := checkSubvolume(fd); err {
	case nil:
		return true, nil
	case ErrNotSubvolume:
		return false, nil
	default:
		return false, pathErr("fstat", "", err)
	}
}
