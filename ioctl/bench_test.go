package ioctl

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

// Benchmarks of the native layer against what it replaces (DESIGN.md,
// "Performance anchors"), side by side as sub-benchmarks of one run:
//
//	impl=btrstore       the fd-relative wrappers (CreateSubvolumeAt, ...)
//	impl=btrstore-path  the path forms (CreateSubvolume, ...)
//	impl=syscall        the bare ioctl on a prefilled struct, as a C program
//	                    would issue it: no magic check, no verification
//	impl=cli            fork/exec of the btrfs command per operation
//	impl=cli-sudo       the same through `sudo -n`, as obuilder runs it when
//	                    not root; skipped when sudo is absent or would ask
//	                    for a password
//
// Each sub-benchmark gets its own filesystem, and whatever its operations
// consume (subvolumes to delete, names) is made before the timer starts, so
// the loops are classic b.N loops. b.N is the number of subvolumes left on
// the filesystem, so fix it with -benchtime Nx rather than a duration, and
// on a shared machine prefer several -count 1 runs, which interleave the
// impls, to one -count 6 run, which runs each impl's samples back to back:
//
//	go test -run '^$' -bench '^BenchmarkCreate$|^BenchmarkDelete$' -benchtime 200x -benchmem -count 1 ./ioctl/
//	go test -run '^$' -bench '^BenchmarkSnapshotReadOnly$' -benchtime 100x -benchmem -count 1 ./ioctl/
//	go test -run '^$' -bench '^BenchmarkDeleteWait$' -benchtime 30x -benchmem -count 1 ./ioctl/
//
// BenchmarkDeleteWait/impl=cli waits for `btrfs subvolume sync`, about 30 s
// per operation; it runs only with BTRFS_BENCH_CLI_SYNC=1, and then with
// -benchtime 1x.
//
// github.com/dennwc/btrfs, the Go library a builder would otherwise pick,
// is measured as impl=dennwc of the same benchmarks in the tools module
// (tools/bench/dennwc), to keep it out of the library's go.mod.
// `make bench` (tools/benchreport) runs all of this, the store's
// benchmarks and those, as interleaved rounds and writes
// docs/PERFORMANCE.md.

// benchImageSize is the size of each benchmark's (sparse) filesystem image:
// room for thousands of subvolumes.
const benchImageSize = 3 << 30

// benchFileCount subvolumes' worth of small files make a snapshot source or
// a deleted subvolume realistic: the kernel has extents to share or free.
const (
	benchFileCount = 100
	benchFileSize  = 3000 // above max_inline (2048), so each file has an extent
)

// cliSyncEnv enables BenchmarkDeleteWait/impl=cli.
const cliSyncEnv = "BTRFS_BENCH_CLI_SYNC"

// newBenchFS returns a fresh filesystem's mount point and a directory fd on
// it, both released in b's cleanup.
func newBenchFS(b *testing.B) (root string, rootFd int) {
	b.Helper()
	fsys := btrfstest.New(b, btrfstest.Size(benchImageSize))
	return fsys.Path, mustOpenDir(b, fsys.Path)
}

// benchFill writes benchFileCount small files into dir.
func benchFill(b *testing.B, dir string) {
	b.Helper()
	if err := btrfstest.Fill(dir, benchFileCount, benchFileSize); err != nil {
		b.Fatal(err)
	}
}

// benchCommit commits the transaction, so that the timed operations do not
// pay for flushing their setup.
func benchCommit(b *testing.B, fd int) {
	b.Helper()
	if err := SyncFS(fd); err != nil {
		b.Fatal(err)
	}
}

// btrfsBinary returns the path of the btrfs command, or skips b.
func btrfsBinary(b *testing.B) string {
	b.Helper()
	bin, err := exec.LookPath("btrfs")
	if err != nil {
		b.Skipf("no btrfs command to compare with (%v); install btrfs-progs", err)
	}
	return bin
}

// runBtrfs runs the btrfs command bin, as a program shelling out would.
func runBtrfs(b *testing.B, bin string, args ...string) {
	if err := exec.Command(bin, args...).Run(); err != nil {
		b.Fatalf("btrfs %s: %v", strings.Join(args, " "), err)
	}
}

