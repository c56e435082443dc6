package main

import "strconv"

// The columns of the report: btrstore, and what it is compared with.
const (
	colBtrstore = "btrstore"
	colBare     = "bare"
	colDennwc   = "dennwc"
	colCLI      = "cli"
	colSudo     = "cli-sudo"
)

// columns are the report's columns in order, with their headings.
var columns = []struct{ key, heading string }{
	{colBtrstore, "btrstore"},
	{colBare, "bare ioctls"},
	{colDennwc, "dennwc/btrfs"},
	{colCLI, "btrfs CLI"},
	{colSudo, "CLI via sudo -n"},
}

// A workload is one row of the report: one benchmark function, run as one
// sub-benchmark per implementation.
type workload struct {
	key   string // short name: flags, chart
	title string // the report's row heading
	pkg   string // the package directory holding the benchmark
	bench string // the benchmark function
	sub   string // the sub-benchmark key: "impl"
	impls []impl
	// benchtime is the -test.benchtime count (the number of operations
	// per sub-benchmark run) of a full run and of -quick.
	benchtime, quickBenchtime int
}

// An impl is one sub-benchmark of a workload.
type impl struct {
	name string // the sub-benchmark's value: impl=<name>
	// pkg is the directory (from the repository root) of the package
	// holding this sub-benchmark when it is not the workload's: the
	// dennwc/btrfs ones are in the tools module.
	pkg string
	col string // the report column; "" for extra rows (allocations, notes)
	// once: run in one round only, with its own benchtime and environment
	// (`btrfs subvolume sync` takes 30 s per operation).
	once      bool
	benchtime int
	env       []string
}

// ioctlImpls are the sub-benchmarks of the ioctl package's create,
// snapshot and delete benchmarks.
var ioctlImpls = []impl{
	{name: "btrstore", col: colBtrstore},
	{name: "btrstore-path"},
	{name: "syscall", col: colBare},
	{name: "dennwc", col: colDennwc, pkg: dennwcPkg},
	{name: "cli", col: colCLI},
	{name: "cli-sudo", col: colSudo},
}

// dennwcPkg holds the impl=dennwc sub-benchmarks, of the same names as
// the others, in the tools module (so that dennwc/btrfs is no requirement
// of the library's module).
const dennwcPkg = "tools/bench/dennwc"

// cliSyncEnv enables the benchmarks that wait for `btrfs subvolume sync`.
const cliSyncEnv = "BTRFS_BENCH_CLI_SYNC=1"

var workloads = []workload{
	{
		key: "create", title: "create an empty subvolume",
		pkg: "ioctl", bench: "BenchmarkCreate", sub: "impl", impls: ioctlImpls,
		benchtime: 200, quickBenchtime: 5,
	},
	{
		key: "snapshot", title: "read-only snapshot (100 files)",
		pkg: "ioctl", bench: "BenchmarkSnapshotReadOnly", sub: "impl", impls: ioctlImpls,
		benchtime: 50, quickBenchtime: 3,
	},
	{
		key: "delete", title: "delete an empty subvolume",
		pkg: "ioctl", bench: "BenchmarkDelete", sub: "impl", impls: ioctlImpls,
		benchtime: 200, quickBenchtime: 5,
	},
	{
		key: "build", title: "build cycle",
		pkg: "store", bench: "BenchmarkBuild", sub: "impl",
		impls: []impl{
			{name: "store", col: colBtrstore},
			{name: "bare", col: colBare},
			{name: "naive-layout"},
			{name: "dennwc", col: colDennwc, pkg: dennwcPkg},
			{name: "cli", col: colCLI},
			{name: "cli-sudo", col: colSudo},
		},
		benchtime: 100, quickBenchtime: 3,
	},
	{
		key: "cache", title: "cache cycle",
		pkg: "store", bench: "BenchmarkCacheCycle", sub: "impl",
		impls: []impl{
			{name: "store", col: colBtrstore},
			{name: "bare", col: colBare},
			{name: "dennwc", col: colDennwc, pkg: dennwcPkg},
			{name: "cli", col: colCLI},
			{name: "cli-sudo", col: colSudo},
		},
		benchtime: 100, quickBenchtime: 3,
	},
	{
		key: "cacheunchanged", title: "cache cycle, clone unchanged",
		pkg: "store", bench: "BenchmarkCacheCycleUnchanged", sub: "impl",
		impls: []impl{
			{name: "store", col: colBtrstore},
			{name: "bare", col: colBare},
			{name: "cli", col: colCLI},
		},
		benchtime: 100, quickBenchtime: 3,
	},
	{
		key: "deletewait", title: "delete 10 results, wait until cleaned",
		pkg: "store", bench: "BenchmarkCompleteDeletes", sub: "impl",
		impls: []impl{
			{name: "store", col: colBtrstore},
			{name: "bare", col: colBare},
			{name: "cli", col: colCLI, once: true, benchtime: 1, env: []string{cliSyncEnv}},
		},
		benchtime: 5, quickBenchtime: 1,
	},
	{
		key: "paired", title: "store and bare cycles alternating on one filesystem",
		pkg: "store", bench: "BenchmarkPaired", sub: "cycle",
		impls:     []impl{{name: "build"}, {name: "control"}, {name: "cache"}},
		benchtime: 100, quickBenchtime: 3,
	},
	{
		key: "parallel", title: "build cycles in parallel",
		pkg: "store", bench: "BenchmarkBuildParallel", sub: "builders",
		impls:     parallelImpls(),
		benchtime: 100, quickBenchtime: 8,
	},
}

// parallelBuilders are BenchmarkBuildParallel's builder counts, and
// parallelLayouts its implementations: the store, and the bare sequence
// in the store's layout and in the seed's.
var (
	parallelBuilders = []int{1, 2, 4, 8}
	parallelLayouts  = []string{"store", "bare", "naive-layout"}
)

// parallelImpls names BenchmarkBuildParallel's sub-benchmarks below
// builders=: "8/impl=store".
func parallelImpls() []impl {
	var impls []impl
	for _, n := range parallelBuilders {
		for _, layout := range parallelLayouts {
			impls = append(impls, impl{name: parallelName(n, layout)})
		}
	}
	return impls
}

func parallelName(builders int, layout string) string {
	return strconv.Itoa(builders) + "/impl=" + layout
}

// pkgOf is the directory of the package holding im, from the repository
// root.
func (w *workload) pkgOf(im impl) string {
	if im.pkg != "" {
		return im.pkg
	}
	return w.pkg
}

// workloadByKey returns the workload named key; it panics on a typo.
func workloadByKey(key string) *workload {
	for i := range workloads {
		if workloads[i].key == key {
			return &workloads[i]
		}
	}
	panic("benchreport: no workload " + key)
}

// implFor returns the name of w's implementation in column col, or "".
func (w *workload) implFor(col string) string {
	for _, im := range w.impls {
		if im.col == col {
			return im.name
		}
	}
	return ""
}

// benchName is the full name of w's sub-benchmark im, as the benchmark
// output prints it (without the -GOMAXPROCS suffix).
func (w *workload) benchName(im string) string {
	return w.bench + "/" + w.sub + "=" + im
}
