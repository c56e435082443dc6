package s3_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/remote"
	"github.com/btrstore/btrstore/remote/s3"
	"github.com/btrstore/btrstore/remote/s3/s3test"
	"github.com/btrstore/btrstore/store"
)

// BenchmarkStoreTransfer measures Export (store → versitygw on loopback)
// and Import (versitygw → another store on another loop filesystem) of a
// 200 MiB result, full, and of a 20 MiB increment on top of it, against
// `btrfs send | btrfs receive` through a pipe between the same two
// filesystems. Each iteration uses a fresh bucket and fresh receiving
// filesystems; the metrics are MB/s of stream (10⁶ bytes a second) and
// the import's speed as a fraction of the pipe's.
//
//	go test -run '^$' -bench BenchmarkStoreTransfer -benchtime 1x ./remote/s3
func BenchmarkStoreTransfer(b *testing.B) {
	btrfstest.RequireRoot(b)
	if _, err := exec.LookPath("btrfs"); err != nil {
		b.Skip("btrfs-progs not installed: no pipe to compare with")
	}
	srv := s3test.Start(b)
	ctx := context.Background()
	key := store.ExportOptions{SigningKey: e2eKey}

	srcFS := btrfstest.New(b, btrfstest.Size(2<<30))
	a, err := store.Open(ctx, srcFS.Path, store.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	chunk := make([]byte, 4<<20)
	fill := func(dir string, from, to int) error {
		for i := from; i < to; i++ {
			for j := range chunk {
				chunk[j] = byte(rng.Uint32())
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), chunk, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	if err := a.Build(ctx, "r1", "", func(ctx context.Context, dir string) error { return fill(dir, 0, 50) }); err != nil {
		b.Fatal(err)
	}
	if err := a.Build(ctx, "r2", "r1", func(ctx context.Context, dir string) error { return fill(dir, 0, 5) }); err != nil {
		b.Fatal(err)
	}
	r1, _ := a.Result("r1")
	r2, _ := a.Result("r2")

	var exp, imp, pipe [2]time.Duration // [full, incremental]
	var size [2]int64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		r, err := s3.New(ctx, config(srv, srv.NewBucket(b), ""))
		if err != nil {
			b.Fatal(err)
		}
		dstFS, cliFS := btrfstest.New(b, btrfstest.Size(1<<30)), btrfstest.New(b, btrfstest.Size(1<<30))
		dst, err := store.Open(ctx, dstFS.Path, store.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for i, id := range []string{"r1", "r2"} {
			t0 := time.Now()
			if err := a.Export(ctx, id, r, key); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := dst.Import(ctx, id, r, e2eTrusted); err != nil {
				b.Fatal(err)
			}
			exp[i] += t1.Sub(t0)
			imp[i] += time.Since(t1)
			data, err := r.GetManifest(ctx, remote.EscapeName(id))
			if err != nil {
				b.Fatal(err)
			}
			m, _ := remote.Verify(data, e2eTrusted.TrustedKeys)
			size[i] = m.Size
		}
		for i, args := range [][]string{{r1}, {"-p", r1, r2}} {
			t0 := time.Now()
			cmd := exec.Command("sh", append([]string{"-c", `btrfs send -q "$@" | btrfs receive -q "$0"`, cliFS.Path}, args...)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("btrfs send | btrfs receive: %v\n%s", err, out)
			}
			pipe[i] += time.Since(t0)
			if i == 0 { // the increment's parent, as the store names it
				if err := os.Rename(filepath.Join(cliFS.Path, "snapshot"), filepath.Join(cliFS.Path, "r1")); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		dst.Close()
		b.StartTimer()
	}
	mbps := func(n int64, d time.Duration) float64 { return float64(n) * float64(b.N) / 1e6 / d.Seconds() }
	for i, kind := range []string{"full", "incr"} {
		b.ReportMetric(mbps(size[i], exp[i]), kind+"-export-MB/s")
		b.ReportMetric(mbps(size[i], imp[i]), kind+"-import-MB/s")
		b.ReportMetric(mbps(size[i], pipe[i]), kind+"-pipe-MB/s")
		b.ReportMetric(pipe[i].Seconds()/imp[i].Seconds(), kind+"-import/pipe")
		b.Logf("%s: stream %d bytes; export %v, import %v, btrfs send|receive %v", kind, size[i], exp[i]/time.Duration(b.N), imp[i]/time.Duration(b.N), pipe[i]/time.Duration(b.N))
	}
}
