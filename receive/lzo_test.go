package receive

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
)

// kernelLZO reads a seed of FuzzBtrfsLZO: the data of an encoded write
// made by the kernel (compress-force=lzo, btrfs send --compressed-data).
func kernelLZO(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/fuzz/FuzzBtrfsLZO/" + name)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

// TestBtrfsLZO decompresses a kernel-made extent (lzo1: 40 times the bytes
// 0 to 255, 10240 bytes in a 12288-byte extent) and refuses damaged ones.
func TestBtrfsLZO(t *testing.T) {
	data := kernelLZO(t, "lzo1")
	got, err := btrfsLZO(data, 4096, 12288)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for range 40 {
		for i := range 256 {
			want = append(want, byte(i))
		}
	}
	if !bytes.Equal(got[:min(len(got), len(want))], want) || len(got) < len(want) || len(got) > 12288 {
		t.Errorf("decompressed %d bytes, want %d starting with the pattern", len(got), len(want))
	}
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"total past the end", append([]byte{0xff, 0xff, 0, 0}, data[4:]...)},
		{"segment past the end", append(bytes.Clone(data[:4]), 0xff, 0xff, 0, 0)},
		{"truncated segment", data[:20]},
	} {
		if _, err := btrfsLZO(c.data, 4096, 12288); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	// The output limit holds even when the data claims more.
	if got, err := btrfsLZO(data, 4096, 1000); err == nil && len(got) > 1000 {
		t.Errorf("limit 1000: %d bytes", len(got))
	}
}

// FuzzBtrfsLZO: the LZO decompressor never panics nor exceeds its limit,
// whatever the input (seeds: kernel-made extents).
func FuzzBtrfsLZO(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := btrfsLZO(data, 4096, 128<<10)
		if err == nil && len(got) > 128<<10 {
			t.Fatalf("%d bytes out", len(got))
		}
		got, err = lzo1xDecompress(nil, data, 4096)
		if err == nil && len(got) > 4096 {
			t.Fatalf("%d bytes out of one block", len(got))
		}
	})
}
