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
// store must stay within a few percent of the raw ioctl sequence):
//
//	impl=store         the Store's methods
//	impl=bare          the store's system calls on its layout, hand-written
//	                   with x/sys/unix and the raw ioctl wrappers on
//	                   prefilled structs: the same opens, the same fstatat
//	                   of the result, no checks, no locks, no logging
//	impl=naive-layout  the bare sequence on the seed's layout: work
//	                   subvolumes straight in result-tmp/ and results
//	                   straight in result/, so that every snapshot of every
//	                   builder locks one of two directories
//
// and beside what the store replaces, obuilder's sequence of operations on
// the seed's layout (BenchmarkBuild and BenchmarkCacheCycle only):
//
//	impl=cli           forking `btrfs subvolume ...` per operation, as
//	                   obuilder does when it is root
//	impl=cli-sudo      the same through `sudo -n`, as obuilder does when it
//	                   is not; skipped when sudo is absent or would ask for
//	                   a password (nothing is installed)
//
// The bare build cycle is 24 system calls and the bare cache cycle 19
// (strace -f, leaving out the Go runtime's). The store issues more: the checks of ioctl.SnapshotAt on every snapshot (fstatfs and
// fstat of the source, fstatfs of the destination, fstatat of the new
// subvolume), those of its deletes, and whatever it does to tell its own
// subvolumes from what a build step left; count them with strace on
// -test.benchtime 2x and 12x runs of the two, and BenchmarkPaired says what
// they cost. When the store changes its sequence, change the bare mirror
// with it.
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

// benchOwner owns the cache clones: another user, as for a builder.
var benchOwner = Owner{UID: 1000, GID: 1000}

// benchContent is what a build or a cache cycle writes: one small file.
var benchContent = []byte(strings.Repeat("y", benchFileSize))

// benchWrite is the build step of every implementation: it writes one
// file into dir.
func benchWrite(dir string) error {
	return os.WriteFile(dir+"/out", benchContent, 0o644)
}

// benchFill writes benchFileCount files into dir.
func benchFill(dir string) error { return btrfstest.Fill(dir, benchFileCount, benchFileSize) }

