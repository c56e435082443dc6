// Package sendstream reads and writes the btrfs send stream format,
// versions 1 to 3, as the kernel's fs/btrfs/send.c produces it and
// btrfs-progs' receive consumes it. It does no I/O on a filesystem: package
// receive applies a stream, ioctl.Send produces one.
//
// # Format
//
// A stream is a 17-byte header (the magic "btrfs-stream\0" and a
// little-endian 32-bit version) followed by commands. A command is a
// 10-byte header (32-bit length of the attributes, 16-bit command type,
// 32-bit CRC32C of the header with the CRC zeroed and of the attributes)
// and its attributes, each a 16-bit type, a 16-bit length and the value.
// From version 2 on, the data attribute of a write or an encoded write has
// no length: it is the last attribute and runs to the end of the command.
// The END command closes a stream; another stream may follow it (as when
// several `btrfs send` outputs are concatenated).
//
// # Strictness
//
// [Reader] accepts only what the kernel can produce: the header's magic and a
// version from 1 to 3; commands and attributes known to that version; each
// attribute at most once, with the exact length of its type, and only in
// the commands that carry it; every attribute a command needs; a command
// length within the kernel's send buffer for the version; and a matching
// CRC32C for every command, checked before any attribute is decoded. A
// command's buffer grows as its bytes arrive, so a length field cannot make
// the reader allocate more than the stream actually holds. Errors match
// [ErrCorrupt] (and fs.ErrInvalid), a bad checksum also [ErrChecksum]; a
// stream that ends early gives io.ErrUnexpectedEOF.
//
// # Dump
//
// [Dump] prints a stream as `btrfs receive --dump` of btrfs-progs 6.2 does,
// line for line (same escaping, alignment and number formats; times in the
// local time zone). Where btrfs-progs stops after the first of concatenated
// streams, Dump goes on through all of them.
//
// # Privilege, kernel, concurrency
//
// Nothing here needs privilege or a particular kernel: the package only
// encodes and decodes bytes. A [Reader] or a [Writer] is used by one
// goroutine at a time; distinct ones, and [Dump], are independent.
package sendstream
