package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

// Benchmarks of the store beside the bare system calls it issues, side by
// side as sub-benchmarks of one run (DESIGN.md, "Performance anchors": the
// store must stay within a few percent of the raw ioctl sequence). The
// implementations are the rows of benchImpls:
//
//	impl=store         the Store's methods
//	impl=bare          the store's system calls on its layout, hand-written
//	                   with x/sys/unix and the raw ioctl wrappers on
//	                   prefilled structs: the same opens, the same fstatat
//	                   of the result, no checks, no locks, no logging
//	impl=naive-layout  the bare sequence on the seed's layout: work
//	                   subvolumes straight in result-tmp/ and results
//	                   straight in result/, so that every snapshot of every
//	                   builder locks one of two directories (builds only)
//
// and beside what the store replaces, obuilder's sequence of operations on
// the seed's layout:
//
//	impl=cli           forking `btrfs subvolume ...` per operation, as
//	                   obuilder does when it is root
//	impl=cli-sudo      the same through `sudo -n`, as obuilder does when it
//	                   is not (BenchmarkBuild and BenchmarkCacheCycle);
//	                   skipped when sudo is absent or would ask for a
//	                   password (nothing is installed)
//
// The bare build cycle is 18 system calls and the bare cache cycle 19
// (strace -f, leaving out the Go runtime's). The store issues more: the
// checks of ioctl.SnapshotAt on every snapshot (fstatfs and fstat of the
// source, fstatfs of the destination, fstatat of the new subvolume), those
// of its deletes, and whatever it does to tell its own subvolumes from what
// a build step left; count them with strace on -test.benchtime 2x and 12x
// runs of the two, and BenchmarkPaired says what they cost. When the store
// changes its sequence, change the bare mirror with it.
//
// Each sub-benchmark gets its own filesystem holding a base result and a
// cache of benchFileCount small files, committed before the timer starts.
// Every build adds a result, so the cost per operation grows slowly with
// the count: run a fixed count. -count runs each sub-benchmark back to
// back, so interleave the implementations by running the binary several
// times with -count 1; BenchmarkPaired interleaves store and bare cycle by
// cycle, which is what survives a noisy machine:
//
//	go test -c -o /tmp/store.test ./store/
//	cd store && for i in 1 2 3 4 5 6; do
//		/tmp/store.test -test.run '^$' -test.bench . -test.benchmem -test.benchtime 200x -test.count 1
//	done > /tmp/bench-store.txt
//	benchstat -filter '.name:/^(Build|CacheCycle)$/' -col /impl /tmp/bench-store.txt
//	benchstat -filter '.name:Paired' /tmp/bench-store.txt
//	benchstat -filter '.name:BuildParallel' -col /builders -row /impl /tmp/bench-store.txt
//
// BenchmarkCompleteDeletes deletes 10 results and waits until the kernel
// has cleaned them; its impl=cli waits for `btrfs subvolume sync`, about
// 30 s, and runs only with BTRFS_BENCH_CLI_SYNC=1 (use -benchtime 1x).
//
// impl=dennwc (the same sequence through github.com/dennwc/btrfs) of
// BenchmarkBuild and BenchmarkCacheCycle is in the tools module
// (tools/bench/dennwc), to keep it out of the library's go.mod.
// `make bench` (tools/benchreport) runs all of this, the ioctl benchmarks
// and those, as interleaved rounds and writes docs/PERFORMANCE.md.
//
// TMPDIR chooses where the filesystem images live: /dev/shm takes the disk
// out of the measurement. BenchmarkBuildParallel reports builds/s, the
// throughput of all builders together, so that scaling is the ratio of
// two columns.

// benchFileCount files of benchFileSize bytes fill the base and the cache:
// each file has an extent of its own (above max_inline, 2048), so the
// snapshots have something to share.
const (
	benchFileCount = 100
	benchFileSize  = 3000
	benchImageSize = 4 << 30
)

// benchBase is the base result's subvolume, below result/.
const benchBase = "base/" + snapshotName

// benchOwner owns the cache clones: another user, as for a builder.
var benchOwner = Owner{UID: 1000, GID: 1000}

// benchContent is what a build or a cache cycle writes: one small file.
var benchContent = []byte(strings.Repeat("y", benchFileSize))

// benchWrite is the build step of every implementation: it writes one
// file into dir.
func benchWrite(dir string) error {
	return os.WriteFile(dir+"/out", benchContent, 0o644)
}

// benchStep is benchWrite as the store's build step.
func benchStep(_ context.Context, dir string) error { return benchWrite(dir) }

// benchFill writes benchFileCount files into dir.
func benchFill(dir string) error { return btrfstest.Fill(dir, benchFileCount, benchFileSize) }

// benchCycle is the i-th operation of a benchmark: a build, a cache
// cycle, ...
type benchCycle func(i int) error

