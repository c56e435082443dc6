package remote

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"time"

	"github.com/btrstore/btrstore/internal/uuidhex"
)

// ErrUntrusted is matched (errors.Is) by every error Verify returns for a
// manifest that is unsigned, signed by no trusted key, altered or
// malformed, and by the error of a VerifyingReader whose stream does not
// match its manifest. The store re-exports it: store.ErrUntrusted is this
// same value.
var ErrUntrusted = errors.New("untrusted manifest or stream")

// ManifestFormat is the manifest format this package writes, and the only
// one it reads. A later format gets a new number; Verify refuses a format
// it does not know with an error matching errors.ErrUnsupported (after the
// signature checked out, so an unknown format never hides a forgery).
const ManifestFormat = 1

// UUID is a btrfs subvolume UUID (ioctl.UUID converts to it directly). In a
// manifest it is written in the usual 8-4-4-4-12 lowercase hex form.
type UUID [16]byte

// String returns u in 8-4-4-4-12 lowercase hex form.
func (u UUID) String() string {
	return uuidhex.Format(u)
}

// IsZero reports whether u is all zeros (no UUID).
func (u UUID) IsZero() bool { return u == UUID{} }

// ParseUUID parses the 8-4-4-4-12 hex form (lowercase, as String writes it).
func ParseUUID(s string) (UUID, error) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("remote: invalid UUID %q: %w", truncate(s), fs.ErrInvalid)
	}
	hexPart := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(u[:], []byte(hexPart)); err != nil || u.String() != s {
		return UUID{}, fmt.Errorf("remote: invalid UUID %q: %w", truncate(s), fs.ErrInvalid)
	}
	return u, nil
}

// Source names a subvolume a stream refers to: the parent of an
// incremental stream, or a clone source. ID is the store's result id, UUID
// the subvolume's identity as a receiver finds it (its received UUID if
// set, else its UUID).
type Source struct {
	ID   string
	UUID UUID
}

// Manifest describes one exported result: which blob holds its send
// stream, how to check the stream, and what the stream needs on the
// receiving side.
type Manifest struct {
	// ID is the result's id in the store.
	ID string
	// Blob is the name of the blob holding the send stream.
	Blob string
	// Digest is the SHA-256 of the whole stream, Size its length in bytes.
	Digest [sha256.Size]byte
	Size   int64
	// UUID is the sent subvolume's identity: its received UUID if set,
	// else its UUID. A later incremental stream names it as its parent.
	UUID UUID
	// Parent is the base of an incremental stream; nil for a full stream.
	Parent *Source
	// Clones are the clone sources the stream may reference, besides
	// Parent; the receiver must have each of them.
	Clones []Source
	// Producer says what wrote the stream (program and version, host);
	// Kernel is the sender's kernel release (uname -r). Both informative.
	Producer string
	Kernel   string
	// Created is when the manifest was made; it is encoded in UTC with
	// nanoseconds, without a monotonic clock reading.
	Created time.Time
}

// The encoding, format 1.
//
// A signed manifest is the bytes of one JSON object, compact (no
// whitespace), with exactly these members in this order:
//
//	{"manifest":BODY,"key":KEY,"signature":SIG}
//
// BODY is the manifest, itself compact JSON with its members in the fixed
// order of wireManifest below (format, id, blob, digest as "sha256:" and 64
// lowercase hex digits, size, uuid, parent, clones, producer, kernel,
// created as RFC 3339 with nanoseconds in UTC); optional members (parent,
// clones, producer, kernel) are omitted when empty. KEY is the signer's
// ed25519 public key and SIG the signature, both standard base64 with
// padding. The signature is ed25519 over signatureContext followed by the
// exact bytes of BODY.
//
// Verify accepts only this exact form: it re-encodes what it decoded and
// refuses any difference, so every manifest has one byte form and a
// changed byte anywhere (even one JSON would ignore, as the case of a
// member name) is refused.
const signatureContext = "btrstore manifest signature v1\x00"

type wireEnvelope struct {
	Manifest  json.RawMessage `json:"manifest"`
	Key       string          `json:"key"`
	Signature string          `json:"signature"`
}

type wireManifest struct {
	Format   int          `json:"format"`
	ID       string       `json:"id"`
	Blob     string       `json:"blob"`
	Digest   string       `json:"digest"`
	Size     int64        `json:"size"`
	UUID     string       `json:"uuid"`
	Parent   *wireSource  `json:"parent,omitempty"`
	Clones   []wireSource `json:"clones,omitempty"`
	Producer string       `json:"producer,omitempty"`
	Kernel   string       `json:"kernel,omitempty"`
	Created  string       `json:"created"`
}

