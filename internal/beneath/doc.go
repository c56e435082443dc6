// Package beneath is the one place btrstore resolves paths below a directory
// file descriptor, and the small Linux plumbing that goes with it: retrying
// system calls on EINTR, splitting a path into its parent directory and last
// name (libbtrfsutil's openat_parent_and_name, os.Root's doInRoot), the mount
// id of an fd and the path the kernel has for it.
//
// # Resolution below a directory
//
// [Open] resolves a relative path below a directory fd as openat2(2) does with
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
// RESOLVE_NO_XDEV ([Resolve]): never through a symlink (ELOOP), never out of
// the directory (EXDEV for an absolute path or a ".." that leaves it), never
// across a mount (EXDEV), whatever another process plants in the way. Crossing
// into another btrfs subvolume of the same mount is not crossing a mount.
//
// On kernels without openat2 (before 5.6), or where a seccomp filter answers
// ENOSYS for it, Open falls back to opening one component at a time with
// O_NOFOLLOW, comparing each component's mount id with the starting
// directory's; it then refuses every "..", even one that would stay inside.
// Every component is guarded, not only the last. The fallback is chosen once
// per process, at the first ENOSYS.
//
// # Errors
//
// Functions of this package return the bare unix.Errno (or a wrapped one where
// they say so), not *fs.PathError: the caller knows the path to show (often a
// longer one than the relative path resolved here) and wraps the error itself,
// as os.Root does.
//
// # Concurrency
//
// Everything here is safe to call from several goroutines. A path being
// renamed concurrently may make a resolution fail (ENOENT, EXDEV, ELOOP), never
// succeed on an object outside the directory.
package beneath