// benchImpl is one implementation: how it prepares, before the timer,
// the b.N cycles of each benchmark it has (nil where it has none). prefix
// starts the names of what the cycles make, so that two implementations
// can share a store (BenchmarkPaired).
type benchImpl struct {
	name      string
	cli, sudo bool // runs the btrfs command (through `sudo -n`): e.btrfs
	// build returns a constructor of builders, one per goroutine: each
	// has its own prefilled argument structs.
	build     func(e *benchEnv, prefix string) (newBuilder func() benchCycle)
	cache     func(e *benchEnv, prefix string) benchCycle
	unchanged func(e *benchEnv) benchCycle                 // a cache cycle leaving the clone unchanged
	deletes   func(e *benchEnv, ids [][]string) benchCycle // ids from benchDeleteIDs
	skip      string                                       // why to skip, set by a benchmark
}

var benchImpls = []benchImpl{
	{name: "store", build: storeBuild, cache: storeCache, unchanged: storeUnchanged, deletes: storeDeletes},
	{name: "bare", build: bareBuild, cache: bareCache, unchanged: bareUnchanged, deletes: bareDeletes},
	{name: "naive-layout", build: naiveBuild},
	{name: "cli", cli: true, build: seedBuild, cache: seedCache, unchanged: seedUnchanged, deletes: cliDeletes},
	{name: "cli-sudo", cli: true, sudo: true, build: seedBuild, cache: seedCache},
}

// builder and cacher turn a build or a cache preparation into that of a
// benchmark: with prefix, one builder.
func builder(build func(*benchEnv, string) func() benchCycle, prefix string) func(*benchEnv) benchCycle {
	return func(e *benchEnv) benchCycle { return build(e, prefix)() }
}

func cacher(cache func(*benchEnv, string) benchCycle, prefix string) func(*benchEnv) benchCycle {
	return func(e *benchEnv) benchCycle { return cache(e, prefix) }
}

// runImpls runs the sub-benchmark impl=<name> of each implementation for
// which op returns a preparation: on a fresh benchEnv, its b.N cycles one
// after another.
func runImpls(b *testing.B, op func(im *benchImpl) func(*benchEnv) benchCycle) {
	for _, im := range benchImpls {
		prepare := op(&im)
		if prepare == nil {
			continue
		}
		b.Run("impl="+im.name, func(b *testing.B) {
			if im.skip != "" {
				b.Skip(im.skip)
			}
			var btrfs func(args ...string) error
			if im.cli {
				btrfs = benchBtrfs(b, im.sudo)
			}
			e := newBenchEnv(b)
			e.btrfs = btrfs
			benchLoop(b, prepare(e))
		})
	}
}

// benchLoop times cycle(0) to cycle(b.N-1), one after another.
func benchLoop(b *testing.B, cycle benchCycle) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := cycle(i); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuild is one build cycle after another: a build on a base of
// benchFileCount files that writes one file.
func BenchmarkBuild(b *testing.B) {
	runImpls(b, func(im *benchImpl) func(*benchEnv) benchCycle {
		if im.build == nil {
			return nil
		}
		return builder(im.build, "r")
	})
}

// BenchmarkCacheCycle is one cache cycle after another on a cache of
// benchFileCount files: clone, write one file, release.
func BenchmarkCacheCycle(b *testing.B) {
	runImpls(b, func(im *benchImpl) func(*benchEnv) benchCycle {
		if im.cache == nil {
			return nil
		}
		return cacher(im.cache, "")
	})
}

// BenchmarkCacheCycleUnchanged is "cache cycle, clone unchanged": Cache
// and Release of a clone that nobody changed, on the cache of
// benchFileCount files, given to benchOwner as in BenchmarkCacheCycle.
//
//	impl=store  the Store: the clone is snapshotted, chowned and marked;
//	            the release finds it unchanged and keeps the version
//	impl=bare   the same system calls by hand: snapshot, chown,
//	            GET_SUBVOL_INFO, and at release GET_SUBVOL_INFO, the
//	            delalloc flush (a SNAP_CREATE_V2 that fails with
//	            ENAMETOOLONG), GET_SUBVOL_INFO, the clone's SNAP_DESTROY
//	impl=cli    obuilder's cycle forking `btrfs` (which cannot tell, and
//	            saves the clone every time)
//
// BenchmarkPairedCacheUnchanged alternates the store's unchanged and
// changed cycles on one filesystem and reports unchanged/changed (the
// issue's target: at most 0.6).
func BenchmarkCacheCycleUnchanged(b *testing.B) {
	runImpls(b, func(im *benchImpl) func(*benchEnv) benchCycle { return im.unchanged })
}

// cliSyncEnv enables BenchmarkCompleteDeletes/impl=cli, as it does
// BenchmarkDeleteWait/impl=cli in package ioctl.
const cliSyncEnv = "BTRFS_BENCH_CLI_SYNC"

// benchDeletesPerOp is the number of results BenchmarkCompleteDeletes
// deletes before each wait.
const benchDeletesPerOp = 10

