// Package receive applies btrfs send streams natively: what `btrfs receive`
// does, without the command, confined below the target directory.
//
// [Apply] reads a stream with package sendstream and replays each command
// with *at system calls relative to the subvolume being received, after
// resolving every path with openat2 so that nothing the stream names can
// reach outside it (see Apply for the rules). Subvolumes appear under their
// names only when complete, read-only and marked received; a failed or
// cancelled receive removes what it made.
//
// The path resolver in this package is its own small helper (resolve.go);
// it is meant to move onto the module's shared resolver in internal/ once
// that exists.
//
// Compressed pass-through (stream v2, `btrfs send --compressed-data`) is
// written with BTRFS_IOC_ENCODED_WRITE when the kernel takes it, else
// decompressed here: zlib (standard library), zstd
// (github.com/klauspost/compress, imported by this package only) and LZO
// (a small LZO1X decompressor for btrfs' per-sector framing, lzo.go).
package receive