// benchEnv is a store on a fresh filesystem holding the base result
// "base" and the cache "cache", committed, and directory fds on its layout
// for the bare implementations.
type benchEnv struct {
	s                                          *Store
	root                                       string
	resultFd, resultTmpFd, cacheFd, cacheTmpFd int
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
	e := &benchEnv{s: s, root: s.Root()}
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

// benchBuildImpl is one implementation of a build cycle on base "base".
// prepare runs before the timer with the ids of the builds to come; it
// returns a constructor of builders, one per goroutine, and a builder
// builds result ids[i]. Temporary names derive from the ids, so that
// implementations given distinct ids can share a store.
type benchBuildImpl struct {
	name    string
	prepare func(e *benchEnv, ids []string) (newBuilder func() func(i int) error)
}

var benchBuildImpls = []benchBuildImpl{
	{"store", prepareStoreBuild},
	{"bare", prepareBareBuild},
	{"naive-layout", prepareNaiveBuild},
}

func prepareStoreBuild(e *benchEnv, ids []string) func() func(i int) error {
	ctx := context.Background()
	step := func(_ context.Context, dir string) error { return benchWrite(dir) }
	return func() func(i int) error {
		return func(i int) error { return e.s.Build(ctx, ids[i], "base", step) }
	}
}

// prepareBareBuild mirrors Build, publish and the cleanup in build.go:
// result/<id>/snapshot checked absent; result-tmp/x<id> made and opened;
// base snapshotted writable into it as "work"; the file written; "out"
// and out/<id> made and opened beside it; work snapshotted read-only into
// out/<id> as "snapshot"; out/<id> renamed to result/<id>; work deleted;
// out and x<id> removed.
func prepareBareBuild(e *benchEnv, ids []string) func() func(i int) error {
	n := len(ids)
	tmps := make([]string, n)
	resultRels := make([]string, n)
	workPaths := make([]string, n)
	for i := range n {
		tmps[i] = "x" + ids[i]
		resultRels[i] = ids[i] + "/" + snapshotName
		workPaths[i] = filepath.Join(e.root, resultTmpDir, tmps[i], workName)
	}
	return func() func(i int) error {
		// One builder's argument structs, prefilled: only the source
		// fd changes from one build to the next.
		var start, freeze ioctl.VolArgsV2
		var drop ioctl.VolArgs
		benchSetName(start.Name[:], workName)
		benchSetName(freeze.Name[:], snapshotName)
		freeze.Flags = ioctl.BTRFS_SUBVOL_RDONLY
		benchSetName(drop.Name[:], workName)
		// bareWork is what Build does between opening the build
		// directory and removing it.
		bareWork := func(tmpFd, i int) error {
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
			if err := benchWrite(workPaths[i]); err != nil {
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
			if err := unix.Renameat2(outFd, ids[i], e.resultFd, ids[i], unix.RENAME_NOREPLACE); err != nil {
				return err
			}
			return unix.Unlinkat(tmpFd, "out", unix.AT_REMOVEDIR)
		}
		return func(i int) error {
			var st unix.Stat_t
			if err := unix.Fstatat(e.resultFd, resultRels[i], &st, unix.AT_SYMLINK_NOFOLLOW); err != unix.ENOENT {
				return fmt.Errorf("fstatat result %s: %v", ids[i], err)
			}
			if err := unix.Mkdirat(e.resultTmpFd, tmps[i], 0o755); err != nil {
				return err
			}
			tmpFd, err := benchOpenDir(e.resultTmpFd, tmps[i])
			if err != nil {
				return err
			}
			err = bareWork(tmpFd, i)
			if err == nil {
				err = ioctl.SnapDestroy(tmpFd, &drop)
			}
			unix.Close(tmpFd)
			if err != nil {
				return err
			}
			return unix.Unlinkat(e.resultTmpFd, tmps[i], unix.AT_REMOVEDIR)
		}
	}
}

// prepareNaiveBuild is the bare sequence on the seed's layout: base
// snapshotted writable to result-tmp/x<i>; the file written; that
// snapshotted read-only to result/<id>; x<i> deleted. Every builder's snapshots lock the same two
// directories. Only the layout differs from impl=bare.
func prepareNaiveBuild(e *benchEnv, ids []string) func() func(i int) error {
	n := len(ids)
	tmps := make([]string, n)
	workPaths := make([]string, n)
	for i := range n {
		tmps[i] = "x" + ids[i]
		workPaths[i] = filepath.Join(e.root, resultTmpDir, tmps[i])
	}
	return func() func(i int) error {
		var start, freeze ioctl.VolArgsV2
		var drop ioctl.VolArgs
		freeze.Flags = ioctl.BTRFS_SUBVOL_RDONLY
		return func(i int) error {
			var st unix.Stat_t
			if err := unix.Fstatat(e.resultFd, ids[i], &st, unix.AT_SYMLINK_NOFOLLOW); err != unix.ENOENT {
				return fmt.Errorf("fstatat result %s: %v", ids[i], err)
			}
			baseFd, err := benchOpenDir(e.resultFd, "base/"+snapshotName)
			if err != nil {
				return err
			}
			start.Fd = int64(baseFd)
			benchSetName(start.Name[:], tmps[i])
			err = ioctl.SnapCreateV2(e.resultTmpFd, &start)
			unix.Close(baseFd)
			if err != nil {
				return fmt.Errorf("snapshot base: %w", err)
			}
			if err := benchWrite(workPaths[i]); err != nil {
				return err
			}
			workFd, err := benchOpenDir(e.resultTmpFd, tmps[i])
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
			benchSetName(drop.Name[:], tmps[i])
			if err := ioctl.SnapDestroy(e.resultTmpFd, &drop); err != nil {
				return fmt.Errorf("delete work: %w", err)
			}
			return nil
		}
	}
}

// BenchmarkBuild is one build cycle after another: a build on a base of
// benchFileCount files that writes one file.
func BenchmarkBuild(b *testing.B) {
	for _, impl := range benchBuildImpls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			e := newBenchEnv(b)
			benchLoop(b, impl.prepare(e, btrfstest.Names("r", b.N))())
		})
	}
	for _, cli := range benchCLIs {
		b.Run("impl="+cli.impl, func(b *testing.B) {
			btrfs := benchBtrfs(b, cli.sudo)
			e := newBenchEnv(b)
			benchLoop(b, prepareCLIBuild(e, btrfstest.Names("r", b.N), btrfs))
		})
	}
}

