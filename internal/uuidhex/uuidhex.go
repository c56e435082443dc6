// Package uuidhex formats a 16-byte UUID in its 8-4-4-4-12 lowercase hex
// form, as uuid_unparse and `btrfs subvolume show` write it: the one
// formatter behind ioctl.UUID, sendstream.UUID and remote.UUID.
//
// It depends on the standard library only, so that any package may use it.
package uuidhex

import "encoding/hex"

// Format returns u as 8-4-4-4-12 lowercase hex, also when u is zero.
// It is safe for concurrent use.
func Format(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}
