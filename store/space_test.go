package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
)

// cliFreeSpace is obuilder's free space from the CLI it ran: 100 −
// 100·used/device size, as `btrfs filesystem usage -b` prints them.
func cliFreeSpace(t *testing.T, root string) (free float64, used, size uint64) {
	t.Helper()
	out, err := exec.Command("btrfs", "filesystem", "usage", "-b", root).CombinedOutput()
	if err != nil {
		t.Fatalf("btrfs filesystem usage -b %s: %v\n%s", root, err, out)
	}
	field := func(name string) uint64 {
		for _, line := range strings.Split(string(out), "\n") {
			rest, ok := strings.CutPrefix(strings.TrimSpace(line), name+":")
			if !ok {
				continue
			}
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			n, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				t.Fatalf("btrfs filesystem usage: %s %q: %v", name, f[0], err)
			}
			return n
		}
		t.Fatalf("btrfs filesystem usage -b printed no %q:\n%s", name, out)
		return 0
	}
	used, size = field("Used"), field("Device size")
	if size == 0 {
		t.Fatalf("btrfs filesystem usage -b: device size 0:\n%s", out)
	}
	return 100 - 100*float64(used)/float64(size), used, size
}

// FreeSpace agrees with `btrfs filesystem usage -b`, on an empty store and
// after about 100 MiB of builds.
func TestFreeSpaceMatchesCLI(t *testing.T) {
	if _, err := exec.LookPath("btrfs"); err != nil {
		btrfstest.SkipOrFail(t, "btrfs (btrfs-progs) not in PATH: %v", err)
	}
	s, _ := newStore(t, btrfstest.Size(1<<30))
	ctx := t.Context()
	root := s.Root()
	compare := func(when string) float64 {
		t.Helper()
		if err := ioctl.Sync(root); err != nil {
			t.Fatal(err)
		}
		got, err := s.FreeSpace(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, used, size := cliFreeSpace(t, root)
		t.Logf("%s: FreeSpace %.3f%%, CLI %.3f%% (used %d of %d bytes)", when, got, want, used, size)
		if got < want-1 || got > want+1 {
			t.Errorf("%s: FreeSpace = %.3f%%, `btrfs filesystem usage` says %.3f%% (used %d of %d): more than 1 point apart",
				when, got, want, used, size)
		}
		if size != 1<<30 {
			t.Errorf("%s: CLI device size %d, want the 1 GiB image", when, size)
		}
		return got
	}
	empty := compare("empty store")

	const builds, perBuild = 10, 10 << 20
	rng := rand.NewChaCha8([32]byte{1}) // incompressible, not that it matters
	data := make([]byte, perBuild)
	for i := range builds {
		rng.Read(data)
		if err := s.Build(ctx, fmt.Sprint("fill", i), "", func(_ context.Context, dir string) error {
			return os.WriteFile(filepath.Join(dir, "data"), data, 0o644)
		}); err != nil {
			t.Fatal(err)
		}
	}
	full := compare(fmt.Sprintf("after %d MiB of builds", builds*perBuild>>20))
	// 100 MiB of 1 GiB is 9.8 points, plus metadata.
	if d := empty - full; d < 9 || d > 12 {
		t.Errorf("writing %d MiB took %.2f points of free space, want about 9.8", builds*perBuild>>20, d)
	}
}