// benchLoop times cycle(0) to cycle(b.N-1), one after another.
func benchLoop(b *testing.B, cycle func(i int) error) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := cycle(i); err != nil {
			b.Fatal(err)
		}
	}
}

// benchCLIs are the two ways a program shelling out runs the btrfs
// command, as obuilder does: directly when it is root, and through
// `sudo -n` when it is not.
var benchCLIs = []struct {
	impl string
	sudo bool
}{{"cli", false}, {"cli-sudo", true}}

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

// benchSeedPaths returns, for each id, obuilder's work subvolume
// result-tmp/<id> and result result/<id>: the seed's layout.
func benchSeedPaths(e *benchEnv, ids []string) (works, results []string) {
	for _, id := range ids {
		works = append(works, filepath.Join(e.root, resultTmpDir, id))
		results = append(results, filepath.Join(e.root, resultDir, id))
	}
	return works, results
}

// prepareCLIBuild is obuilder's build cycle (btrfs_store.ml) with the
// btrfs command: `btrfs subvolume snapshot` of the base to
// result-tmp/<id>, the file written, `btrfs subvolume snapshot -r` to
// result/<id>, `btrfs subvolume delete` of the work subvolume.
func prepareCLIBuild(e *benchEnv, ids []string, btrfs func(args ...string) error) func(i int) error {
	base := filepath.Join(e.root, resultDir, "base", snapshotName)
	works, results := benchSeedPaths(e, ids)
	return func(i int) error {
		if err := btrfs("subvolume", "snapshot", base, works[i]); err != nil {
			return err
		}
		if err := benchWrite(works[i]); err != nil {
			return err
		}
		if err := btrfs("subvolume", "snapshot", "-r", works[i], results[i]); err != nil {
			return err
		}
		return btrfs("subvolume", "delete", works[i])
	}
}

// BenchmarkBuildParallel runs build cycles on several goroutines at once,
// sharing b.N builds, and reports their total throughput in builds/s, and
// the CPU time of the whole process per build (cpu-ns/build, user and
// system, every thread: the kernel work of the system calls, transaction
// commits included, is done on the builders' threads; kernel threads'
// work, such as the cleaner's, is not counted). Throughput times CPU per
// build over the number of cores is how busy the cores were.
func BenchmarkBuildParallel(b *testing.B) {
	for _, builders := range []int{1, 2, 4, 8} {
		for _, impl := range benchBuildImpls {
			b.Run(fmt.Sprintf("builders=%d/impl=%s", builders, impl.name), func(b *testing.B) {
				e := newBenchEnv(b)
				newBuilder := impl.prepare(e, btrfstest.Names("r", b.N))
				var next atomic.Int64
				var failed sync.Once
				var wg sync.WaitGroup
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := benchProcessCPU(b)
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
				cpu := benchProcessCPU(b) - cpu0
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "builds/s")
				b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/build")
			})
		}
	}
}

// benchCacheImpl is one implementation of a cache cycle on the cache
// "cache": clone, write one file, release. prepare runs before the timer
// with the number of cycles to come and returns the i-th cycle; temporary
// names carry prefix, so that implementations can share a store.
type benchCacheImpl struct {
	name    string
	prepare func(e *benchEnv, n int, prefix string) (cycle func(i int) error)
}

var benchCacheImpls = []benchCacheImpl{
	{"store", prepareStoreCache},
	{"bare", prepareBareCache},
}

