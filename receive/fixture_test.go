package receive

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, p string, data []byte) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, data, 0o644))
}

// reflink makes dst share src's extents (FICLONE): the next send carries a
// clone command for it.
func reflink(t testing.TB, src, dst string) {
	t.Helper()
	s, err := os.Open(src)
	must(t, err)
	defer s.Close()
	d, err := os.Create(dst)
	must(t, err)
	defer d.Close()
	must(t, unix.IoctlFileClone(int(d.Fd()), int(s.Fd())))
}

// compressible returns n bytes that compress well but are not all equal.
func compressible(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = "abcdefgh"[(i/512+int(seed))%8]
	}
	return b
}

// random returns n incompressible bytes.
func random(n int, seed int64) []byte {
	b := make([]byte, n)
	x := uint64(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// populate fills dir with every kind of file the stream format carries.
func populate(t testing.TB, dir string) {
	t.Helper()
	write(t, filepath.Join(dir, "small"), []byte("hello\n"))
	write(t, filepath.Join(dir, "empty"), nil)
	write(t, filepath.Join(dir, "big"), random(300<<10, 1))
	write(t, filepath.Join(dir, "comp"), compressible(512<<10, 0))
	write(t, filepath.Join(dir, "d1/d2/deep"), []byte("deep"))
	write(t, filepath.Join(dir, "d1/name with spaces\n"), []byte("odd name"))
	write(t, filepath.Join(dir, "p1/p2/leaf"), []byte("leaf"))
	must(t, os.Symlink("small", filepath.Join(dir, "link")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(dir, "d1/abs-link")))
	must(t, os.Symlink("dangling", filepath.Join(dir, "dangling")))
	must(t, os.Link(filepath.Join(dir, "small"), filepath.Join(dir, "d1/hard")))
	must(t, os.Link(filepath.Join(dir, "small"), filepath.Join(dir, "hard2")))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o640))
	must(t, unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(filepath.Join(dir, "loop"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	must(t, err)
	must(t, unix.Bind(sock, &unix.SockaddrUnix{Name: filepath.Join(dir, "sock")}))
	unix.Close(sock)
	// Sparse: data at 0, a hole, data at 1 MiB, a hole to 4 MiB.
	f, err := os.Create(filepath.Join(dir, "sparse"))
	must(t, err)
	_, err = f.WriteAt([]byte("start"), 0)
	must(t, err)
	_, err = f.WriteAt(random(8192, 2), 1<<20)
	must(t, err)
	must(t, f.Truncate(4<<20))
	f.Close()
	reflink(t, filepath.Join(dir, "big"), filepath.Join(dir, "big-clone"))
	must(t, unix.Lsetxattr(filepath.Join(dir, "small"), "user.k", []byte("v"), 0))
	must(t, unix.Lsetxattr(filepath.Join(dir, "d1"), "user.dir", []byte("x\x00y"), 0))
	must(t, unix.Lsetxattr(filepath.Join(dir, "fifo"), "trusted.f", []byte("1"), 0))
	must(t, os.Chmod(filepath.Join(dir, "d1/d2/deep"), 0o4755))
	must(t, os.Lchown(filepath.Join(dir, "d1/d2"), 1000, 1001))
	must(t, os.Lchown(filepath.Join(dir, "link"), 1002, 1003))
	must(t, os.Chtimes(filepath.Join(dir, "empty"), time.Unix(1, 0), time.Unix(1000000000, 5)))
}

// mutate changes dir in every way an incremental stream must carry.
func mutate(t testing.TB, dir string) {
	t.Helper()
	p := func(s string) string { return filepath.Join(dir, s) }
	// Renames in a cycle: small -> hard2 -> empty -> small.
	must(t, os.Rename(p("small"), p("tmp")))
	must(t, os.Rename(p("hard2"), p("small")))
	must(t, os.Rename(p("empty"), p("hard2")))
	must(t, os.Rename(p("tmp"), p("empty")))
	// Directory swap: d1 <-> d3 (new), and a dir moved into its sibling.
	must(t, os.Mkdir(p("d3"), 0o750))
	must(t, unix.Renameat2(unix.AT_FDCWD, p("d1"), unix.AT_FDCWD, p("d3"), unix.RENAME_EXCHANGE))
	must(t, os.Rename(p("d3/d2"), p("d2moved")))
	// Parent and child directories trade places: p1/p2 -> p2/p1.
	must(t, os.Rename(p("p1/p2"), p("p2")))
	must(t, os.Rename(p("p1"), p("p2/p1")))
	// Overwrite in place, append, truncate down and up.
	f, err := os.OpenFile(p("big"), os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte("X"), 5000), 100000)
	must(t, err)
	f.Close()
	must(t, os.Truncate(p("comp"), 70000))
	must(t, os.Truncate(p("sparse"), 8<<20))
	// chmod, chown, xattrs.
	must(t, os.Chmod(p("fifo"), 0o600))
	must(t, os.Lchown(p("small"), 1005, 1006))
	must(t, unix.Lremovexattr(p("empty"), "user.k"))
	must(t, unix.Lsetxattr(p("empty"), "user.new", []byte("new"), 0))
	must(t, unix.Lsetxattr(p("d3"), "user.dir", []byte("changed"), 0))
	// File <-> directory swap.
	must(t, os.Remove(p("link")))
	must(t, os.Mkdir(p("link"), 0o755))
	write(t, p("link/inside"), []byte("in"))
	must(t, os.RemoveAll(p("d2moved")))
	write(t, p("d2moved"), []byte("was a dir"))
	// Hard links added and removed; reflinks; fifo and device replaced.
	must(t, os.Link(p("big"), p("big-hard")))
	must(t, os.Remove(p("d3/hard")))
	reflink(t, p("comp"), p("comp-clone"))
	must(t, os.Remove(p("fifo")))
	must(t, unix.Mknod(p("fifo"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 5))))
	must(t, os.Remove(p("null")))
	must(t, unix.Mkfifo(p("null"), 0o644))
	must(t, os.Remove(p("sock")))
	// Many small files.
	for i := range 50 {
		write(t, filepath.Join(dir, "many", string(rune('a'+i%26))+string(rune('a'+i/26))), []byte{byte(i)})
	}
}
