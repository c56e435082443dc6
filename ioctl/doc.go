// Package ioctl manages btrfs subvolumes by issuing BTRFS_IOC_* ioctls
// directly through golang.org/x/sys/unix: no cgo, no btrfs command, no
// fork/exec.
//
// It has two layers. The lower one is one function per ioctl on an open
// file descriptor (SubvolCreateV2, SnapCreateV2, TreeSearch, ...) with the
// kernel's structs (VolArgsV2, SearchKey, ...), defined in btrfs.go and
// pinned against linux/btrfs.h by a test; these return the bare unix.Errno.
// The upper one works on paths and, with an At suffix, relative to an open
// directory, as libbtrfsutil does: CreateSubvolume, Snapshot,
// DeleteSubvolume, DeleteSubvolumeByID, IsSubvolume, SubvolumeInfo,
// ReadOnly, SetReadOnly, Subvolumes, Sync and WaitDeleted, and the rest of
// libbtrfsutil's API (default subvolume, deleted subvolumes, lookups by id,
// recursive snapshots, qgroup inheritance, start/wait sync: the README has
// the full mapping).
//
// Upper-layer errors are *fs.PathError with the ioctl's name as Op and the
// errno inside, so errors.Is(err, fs.ErrExist), fs.ErrPermission and
// friends work, as do errors.Is(err, unix.ENOTEMPTY) and the sentinels
// ErrNotBtrfs, ErrNotSubvolume, ErrNotCreated and ErrNotSupported. Every
// upper-layer function checks the filesystem type before its first btrfs
// ioctl, because other filesystems reuse the request numbers.
//
// Each function's comment says which privilege and kernel it needs. All are
// safe for concurrent use; the kernel serializes what must be.
package ioctl
