// Package kernel finds out facts about the running system that btrstore
// depends on, and explains in plain words what is missing:
//
//   - the kernel version ([Version], from uname, computed once);
//   - the calling process's capabilities ([HasCapability], capget);
//   - whether a path is on btrfs ([IsBtrfs], statfs magic) and which mount
//     holds it, with its options ([MountOf], /proc/self/mountinfo);
//   - whether the kernel has the btrfs ioctls that came late
//     ([ProbeGetSubvolInfo] 4.18, [ProbeSnapDestroyV2] 5.7,
//     [ProbeSubvolSyncWait] 6.13), by issuing them harmlessly;
//   - all of it for one path at once ([Check]), with the requirement checks
//     the store makes when it opens ([Report.CanUseBtrfs],
//     [Report.CanDeleteSubvolumes], [Report.CanChown],
//     [Report.CanWaitDeleted]), whose errors say what to grant or remount.
//
// Probes return nil when the kernel has the ioctl, an error matching
// [ErrNotSupported] (which is ioctl.ErrNotSupported) naming the first Linux
// version that has it when it does not, and another error when they cannot
// tell (not btrfs, path missing). They probe rather than compare version
// numbers, because distribution kernels backport ioctls.
//
// # Caveats
//
//   - Capabilities are read for the calling thread. Go programs have the same
//     capabilities on every thread unless a raw per-thread capset or prctl
//     changed one; this package does not guard against that.
//   - btrfs checks CAP_SYS_ADMIN in the initial user namespace. In a rootless
//     container the capability can be in the effective set and still not
//     count; [Report.UserNamespace] says so and the requirement checks
//     account for it. CAP_CHOWN is checked in the process's own namespace,
//     for uids mapped in it.
//   - A requirement check describes the process and mount at the time of
//     [Check]. A capability dropped or a remount afterwards is not seen; and
//     user_subvol_rm_allowed only lifts the capability requirement: the
//     kernel still wants write and search permission on the subvolume and
//     its parent directory, which depends on the subvolume.
//   - Probe results are cached per process (the kernel does not change under
//     a running process); a probe that could not tell is not cached.
//   - btrfs reports a different st_dev for every subvolume, so [MountOf]
//     identifies mounts by the mount id from statx(2) (Linux 5.8), with a
//     prefix match as the fallback on older kernels.
//
// Everything here is safe for concurrent use and needs no privilege beyond
// reading the path it is given.
package kernel