// BenchmarkCompleteDeletes deletes benchDeletesPerOp results and waits
// until the kernel has cleaned them, so that FreeSpace is accurate; one
// operation is the deletes and the wait. The results are build results on
// the base (benchFileCount files shared, one of their own), made and
// committed before the timer, with every earlier deletion cleaned.
//
//	impl=store  Delete of each, then CompleteDeletes
//	impl=bare   SNAP_DESTROY of each result's subvolume on a prefilled
//	            struct, then ioctl.WaitDeleted (what CompleteDeletes does)
//	impl=cli    `btrfs subvolume delete` of each, then `btrfs subvolume
//	            sync`, which waits for the next periodic commit (30 s by
//	            default): only with BTRFS_BENCH_CLI_SYNC=1
func BenchmarkCompleteDeletes(b *testing.B) {
	runImpls(b, func(im *benchImpl) func(*benchEnv) benchCycle {
		if im.deletes == nil {
			return nil
		}
		if im.cli && os.Getenv(cliSyncEnv) != "1" {
			im.skip = "btrfs subvolume sync takes about 30 s per operation; set " + cliSyncEnv + "=1 (and -benchtime 1x) to run it"
		}
		return func(e *benchEnv) benchCycle { return im.deletes(e, benchDeleteIDs(e)) }
	})
}