func prepareStoreCache(e *benchEnv, _ int, _ string) func(i int) error {
	ctx := context.Background()
	return func(int) error {
		l, err := e.s.Cache(ctx, "cache", benchOwner)
		if err != nil {
			return err
		}
		if err := benchWrite(l.Path()); err != nil {
			l.Release(ctx)
			return err
		}
		return l.Release(ctx)
	}
}

// prepareBareCache mirrors Cache, ensureCache, Release and save in
// lease.go: cache/c-cache checked present and opened; snapshotted writable
// to cache-tmp/k<prefix><i>, which is chowned; the file written; the clone
// opened, chowned back and snapshotted read-only to cache/t-<prefix><i>; that exchanged
// with c-cache; the old version deleted; the clone deleted.
func prepareBareCache(e *benchEnv, n int, prefix string) func(i int) error {
	entry := Escape("cache")
	clones := btrfstest.Names("k"+prefix, n)
	versions := btrfstest.Names("t-"+prefix, n)
	clonePaths := make([]string, n)
	for i, c := range clones {
		clonePaths[i] = filepath.Join(e.root, cacheTmpDir, c)
	}
	var clone, freeze ioctl.VolArgsV2
	var drop ioctl.VolArgs
	freeze.Flags = ioctl.BTRFS_SUBVOL_RDONLY
	euid, egid := os.Geteuid(), os.Getegid()
	return func(i int) error {
		var st unix.Stat_t
		if err := unix.Fstatat(e.cacheFd, entry, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		srcFd, err := benchOpenDir(e.cacheFd, entry)
		if err != nil {
			return err
		}
		clone.Fd = int64(srcFd)
		benchSetName(clone.Name[:], clones[i])
		err = ioctl.SnapCreateV2(e.cacheTmpFd, &clone)
		unix.Close(srcFd)
		if err != nil {
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

// BenchmarkCacheCycle is one cache cycle after another on a cache of
// benchFileCount files.
func BenchmarkCacheCycle(b *testing.B) {
	for _, impl := range benchCacheImpls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			e := newBenchEnv(b)
			benchLoop(b, impl.prepare(e, b.N, ""))
		})
	}
	for _, cli := range benchCLIs {
		b.Run("impl="+cli.impl, func(b *testing.B) {
			btrfs := benchBtrfs(b, cli.sudo)
			e := newBenchEnv(b)
			benchLoop(b, prepareSeedCache(e, b.N, benchSeedCacheOps{
				snapshot: func(src, dst string, readOnly bool) error {
					if readOnly {
						return btrfs("subvolume", "snapshot", "-r", src, dst)
					}
					return btrfs("subvolume", "snapshot", src, dst)
				},
				delete: func(path string) error { return btrfs("subvolume", "delete", path) },
			}))
		})
	}
}

// benchSeedCacheOps are the two subvolume operations of obuilder's cache
// cycle.
type benchSeedCacheOps struct {
	snapshot func(src, dst string, readOnly bool) error
	delete   func(path string) error
}

// prepareSeedCache is obuilder's cache cycle (btrfs_store.ml, without its
// lock and generation, which cost nothing here): cache/c-cache snapshotted
// writable to cache-tmp/k<i>, chowned (by os.Lchown, where obuilder forks
// `sudo chown`), the file written; on release the old cache deleted and the
// clone snapshotted read-only in its place (not crash-safe: there is a
// moment without a cache), the clone deleted.
func prepareSeedCache(e *benchEnv, n int, ops benchSeedCacheOps) func(i int) error {
	master := filepath.Join(e.root, cacheDir, Escape("cache"))
	clones := btrfstest.Names(filepath.Join(e.root, cacheTmpDir, "k"), n)
	return func(i int) error {
		if err := ops.snapshot(master, clones[i], false); err != nil {
			return err
		}
		if err := os.Lchown(clones[i], benchOwner.UID, benchOwner.GID); err != nil {
			return err
		}
		if err := benchWrite(clones[i]); err != nil {
			return err
		}
		if err := ops.delete(master); err != nil {
			return err
		}
		if err := ops.snapshot(clones[i], master, true); err != nil {
			return err
		}
		return ops.delete(clones[i])
	}
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
	ctx := context.Background()
	// setup returns an env holding the results ids[i][j], j <
	// benchDeletesPerOp, for the i-th operation.
	setup := func(b *testing.B) (*benchEnv, [][]string) {
		e := newBenchEnv(b)
		step := func(_ context.Context, dir string) error { return benchWrite(dir) }
		ids := make([][]string, b.N)
		for i := range ids {
			ids[i] = btrfstest.Names("r"+strconv.Itoa(i)+"-", benchDeletesPerOp)
			for _, id := range ids[i] {
				if err := e.s.Build(ctx, id, "base", step); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := e.s.CompleteDeletes(ctx); err != nil {
			b.Fatal(err)
		}
		return e, ids
	}
	b.Run("impl=store", func(b *testing.B) {
		e, ids := setup(b)
		benchLoop(b, func(i int) error {
			for _, id := range ids[i] {
				if err := e.s.Delete(ctx, id); err != nil {
					return err
				}
			}
			return e.s.CompleteDeletes(ctx)
		})
	})
	b.Run("impl=bare", func(b *testing.B) {
		e, ids := setup(b)
		parents := make([][]int, b.N)
		for i := range parents {
			for _, id := range ids[i] {
				fd, err := benchOpenDir(e.resultFd, id)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { unix.Close(fd) })
				parents[i] = append(parents[i], fd)
			}
		}
		var drop ioctl.VolArgs
		benchSetName(drop.Name[:], snapshotName)
		benchLoop(b, func(i int) error {
			for _, fd := range parents[i] {
				if err := ioctl.SnapDestroy(fd, &drop); err != nil {
					return err
				}
			}
			return ioctl.WaitDeleted(ctx, e.root)
		})
	})
	b.Run("impl=cli", func(b *testing.B) {
		if os.Getenv(cliSyncEnv) != "1" {
			b.Skipf("btrfs subvolume sync takes about 30 s per operation; set %s=1 (and -benchtime 1x) to run it", cliSyncEnv)
		}
		btrfs := benchBtrfs(b, false)
		e, ids := setup(b)
		paths := make([][]string, b.N)
		for i := range paths {
			for _, id := range ids[i] {
				paths[i] = append(paths[i], filepath.Join(e.root, resultDir, id, snapshotName))
			}
		}
		benchLoop(b, func(i int) error {
			for _, p := range paths[i] {
				if err := btrfs("subvolume", "delete", p); err != nil {
					return err
				}
			}
			return btrfs("subvolume", "sync", e.root)
		})
	})
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
// allocations. cycle=control pairs the bare build with itself: its ratios
// show how far from 1 noise alone moves them.
func BenchmarkPaired(b *testing.B) {
	b.Run("cycle=build", func(b *testing.B) {
		e := newBenchEnv(b)
		store := prepareStoreBuild(e, btrfstest.Names("r", b.N))()
		bare := prepareBareBuild(e, btrfstest.Names("q", b.N))()
		benchAlternate(b, store, bare)
	})
	// The store beside the bare sequence on the seed's layout (reported
	// as store-ns/op and bare-ns/op): what one builder pays for the
	// layout that lets several scale.
	b.Run("cycle=build-seed-layout", func(b *testing.B) {
		e := newBenchEnv(b)
		store := prepareStoreBuild(e, btrfstest.Names("r", b.N))()
		naive := prepareNaiveBuild(e, btrfstest.Names("q", b.N))()
		benchAlternate(b, store, naive)
	})
	b.Run("cycle=control", func(b *testing.B) {
		e := newBenchEnv(b)
		bare1 := prepareBareBuild(e, btrfstest.Names("r", b.N))()
		bare2 := prepareBareBuild(e, btrfstest.Names("q", b.N))()
		benchAlternate(b, bare1, bare2)
	})
	b.Run("cycle=cache", func(b *testing.B) {
		e := newBenchEnv(b)
		store := prepareStoreCache(e, b.N, "")
		bare := prepareBareCache(e, b.N, "bare")
		benchAlternate(b, store, bare)
	})
}

// benchAlternate times b.N pairs of store(i) and bare(i), in alternating
// order, and reports BenchmarkPaired's metrics.
func benchAlternate(b *testing.B, store, bare func(i int) error) {
	// The thread's CPU time is the goroutine's only while it stays on it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var storeTimes, bareTimes benchTimes
	storeTimes.wall = make([]time.Duration, b.N)
	bareTimes.wall = make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			storeTimes.run(b, store, i)
			bareTimes.run(b, bare, i)
		} else {
			bareTimes.run(b, bare, i)
			storeTimes.run(b, store, i)
		}
	}
	b.StopTimer()
	sumStore, sumBare := benchSum(storeTimes.wall), benchSum(bareTimes.wall)
	b.ReportMetric(float64(sumStore)/float64(b.N), "store-ns/op")
	b.ReportMetric(float64(sumBare)/float64(b.N), "bare-ns/op")
	b.ReportMetric(float64(sumStore)/float64(sumBare), "store/bare")
	b.ReportMetric(float64(benchMedian(storeTimes.wall))/float64(benchMedian(bareTimes.wall)), "median-store/bare")
	b.ReportMetric(float64(storeTimes.cpu)/float64(b.N), "store-cpu-ns/op")
	b.ReportMetric(float64(bareTimes.cpu)/float64(b.N), "bare-cpu-ns/op")
}

// benchTimes accumulates the times of one implementation's cycles.
type benchTimes struct {
	wall []time.Duration // of each cycle
	cpu  time.Duration   // of the thread, user and system, in total
}

// run runs cycle i, timing it; the caller is locked to its thread.
func (t *benchTimes) run(b *testing.B, cycle func(int) error, i int) {
	cpu0 := benchThreadCPU(b)
	start := time.Now()
	err := cycle(i)
	t.wall[i] = time.Since(start)
	t.cpu += benchThreadCPU(b) - cpu0
	if err != nil {
		b.Fatal(err)
	}
}

// benchThreadCPU returns the CPU time of the calling thread.
func benchThreadCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchProcessCPU returns the CPU time of the process, all threads.
func benchProcessCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
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

// benchMedian sorts ds and returns its median.
func benchMedian(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	if n := len(ds); n%2 == 0 {
		return (ds[n/2-1] + ds[n/2]) / 2
	}
	return ds[len(ds)/2]
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
	baseFd, err := benchOpenDir(e.resultFd, "base/"+snapshotName)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(baseFd)
	baseDirFd, err := benchOpenDir(e.resultFd, "base")
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(baseDirFd)
	b.Run("extra=snapshot-checks", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := ioctl.CheckBtrfs(baseFd); err != nil {
				b.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(baseFd, &st); err != nil {
				b.Fatal(err)
			}
			if err := ioctl.CheckBtrfs(baseDirFd); err != nil {
				b.Fatal(err)
			}
			if err := unix.Fstatat(baseDirFd, snapshotName, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("extra=nested-search", func(b *testing.B) {
		path := filepath.Join(e.root, resultDir, "base", snapshotName)
		b.ReportAllocs()
		for b.Loop() {
			for _, err := range ioctl.Subvolumes(path) {
				b.Fatal(err)
			}
		}
	})
	b.Run("extra=dir-listing", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var st unix.Stat_t
			if err := unix.Fstatat(e.resultFd, "base", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				b.Fatal(err)
			}
			fd, err := openDirAt(e.resultFd, "base")
			if err != nil {
				b.Fatal(err)
			}
			dir := os.NewFile(uintptr(fd), "base")
			entries, err := dir.ReadDir(-1)
			dir.Close()
			if err != nil || len(entries) != 1 {
				b.Fatal(entries, err)
			}
		}
	})
}
