package store

import (
	"fmt"
	"io/fs"
	"strings"
)

// maxName is the longest directory entry name btrfs (and Linux) allows.
const maxName = 255

// validID checks that id is usable as one path component, before anything
// touches the disk.
func validID(id string) error {
	switch {
	case id == "", id == ".", id == "..":
	case len(id) > maxName:
	case strings.ContainsAny(id, "/\x00"):
	default:
		return nil
	}
	return fmt.Errorf("btrstore: invalid id %q: must be one path component of 1 to %d bytes, not . or .., without / or NUL: %w",
		truncate(id), maxName, fs.ErrInvalid)
}

// Escape turns a cache name into the single path component that stores it:
// "c-" followed by the name, with every byte outside [A-Za-z0-9._-] written
// as % and two lowercase hex digits. Distinct names give distinct results
// (the seed's unpadded hex made "\nb" and "\xab" collide).
func Escape(name string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(2 + len(name))
	b.WriteString("c-")
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
	}
	return b.String()
}

// cacheEntry returns the escaped name of cache name, or an error matching
// fs.ErrInvalid when it does not fit in one directory entry.
func cacheEntry(name string) (string, error) {
	e := Escape(name)
	if len(e) > maxName {
		return "", fmt.Errorf("btrstore: cache name %q escapes to %d bytes, more than %d: %w",
			truncate(name), len(e), maxName, fs.ErrInvalid)
	}
	return e, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
