package dennwc_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	dennwc "github.com/dennwc/btrfs"
	"golang.org/x/sys/unix"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/store"
)

func TestMain(m *testing.M) { btrfstest.Main(m) }

// The sizes of ioctl/bench_test.go and store/bench_test.go.
const (
	ioctlImageSize = 3 << 30
	storeImageSize = 4 << 30
	benchFileCount = 100
	benchFileSize  = 3000 // above max_inline (2048), so each file has an extent
)

// benchOwner owns the cache clones, as in store/bench_test.go.
var benchOwner = store.Owner{UID: 1000, GID: 1000}

// benchContent is what a build or a cache cycle writes: one small file.
var benchContent = []byte(strings.Repeat("y", benchFileSize))

func benchWrite(dir string) error {
	return os.WriteFile(dir+"/out", benchContent, 0o644)
}

func benchFill(dir string) error { return btrfstest.Fill(dir, benchFileCount, benchFileSize) }

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// commit commits the filesystem's transaction, so that the timed
// operations do not pay for flushing their setup.
func commit(b *testing.B, path string) {
	b.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(b, err)
	defer unix.Close(fd)
	must(b, ioctl.SyncFS(fd))
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

func BenchmarkCreate(b *testing.B) {
	b.Run("impl=dennwc", func(b *testing.B) {
		root := btrfstest.New(b, btrfstest.Size(ioctlImageSize)).Path
		paths := btrfstest.Paths(root, "s", b.N)
		benchLoop(b, func(i int) error { return dennwc.CreateSubVolume(paths[i]) })
	})
}

func BenchmarkSnapshotReadOnly(b *testing.B) {
	b.Run("impl=dennwc", func(b *testing.B) {
		root := btrfstest.New(b, btrfstest.Size(ioctlImageSize)).Path
		src, dstDir := filepath.Join(root, "src"), filepath.Join(root, "snaps")
		must(b, ioctl.CreateSubvolume(src))
		must(b, benchFill(src))
		must(b, os.Mkdir(dstDir, 0o755))
		commit(b, root)
		paths := btrfstest.Paths(dstDir, "s", b.N)
		benchLoop(b, func(i int) error { return dennwc.SnapshotSubVolume(src, paths[i], true) })
	})
}

func BenchmarkDelete(b *testing.B) {
	b.Run("impl=dennwc", func(b *testing.B) {
		root := btrfstest.New(b, btrfstest.Size(ioctlImageSize)).Path
		paths := btrfstest.Paths(root, "s", b.N)
		for _, p := range paths {
			must(b, ioctl.CreateSubvolume(p))
		}
		commit(b, root)
		benchLoop(b, func(i int) error { return dennwc.DeleteSubVolume(paths[i]) })
	})
}

// The store's layout directories (store/doc.go), where obuilder's
// sequence puts its subvolumes in store/bench_test.go.
const (
	resultDir    = "result"
	resultTmpDir = "result-tmp"
	cacheDir     = "cache"
	cacheTmpDir  = "cache-tmp"
)

// newBenchStore is store/bench_test.go's benchEnv: a store on a fresh
// filesystem holding the base result "base" and the cache "cache" of
// benchFileCount files each, committed. It returns the store's root and
// the base result's path.
func newBenchStore(b *testing.B) (root, base string) {
	b.Helper()
	fsys := btrfstest.New(b, btrfstest.Size(storeImageSize))
	ctx := context.Background()
	s, err := store.Open(ctx, fsys.Path, store.Config{})
	must(b, err)
	b.Cleanup(func() { s.Close() })
	must(b, s.Build(ctx, "base", "", func(_ context.Context, dir string) error { return benchFill(dir) }))
	l, err := s.Cache(ctx, "cache", benchOwner)
	must(b, err)
	must(b, benchFill(l.Path()))
	must(b, l.Release(ctx))
	base, err = s.Result("base")
	must(b, err)
	commit(b, s.Root())
	return s.Root(), base
}

// BenchmarkBuild/impl=dennwc is obuilder's build cycle through
// github.com/dennwc/btrfs: base snapshotted writable to result-tmp/<id>;
// the file written; that snapshotted read-only to result/<id>; the work
// subvolume deleted.
func BenchmarkBuild(b *testing.B) {
	b.Run("impl=dennwc", func(b *testing.B) {
		root, base := newBenchStore(b)
		works := btrfstest.Paths(filepath.Join(root, resultTmpDir), "r", b.N)
		results := btrfstest.Paths(filepath.Join(root, resultDir), "r", b.N)
		benchLoop(b, func(i int) error {
			if err := dennwc.SnapshotSubVolume(base, works[i], false); err != nil {
				return err
			}
			if err := benchWrite(works[i]); err != nil {
				return err
			}
			if err := dennwc.SnapshotSubVolume(works[i], results[i], true); err != nil {
				return err
			}
			return dennwc.DeleteSubVolume(works[i])
		})
	})
}

// BenchmarkCacheCycle/impl=dennwc is obuilder's cache cycle (store's
// seedCacheCycle) through github.com/dennwc/btrfs: the cache snapshotted
// writable to cache-tmp/k<i>, chowned, the file written; the old cache
// deleted and the clone snapshotted read-only in its place; the clone
// deleted.
func BenchmarkCacheCycle(b *testing.B) {
	b.Run("impl=dennwc", func(b *testing.B) {
		root, _ := newBenchStore(b)
		master := filepath.Join(root, cacheDir, store.Escape("cache"))
		clones := btrfstest.Names(filepath.Join(root, cacheTmpDir, "k"), b.N)
		benchLoop(b, func(i int) error {
			if err := dennwc.SnapshotSubVolume(master, clones[i], false); err != nil {
				return err
			}
			if err := os.Lchown(clones[i], benchOwner.UID, benchOwner.GID); err != nil {
				return err
			}
			if err := benchWrite(clones[i]); err != nil {
				return err
			}
			if err := dennwc.DeleteSubVolume(master); err != nil {
				return err
			}
			if err := dennwc.SnapshotSubVolume(clones[i], master, true); err != nil {
				return err
			}
			return dennwc.DeleteSubVolume(clones[i])
		})
	})
}