// benchCLIs are the two ways a program shelling out runs the btrfs
// command, as obuilder does: directly when it is root, and through
// `sudo -n` when it is not.
var benchCLIs = []struct {
	impl string
	sudo bool
}{{"cli", false}, {"cli-sudo", true}}

// btrfsCommand returns a function that runs the btrfs command with its
// arguments, through `sudo -n` if sudo is set, failing b if it fails. It
// skips b when there is no btrfs command, or (sudo) no sudo or a sudo that
// would ask for a password: it installs nothing.
func btrfsCommand(b *testing.B, sudo bool) func(args ...string) {
	b.Helper()
	bin := btrfsBinary(b)
	if !sudo {
		return func(args ...string) { runBtrfs(b, bin, args...) }
	}
	sudoBin := sudoBinary(b)
	return func(args ...string) {
		argv := append([]string{"-n", bin}, args...)
		if err := exec.Command(sudoBin, argv...).Run(); err != nil {
			b.Fatalf("sudo -n btrfs %s: %v", strings.Join(args, " "), err)
		}
	}
}

// sudoBinary returns the path of a sudo that runs commands without asking
// for a password, or skips b.
func sudoBinary(b *testing.B) string {
	b.Helper()
	bin, err := exec.LookPath("sudo")
	if err != nil {
		b.Skipf("no sudo on this machine (%v): impl=cli is the same command without it", err)
	}
	if out, err := exec.Command(bin, "-n", "true").CombinedOutput(); err != nil {
		b.Skipf("`sudo -n true` failed (%v: %s): sudo would ask for a password", err, bytes.TrimSpace(out))
	}
	return bin
}

// ioctlBare issues an ioctl exactly as a C program would.
func ioctlBare(b *testing.B, fd int, req uintptr, arg unsafe.Pointer) {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); e != 0 {
		b.Fatalf("ioctl %#x: %v", req, e)
	}
}

// benchEnv is a filesystem made ready for b.N operations of one
// benchmark: dir is where the operations put or find their subvolumes
// (dirFd an fd on it), src the snapshot source (srcFd an fd on it), if the
// operation has one.
type benchEnv struct {
	dir   string
	dirFd int
	src   string
	srcFd int
}

// benchOp is one operation as each implementation issues it on the
// subvolume named name in env.dir (path is that joined to env.dir), the
// rows of a table that runBenchOp turns into the sub-benchmarks.
type benchOp struct {
	setup func(b *testing.B) benchEnv                   // untimed
	at    func(env benchEnv, name string) error         // impl=btrstore
	path  func(env benchEnv, path string) error         // impl=btrstore-path
	bare  func(b *testing.B, env benchEnv) func(string) // impl=syscall: prefills its struct
	cli   func(env benchEnv, path string) []string      // impl=cli, impl=cli-sudo: the arguments
}

// benchLoop times op(0) to op(b.N-1), one after another.
func benchLoop(b *testing.B, op func(i int)) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		op(i)
	}
}