// BenchmarkBuildParallel runs build cycles on several goroutines at once,
// sharing b.N builds, and reports their total throughput in builds/s, and
// the CPU time of the whole process per build (cpu-ns/build, user and
// system, every thread: the kernel work of the system calls, transaction
// commits included, is done on the builders' threads; kernel threads'
// work, such as the cleaner's, is not counted). Throughput times CPU per
// build over the number of cores is how busy the cores were. The btrfs
// command is left out.
func BenchmarkBuildParallel(b *testing.B) {
	for _, builders := range []int{1, 2, 4, 8} {
		for _, im := range benchImpls {
			if im.build == nil || im.cli {
				continue
			}
			b.Run(fmt.Sprintf("builders=%d/impl=%s", builders, im.name), func(b *testing.B) {
				newBuilder := im.build(newBenchEnv(b), "r")
				var next atomic.Int64
				var failed sync.Once
				var wg sync.WaitGroup
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := benchCPU(b, unix.RUSAGE_SELF)
				for range builders {
					build := newBuilder()
					wg.Go(func() {
						for {
							i := int(next.Add(1) - 1)
							if i >= b.N {
								return
							}
							if err := build(i); err != nil {
								failed.Do(func() { b.Error(err) })
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				cpu := benchCPU(b, unix.RUSAGE_SELF) - cpu0
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "builds/s")
				b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/build")
			})
		}
	}
}

// A benchPair is two preparations run alternately on one filesystem.
type benchPair struct {
	cycle string
	a, b  func(*benchEnv) benchCycle
}

// BenchmarkPaired runs the store and the bare sequence alternately on one
// filesystem, b.N cycles each, the first of each pair alternating too, so
// that noise from the machine, and the slow growth of the cost with the
// number of subvolumes, fall on both alike. It reports for each the mean
// time per cycle (store-ns/op, bare-ns/op) and the ratios of the means
// (store/bare) and of the medians (median-store/bare), which a few
// stalled transaction commits do not move; and the CPU time of the
// benchmark's thread per cycle (store-cpu-ns/op, bare-cpu-ns/op), user and
// system: what the store adds is all on that thread (the system calls
// and their checks, and the transaction commits that the snapshots wait
// for run on it too), while waiting for the disk is not counted, nor are
// other processes. Its ns/op is that of a pair, and so are its
// allocations. cycle=build-seed-layout pairs the store with the bare
// sequence on the seed's layout (reported as bare): what one builder pays
// for the layout that lets several scale. cycle=control pairs the bare
// build with itself: its ratios show how far from 1 noise alone moves
// them.
func BenchmarkPaired(b *testing.B) {
	runPairs(b, "store", "bare", []benchPair{
		{"build", builder(storeBuild, "r"), builder(bareBuild, "q")},
		{"build-seed-layout", builder(storeBuild, "r"), builder(naiveBuild, "q")},
		{"control", builder(bareBuild, "r"), builder(bareBuild, "q")},
		{"cache", cacher(storeCache, ""), cacher(bareCache, "bare")},
	})
}

// BenchmarkPairedCacheUnchanged alternates, cycle by cycle, the store's
// cache cycle with an unchanged clone and with a changed one (one file
// written, as BenchmarkCacheCycle), on one filesystem, and reports, as
// BenchmarkPaired does, the mean times (unchanged-ns/op, changed-ns/op)
// and their ratio, of the means and of the medians.
//
// cycle=store-bare pairs the store's unchanged cycle with the bare one
// instead: its ratio (reported under the same names) is the store's
// overhead on the unchanged cycle.
func BenchmarkPairedCacheUnchanged(b *testing.B) {
	runPairs(b, "unchanged", "changed", []benchPair{
		{"unchanged-changed", storeUnchanged, cacher(storeCache, "")},
		{"store-bare", storeUnchanged, bareUnchanged},
	})
}

// runPairs runs each pair as the sub-benchmark cycle=<name> on a fresh
// benchEnv, b.N pairs of cycles in alternating order, and reports their
// times under the names nameA and nameB.
func runPairs(b *testing.B, nameA, nameB string, pairs []benchPair) {
	for _, p := range pairs {
		b.Run("cycle="+p.cycle, func(b *testing.B) {
			e := newBenchEnv(b)
			cycleA, cycleB := p.a(e), p.b(e)
			// The thread's CPU time is the goroutine's only while it
			// stays on it.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			a, c := benchTimes{wall: make([]time.Duration, b.N)}, benchTimes{wall: make([]time.Duration, b.N)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%2 == 0 {
					a.run(b, cycleA, i)
					c.run(b, cycleB, i)
				} else {
					c.run(b, cycleB, i)
					a.run(b, cycleA, i)
				}
			}
			b.StopTimer()
			sumA, sumB := benchSum(a.wall), benchSum(c.wall)
			b.ReportMetric(float64(sumA)/float64(b.N), nameA+"-ns/op")
			b.ReportMetric(float64(sumB)/float64(b.N), nameB+"-ns/op")
			b.ReportMetric(float64(sumA)/float64(sumB), nameA+"/"+nameB)
			b.ReportMetric(float64(median(a.wall))/float64(median(c.wall)), "median-"+nameA+"/"+nameB)
			b.ReportMetric(float64(a.cpu)/float64(b.N), nameA+"-cpu-ns/op")
			b.ReportMetric(float64(c.cpu)/float64(b.N), nameB+"-cpu-ns/op")
		})
	}
}

// benchTimes accumulates the times of one implementation's cycles.
type benchTimes struct {
	wall []time.Duration // of each cycle
	cpu  time.Duration   // of the thread, user and system, in total
}

// run runs cycle i, timing it; the caller is locked to its thread.
func (t *benchTimes) run(b *testing.B, cycle benchCycle, i int) {
	cpu0 := benchCPU(b, unix.RUSAGE_THREAD)
	start := time.Now()
	err := cycle(i)
	t.wall[i] = time.Since(start)
	t.cpu += benchCPU(b, unix.RUSAGE_THREAD) - cpu0
	if err != nil {
		b.Fatal(err)
	}
}

// benchCPU returns the CPU time, user and system, of the calling thread
// (unix.RUSAGE_THREAD) or of the process (unix.RUSAGE_SELF).
func benchCPU(b *testing.B, who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchSum(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum
}

// BenchmarkStoreExtras times, alone and without any transaction commit,
// the system calls that the store issues on top of the bare sequence, so
// that the store/bare difference of the cycles can be attributed:
//
//	extra=snapshot-checks  what ioctl.SnapshotAt adds to SNAP_CREATE_V2:
//	                       fstatfs and fstat of the source, fstatfs of the
//	                       destination, fstatat of the new subvolume (two
//	                       per build, two per cache cycle)
//	extra=nested-search    the search for nested subvolumes of a recursive
//	                       delete: openat, fstatfs, fstat, INO_LOOKUP, two
//	                       TREE_SEARCH, close (no longer per cycle: the
//	                       store tries a plain delete first and searches
//	                       only when the kernel says ENOTEMPTY)
//	extra=dir-listing      removeEntry's look into a plain directory:
//	                       fstatat, openat, fcntl, two getdents64, close
//	                       (no longer per cycle: Build removes its empty
//	                       build directory with one unlinkat, and lists
//	                       it only when that fails)
func BenchmarkStoreExtras(b *testing.B) {
	e := newBenchEnv(b)
	baseFd, err := benchOpenDir(e.resultFd, benchBase)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(baseFd)
	baseDirFd, err := benchOpenDir(e.resultFd, "base")
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(baseDirFd)
	basePath := filepath.Join(e.root, resultDir, benchBase)
	for _, extra := range []struct {
		name string
		op   func() error
	}{
		{"snapshot-checks", func() error {
			if err := ioctl.CheckBtrfs(baseFd); err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Fstat(baseFd, &st); err != nil {
				return err
			}
			if err := ioctl.CheckBtrfs(baseDirFd); err != nil {
				return err
			}
			return unix.Fstatat(baseDirFd, snapshotName, &st, unix.AT_SYMLINK_NOFOLLOW)
		}},
		{"nested-search", func() error {
			for _, err := range ioctl.Subvolumes(basePath) {
				return err
			}
			return nil
		}},
		{"dir-listing", func() error {
			var st unix.Stat_t
			if err := unix.Fstatat(e.resultFd, "base", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			fd, err := openDirAt(e.resultFd, "base")
			if err != nil {
				return err
			}
			dir := os.NewFile(uintptr(fd), "base")
			entries, err := dir.ReadDir(-1)
			dir.Close()
			if err == nil && len(entries) != 1 {
				err = fmt.Errorf("base holds %v", entries)
			}
			return err
		}},
	} {
		b.Run("extra="+extra.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := extra.op(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchEnv is a store on a fresh filesystem holding the base result
// "base" and the cache "cache", committed, and directory fds on its layout
// for the bare implementations.
type benchEnv struct {
	b                                          *testing.B
	s                                          *Store
	root                                       string
	resultFd, resultTmpFd, cacheFd, cacheTmpFd int
	btrfs                                      func(args ...string) error // for impl=cli*: benchBtrfs
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	s, _ := newStore(b, btrfstest.Size(benchImageSize))
	ctx := context.Background()
	if err := s.Build(ctx, "base", "", func(_ context.Context, dir string) error { return benchFill(dir) }); err != nil {
		b.Fatal(err)
	}
	l, err := s.Cache(ctx, "cache", benchOwner)
	if err != nil {
		b.Fatal(err)
	}
	if err := benchFill(l.Path()); err != nil {
		b.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{b: b, s: s, root: s.Root()}
	for _, d := range []struct {
		name string
		fd   *int
	}{{resultDir, &e.resultFd}, {resultTmpDir, &e.resultTmpFd}, {cacheDir, &e.cacheFd}, {cacheTmpDir, &e.cacheTmpFd}} {
		fd, err := openDirAt(unix.AT_FDCWD, filepath.Join(e.root, d.name))
		if err != nil {
			b.Fatal(err)
		}
		*d.fd = fd
		b.Cleanup(func() { unix.Close(fd) })
	}
	if err := ioctl.SyncFS(e.resultFd); err != nil {
		b.Fatal(err)
	}
	return e
}

// benchOpenDir opens a directory as the store does.
func benchOpenDir(dirFd int, name string) (int, error) {
	return unix.Openat(dirFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// benchSetName copies name into a kernel name field, NUL-terminated.
func benchSetName(dst []byte, name string) {
	dst[copy(dst, name)] = 0
}

// benchSnapshot opens name below dirFd and snapshots it into dstFd as
// args says (name, flags), as the bare implementations snapshot a
// subvolume they do not hold open.
func benchSnapshot(dirFd int, name string, dstFd int, args *ioctl.VolArgsV2) error {
	srcFd, err := benchOpenDir(dirFd, name)
	if err != nil {
		return err
	}
	args.Fd = int64(srcFd)
	err = ioctl.SnapCreateV2(dstFd, args)
	unix.Close(srcFd)
	return err
}

// benchBtrfs returns a function that runs the btrfs command with its
// arguments, through `sudo -n` if sudo is set, as obuilder runs it: one
// fork/exec per operation. It skips b when there is no btrfs command, or
// (sudo) no sudo or a sudo that would ask for a password; it installs
// nothing.
func benchBtrfs(b *testing.B, sudo bool) func(args ...string) error {
	b.Helper()
	bin, err := exec.LookPath("btrfs")
	if err != nil {
		b.Skipf("no btrfs command to compare with (%v); install btrfs-progs", err)
	}
	prefix := []string{bin}
	if sudo {
		sudoBin, err := exec.LookPath("sudo")
		if err != nil {
			b.Skipf("no sudo on this machine (%v): impl=cli is the same command without it", err)
		}
		if out, err := exec.Command(sudoBin, "-n", "true").CombinedOutput(); err != nil {
			b.Skipf("`sudo -n true` failed (%v: %s): sudo would ask for a password", err, bytes.TrimSpace(out))
		}
		prefix = []string{sudoBin, "-n", bin}
	}
	return func(args ...string) error {
		argv := append(slices.Clip(prefix), args...)
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
}

// The build cycles, on base "base": a builder builds result <prefix><i>,
// and its temporary names derive from that.

// storeBuild waits after each build for the spare work subvolume the
// build had made for the next one (spare.go): the cycle bears its whole
// cost, and none of it runs into what the next benchmark times.
func storeBuild(e *benchEnv, prefix string) func() benchCycle {
	ctx := context.Background()
	ids := btrfstest.Names(prefix, e.b.N)
	return func() benchCycle {
		return func(i int) error {
			err := e.s.Build(ctx, ids[i], "base", benchStep)
			waitSpares(e.s)
			return err
		}
	}
}

// bareBuild mirrors Build, publish and the cleanup in build.go, with the
// store's spares (spare.go): one at a time, shared by the builders, made
// from the second build on. A cycle: result/<id>/snapshot checked absent;
// the spare, if there is one, taken: waited for and its directory renamed
// to result-tmp/x<id>; the next spare started (result-tmp/s<i> made and
// opened, base snapshotted writable into it as "work"); without a spare,
// x<id> made and base snapshotted into it; the file written; result/<id>
// made and opened; work snapshotted read-only into it as "snapshot"; work
// deleted; x<id> removed; the spare being made waited for (as storeBuild
// waits).
func bareBuild(e *benchEnv, prefix string) func() benchCycle {
	ids := btrfstest.Names(prefix, e.b.N)
	tmps := btrfstest.Names("x"+prefix, e.b.N)
	spareNames := btrfstest.Names("s"+prefix, e.b.N)
	resultRels := make([]string, len(ids))
	workPaths := make([]string, len(ids))
	for i := range ids {
		resultRels[i] = ids[i] + "/" + snapshotName
		workPaths[i] = filepath.Join(e.root, resultTmpDir, tmps[i], workName)
	}
	// makeWork makes name in result-tmp and in it the work subvolume,
	// and returns the directory open.
	makeWork := func(name string) (int, error) {
		var args ioctl.VolArgsV2
		benchSetName(args.Name[:], workName)
		if err := unix.Mkdirat(e.resultTmpFd, name, 0o755); err != nil {
			return -1, err
		}
		fd, err := benchOpenDir(e.resultTmpFd, name)
		if err != nil {
			return -1, err
		}
		if err := benchSnapshot(e.resultFd, benchBase, fd, &args); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("snapshot base: %w", err)
		}
		return fd, nil
	}
	type bareSpare struct {
		name string
		done chan struct{}
		fd   int
		err  error
	}
	var mu sync.Mutex
	var spare *bareSpare // made or being made; guarded by mu
	uses := 0            // guarded by mu
	e.b.Cleanup(func() { // the last spare is left to the filesystem's removal
		if spare != nil {
			<-spare.done
			unix.Close(spare.fd)
		}
	})
	return func() benchCycle {
		var freeze ioctl.VolArgsV2
		var drop ioctl.VolArgs
		benchSetName(freeze.Name[:], snapshotName)
		freeze.Flags = ioctl.BTRFS_SUBVOL_RDONLY
		benchSetName(drop.Name[:], workName)
		// bareWork is what Build does between taking its build
		// directory and removing it.
		bareWork := func(tmpFd, i int) error {
			if err := benchWrite(workPaths[i]); err != nil {
				return err
			}
			workFd, err := benchOpenDir(tmpFd, workName)
			if err != nil {
				return err
			}
			defer unix.Close(workFd)
			if err := unix.Mkdirat(e.resultFd, ids[i], 0o755); err != nil {
				return err
			}
			idFd, err := benchOpenDir(e.resultFd, ids[i])
			if err != nil {
				return err
			}
			freeze.Fd = int64(workFd)
			err = ioctl.SnapCreateV2(idFd, &freeze)
			unix.Close(idFd)
			if err != nil {
				return fmt.Errorf("snapshot work: %w", err)
			}
			return nil
		}
		return func(i int) error {
			var st unix.Stat_t
			if err := unix.Fstatat(e.resultFd, resultRels[i], &st, unix.AT_SYMLINK_NOFOLLOW); err != unix.ENOENT {
				return fmt.Errorf("fstatat result %s: %v", ids[i], err)
			}
			mu.Lock()
			mine := spare
			spare = nil
			uses++
			if mine != nil || uses >= 2 {
				next := &bareSpare{name: spareNames[i], done: make(chan struct{})}
				spare = next
				go func() {
					next.fd, next.err = makeWork(next.name)
					close(next.done)
				}()
			}
			mu.Unlock()
			var tmpFd int
			var err error
			if mine != nil {
				<-mine.done
				if tmpFd, err = mine.fd, mine.err; err == nil {
					err = unix.Renameat2(e.resultTmpFd, mine.name, e.resultTmpFd, tmps[i], unix.RENAME_NOREPLACE)
				}
			} else {
				tmpFd, err = makeWork(tmps[i])
			}
			if err != nil {
				return err
			}
			err = bareWork(tmpFd, i)
			if err == nil {
				err = ioctl.SnapDestroy(tmpFd, &drop)
			}
			unix.Close(tmpFd)
			if err == nil {
				err = unix.Unlinkat(e.resultTmpFd, tmps[i], unix.AT_REMOVEDIR)
			}
			mu.Lock()
			pending := spare
			mu.Unlock()
			if pending != nil {
				<-pending.done
			}
			return err
		}
	}
}

// naiveBuild is the bare sequence on the seed's layout: base snapshotted
// writable to result-tmp/x<id>; the file written; that snapshotted
// read-only to result/<id>; x<id> deleted. Every builder's snapshots lock
// the same two directories. Only the layout differs from impl=bare.
func naiveBuild(e *benchEnv, prefix string) func() benchCycle {
	ids := btrfstest.Names(prefix, e.b.N)
	tmps := btrfstest.Names("x"+prefix, e.b.N)
	workPaths := btrfstest.Paths(filepath.Join(e.root, resultTmpDir), "x"+prefix, e.b.N)
	return func() benchCycle {
		var start, freeze ioctl.VolArgsV2
		var drop ioctl.VolArgs
		freeze.Flags = ioctl.BTRFS_SUBVOL_RDONLY
		return func(i int) error {
			var st unix.Stat_t
			if err := unix.Fstatat(e.resultFd, ids[i], &st, unix.AT_SYMLINK_NOFOLLOW); err != unix.ENOENT {
				return fmt.Errorf("fstatat result %s: %v", ids[i], err)
			}
			benchSetName(start.Name[:], tmps[i])
			if err := benchSnapshot(e.resultFd, benchBase, e.resultTmpFd, &start); err != nil {
				return fmt.Errorf("snapshot base: %w", err)
			}
			if err := benchWrite(workPaths[i]); err != nil {
				return err
			}
			benchSetName(freeze.Name[:], ids[i])
			if err := benchSnapshot(e.resultTmpFd, tmps[i], e.resultFd, &freeze); err != nil {
				return fmt.Errorf("snapshot work: %w", err)
			}
			benchSetName(drop.Name[:], tmps[i])
			if err := ioctl.SnapDestroy(e.resultTmpFd, &drop); err != nil {
				return fmt.Errorf("delete work: %w", err)
			}
			return nil
		}
	}
}

// seedBuild is obuilder's build cycle (btrfs_store.ml) with the btrfs
// command: `btrfs subvolume snapshot` of the base to result-tmp/<id>, the
// file written, `btrfs subvolume snapshot -r` to result/<id>, `btrfs
// subvolume delete` of the work subvolume.
func seedBuild(e *benchEnv, prefix string) func() benchCycle {
	base := filepath.Join(e.root, resultDir, benchBase)
	works := btrfstest.Paths(filepath.Join(e.root, resultTmpDir), prefix, e.b.N)
	results := btrfstest.Paths(filepath.Join(e.root, resultDir), prefix, e.b.N)
	return func() benchCycle {
		return func(i int) error {
			if err := e.btrfs("subvolume", "snapshot", base, works[i]); err != nil {
				return err
			}
			if err := benchWrite(works[i]); err != nil {
				return err
			}
			if err := e.btrfs("subvolume", "snapshot", "-r", works[i], results[i]); err != nil {
				return err
			}
			return e.btrfs("subvolume", "delete", works[i])
		}
	}
}

// The cache cycles, on the cache "cache": clone, write one file (or, for
// unchanged, none), release.

func storeCache(e *benchEnv, _ string) benchCycle { return storeCacheCycle(e, benchWrite) }
func storeUnchanged(e *benchEnv) benchCycle       { return storeCacheCycle(e, nil) }

// storeCacheCycle is Cache, step on the clone if step is not nil, and
// Release.
func storeCacheCycle(e *benchEnv, step func(dir string) error) benchCycle {
	ctx := context.Background()
	return func(int) error {
		l, err := e.s.Cache(ctx, "cache", benchOwner)
		if err != nil {
			return err
		}
		if step != nil {
			if err := step(l.Path()); err != nil {
				l.Release(ctx)
				return err
			}
		}
		return l.Release(ctx)
	}
}

// bareCache mirrors Cache, ensureCache, Release and save in lease.go:
// cache/c-cache checked present and opened; snapshotted writable to
// cache-tmp/k<prefix><i>, which is chowned; the file written; the clone
// opened, chowned back and snapshotted read-only to cache/t-<prefix><i>;
// that exchanged with c-cache; the old version deleted; the clone deleted.
func bareCache(e *benchEnv, prefix string) benchCycle {
	entry := Escape("cache")
	clones := btrfstest.Names("k"+prefix, e.b.N)
	versions := btrfstest.Names("t-"+prefix, e.b.N)
	clonePaths := btrfstest.Paths(filepath.Join(e.root, cacheTmpDir), "k"+prefix, e.b.N)
	var clone, freeze ioctl.VolArgsV2
	var drop ioctl.VolArgs
	freeze.Flags = ioctl.BTRFS_SUBVOL_RDONLY
	euid, egid := os.Geteuid(), os.Getegid()
	return func(i int) error {
		var st unix.Stat_t
		if err := unix.Fstatat(e.cacheFd, entry, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		benchSetName(clone.Name[:], clones[i])
		if err := benchSnapshot(e.cacheFd, entry, e.cacheTmpFd, &clone); err != nil {
			return fmt.Errorf("clone: %w", err)
		}
		if err := unix.Fchownat(e.cacheTmpFd, clones[i], benchOwner.UID, benchOwner.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if err := benchWrite(clonePaths[i]); err != nil {
			return err
		}
		cloneFd, err := benchOpenDir(e.cacheTmpFd, clones[i])
		if err != nil {
			return err
		}
		// Taken back from its owner: the kernel snapshots only what the
		// caller owns (without CAP_FOWNER).
		if err := unix.Fchown(cloneFd, euid, egid); err != nil {
			unix.Close(cloneFd)
			return err
		}
		freeze.Fd = int64(cloneFd)
		benchSetName(freeze.Name[:], versions[i])
		err = ioctl.SnapCreateV2(e.cacheFd, &freeze)
		unix.Close(cloneFd)
		if err != nil {
			return fmt.Errorf("freeze: %w", err)
		}
		if err := unix.Renameat2(e.cacheFd, versions[i], e.cacheFd, entry, unix.RENAME_EXCHANGE); err != nil {
			return err
		}
		benchSetName(drop.Name[:], versions[i])
		if err := ioctl.SnapDestroy(e.cacheFd, &drop); err != nil {
			return fmt.Errorf("delete old version: %w", err)
		}
		benchSetName(drop.Name[:], clones[i])
		if err := ioctl.SnapDestroy(e.cacheTmpFd, &drop); err != nil {
			return fmt.Errorf("delete clone: %w", err)
		}
		return nil
	}
}

// bareUnchanged is the store's unchanged cycle by hand: the clone
// cache-tmp/kbare<i> snapshotted, opened, chowned and marked
// (GET_SUBVOL_INFO before and after); at release GET_SUBVOL_INFO, the
// delalloc flush, GET_SUBVOL_INFO, the clone deleted.
func bareUnchanged(e *benchEnv) benchCycle {
	entry := Escape("cache")
	clones := btrfstest.Names("kbare", e.b.N)
	var clone, flush ioctl.VolArgsV2
	var drop ioctl.VolArgs
	for i := range flush.Name[:256] {
		flush.Name[i] = 'f'
	}
	var info ioctl.GetSubvolInfoArgs
	return func(i int) error {
		benchSetName(clone.Name[:], clones[i])
		if err := benchSnapshot(e.cacheFd, entry, e.cacheTmpFd, &clone); err != nil {
			return fmt.Errorf("clone: %w", err)
		}
		fd, err := benchOpenDir(e.cacheTmpFd, clones[i])
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := ioctl.GetSubvolInfo(fd, &info); err != nil {
			return err
		}
		if err := unix.Fchown(fd, benchOwner.UID, benchOwner.GID); err != nil {
			return err
		}
		if err := ioctl.GetSubvolInfo(fd, &info); err != nil {
			return err
		}
		// Release.
		if err := ioctl.GetSubvolInfo(fd, &info); err != nil {
			return err
		}
		flush.Fd = int64(fd)
		if err := ioctl.SnapCreateV2(fd, &flush); err != unix.ENAMETOOLONG {
			return fmt.Errorf("flush: %v", err)
		}
		if err := ioctl.GetSubvolInfo(fd, &info); err != nil {
			return err
		}
		benchSetName(drop.Name[:], clones[i])
		if err := ioctl.SnapDestroy(e.cacheTmpFd, &drop); err != nil {
			return fmt.Errorf("delete clone: %w", err)
		}
		return nil
	}
}

func seedCache(e *benchEnv, prefix string) benchCycle { return seedCacheCycle(e, prefix, benchWrite) }
func seedUnchanged(e *benchEnv) benchCycle            { return seedCacheCycle(e, "", nil) }

// seedCacheCycle is obuilder's cache cycle (btrfs_store.ml, without its
// lock and generation, which cost nothing here) with the btrfs command:
// cache/c-cache snapshotted writable to cache-tmp/k<prefix><i>, chowned (by
// os.Lchown, where obuilder forks `sudo chown`), step run on it if not
// nil; on release the old cache deleted and the clone snapshotted
// read-only in its place (not crash-safe: there is a moment without a
// cache), the clone deleted. tools/bench/dennwc repeats it.
func seedCacheCycle(e *benchEnv, prefix string, step func(dir string) error) benchCycle {
	master := filepath.Join(e.root, cacheDir, Escape("cache"))
	clones := btrfstest.Paths(filepath.Join(e.root, cacheTmpDir), "k"+prefix, e.b.N)
	return func(i int) error {
		if err := e.btrfs("subvolume", "snapshot", master, clones[i]); err != nil {
			return err
		}
		if err := os.Lchown(clones[i], benchOwner.UID, benchOwner.GID); err != nil {
			return err
		}
		if step != nil {
			if err := step(clones[i]); err != nil {
				return err
			}
		}
		if err := e.btrfs("subvolume", "delete", master); err != nil {
			return err
		}
		if err := e.btrfs("subvolume", "snapshot", "-r", clones[i], master); err != nil {
			return err
		}
		return e.btrfs("subvolume", "delete", clones[i])
	}
}

// The delete cycles: the i-th deletes the results ids[i].

// benchDeleteIDs builds, before the timer, benchDeletesPerOp results for
// each of b.N operations, ids[i], and waits until the kernel has cleaned
// what the builds deleted.
func benchDeleteIDs(e *benchEnv) [][]string {
	ctx := context.Background()
	ids := make([][]string, e.b.N)
	for i := range ids {
		ids[i] = btrfstest.Names("r"+strconv.Itoa(i)+"-", benchDeletesPerOp)
		for _, id := range ids[i] {
			if err := e.s.Build(ctx, id, "base", benchStep); err != nil {
				e.b.Fatal(err)
			}
		}
	}
	if err := e.s.CompleteDeletes(ctx); err != nil {
		e.b.Fatal(err)
	}
	return ids
}

func storeDeletes(e *benchEnv, ids [][]string) benchCycle {
	ctx := context.Background()
	return func(i int) error {
		for _, id := range ids[i] {
			if err := e.s.Delete(ctx, id); err != nil {
				return err
			}
		}
		return e.s.CompleteDeletes(ctx)
	}
}

func bareDeletes(e *benchEnv, ids [][]string) benchCycle {
	parents := make([][]int, len(ids))
	for i := range parents {
		for _, id := range ids[i] {
			fd, err := benchOpenDir(e.resultFd, id)
			if err != nil {
				e.b.Fatal(err)
			}
			e.b.Cleanup(func() { unix.Close(fd) })
			parents[i] = append(parents[i], fd)
		}
	}
	ctx := context.Background()
	var drop ioctl.VolArgs
	benchSetName(drop.Name[:], snapshotName)
	return func(i int) error {
		for _, fd := range parents[i] {
			if err := ioctl.SnapDestroy(fd, &drop); err != nil {
				return err
			}
		}
		return ioctl.WaitDeleted(ctx, e.root)
	}
}

func cliDeletes(e *benchEnv, ids [][]string) benchCycle {
	paths := make([][]string, len(ids))
	for i := range paths {
		for _, id := range ids[i] {
			paths[i] = append(paths[i], filepath.Join(e.root, resultDir, id, snapshotName))
		}
	}
	return func(i int) error {
		for _, p := range paths[i] {
			if err := e.btrfs("subvolume", "delete", p); err != nil {
				return err
			}
		}
		return e.btrfs("subvolume", "sync", e.root)
	}
}
