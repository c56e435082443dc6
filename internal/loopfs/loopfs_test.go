package loopfs_test

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/internal/loopfs"
)

// TestFormatSectorSize: Format makes 4 KiB sectors and 16 KiB nodes
// whatever the page size, so that tests (store's TestFullDisk) see the same
// filesystem on a 64 KiB-page kernel (Debian's ppc64el) as on amd64. Reads
// the superblock from the image: no root needed.
func TestFormatSectorSize(t *testing.T) {
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		btrfstest.SkipOrFail(t, "mkfs.btrfs not found in PATH; install btrfs-progs")
	}
	img := filepath.Join(t.TempDir(), "image")
	if err := loopfs.Format(img, 256<<20); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// The primary superblock is at 64 KiB; sectorsize and nodesize are its
	// little-endian u32 fields at 0x90 and 0x94, after the magic at 0x40.
	sb := b[64<<10 : 68<<10]
	if string(sb[0x40:0x48]) != "_BHRfS_M" {
		t.Fatalf("no btrfs superblock magic at 64 KiB: %q", sb[0x40:0x48])
	}
	if s, n := binary.LittleEndian.Uint32(sb[0x90:]), binary.LittleEndian.Uint32(sb[0x94:]); s != 4096 || n != 16384 {
		t.Errorf("sectorsize %d, nodesize %d; want 4096 and 16384", s, n)
	}
}
