// Package dennwc holds the impl=dennwc sub-benchmarks of the comparison in
// docs/PERFORMANCE.md: github.com/dennwc/btrfs, the Go library a builder
// would otherwise pick (path-based: it opens the parent, and stats the
// source, per call), measured on the same workloads, with the same setup,
// as the other implementations in ioctl/bench_test.go (BenchmarkCreate,
// BenchmarkSnapshotReadOnly, BenchmarkDelete) and store/bench_test.go
// (BenchmarkBuild, BenchmarkCacheCycle; obuilder's sequence on the seed's
// layout). They live in the tools module so that dennwc/btrfs is no
// requirement of the library's. When a setup there changes, change it
// here too. tools/benchreport (make bench) runs them with the others.
//
// Root (each sub-benchmark mounts a loop device):
//
//	cd tools && go test -run '^$' -bench . -benchtime 100x -benchmem -count 1 ./bench/dennwc
package dennwc