type wireSource struct {
	ID   string `json:"id"`
	UUID string `json:"uuid"`
}

const digestPrefix = "sha256:"

// Validate reports whether m can be signed: a non-empty ID, a valid Blob
// name, a non-negative Size, and a non-zero UUID in m and in each source.
// The error matches fs.ErrInvalid.
func (m *Manifest) Validate() error {
	bad := func(what string) error {
		return fmt.Errorf("remote: manifest of %q: %s: %w", truncate(m.ID), what, fs.ErrInvalid)
	}
	switch {
	case m.ID == "":
		return bad("empty id")
	case m.Size < 0:
		return bad("negative size")
	case m.UUID.IsZero():
		return bad("zero uuid")
	}
	if err := ValidName(m.Blob); err != nil {
		return bad(err.Error())
	}
	if m.Parent != nil && (m.Parent.ID == "" || m.Parent.UUID.IsZero()) {
		return bad("parent without id or uuid")
	}
	for _, c := range m.Clones {
		if c.ID == "" || c.UUID.IsZero() {
			return bad("clone source without id or uuid")
		}
	}
	return nil
}

func (m *Manifest) wire() wireManifest {
	w := wireManifest{
		Format:   ManifestFormat,
		ID:       m.ID,
		Blob:     m.Blob,
		Digest:   digestPrefix + hex.EncodeToString(m.Digest[:]),
		Size:     m.Size,
		UUID:     m.UUID.String(),
		Producer: m.Producer,
		Kernel:   m.Kernel,
		Created:  m.Created.UTC().Format(time.RFC3339Nano),
	}
	if m.Parent != nil {
		w.Parent = &wireSource{ID: m.Parent.ID, UUID: m.Parent.UUID.String()}
	}
	for _, c := range m.Clones {
		w.Clones = append(w.Clones, wireSource{ID: c.ID, UUID: c.UUID.String()})
	}
	return w
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Sign validates m, encodes it (format ManifestFormat) and signs it with
// key; the result is what CreateManifest stores and Verify reads. It
// touches nothing but memory and is safe for concurrent use.
func (m *Manifest) Sign(key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("remote: signing manifest of %q: private key of %d bytes, want %d: %w",
			truncate(m.ID), len(key), ed25519.PrivateKeySize, fs.ErrInvalid)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	body, err := marshal(m.wire())
	if err != nil {
		return nil, fmt.Errorf("remote: encoding manifest of %q: %w", truncate(m.ID), err)
	}
	sig := ed25519.Sign(key, signedMessage(body))
	return marshal(wireEnvelope{
		Manifest:  body,
		Key:       base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		Signature: base64.StdEncoding.EncodeToString(sig),
	})
}

func signedMessage(body []byte) []byte {
	return append([]byte(signatureContext), body...)
}

// Verify checks that data is a manifest signed by one of trusted, and
// returns it decoded. Any failure matches ErrUntrusted: no trusted keys,
// unsigned, signed by a key not in trusted, a bad signature, or bytes that
// are not exactly what Sign writes. A correctly signed manifest of an
// unknown format matches errors.ErrUnsupported instead.
//
// Verify checks the manifest only; the stream it describes is checked
// while it is read, by VerifyingReader. Safe for concurrent use.
func Verify(data []byte, trusted []ed25519.PublicKey) (Manifest, error) {
	untrusted := func(format string, args ...any) (Manifest, error) {
		return Manifest{}, fmt.Errorf("remote: manifest: "+format+": %w", append(args, ErrUntrusted)...)
	}
	if len(trusted) == 0 {
		return untrusted("no trusted keys")
	}
	var env wireEnvelope
	if err := json.Unmarshal(data, &env); err != nil {
		return untrusted("malformed: %v", err)
	}
	if env.Key == "" && env.Signature == "" {
		return untrusted("unsigned")
	}
	if again, err := marshal(env); err != nil || !bytes.Equal(again, data) {
		return untrusted("not in canonical form")
	}
	key, err := base64.StdEncoding.Strict().DecodeString(env.Key)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return untrusted("malformed key")
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(env.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return untrusted("malformed signature")
	}
	known := false
	for _, k := range trusted {
		if bytes.Equal(k, key) {
			known = true
			break
		}
	}
	if !known {
		return untrusted("signed by key %s, which is not trusted", env.Key)
	}
	if !ed25519.Verify(key, signedMessage(env.Manifest), sig) {
		return untrusted("bad signature by key %s", env.Key)
	}
	// Signed by a trusted key: from here on a failure is the signer's bug
	// or a newer format, still never a manifest to act on.
	var head struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(env.Manifest, &head); err != nil {
		return untrusted("malformed body: %v", err)
	}
	if head.Format != ManifestFormat {
		return Manifest{}, fmt.Errorf("remote: manifest format %d, this version reads %d: %w", head.Format, ManifestFormat, errors.ErrUnsupported)
	}
	m, err := decodeBody(env.Manifest)
	if err != nil {
		return untrusted("%v", err)
	}
	return m, nil
}

// ParseUnverified decodes a manifest without checking its signature, for
// display and debugging only: nothing it returns may be acted upon. The
// error matches fs.ErrInvalid for bytes that are not a format-1 manifest.
func ParseUnverified(data []byte) (Manifest, error) {
	var env wireEnvelope
	if err := json.Unmarshal(data, &env); err != nil {
		return Manifest{}, fmt.Errorf("remote: manifest: %w: %w", fs.ErrInvalid, err)
	}
	m, err := decodeBody(env.Manifest)
	if err != nil {
		return Manifest{}, fmt.Errorf("remote: manifest: %w: %w", fs.ErrInvalid, err)
	}
	return m, nil
}

func decodeBody(body []byte) (Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var w wireManifest
	if err := dec.Decode(&w); err != nil {
		return Manifest{}, fmt.Errorf("malformed body: %w", err)
	}
	if w.Format != ManifestFormat {
		return Manifest{}, fmt.Errorf("format %d, want %d", w.Format, ManifestFormat)
	}
	m := Manifest{ID: w.ID, Blob: w.Blob, Size: w.Size, Producer: w.Producer, Kernel: w.Kernel}
	var err error
	if len(w.Digest) != len(digestPrefix)+2*sha256.Size || w.Digest[:len(digestPrefix)] != digestPrefix {
		return Manifest{}, fmt.Errorf("malformed digest %q", truncate(w.Digest))
	}
	if _, err := hex.Decode(m.Digest[:], []byte(w.Digest[len(digestPrefix):])); err != nil {
		return Manifest{}, fmt.Errorf("malformed digest %q", truncate(w.Digest))
	}
	if m.UUID, err = ParseUUID(w.UUID); err != nil {
		return Manifest{}, err
	}
	if w.Parent != nil {
		p := Source{ID: w.Parent.ID}
		if p.UUID, err = ParseUUID(w.Parent.UUID); err != nil {
			return Manifest{}, err
		}
		m.Parent = &p
	}
	for _, c := range w.Clones {
		s := Source{ID: c.ID}
		if s.UUID, err = ParseUUID(c.UUID); err != nil {
			return Manifest{}, err
		}
		m.Clones = append(m.Clones, s)
	}
	if m.Created, err = time.Parse(time.RFC3339Nano, w.Created); err != nil {
		return Manifest{}, fmt.Errorf("malformed created time %q", truncate(w.Created))
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	// One byte form per manifest: what we decoded must encode back to the
	// very same bytes.
	if again, err := marshal(m.wire()); err != nil || !bytes.Equal(again, body) {
		return Manifest{}, errors.New("body not in canonical form")
	}
	return m, nil
}

// VerifyingReader returns a reader of r that checks r's content against
// m.Size and m.Digest. Once more than m.Size bytes arrive, or at io.EOF if
// the size or digest differs, its Read returns an error matching
// ErrUntrusted instead. The check is complete only at io.EOF: a caller
// that stops early (a receiver that saw the stream's end command, say)
// must read on to io.EOF before trusting what it received. Not safe for
// concurrent use.
func (m *Manifest) VerifyingReader(r io.Reader) io.Reader {
	return &verifyingReader{r: r, want: m.Digest, size: m.Size, id: m.ID, h: sha256.New()}
}

type verifyingReader struct {
	r    io.Reader
	want [sha256.Size]byte
	size int64
	id   string
	h    hash.Hash
	n    int64
	err  error // sticky
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.size {
		v.err = fmt.Errorf("remote: stream of %q: more than the manifest's %d bytes: %w", truncate(v.id), v.size, ErrUntrusted)
		return 0, v.err
	}
	if err == io.EOF {
		var got [sha256.Size]byte
		v.h.Sum(got[:0])
		switch {
		case v.n != v.size:
			v.err = fmt.Errorf("remote: stream of %q: %d bytes, manifest says %d: %w", truncate(v.id), v.n, v.size, ErrUntrusted)
		case got != v.want:
			v.err = fmt.Errorf("remote: stream of %q: sha256 %x, manifest says %x: %w", truncate(v.id), got, v.want, ErrUntrusted)
		default:
			v.err = io.EOF
		}
		return n, v.err
	}
	if err != nil {
		v.err = err
	}
	return n, err
}
