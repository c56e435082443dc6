package remote_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"time"

	"github.com/btrstore/btrstore/remote"
)

// Publishing a stream and its signed manifest, then reading it back on
// the trusting side: the order Export and Import follow.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "remote-example")
	defer os.RemoveAll(dir)
	r, err := remote.NewDir(dir)
	if err != nil {
		log.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) // a real key comes from a secret store
	stream := []byte("btrfs-stream...")

	// Export: the blob first, streamed; the manifest last, create-only.
	blob := remote.EscapeName("result/1") + ".full"
	size, err := r.PutBlob(ctx, blob, bytes.NewReader(stream))
	if err != nil {
		log.Fatal(err)
	}
	m := remote.Manifest{
		ID: "result/1", Blob: blob, Digest: sha256.Sum256(stream), Size: size,
		UUID: remote.UUID{1}, Producer: "example", Created: time.Unix(0, 0),
	}
	data, err := m.Sign(priv)
	if err != nil {
		log.Fatal(err)
	}
	name := remote.EscapeName(m.ID)
	if err := r.CreateManifest(ctx, name, data); err != nil {
		log.Fatal(err)
	}
	err = r.CreateManifest(ctx, name, data)
	fmt.Println("second publish exists:", errors.Is(err, fs.ErrExist))

	// Import: verify the manifest, then the stream as it is read.
	data, err = r.GetManifest(ctx, name)
	if err != nil {
		log.Fatal(err)
	}
	got, err := remote.Verify(data, []ed25519.PublicKey{priv.Public().(ed25519.PublicKey)})
	if err != nil {
		log.Fatal(err)
	}
	rc, err := r.GetBlob(ctx, got.Blob)
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	received, err := io.ReadAll(got.VerifyingReader(rc))
	fmt.Printf("%s: %d bytes, %v\n", got.ID, len(received), err)

	_, err = remote.Verify(data, nil)
	fmt.Println("untrusted without keys:", errors.Is(err, remote.ErrUntrusted))
	// Output:
	// second publish exists: true
	// result/1: 15 bytes, <nil>
	// untrusted without keys: true
}
