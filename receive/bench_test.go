package receive

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
)

// BenchmarkReceive compares Apply with `btrfs receive -f` (fork/exec
// included, as a user runs it) on the same streams made by ioctl.Send: a
// subvolume of 1000 small files in 20 directories and three 16 MiB files,
// in full, then incremental after 200 small files changed, 100 added, 50
// removed, 50 renamed and two large files partly rewritten. Each iteration
// receives once with each, alternating which goes first; the metrics are
// native-ms/op, cli-ms/op and their ratio (ns/op counts both and the
// setup):
//
//	go test -run '^$' -bench BenchmarkReceive -benchtime 5x ./receive
func BenchmarkReceive(b *testing.B) {
	if _, err := exec.LookPath("btrfs"); err != nil {
		b.Skip("btrfs command not found")
	}
	fsys := btrfstest.New(b, btrfstest.Size(4<<30))
	src := filepath.Join(fsys.Path, "src")
	must(b, ioctl.CreateSubvolume(src))
	small := func(i int) string { return filepath.Join(src, fmt.Sprintf("d%02d/f%04d", i%20, i)) }
	for i := range 1000 {
		write(b, small(i), random(1024+i*3%3072, int64(i)))
	}
	for i := range 3 {
		write(b, filepath.Join(src, fmt.Sprintf("large%d", i)), random(16<<20, int64(10000+i)))
	}
	s1, s2 := filepath.Join(fsys.Path, "s1"), filepath.Join(fsys.Path, "s2")
	must(b, ioctl.Snapshot(src, s1, ioctl.SnapshotReadOnly))
	for i := range 200 {
		write(b, small(i*5), random(2000, int64(-i)))
	}
	for i := range 100 {
		write(b, filepath.Join(src, fmt.Sprintf("d%02d/new%04d", i%20, i)), random(1500, int64(-1000-i)))
	}
	for i := range 50 {
		must(b, os.Remove(small(i*5+1)))
		must(b, os.Rename(small(i*5+2),
			filepath.Join(src, fmt.Sprintf("d%02d/renamed%04d", (i+1)%20, i))))
	}
	f, err := os.OpenFile(filepath.Join(src, "large0"), os.O_RDWR|os.O_APPEND, 0)
	must(b, err)
	_, err = f.Write(random(1<<20, 77))
	must(b, err)
	f.Close()
	f, err = os.OpenFile(filepath.Join(src, "large1"), os.O_RDWR, 0)
	must(b, err)
	_, err = f.WriteAt(random(1<<20, 78), 4<<20)
	must(b, err)
	f.Close()
	must(b, ioctl.Snapshot(src, s2, ioctl.SnapshotReadOnly))

	streams := b.TempDir()
	full, inc := filepath.Join(streams, "full"), filepath.Join(streams, "inc")
	for _, s := range []struct {
		file string
		opts ioctl.SendOptions
		src  string
	}{{full, ioctl.SendOptions{}, s1}, {inc, ioctl.SendOptions{Parent: s1}, s2}} {
		out, err := os.Create(s.file)
		must(b, err)
		must(b, ioctl.Send(context.Background(), out, s.src, s.opts))
		out.Close()
	}

	native := func(file, dir string) {
		f, err := os.Open(file)
		must(b, err)
		defer f.Close()
		if _, err := Apply(context.Background(), f, dir, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	cliReceive := func(file, dir string) {
		if out, err := exec.Command("btrfs", "receive", "-q", "-f", file, dir).CombinedOutput(); err != nil {
			b.Fatalf("btrfs receive: %v: %s", err, out)
		}
	}
	n := 0
	fresh := func() string {
		n++
		dir := filepath.Join(fsys.Path, fmt.Sprintf("recv%d", n))
		must(b, os.Mkdir(dir, 0o755))
		return dir
	}
	clean := func(dir string) {
		for _, name := range []string{"s2", "s1"} {
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
				must(b, ioctl.DeleteSubvolume(filepath.Join(dir, name), 0))
			}
		}
		must(b, ioctl.Sync(fsys.Path))
	}
	// Interleaved: each iteration receives with both, alternating which
	// goes first, so that both see the same state of the machine.
	for _, kind := range []struct {
		name, stream string
		parent       bool
	}{{"full", full, false}, {"incremental", inc, true}} {
		b.Run(kind.name, func(b *testing.B) {
			var nativeTime, cliTime time.Duration
			i := 0
			for b.Loop() {
				for _, first := range []bool{i%2 == 0, i%2 != 0} {
					dir := fresh()
					if kind.parent {
						native(full, dir)
					}
					must(b, ioctl.Sync(fsys.Path))
					start := time.Now()
					if first {
						native(kind.stream, dir)
						nativeTime += time.Since(start)
					} else {
						cliReceive(kind.stream, dir)
						cliTime += time.Since(start)
					}
					clean(dir)
				}
				i++
			}
			b.ReportMetric(float64(nativeTime.Milliseconds())/float64(i), "native-ms/op")
			b.ReportMetric(float64(cliTime.Milliseconds())/float64(i), "cli-ms/op")
			b.ReportMetric(float64(nativeTime)/float64(cliTime), "native/cli")
		})
	}
}
