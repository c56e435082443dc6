package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
)

// Remote is a place results are shared through: blobs (send streams) and
// small create-only manifests. Implementations: NewDir (a directory, e.g. on
// a shared filesystem; also for tests) and s3.New (any S3-compatible store).
//
// Every method is safe for concurrent use and honours ctx. Errors name the
// remote and the object; an absent object matches fs.ErrNotExist, an
// invalid name fs.ErrInvalid. The package comment lists the guarantees.
type Remote interface {
	// PutBlob stores everything r yields, up to io.EOF, as blob name,
	// replacing any blob of that name, and returns the number of bytes
	// stored. The size need not be known in advance: r is streamed, never
	// spooled whole. Nothing is visible under name until PutBlob returns
	// nil; on any error (from r, the remote or ctx) nothing is left behind.
	PutBlob(ctx context.Context, name string, r io.Reader) (int64, error)

	// GetBlob opens blob name for reading. The caller closes it. Reading
	// after ctx is done fails.
	GetBlob(ctx context.Context, name string) (io.ReadCloser, error)

	// StatBlob returns the size in bytes of blob name.
	StatBlob(ctx context.Context, name string) (int64, error)

	// DeleteBlob removes blob name.
	DeleteBlob(ctx context.Context, name string) error

	// ListBlobs returns the names of the blobs whose name starts with
	// prefix ("" for all), sorted.
	ListBlobs(ctx context.Context, prefix string) ([]string, error)

	// CreateManifest stores data as manifest name if no manifest of that
	// name exists; otherwise it returns an error matching fs.ErrExist and
	// changes nothing. Of concurrent creators exactly one succeeds. data
	// is small (at most MaxManifestSize bytes).
	CreateManifest(ctx context.Context, name string, data []byte) error

	// GetManifest returns the content of manifest name.
	GetManifest(ctx context.Context, name string) ([]byte, error)

	// ListManifests returns the names of the manifests whose name starts
	// with prefix ("" for all), sorted.
	ListManifests(ctx context.Context, prefix string) ([]string, error)

	// DeleteManifest removes manifest name, after which CreateManifest of
	// that name can succeed again.
	DeleteManifest(ctx context.Context, name string) error
}

// MaxName is the longest valid object name, in bytes: one path component
// on every filesystem NewDir may sit on.
const MaxName = 255

// MaxManifestSize bounds a manifest's encoded size, in bytes; GetManifest
// refuses to read more.
const MaxManifestSize = 1 << 20

// ValidName returns nil if name is a valid blob or manifest name: 1 to
// MaxName bytes of [A-Za-z0-9._~%-], not starting with '.'. Otherwise the
// error matches fs.ErrInvalid.
func ValidName(name string) error {
	bad := name == "" || len(name) > MaxName || name[0] == '.'
	for i := 0; i < len(name) && !bad; i++ {
		bad = !nameByte(name[i])
	}
	if bad {
		return fmt.Errorf("remote: invalid name %q: must be 1 to %d bytes of [A-Za-z0-9._~%%-], not starting with '.': %w",
			truncate(name), MaxName, fs.ErrInvalid)
	}
	return nil
}

func nameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '.' || c == '_' || c == '-' || c == '~' || c == '%'
}

// EscapeName maps any string s (a store id, for instance) to a valid name,
// one to one for the names that fit: every byte outside [A-Za-z0-9._-], and
// a leading '.', becomes '%' and two lowercase hex digits. An escaped form
// longer than MaxName is cut to 190 bytes and followed by '~' and the first
// 32 hex digits of the SHA-256 of s, so distinct strings still get distinct
// names (up to a 128-bit hash collision). EscapeName("") is "%".
func EscapeName(s string) string {
	const hexDigits = "0123456789abcdef"
	if s == "" {
		return "%"
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if nameByte(c) && c != '%' && c != '~' && !(i == 0 && c == '.') {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	if len(b) <= MaxName {
		return string(b)
	}
	sum := sha256.Sum256([]byte(s))
	cut := 190
	// Do not cut an escape in half: the prefix stays readable.
	if b[cut-1] == '%' {
		cut--
	} else if b[cut-2] == '%' {
		cut -= 2
	}
	return string(b[:cut]) + "~" + hex.EncodeToString(sum[:16])
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
