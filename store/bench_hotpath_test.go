package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// BenchmarkHotpath times one builder's cycles against another's on one
// filesystem, in alternating blocks of hotBlock cycles (x then y, y then
// x, ...), and reports the median of the per-block ratios x/y
// (median-pair-x/y): blocks run milliseconds apart share the machine's
// load, so this ratio stays within a few percent where the ratio of two
// medians (BenchmarkPaired's) moves by ±5% on a busy machine. It also
// reports each side's mean time per cycle and the difference of the
// benchmark thread's CPU time per cycle (x-y-cpu-ns/op).
//
//	pair=store-vs-seed  Store.Build beside the bare sequence on the seed's
//	                    layout (issue 11: one builder must not pay for
//	                    the scaling layout)
//	pair=bare-vs-seed   the store's sequence without its checks beside
//	                    the seed's: what the layout itself costs
//	pair=async-vs-bare  the store's sequence with the cleanup (the work
//	                    subvolume's delete, the two rmdirs) on another
//	                    goroutine, one at a time, beside it done in line
//
// The store does not clean up in the background: it gains nothing
// measurable (the delete takes the filesystem's subvol_sem for writing,
// which a snapshot holds for reading across its transaction commit, so it
// cannot overlap the next build's commit), and Build would no longer
// remove its work directory before returning. Keeping one build directory
// (and its out/) from build to build instead of making and removing them
// gained nothing measurable either (0.98 to 1.05).
func BenchmarkHotpath(b *testing.B) {
	seed := func(e *benchEnv, ids []string) hotSide { return hotSide{hotSeed(e, ids), hotNothing, hotNothing} }
	store := func(e *benchEnv, ids []string) hotSide {
		step := func(_ context.Context, dir string) error { return benchWrite(dir) }
		build := func(i int) error { return e.s.Build(context.Background(), ids[i], "base", step) }
		return hotSide{build, hotNothing, hotNothing}
	}
	bare := func(o hotOpts) func(e *benchEnv, ids []string) hotSide {
		return func(e *benchEnv, ids []string) hotSide { return hotBare(e, ids, o) }
	}
	for _, p := range []struct {
		name string
		x, y func(e *benchEnv, ids []string) hotSide
	}{
		{"store-vs-seed", store, seed},
		{"bare-vs-seed", bare(hotOpts{}), seed},
		{"async-vs-bare", bare(hotOpts{async: true}), bare(hotOpts{})},
	} {
		b.Run("pair="+p.name, func(b *testing.B) {
			e := newBenchEnv(b)
			x, y := p.x(e, btrfstest.Names("r", b.N)), p.y(e, btrfstest.Names("q", b.N))
			hotAlternate(b, x, y)
			if err := errors.Join(x.done(), y.done()); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// hotBlock is how many cycles one side runs back to back in
// hotAlternate: a side that leaves work behind (a cleanup on another
// goroutine) overlaps it with its own next cycles, and waits for the last
// of it, timed, before the other side runs.
const hotBlock = 4

// hotAlternate runs x and y in blocks of hotBlock cycles, in alternating
// order, each block ended by the side's settle (timed), and reports
// BenchmarkHotpath's metrics; a pair is one block of each.
func hotAlternate(b *testing.B, x, y hotSide) {
	runtime.LockOSThread() // the thread's CPU time is the goroutine's
	defer runtime.UnlockOSThread()
	blocks := (b.N + hotBlock - 1) / hotBlock
	ratios := make([]float64, blocks)
	var sumX, sumY, cpuX, cpuY time.Duration
	run := func(side hotSide, from int, sum, cpu *time.Duration) time.Duration {
		c0 := benchCPU(b, unix.RUSAGE_THREAD)
		t0 := time.Now()
		var err error
		for i := from; i < min(from+hotBlock, b.N) && err == nil; i++ {
			err = side.cycle(i)
		}
		if err == nil {
			err = side.settle()
		}
		d := time.Since(t0)
		*cpu += benchCPU(b, unix.RUSAGE_THREAD) - c0
		*sum += d
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	b.ResetTimer()
	for j := range blocks {
		var dx, dy time.Duration
		if j%2 == 0 {
			dx = run(x, j*hotBlock, &sumX, &cpuX)
			dy = run(y, j*hotBlock, &sumY, &cpuY)
		} else {
			dy = run(y, j*hotBlock, &sumY, &cpuY)
			dx = run(x, j*hotBlock, &sumX, &cpuX)
		}
		ratios[j] = float64(dx) / float64(dy)
	}
	b.StopTimer()
	slices.Sort(ratios)
	median := ratios[blocks/2]
	if blocks%2 == 0 {
		median = (ratios[blocks/2-1] + ratios[blocks/2]) / 2
	}
	b.ReportMetric(median, "median-pair-x/y")
	b.ReportMetric(float64(sumX)/float64(b.N), "x-ns/op")
	b.ReportMetric(float64(sumY)/float64(b.N), "y-ns/op")
	b.ReportMetric(float64(cpuX-cpuY)/float64(b.N), "x-y-cpu-ns/op")
}

// A hotSide is one side of a BenchmarkHotpath pair: cycle builds result
// i, settle waits for what cycles left running, done ends it all.
type hotSide struct {
	cycle        func(i int) error
	settle, done func() error
}

func hotNothing() error { return nil }

// hotSeed is the bare sequence on the seed's layout: base snapshotted
// writable to result-tmp/x<id>, the file written, that snapshotted
// read-only to result/<id>, x<id> deleted.
func hotSeed(e *benchEnv, ids []string) func(int) error {
	var start, freeze ioctl.VolArgsV2
	var drop ioctl.VolArgs
	freeze.Flags = ioctl.BTRFS_SUBVOL_RDONLY
	return func(i int) error {
		tmp := "x" + ids[i]
		var st unix.Stat_t
		if err := unix.Fstatat(e.resultFd, ids[i], &st, unix.AT_SYMLINK_NOFOLLOW); err != unix.ENOENT {
			return fmt.Errorf("fstatat result %s: %v", ids[i], err)
		}
		baseFd, err := benchOpenDir(e.resultFd, "base/"+snapshotName)
		if err != nil {
			return err
		}
		start.Fd = int64(baseFd)
		benchSetName(start.Name[:], tmp)
		err = ioctl.SnapCreateV2(e.resultTmpFd, &start)
		unix.Close(baseFd)
		if err != nil {
			return fmt.Errorf("snapshot base: %w", err)
		}
		if err := benchWrite(filepath.Join(e.root, resultTmpDir, tmp)); err != nil {
			return err
		}
		workFd, err := benchOpenDir(e.resultTmpFd, tmp)
		if err != nil {
			return err
		}
		freeze.Fd = int64(workFd)
		benchSetName(freeze.Name[:], ids[i])
		err = ioctl.SnapCreateV2(e.resultFd, &freeze)
		unix.Close(workFd)
		if err != nil {
			return fmt.Errorf("snapshot work: %w", err)
		}
		benchSetName(drop.Name[:], tmp)
		return ioctl.SnapDestroy(e.resultTmpFd, &drop)
	}
}

// hotOpts are the variants of hotBare.
type hotOpts struct {
	async bool // the cleanup on a goroutine of its own, one at a time
}

// hotBare is the store's sequence on its layout without its checks:
// result-tmp/x<id> made and opened; base snapshotted writable into it as
// "work"; the file written; out/ and out/<id> made; work snapshotted
// read-only into out/<id>; out/<id> renamed to result/<id>; work deleted;
// out and x<id> removed.
func hotBare(e *benchEnv, ids []string, o hotOpts) hotSide {
	var start, freeze ioctl.VolArgsV2
	var drop ioctl.VolArgs
	benchSetName(start.Name[:], workName)
	benchSetName(freeze.Name[:], snapshotName)
	freeze.Flags = ioctl.BTRFS_SUBVOL_RDONLY
	benchSetName(drop.Name[:], workName)
	cleanup := func(tmpFd int, tmp string) error {
		err := ioctl.SnapDestroy(tmpFd, &drop)
		if err == nil {
			err = unix.Unlinkat(tmpFd, "out", unix.AT_REMOVEDIR)
		}
		unix.Close(tmpFd)
		if err == nil {
			err = unix.Unlinkat(e.resultTmpFd, tmp, unix.AT_REMOVEDIR)
		}
		return err
	}
	// async: one cleanup at a time, on a goroutine; failed holds the
	// first failure.
	var pending sync.WaitGroup
	var failed error
	var failedMu sync.Mutex
	sem := make(chan struct{}, 1)
	work := func(tmpFd int, tmp string, i int) error {
		baseFd, err := benchOpenDir(e.resultFd, "base/"+snapshotName)
		if err != nil {
			return err
		}
		start.Fd = int64(baseFd)
		err = ioctl.SnapCreateV2(tmpFd, &start)
		unix.Close(baseFd)
		if err != nil {
			return fmt.Errorf("snapshot base: %w", err)
		}
		if err := benchWrite(filepath.Join(e.root, resultTmpDir, tmp, workName)); err != nil {
			return err
		}
		workFd, err := benchOpenDir(tmpFd, workName)
		if err != nil {
			return err
		}
		defer unix.Close(workFd)
		if err := unix.Mkdirat(tmpFd, "out", 0o755); err != nil {
			return err
		}
		outFd, err := benchOpenDir(tmpFd, "out")
		if err != nil {
			return err
		}
		defer unix.Close(outFd)
		if err := unix.Mkdirat(outFd, ids[i], 0o755); err != nil {
			return err
		}
		stageFd, err := benchOpenDir(outFd, ids[i])
		if err != nil {
			return err
		}
		freeze.Fd = int64(workFd)
		err = ioctl.SnapCreateV2(stageFd, &freeze)
		unix.Close(stageFd)
		if err != nil {
			return fmt.Errorf("snapshot work: %w", err)
		}
		return unix.Renameat2(outFd, ids[i], e.resultFd, ids[i], unix.RENAME_NOREPLACE)
	}
	build := func(i int) error {
		var st unix.Stat_t
		if err := unix.Fstatat(e.resultFd, ids[i]+"/"+snapshotName, &st, unix.AT_SYMLINK_NOFOLLOW); err != unix.ENOENT {
			return fmt.Errorf("fstatat result %s: %v", ids[i], err)
		}
		tmp := "x" + ids[i]
		if err := unix.Mkdirat(e.resultTmpFd, tmp, 0o755); err != nil {
			return err
		}
		tmpFd, err := benchOpenDir(e.resultTmpFd, tmp)
		if err != nil {
			return err
		}
		if err := work(tmpFd, tmp, i); err != nil {
			unix.Close(tmpFd)
			return err
		}
		if o.async {
			pending.Add(1)
			go func() {
				defer pending.Done()
				sem <- struct{}{}
				err := cleanup(tmpFd, tmp)
				<-sem
				failedMu.Lock()
				failed = cmp.Or(failed, err)
				failedMu.Unlock()
			}()
			return nil
		}
		return cleanup(tmpFd, tmp)
	}
	settle := func() error {
		pending.Wait()
		failedMu.Lock()
		defer failedMu.Unlock()
		return failed
	}
	return hotSide{build, settle, settle}
}
