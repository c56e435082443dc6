package remote_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/remote"
)

func testKey(t *testing.T, seed byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func sampleManifest() remote.Manifest {
	stream := []byte("a send stream")
	return remote.Manifest{
		ID:       "r2 \"quoted\" <é>",
		Blob:     remote.EscapeName("r2") + ".stream",
		Digest:   sha256.Sum256(stream),
		Size:     int64(len(stream)),
		UUID:     remote.UUID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Parent:   &remote.Source{ID: "r1", UUID: remote.UUID{0xaa, 15: 0xbb}},
		Clones:   []remote.Source{{ID: "c1", UUID: remote.UUID{0xcc}}},
		Producer: "btrstore test",
		Kernel:   "6.18.0",
		Created:  time.Date(2026, 11, 29, 20, 0, 0, 123, time.FixedZone("x", 3600)),
	}
}

func TestManifestRoundTrip(t *testing.T) {
	pub, priv := testKey(t, 1)
	other, _ := testKey(t, 2)
	m := sampleManifest()
	data, err := m.Sign(priv)
	if err != nil {
		t.Fatal(err)
	}
	// Deterministic: signing again gives the same bytes (ed25519 is).
	if again, _ := m.Sign(priv); !bytes.Equal(again, data) {
		t.Errorf("two signings differ:\n%s\n%s", data, again)
	}
	got, err := remote.Verify(data, []ed25519.PublicKey{other, pub})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !got.Created.Equal(m.Created) {
		t.Errorf("Created = %v, want %v", got.Created, m.Created)
	}
	got.Created, m.Created = time.Time{}, time.Time{}
	if got.ID != m.ID || got.Blob != m.Blob || got.Digest != m.Digest || got.Size != m.Size ||
		got.UUID != m.UUID || *got.Parent != *m.Parent || len(got.Clones) != 1 || got.Clones[0] != m.Clones[0] ||
		got.Producer != m.Producer || got.Kernel != m.Kernel {
		t.Errorf("Verify returned %+v, want %+v", got, m)
	}
	if bytes.ContainsAny(data, "\n\t") {
		t.Errorf("insignificant whitespace in %s", data)
	}
	// A full stream: no parent, no clones.
	m.Parent, m.Clones = nil, nil
	data, err = m.Sign(priv)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := remote.Verify(data, []ed25519.PublicKey{pub}); err != nil || got.Parent != nil || got.Clones != nil {
		t.Errorf("full-stream manifest: %+v, %v", got, err)
	}
	if strings.Contains(string(data), "parent") {
		t.Errorf("a full stream's manifest names a parent: %s", data)
	}
}

// The encoding is pinned: a change to it is a new format.
func TestManifestEncodingPinned(t *testing.T) {
	_, priv := testKey(t, 1)
	m := sampleManifest()
	data, err := m.Sign(priv)
	if err != nil {
		t.Fatal(err)
	}
	const wantBody = `{"manifest":{"format":1,"id":"r2 \"quoted\" <é>","blob":"r2.stream","digest":"sha256:` +
		`c9a1f5d42cf1ba9dd0ab40b2cdeaa3b0c3e0d3c1f8e3c1c2d9c1e53c7f0f1f10","size":13,` +
		`"uuid":"01020304-0506-0708-090a-0b0c0d0e0f10","parent":{"id":"r1","uuid":"aa000000-0000-0000-0000-0000000000bb"},` +
		`"clones":[{"id":"c1","uuid":"cc000000-0000-0000-0000-000000000000"}],"producer":"btrstore test","kernel":"6.18.0",` +
		`"created":"2026-11-29T19:00:00.000000123Z"},"key":"`
	sum := sha256.Sum256([]byte("a send stream"))
	want := strings.Replace(wantBody, "c9a1f5d42cf1ba9dd0ab40b2cdeaa3b0c3e0d3c1f8e3c1c2d9c1e53c7f0f1f10", hexString(sum[:]), 1)
	if !strings.HasPrefix(string(data), want) {
		t.Errorf("encoding changed:\n got %s\nwant %s...", data, want)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestManifestUntrusted(t *testing.T) {
	pub, priv := testKey(t, 1)
	otherPub, otherPriv := testKey(t, 2)
	m := sampleManifest()
	data, err := m.Sign(priv)
	if err != nil {
		t.Fatal(err)
	}
	trusted := []ed25519.PublicKey{pub}

	expectUntrusted := func(what string, data []byte, keys []ed25519.PublicKey) {
		t.Helper()
		if _, err := remote.Verify(data, keys); !errors.Is(err, remote.ErrUntrusted) {
			t.Errorf("%s: Verify = %v, want ErrUntrusted", what, err)
		}
	}
	expectUntrusted("no trusted keys", data, nil)
	expectUntrusted("wrong key", data, []ed25519.PublicKey{otherPub})
	signedByOther, _ := m.Sign(otherPriv)
	expectUntrusted("signed by an untrusted key", signedByOther, trusted)

	// Unsigned: the body alone, and an envelope with empty key and signature.
	body := data[len(`{"manifest":`):bytes.LastIndex(data, []byte(`,"key":`))]
	expectUntrusted("bare body", body, trusted)
	expectUntrusted("empty signature", []byte(`{"manifest":`+string(body)+`,"key":"","signature":""}`), trusted)
	expectUntrusted("empty", nil, trusted)

	// The signature of one manifest on another's body.
	m2 := sampleManifest()
	m2.Size++
	data2, _ := m2.Sign(priv)
	body2 := data2[len(`{"manifest":`):bytes.LastIndex(data2, []byte(`,"key":`))]
	swapped := bytes.Replace(data, body, body2, 1)
	expectUntrusted("swapped body", swapped, trusted)

	// Every single altered byte is refused: flips of bits 0 and 1 (the
	// low bits base64 may ignore), 5 (letter case) and 6.
	for i := range data {
		for _, bit := range []int{0, 1, 5, 6} {
			altered := bytes.Clone(data)
			altered[i] ^= 1 << bit
			if _, err := remote.Verify(altered, trusted); !errors.Is(err, remote.ErrUntrusted) {
				t.Fatalf("byte %d (%q) bit %d flipped: Verify = %v, want ErrUntrusted", i, data[i], bit, err)
			}
		}
	}
	// Re-indented or with a member renamed by case: same JSON to a lax
	// reader, refused here.
	expectUntrusted("trailing newline", append(bytes.Clone(data), '\n'), trusted)
	expectUntrusted("member case", bytes.Replace(data, []byte(`"signature"`), []byte(`"Signature"`), 1), trusted)
	expectUntrusted("spaces", bytes.Replace(data, []byte(`,"key"`), []byte(`, "key"`), 1), trusted)
}

func TestManifestSignInvalid(t *testing.T) {
	_, priv := testKey(t, 1)
	for name, mutate := range map[string]func(*remote.Manifest){
		"empty id":       func(m *remote.Manifest) { m.ID = "" },
		"bad blob":       func(m *remote.Manifest) { m.Blob = "a/b" },
		"negative size":  func(m *remote.Manifest) { m.Size = -1 },
		"zero uuid":      func(m *remote.Manifest) { m.UUID = remote.UUID{} },
		"parent no uuid": func(m *remote.Manifest) { m.Parent = &remote.Source{ID: "p"} },
		"clone no id":    func(m *remote.Manifest) { m.Clones = []remote.Source{{UUID: remote.UUID{1}}} },
	} {
		m := sampleManifest()
		mutate(&m)
		if _, err := m.Sign(priv); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("%s: Sign = %v, want fs.ErrInvalid", name, err)
		}
	}
	m := sampleManifest()
	if _, err := m.Sign(priv[:10]); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("short key: Sign = %v, want fs.ErrInvalid", err)
	}
}

func TestVerifyingReader(t *testing.T) {
	stream := []byte("a send stream")
	m := sampleManifest()
	read := func(src []byte) ([]byte, error) {
		return io.ReadAll(m.VerifyingReader(bytes.NewReader(src)))
	}
	if got, err := read(stream); err != nil || !bytes.Equal(got, stream) {
		t.Errorf("intact stream: %q, %v", got, err)
	}
	flipped := bytes.Clone(stream)
	flipped[3] ^= 1
	for what, src := range map[string][]byte{
		"flipped byte": flipped,
		"truncated":    stream[:len(stream)-1],
		"extended":     append(bytes.Clone(stream), 'x'),
		"empty":        nil,
	} {
		if _, err := read(src); !errors.Is(err, remote.ErrUntrusted) {
			t.Errorf("%s: %v, want ErrUntrusted", what, err)
		}
	}
	// A reader error passes through unchanged.
	boom := errors.New("boom")
	if _, err := io.ReadAll(m.VerifyingReader(io.MultiReader(bytes.NewReader(stream[:3]), errReader{boom}))); !errors.Is(err, boom) {
		t.Errorf("failing source: %v, want its error", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestNames(t *testing.T) {
	for _, s := range []string{"a", "r-1_2.3~x", "%41"} {
		if err := remote.ValidName(s); err != nil {
			t.Errorf("ValidName(%q) = %v", s, err)
		}
	}
	seen := map[string]string{}
	long := strings.Repeat("é", 200)
	for _, s := range []string{"", ".", "..", ".x", "a/b", "a b", "%", "~", "r1", "R1", "é", long, long + "x", strings.Repeat("a", 255), strings.Repeat("a", 256)} {
		n := remote.EscapeName(s)
		if err := remote.ValidName(n); err != nil {
			t.Errorf("EscapeName(%q) = %q, not valid: %v", s, n, err)
		}
		if prev, dup := seen[n]; dup {
			t.Errorf("EscapeName(%q) = EscapeName(%q) = %q", s, prev, n)
		}
		seen[n] = s
	}
	if got := remote.EscapeName("r-1.x"); got != "r-1.x" {
		t.Errorf("EscapeName(r-1.x) = %q, want it unchanged", got)
	}
	if u, err := remote.ParseUUID("01020304-0506-0708-090a-0b0c0d0e0f10"); err != nil || u != (remote.UUID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}) {
		t.Errorf("ParseUUID = %v, %v", u, err)
	}
	for _, s := range []string{"", "01020304-0506-0708-090a-0b0c0d0e0f1", "01020304-0506-0708-090A-0b0c0d0e0f10", "0102030405060708090a0b0c0d0e0f10xxxx"} {
		if _, err := remote.ParseUUID(s); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("ParseUUID(%q) = %v, want fs.ErrInvalid", s, err)
		}
	}
}
