// Package remote is a place build results are shared through between
// machines: blobs (btrfs send streams, large, written once from a stream of
// unknown length) and manifests (small, signed, create-only: the first
// publisher of a name wins).
//
// Two implementations: [NewDir], a directory (local, or on a filesystem that
// several machines mount, NFS included; also the one for tests), and
// github.com/btrstore/btrstore/remote/s3, any S3-compatible object store.
// Both pass the same conformance suite (remote/remotetest).
//
// # Names
//
// Blobs and manifests live in two separate namespaces. A name is 1 to
// [MaxName] bytes of [A-Za-z0-9._~%-], not starting with '.'; [ValidName]
// checks it and [EscapeName] turns any string (a store id, say) into one.
// A name is never a path: there is no hierarchy, and a list by prefix is a
// plain byte-prefix match.
//
// # Guarantees every implementation gives
//
//   - No partial object is ever visible: a blob or manifest can be read,
//     listed or stat'ed only once it is complete. A failed or cancelled
//     PutBlob leaves nothing behind (S3: the multipart upload is aborted).
//   - PutBlob replaces a blob of the same name atomically: readers see the
//     old or the new content, never a mix. Callers should name blobs so that
//     two writers of one name write the same bytes (e.g. by what they hold).
//   - CreateManifest is create-only: of two creators of one name exactly one
//     succeeds, the other gets an error matching fs.ErrExist.
//   - An absent object gives an error matching fs.ErrNotExist (get, stat,
//     delete); a bad name one matching fs.ErrInvalid, with nothing changed.
//   - Every method honours ctx and is safe to call concurrently, from many
//     goroutines and many machines.
//
// What a remote does not guarantee: list-after-write ordering across
// machines beyond what the backing store gives (S3 is strongly consistent
// today; NFS close-to-open), and that a deleted blob is not still being
// read by someone.
//
// # Manifests
//
// [Manifest] describes one exported result; [Manifest.Sign] encodes and
// signs it with ed25519, [Verify] checks the signature against trusted keys
// and decodes it. Every failure of Verify (unsigned, unknown key, altered
// byte, malformed) matches [ErrUntrusted]. See manifest.go for the
// encoding.
package remote
