package beneath

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// both runs fn with openat2 and with the per-component fallback.
func both(t *testing.T, fn func(t *testing.T)) {
	for _, fallback := range []bool{false, true} {
		name := "openat2"
		if fallback {
			name = "fallback"
		}
		t.Run(name, func(t *testing.T) {
			openat2Missing.Store(fallback)
			t.Cleanup(func() { openat2Missing.Store(false) })
			fn(t)
		})
	}
}

func openRoot(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// tree makes root/a/b/c, root/out, and symlinks planted at every depth:
// root/la -> a, root/a/lb -> b, root/a/b/lc -> c, root/a/esc -> ../../out.
func tree(t *testing.T) (root string, fd int) {
	root = t.TempDir()
	for _, d := range []string{"a/b/c", "out"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"la": "a", "a/lb": "b", "a/b/lc": "c", "a/esc": "../../out"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root, openRoot(t, root)
}

func TestOpenRefusesSymlinkAtEveryComponent(t *testing.T) {
	both(t, func(t *testing.T) {
		_, root := tree(t)
		for _, p := range []string{"la", "la/b", "la/b/c", "a/lb", "a/lb/c", "a/b/lc", "a/esc"} {
			fd, err := OpenDir(root, p)
			if err == nil {
				unix.Close(fd)
				t.Errorf("OpenDir(%q) followed a symlink", p)
			} else if err != unix.ELOOP && err != unix.ENOTDIR {
				t.Errorf("OpenDir(%q) = %v, want ELOOP or ENOTDIR", p, err)
			}
		}
		fd, err := OpenDir(root, "a/b/c")
		if err != nil {
			t.Fatalf("OpenDir(a/b/c) = %v", err)
		}
		unix.Close(fd)
	})
}

func TestOpenStaysBeneath(t *testing.T) {
	both(t, func(t *testing.T) {
		_, root := tree(t)
		for _, p := range []string{"/", "/etc", "..", "a/../..", "a/b/../../../out"} {
			fd, err := OpenDir(root, p)
			if err == nil {
				unix.Close(fd)
				t.Errorf("OpenDir(%q) left the directory", p)
			} else if err != unix.EXDEV {
				t.Errorf("OpenDir(%q) = %v, want EXDEV", p, err)
			}
		}
		if _, err := OpenDir(root, ""); err != unix.ENOENT {
			t.Errorf(`OpenDir("") = %v, want ENOENT`, err)
		}
	})
}

func TestOpenRefusesMountAtEveryComponent(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("BTRFS_TEST_REQUIRE") == "1" {
			t.Fatal("needs root to mount a tmpfs")
		}
		t.Skip("needs root to mount a tmpfs")
	}
	both(t, func(t *testing.T) {
		dir, root := tree(t)
		mnt := filepath.Join(dir, "a/b")
		if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		defer unix.Unmount(mnt, unix.MNT_DETACH)
		if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"a/b", "a/b/d"} {
			fd, err := OpenDir(root, p)
			if err == nil {
				unix.Close(fd)
				t.Errorf("OpenDir(%q) crossed a mount", p)
			} else if err != unix.EXDEV {
				t.Errorf("OpenDir(%q) = %v, want EXDEV", p, err)
			}
		}
	})
}

func TestSplitAndCheckName(t *testing.T) {
	for _, c := range []struct{ path, dir, name string }{
		{"a/b", "a", "b"}, {"a/b/", "a", "b"}, {"b", ".", "b"}, {"/b", "/", "b"},
		{"x/.", "x", "."}, {"x/sub/..", "x/sub", ".."}, {"x/./", "x", "."}, {"/", "/", "/"}, {"", ".", ""},
	} {
		dir, name := Split(c.path)
		if dir != c.dir || name != c.name {
			t.Errorf("Split(%q) = %q, %q; want %q, %q", c.path, dir, name, c.dir, c.name)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "/", "a\x00"} {
		if CheckName(bad) != unix.EINVAL {
			t.Errorf("CheckName(%q) accepted", bad)
		}
	}
	if err := CheckName("a..b"); err != nil {
		t.Errorf("CheckName(a..b) = %v", err)
	}
}

func TestOpenParent(t *testing.T) {
	dir, root := tree(t)
	for _, bad := range []string{"a/.", "a/b/..", "a/./", "."} {
		if fd, _, err := OpenParent(unix.AT_FDCWD, dir+"/"+bad); err != unix.EINVAL {
			if err == nil {
				unix.Close(fd)
			}
			t.Errorf("OpenParent(%q) = %v, want EINVAL", bad, err)
		}
	}
	fd, name, err := OpenParent(root, "a/b/c/")
	if err != nil || name != "c" {
		t.Fatalf("OpenParent(a/b/c/) = %q, %v", name, err)
	}
	defer unix.Close(fd)
	var st, want unix.Stat_t
	unix.Fstat(fd, &st)
	unix.Stat(filepath.Join(dir, "a/b"), &want)
	if st.Ino != want.Ino {
		t.Errorf("OpenParent(a/b/c) opened inode %d, want a/b (%d)", st.Ino, want.Ino)
	}
	if fd, _, err := OpenParent(root, "la/b"); err == nil {
		unix.Close(fd)
		t.Errorf("OpenParent below a directory followed a symlink")
	}
	if fd, err := OpenEntry(root, "la"); err == nil {
		unix.Close(fd)
		t.Errorf("OpenEntry followed a symlink")
	}
}

func TestMountIDAndFdPath(t *testing.T) {
	dir, root := tree(t)
	if _, err := MountID(root); err != nil {
		t.Fatal(err)
	}
	p, err := FdPath(root)
	if err != nil || p != dir {
		t.Errorf("FdPath = %q, %v; want %q", p, err, dir)
	}
	if target, err := Readlinkat(root, "a/esc"); err != nil || target != "../../out" {
		t.Errorf("Readlinkat = %q, %v", target, err)
	}
}

func TestRetry(t *testing.T) {
	n := 0
	err := Retry(func() error {
		n++
		if n < 3 {
			return unix.EINTR
		}
		return unix.EIO
	})
	if err != unix.EIO || n != 3 {
		t.Errorf("Retry = %v after %d calls, want EIO after 3", err, n)
	}
}
