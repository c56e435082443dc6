package ioctl

import (
	"golang.org/x/sys/unix"
)

// Usage is what `btrfs filesystem usage -b` prints as "Device size" and
// "Used": the size of all devices, and the raw bytes used on them (logical
// bytes used times the profile's copies, DUP metadata counting twice).
type Usage struct {
	DeviceSize uint64
	Used       uint64
}

// FilesystemUsage returns the usage of the filesystem holding path, from
// FS_INFO, DEV_INFO and SPACE_INFO.
//
// Privilege: none. Kernel: any. Concurrency: safe.
func FilesystemUsage(path string) (Usage, error) {
	fd, err := openDir(unix.AT_FDCWD, path)
	if err != nil {
		return Usage{}, pathErr("open", path, err)
	}
	defer unix.Close(fd)
	if err := CheckBtrfs(fd); err != nil {
		return Usage{}, pathErr("BTRFS_IOC_FS_INFO", path, err)
	}
	var fsInfo FsInfoArgs
	if err := FsInfo(fd, &fsInfo); err != nil {
		return Usage{}, pathErr("BTRFS_IOC_FS_INFO", path, err)
	}
	var u Usage
	for id := uint64(1); id <= fsInfo.Max_id; id++ {
		dev := DevInfoArgs{Devid: id}
		switch err := DevInfo(fd, &dev); err {
		case nil:
			u.DeviceSize += dev.Total_bytes
		case unix.ENODEV: // ids of removed devices leave holes
		default:
			return Usage{}, pathErr("BTRFS_IOC_DEV_INFO", path, err)
		}
	}
	spaces, err := SpaceInfos(fd)
	if err != nil {
		return Usage{}, pathErr("BTRFS_IOC_SPACE_INFO", path, err)
	}
	for _, s := range spaces {
		if s.Flags&BTRFS_SPACE_INFO_GLOBAL_RSV != 0 {
			continue
		}
		u.Used += uint64(float64(s.Used_bytes) * profileRatio(s.Flags, fsInfo.Num_devices))
	}
	return u, nil
}

// profileRatio is the raw bytes per logical byte of a block group profile.
func profileRatio(flags, devices uint64) float64 {
	switch {
	case flags&(BTRFS_BLOCK_GROUP_DUP|BTRFS_BLOCK_GROUP_RAID1|BTRFS_BLOCK_GROUP_RAID10) != 0:
		return 2
	case flags&BTRFS_BLOCK_GROUP_RAID1C3 != 0:
		return 3
	case flags&BTRFS_BLOCK_GROUP_RAID1C4 != 0:
		return 4
	case flags&BTRFS_BLOCK_GROUP_RAID5 != 0 && devices > 1:
		return float64(devices) / float64(devices-1)
	case flags&BTRFS_BLOCK_GROUP_RAID6 != 0 && devices > 2:
		return float64(devices) / float64(devices-2)
	}
	return 1
}