// runBenchOp runs op's sub-benchmarks impl=btrstore, impl=btrstore-path,
// impl=syscall, impl=cli and impl=cli-sudo, each on its own filesystem.
func runBenchOp(b *testing.B, op benchOp) {
	b.Run("impl=btrstore", func(b *testing.B) {
		env := op.setup(b)
		names := btrfstest.Names("s", b.N)
		benchLoop(b, func(i int) {
			if err := op.at(env, names[i]); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("impl=btrstore-path", func(b *testing.B) {
		env := op.setup(b)
		paths := btrfstest.Paths(env.dir, "s", b.N)
		benchLoop(b, func(i int) {
			if err := op.path(env, paths[i]); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("impl=syscall", func(b *testing.B) {
		env := op.setup(b)
		names := btrfstest.Names("s", b.N)
		bare := op.bare(b, env)
		benchLoop(b, func(i int) { bare(names[i]) })
	})
	for _, cli := range benchCLIs {
		b.Run("impl="+cli.impl, func(b *testing.B) {
			btrfs := btrfsCommand(b, cli.sudo) // skips before making a filesystem
			env := op.setup(b)
			paths := btrfstest.Paths(env.dir, "s", b.N)
			benchLoop(b, func(i int) { btrfs(op.cli(env, paths[i])...) })
		})
	}
}

// setupRoot is a fresh filesystem: the operations work in its top level.
func setupRoot(b *testing.B) benchEnv {
	root, rootFd := newBenchFS(b)
	return benchEnv{dir: root, dirFd: rootFd}
}

func BenchmarkCreate(b *testing.B) {
	runBenchOp(b, benchOp{
		setup: setupRoot,
		at:    func(env benchEnv, name string) error { return CreateSubvolumeAt(env.dirFd, name) },
		path:  func(_ benchEnv, path string) error { return CreateSubvolume(path) },
		bare: func(b *testing.B, env benchEnv) func(string) {
			var args VolArgsV2
			return func(name string) {
				args.Name[copy(args.Name[:], name)] = 0
				ioctlBare(b, env.dirFd, BTRFS_IOC_SUBVOL_CREATE_V2, unsafe.Pointer(&args))
			}
		},
		cli: func(_ benchEnv, path string) []string { return []string{"subvolume", "create", path} },
	})
}

// BenchmarkSnapshotReadOnly snapshots one source holding benchFileCount
// files into one directory. Every snapshot commits a transaction with that
// directory locked, so they serialize: that is the cost being measured.
func BenchmarkSnapshotReadOnly(b *testing.B) {
	runBenchOp(b, benchOp{
		// setup makes the source and the destination directory, committed.
		setup: func(b *testing.B) benchEnv {
			root, rootFd := newBenchFS(b)
			src, dstDir := filepath.Join(root, "src"), filepath.Join(root, "snaps")
			if err := CreateSubvolumeAt(rootFd, "src"); err != nil {
				b.Fatal(err)
			}
			benchFill(b, src)
			if err := os.Mkdir(dstDir, 0o755); err != nil {
				b.Fatal(err)
			}
			benchCommit(b, rootFd)
			return benchEnv{dir: dstDir, dirFd: mustOpenDir(b, dstDir), src: src, srcFd: mustOpenDir(b, src)}
		},
		at: func(env benchEnv, name string) error {
			return SnapshotAt(env.srcFd, env.dirFd, name, SnapshotReadOnly)
		},
		path: func(env benchEnv, path string) error { return Snapshot(env.src, path, SnapshotReadOnly) },
		bare: func(b *testing.B, env benchEnv) func(string) {
			args := VolArgsV2{Fd: int64(env.srcFd), Flags: BTRFS_SUBVOL_RDONLY}
			return func(name string) {
				args.Name[copy(args.Name[:], name)] = 0
				ioctlBare(b, env.dirFd, BTRFS_IOC_SNAP_CREATE_V2, unsafe.Pointer(&args))
			}
		},
		cli: func(env benchEnv, path string) []string {
			return []string{"subvolume", "snapshot", "-r", env.src, path}
		},
	})
}

// setupDelete creates b.N empty subvolumes named by btrfstest.Names("s", b.N) on
// a fresh filesystem and commits them.
func setupDelete(b *testing.B) benchEnv {
	b.Helper()
	root, rootFd := newBenchFS(b)
	for _, name := range btrfstest.Names("s", b.N) {
		if err := CreateSubvolumeAt(rootFd, name); err != nil {
			b.Fatal(err)
		}
	}
	benchCommit(b, rootFd)
	return benchEnv{dir: root, dirFd: rootFd}
}

func BenchmarkDelete(b *testing.B) {
	runBenchOp(b, benchOp{
		setup: setupDelete,
		at:    func(env benchEnv, name string) error { return DeleteSubvolumeAt(env.dirFd, name, 0) },
		path:  func(_ benchEnv, path string) error { return DeleteSubvolume(path, 0) },
		bare: func(b *testing.B, env benchEnv) func(string) {
			var args VolArgs
			return func(name string) {
				args.Name[copy(args.Name[:], name)] = 0
				ioctlBare(b, env.dirFd, BTRFS_IOC_SNAP_DESTROY, unsafe.Pointer(&args))
			}
		},
		cli: func(_ benchEnv, path string) []string { return []string{"subvolume", "delete", path} },
	})
}

// BenchmarkDeleteWait deletes a subvolume holding benchFileCount files and
// waits until the kernel has cleaned it, so that its space is free.
func BenchmarkDeleteWait(b *testing.B) {
	// setup returns the subvolumes' paths and ids, committed.
	setup := func(b *testing.B) (root string, rootFd int, paths []string, ids []uint64) {
		root, rootFd = newBenchFS(b)
		paths = btrfstest.Paths(root, "s", b.N)
		for _, p := range paths {
			if err := CreateSubvolume(p); err != nil {
				b.Fatal(err)
			}
			benchFill(b, p)
			ids = append(ids, subvolID(b, p))
		}
		benchCommit(b, rootFd)
		return root, rootFd, paths, ids
	}
	b.Run("impl=btrstore", func(b *testing.B) {
		root, rootFd, _, ids := setup(b)
		names := btrfstest.Names("s", b.N)
		ctx := b.Context()
		benchLoop(b, func(i int) {
			if err := DeleteSubvolumeAt(rootFd, names[i], 0); err != nil {
				b.Fatal(err)
			}
			if err := WaitDeleted(ctx, root, ids[i]); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("impl=cli", func(b *testing.B) {
		if os.Getenv(cliSyncEnv) != "1" {
			b.Skipf("btrfs subvolume sync takes about 30 s per operation; set %s=1 (and -benchtime 1x) to run it", cliSyncEnv)
		}
		bin := btrfsBinary(b)
		root, _, paths, ids := setup(b)
		benchLoop(b, func(i int) {
			runBtrfs(b, bin, "subvolume", "delete", paths[i])
			runBtrfs(b, bin, "subvolume", "sync", root, strconv.FormatUint(ids[i], 10))
		})
	})
}

// TestWrapperAllocs pins the heap allocations per call of create, snapshot
// and delete on success: the 4 KiB argument structs stay on the stack, so
// what is left is x/sys/unix's NUL-terminated copy of each path or name it
// passes to a system call (openat of the parent in the path forms, fstatat
// of the new subvolume in the verification after a create or snapshot,
// the O_PATH openat of the entry that a delete checks before deleting it).
func TestWrapperAllocs(t *testing.T) {
	fsys := btrfstest.New(t)
	rootFd := mustOpenDir(t, fsys.Path)
	src := filepath.Join(fsys.Path, "src")
	mustCreate(t, fsys.Path, "src")
	srcFd := mustOpenDir(t, src)
	const runs = 50
	names := btrfstest.Names("a", runs+1) // AllocsPerRun calls once more to warm up
	paths := btrfstest.Paths(fsys.Path, "a", runs+1)
	for _, tc := range []struct {
		op   string
		max  float64 // string conversions for system calls
		call func(i int) error
	}{
		{"CreateSubvolumeAt", 1, func(i int) error { return CreateSubvolumeAt(rootFd, names[i]) }},
		{"DeleteSubvolumeAt", 1, func(i int) error { return DeleteSubvolumeAt(rootFd, names[i], 0) }},
		{"SnapshotAt", 1, func(i int) error { return SnapshotAt(srcFd, rootFd, names[i], SnapshotReadOnly) }},
		{"DeleteSubvolumeAt of a snapshot", 1, func(i int) error { return DeleteSubvolumeAt(rootFd, names[i], 0) }},
		{"CreateSubvolume", 2, func(i int) error { return CreateSubvolume(paths[i]) }},
		{"DeleteSubvolume", 2, func(i int) error { return DeleteSubvolume(paths[i], 0) }},
	} {
		i := 0
		allocs := testing.AllocsPerRun(runs, func() {
			if err := tc.call(i); err != nil {
				t.Fatal(err)
			}
			i++
		})
		t.Logf("%s: %v allocations per call", tc.op, allocs)
		if allocs > tc.max {
			t.Errorf("%s allocates %v objects per call, want at most %v", tc.op, allocs, tc.max)
		}
	}
}
