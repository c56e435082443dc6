package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/internal/beneath"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/go-logr/logr/funcr"
	"golang.org/x/sys/unix"
)

// Build steps that attack the store: they replace their work directory,
// plant symlinks, make things immutable, nest subvolumes and leave mounts.
// In every scenario the store must neither follow a link out of its root
// nor lose other results, must clean up (or say exactly what it could not
// remove and stay openable), and the invariants must hold after Close and
// Open. Each scenario has a canary outside the store (a second btrfs and a
// temp directory) that must not change.

// hostileRun runs one scenario: a store holding keep-a and keep-b, a
// canary, then the scenario, then the checks every scenario shares.
func hostileRun(t *testing.T, subdir string, scenario func(e *hardEnv, c *hardCanary)) {
	t.Helper()
	e := newHardEnv(t, subdir)
	c := newHardCanary(t)
	e.keep()
	scenario(e, c)
	c.check(t)
	e.checkKept()
	e.reopen()
	e.checkKept()
	c.check(t)
}

// (a) The step replaces its own directory.
func TestHostileWorkReplaced(t *testing.T) {
	boom := errors.New("step failed after replacing its dir")
	for _, tc := range []struct {
		name    string
		subdir  string // the store's root below the filesystem's top, if any
		step    func(e *hardEnv, c *hardCanary, dir string) error
		wantErr func(t *testing.T, e *hardEnv, err error)
	}{{
		name: "symlink to / in its place, work moved within its build dir",
		step: func(e *hardEnv, c *hardCanary, dir string) error {
			must(e.t, writeFile(dir, "f", "x"))
			must(e.t, os.Rename(dir, filepath.Join(filepath.Dir(dir), "moved")))
			return os.Symlink("/", dir)
		},
		wantErr: func(t *testing.T, e *hardEnv, err error) { wantReplaced(t, err, "symbolic link") },
	}, {
		name: "symlink to the canary in its place, work moved to state/",
		step: func(e *hardEnv, c *hardCanary, dir string) error {
			must(e.t, os.Rename(dir, filepath.Join(e.s.StateDir(), "stolen")))
			return os.Symlink(c.dir, dir)
		},
		wantErr: func(t *testing.T, e *hardEnv, err error) {
			wantReplaced(t, err, "symbolic link")
			if _, err := os.Lstat(filepath.Join(e.s.StateDir(), "stolen")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the moved work subvolume is still in state/: %v", err)
			}
			if e.log.count("removing what a build moved away", "state/stolen") != 1 {
				t.Errorf("the removal of the moved work subvolume was not logged")
			}
		},
	}, {
		name:   "work moved out of the store's root, symlink to a canary subvolume in its place",
		subdir: "store",
		step: func(e *hardEnv, c *hardCanary, dir string) error {
			must(e.t, os.Rename(dir, filepath.Join(e.fs.Path, "outside")))
			return os.Symlink(c.sub, dir)
		},
		wantErr: func(t *testing.T, e *hardEnv, err error) {
			wantReplaced(t, err, "symbolic link")
			outside := filepath.Join(e.fs.Path, "outside")
			if !strings.Contains(err.Error(), "out of the store, to "+outside) {
				t.Errorf("error does not say where the work subvolume went: %v", err)
			}
			// Outside the root: the store leaves it alone.
			if sub, err := ioctl.IsSubvolume(outside); err != nil || !sub {
				t.Errorf("the store touched what the step moved out of its root: %v %v", sub, err)
			}
		},
	}, {
		name: "another subvolume in its place",
		step: func(e *hardEnv, c *hardCanary, dir string) error {
			bdir := filepath.Dir(dir)
			must(e.t, ioctl.CreateSubvolume(filepath.Join(bdir, "other")))
			must(e.t, writeFile(filepath.Join(bdir, "other"), "f", "impostor"))
			must(e.t, os.Rename(dir, filepath.Join(bdir, "orig")))
			return os.Rename(filepath.Join(bdir, "other"), dir)
		},
		wantErr: func(t *testing.T, e *hardEnv, err error) { wantReplaced(t, err, "not ") },
	}, {
		name: "a plain directory in its place",
		step: func(e *hardEnv, c *hardCanary, dir string) error {
			must(e.t, os.Rename(dir, filepath.Join(filepath.Dir(dir), "orig")))
			return os.Mkdir(dir, 0o755)
		},
		wantErr: func(t *testing.T, e *hardEnv, err error) {
			wantReplaced(t, err, "not the subvolume the store created")
		},
	}, {
		name: "a symlink to another result in its place",
		step: func(e *hardEnv, c *hardCanary, dir string) error {
			keep, err := e.s.Result("keep-a")
			must(e.t, err)
			must(e.t, os.Rename(dir, filepath.Join(filepath.Dir(dir), "orig")))
			return os.Symlink(keep, dir)
		},
		wantErr: func(t *testing.T, e *hardEnv, err error) { wantReplaced(t, err, "symbolic link") },
	}, {
		name: "the step fails after putting a symlink to / in its place",
		step: func(e *hardEnv, c *hardCanary, dir string) error {
			must(e.t, os.Rename(dir, filepath.Join(filepath.Dir(dir), "moved")))
			must(e.t, os.Symlink("/", dir))
			return boom
		},
		wantErr: func(t *testing.T, e *hardEnv, err error) {
			if !errors.Is(err, boom) {
				t.Errorf("error = %v, want the step's", err)
			}
		},
	}, {
		name: "a bind mount of the canary on it",
		step: func(e *hardEnv, c *hardCanary, dir string) error {
			return unix.Mount(c.dir, dir, "", unix.MS_BIND, "")
		},
		wantErr: func(t *testing.T, e *hardEnv, err error) { wantReplaced(t, err, "mount") },
	}} {
		t.Run(tc.name, func(t *testing.T) {
			hostileRun(t, tc.subdir, func(e *hardEnv, c *hardCanary) {
				err := e.buildErr("hostile", "keep-a", func(dir string) error { return tc.step(e, c, dir) })
				tc.wantErr(t, e, err)
				e.noResult("hostile")
				e.noTmp()
				if m := hardMountsBelow(t, e.fs.Path); len(m) > 0 {
					t.Errorf("mounts left after Build: %v", m)
				}
				// The store goes on.
				e.build("after", "keep-b", func(dir string) error { return writeFile(dir, "after", "y") })
			})
		})
	}
}

// (a') The step moves its build directory away and puts a symlink in its
// place: the result is still the work subvolume the store created, and
// the moved directory is found and removed.
func TestHostileBuildDirReplaced(t *testing.T) {
	hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
		e.build("moved-dir", "", func(dir string) error {
			bdir := filepath.Dir(dir)
			must(e.t, writeFile(dir, "f", "made before the move"))
			must(e.t, os.Rename(bdir, filepath.Join(e.root, resultTmpDir, "elsewhere")))
			return os.Symlink(c.dir, bdir)
		})
		p, err := e.s.Result("moved-dir")
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(p, "f")); got != "made before the move" {
			t.Errorf("result holds %q", got)
		}
		e.noTmp()
	})
}

// (b) The step plants symlinks: beside its build directory in result-tmp
// and cache-tmp, under the names the store will pick next, in cache/ and
// result/, inside its build directory and its work directory.
func TestHostileSymlinks(t *testing.T) {
	hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
		plant := func(target, link string) { must(t, os.Symlink(target, link)) }
		e.build("planter", "keep-a", func(dir string) error {
			next := e.s.seq.Load()
			for i := next + 1; i <= next+8; i++ {
				plant(c.dir, filepath.Join(e.root, resultTmpDir, fmt.Sprintf("b%s%d", e.s.nonce, i)))
				plant(c.dir, filepath.Join(e.root, resultTmpDir, fmt.Sprintf("d%s%d", e.s.nonce, i)))
				plant("/", filepath.Join(e.root, cacheTmpDir, fmt.Sprintf("k%s%d", e.s.nonce, i)))
				plant(c.sub, filepath.Join(e.root, cacheDir, fmt.Sprintf("t-%s%d", e.s.nonce, i)))
			}
			plant("/", filepath.Join(e.root, resultTmpDir, "evil"))
			plant("/", filepath.Join(e.root, cacheTmpDir, "evil"))
			plant(c.sub, filepath.Join(e.root, resultDir, "fake")) // c.sub holds a "snapshot" directory
			plant(c.roSub, filepath.Join(e.root, cacheDir, Escape("fake")))
			plant(c.dir, filepath.Join(filepath.Dir(dir), "sibling"))
			plant("/", filepath.Join(filepath.Dir(dir), "out"))       // where an earlier version staged its result
			plant(c.sub, filepath.Join(e.root, resultDir, "planter")) // its own result's place
			plant("/", filepath.Join(dir, "link-root"))
			plant(c.dir, filepath.Join(dir, "link-canary"))
			return nil
		})
		// A symlink is a result's content like any file.
		p, err := e.s.Result("planter")
		if err != nil {
			t.Fatal(err)
		}
		if target, err := os.Readlink(filepath.Join(p, "link-root")); err != nil || target != "/" {
			t.Errorf("result's link-root = %q, %v", target, err)
		}
		// A symlink in result/ is no result, and nothing is done through it.
		if p, err := e.s.Result("fake"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Result(fake) = %q, %v; want fs.ErrNotExist", p, err)
		}
		err = e.buildErr("on-fake", "fake", func(string) error { t.Error("step ran on a fake base"); return nil })
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Build on the fake base = %v, want fs.ErrNotExist", err)
		}
		// Every operation goes on, past the planted names.
		e.build("next", "keep-b", func(dir string) error { return writeFile(dir, "n", "n") })
		e.build("doomed", "", func(dir string) error { return writeFile(dir, "n", "n") })
		must(t, e.s.Delete(t.Context(), "doomed"))
		l, err := e.s.Cache(t.Context(), "c", Owner{})
		must(t, err)
		must(t, writeFile(l.Path(), "cached", "v1"))
		must(t, l.Release(t.Context()))
		l, err = e.s.Cache(t.Context(), "c", Owner{})
		must(t, err)
		if got := readFile(t, filepath.Join(l.Path(), "cached")); got != "v1" {
			t.Errorf("cache holds %q", got)
		}
		must(t, l.Release(t.Context()))
		// The cache entry that is a symlink: a fresh cache replaces it?
		// No: Cache refuses to clone through it.
		if l, err := e.s.Cache(t.Context(), "fake", Owner{}); err == nil {
			t.Errorf("Cache(fake) cloned through a symlink: %s", l.Path())
			l.Release(t.Context())
		}
		must(t, e.s.DeleteCache(t.Context(), "c"))
		must(t, e.s.DeleteCache(t.Context(), "fake"))
		must(t, e.s.Delete(t.Context(), "fake"))
		if _, err := os.Lstat(filepath.Join(e.root, resultDir, "fake")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Delete(fake) left the symlink: %v", err)
		}
		if _, err := os.Lstat(filepath.Join(e.root, resultTmpDir, "evil")); err != nil {
			t.Errorf("the planted symlink in result-tmp went before Open: %v", err)
		}
		// What Open must remove is the planted links in result-tmp,
		// cache-tmp and cache/.
	})
}

// (c) The step makes files, directories, its work directory, its build
// directory and the store's own directories immutable or append-only.
func TestHostileImmutable(t *testing.T) {
	boom := errors.New("step failed")
	protect := func(t *testing.T, dir string) {
		t.Helper()
		must(t, writeFile(dir, "immutable", "i"))
		must(t, writeFile(dir, "append-only", "a"))
		must(t, os.MkdirAll(filepath.Join(dir, "locked/inner"), 0o755))
		must(t, writeFile(dir, "locked/inner/file", "l"))
		must(t, setFlags(filepath.Join(dir, "immutable"), fsImmutableFl))
		must(t, setFlags(filepath.Join(dir, "append-only"), fsAppendFl))
		must(t, setFlags(filepath.Join(dir, "locked/inner/file"), fsImmutableFl))
		must(t, setFlags(filepath.Join(dir, "locked/inner"), fsImmutableFl))
		must(t, setFlags(filepath.Join(dir, "locked"), fsAppendFl))
	}
	t.Run("files, directories and the work directory, then success", func(t *testing.T) {
		hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
			e.build("imm", "keep-a", func(dir string) error {
				protect(t, dir)
				return setFlags(dir, fsImmutableFl)
			})
			e.noTmp()
			p, err := e.s.Result("imm")
			must(t, err)
			if !hasFlags(t, p, fsImmutableFl) || !hasFlags(t, filepath.Join(p, "immutable"), fsImmutableFl) {
				t.Errorf("the result lost the flags its step set")
			}
			// Deleting such a result works too.
			must(t, e.s.Delete(t.Context(), "imm"))
			e.noResult("imm")
			e.noTmp()
			if e.log.count("cleared the immutable") == 0 {
				t.Errorf("clearing the flags was not logged")
			}
		})
	})
	t.Run("files, directories, the work and build directories, then failure", func(t *testing.T) {
		hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
			err := e.buildErr("imm", "", func(dir string) error {
				protect(t, dir)
				protect(t, filepath.Dir(dir))
				must(t, setFlags(dir, fsAppendFl))
				must(t, setFlags(filepath.Dir(dir), fsImmutableFl))
				return boom
			})
			if !errors.Is(err, boom) {
				t.Errorf("Build = %v, want the step's error", err)
			}
			e.noResult("imm")
			e.noTmp()
		})
	})
	t.Run("an immutable build directory does not stop publishing", func(t *testing.T) {
		hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
			e.build("imm", "", func(dir string) error {
				must(t, writeFile(dir, "f", "f"))
				return setFlags(filepath.Dir(dir), fsImmutableFl)
			})
			p, err := e.s.Result("imm")
			must(t, err)
			if got := readFile(t, filepath.Join(p, "f")); got != "f" {
				t.Errorf("result holds %q", got)
			}
			e.noTmp()
		})
	})
	t.Run("an immutable result directory makes publishing fail, explained", func(t *testing.T) {
		hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
			resultPath := filepath.Join(e.root, resultDir)
			err := e.buildErr("imm", "", func(dir string) error { return setFlags(resultPath, fsImmutableFl) })
			if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "immutable") {
				t.Errorf("Build = %v, want EPERM saying the directory is immutable", err)
			}
			must(t, setFlags(resultPath, 0))
			e.noResult("imm")
			e.noTmp()
		})
	})
	t.Run("the store's result-tmp, cache and cache-tmp", func(t *testing.T) {
		hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
			l, err := e.s.Cache(t.Context(), "c", Owner{})
			must(t, err)
			e.build("imm", "", func(dir string) error {
				must(t, setFlags(filepath.Join(e.root, resultTmpDir), fsImmutableFl))
				must(t, setFlags(filepath.Join(e.root, cacheTmpDir), fsAppendFl))
				return setFlags(filepath.Join(e.root, cacheDir), fsImmutableFl)
			})
			// Removing the build directory cleared result-tmp's flag.
			if names := entries(t, filepath.Join(e.root, resultTmpDir)); len(names) != 0 {
				t.Errorf("result-tmp not empty: %v", names)
			}
			// cache is immutable: the release cannot swap the new
			// version in, and says why; the old one stays.
			must(t, writeFile(l.Path(), "v", "2"))
			err = l.Release(t.Context())
			if !errors.Is(err, fs.ErrPermission) {
				t.Errorf("Release into an immutable cache/ = %v, want EPERM", err)
			} else {
				t.Logf("Release (as expected): %v", err)
			}
			e.noTmp()
			// Open clears the flag of the store's own directories.
			e.reopen()
			if hasFlags(t, filepath.Join(e.root, cacheDir), fsImmutableFl|fsAppendFl) {
				t.Errorf("Open left cache/ immutable")
			}
			l, err = e.s.Cache(t.Context(), "c", Owner{})
			must(t, err)
			must(t, writeFile(l.Path(), "v", "3"))
			must(t, l.Release(t.Context()))
		})
	})
}

// (c') Without CAP_LINUX_IMMUTABLE the store cannot clear the flags: Open
// says so, naming the capability, and opens all the same.
func TestHostileImmutableWithoutCapability(t *testing.T) {
	e := newHardEnv(t, "")
	e.keep()
	must(t, e.s.Close())
	left := filepath.Join(e.root, resultTmpDir, "b999")
	must(t, os.MkdirAll(filepath.Join(left, "d"), 0o755))
	must(t, writeFile(left, "d/f", "x"))
	must(t, setFlags(filepath.Join(left, "d/f"), fsImmutableFl))
	caps := []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_CHOWN}
	out, err := btrfstest.RunAs(t, btrfstest.Cred{UID: 0, GID: 0, Caps: caps}, hardNoImmutableChild, e.root)
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "CAP_LINUX_IMMUTABLE") || !strings.Contains(out, "b999/d/f") {
		t.Errorf("the child's Open did not say that clearing the flag of b999/d/f needs CAP_LINUX_IMMUTABLE")
	}
	if !strings.Contains(out, "built\n") {
		t.Errorf("the child's store did not work")
	}
	// With the capability, Open removes it.
	e.open()
	checkInvariants(t, e.root)
	e.checkKept()
}

const hardNoImmutableChild = "store.hardNoImmutable"

func init() {
	btrfstest.Register(hardNoImmutableChild, func(args []string) error {
		log := funcr.New(func(prefix, args string) { fmt.Println("log:", args) }, funcr.Options{})
		s, err := Open(context.Background(), args[0], Config{Logger: log})
		if err != nil {
			return err
		}
		defer s.Close()
		fmt.Println("opened")
		if err := s.Build(context.Background(), "child", "keep-a", func(_ context.Context, dir string) error {
			return writeFile(dir, "c", "c")
		}); err != nil {
			return err
		}
		fmt.Println("built")
		return nil
	})
}

// (d) The step nests subvolumes, read-only ones, in read-only and
// immutable places and in directories it made unwritable.
func TestHostileNestedSubvolumes(t *testing.T) {
	nest := func(t *testing.T, dir string) {
		t.Helper()
		sub := func(p string) string { return filepath.Join(dir, p) }
		must(t, ioctl.CreateSubvolume(sub("a")))
		must(t, writeFile(sub("a"), "f", "a"))
		must(t, ioctl.CreateSubvolume(sub("a/b")))
		must(t, ioctl.CreateSubvolume(sub("a/b/c")))
		must(t, ioctl.Snapshot(sub("a/b/c"), sub("a/b/c-ro"), ioctl.SnapshotReadOnly))
		must(t, ioctl.Snapshot(sub("a"), sub("a-ro"), ioctl.SnapshotReadOnly))
		must(t, os.Mkdir(sub("locked"), 0o755))
		must(t, ioctl.CreateSubvolume(sub("locked/n")))
		must(t, os.Chmod(sub("locked"), 0o555))
		must(t, ioctl.CreateSubvolume(sub("imm")))
		must(t, setFlags(sub("imm"), fsImmutableFl))
		must(t, ioctl.SetReadOnly(sub("a/b"), true)) // holds c and c-ro
	}
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("step fails %v", fail), func(t *testing.T) {
			hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
				err := e.buildErr("nested", "keep-a", func(dir string) error {
					nest(t, dir)
					nest(t, filepath.Dir(dir)) // beside the work directory too
					must(t, ioctl.SetReadOnly(dir, true))
					if fail {
						return errors.New("fails")
					}
					return nil
				})
				if (err != nil) != fail {
					t.Fatalf("Build = %v", err)
				}
				if !fail {
					p, err := e.s.Result("nested")
					must(t, err)
					// Nested subvolumes are not part of a snapshot.
					if names := entries(t, filepath.Join(p, "a")); len(names) != 0 {
						t.Errorf("result's nested subvolume a holds %v", names)
					}
					must(t, e.s.Delete(t.Context(), "nested"))
				}
				e.noTmp()
				checkInvariants(t, e.root)
			})
		})
	}
	t.Run("in a cache clone", func(t *testing.T) {
		hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
			for i := range 2 {
				l, err := e.s.Cache(t.Context(), "c", Owner{})
				must(t, err)
				dir := filepath.Join(l.Path(), fmt.Sprint(i))
				must(t, os.Mkdir(dir, 0o755))
				nest(t, dir)
				must(t, l.Release(t.Context()))
				e.noTmp()
			}
		})
	})
}

// (e) The step leaves mounts: inside its work directory (tmpfs, stacked,
// nested, a bind mount of the canary, a read-only bind mount of /), in its
// build directory, beside it in result-tmp and cache-tmp, on a result and
// on result-tmp itself.
func TestHostileMounts(t *testing.T) {
	tmpfs := func(t *testing.T, dir string) {
		t.Helper()
		must(t, os.MkdirAll(dir, 0o755))
		must(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"))
		must(t, writeFile(dir, "in-tmpfs", "gone with the mount"))
	}
	bind := func(t *testing.T, src, dir string, readOnly bool) {
		t.Helper()
		must(t, os.MkdirAll(dir, 0o755))
		must(t, unix.Mount(src, dir, "", unix.MS_BIND, ""))
		if readOnly {
			must(t, unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""))
		}
	}
	t.Run("inside the work and build directories", func(t *testing.T) {
		hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
			e.build("mounts", "keep-a", func(dir string) error {
				must(t, writeFile(dir, "own", "own"))
				tmpfs(t, filepath.Join(dir, "tmp"))
				tmpfs(t, filepath.Join(dir, "tmp/inner"))
				tmpfs(t, filepath.Join(dir, "stacked"))
				tmpfs(t, filepath.Join(dir, "stacked"))
				bind(t, c.dir, filepath.Join(dir, "canary"), false)
				bind(t, "/", filepath.Join(dir, "host"), true)
				tmpfs(t, filepath.Join(filepath.Dir(dir), "side"))
				bind(t, c.dir, filepath.Join(filepath.Dir(dir), "side-canary"), false)
				return nil
			})
			p, err := e.s.Result("mounts")
			must(t, err)
			for _, d := range []string{"tmp", "stacked", "canary", "host"} {
				if names := entries(t, filepath.Join(p, d)); len(names) != 0 {
					t.Errorf("result's %s holds %v: a mount's content was frozen", d, names)
				}
			}
			if got := readFile(t, filepath.Join(p, "own")); got != "own" {
				t.Errorf("result's own file = %q", got)
			}
			e.noTmp()
			if m := hardMountsBelow(t, e.fs.Path); len(m) > 0 {
				t.Errorf("mounts left after Build: %v", m)
			}
			if e.log.count("detached a mount", "side") < 2 {
				t.Errorf("detaching the mounts in the build directory was not logged")
			}
		})
	})
	t.Run("beside the build directory, in result-tmp and cache-tmp", func(t *testing.T) {
		hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
			e.build("mounts", "", func(dir string) error {
				tmpfs(t, filepath.Join(e.root, resultTmpDir, "evil"))
				bind(t, c.sub, filepath.Join(e.root, cacheTmpDir, "evil"), false)
				bind(t, c.dir, filepath.Join(e.root, resultTmpDir, "evil2", "deep"), false)
				return nil
			})
			// Open detaches and removes them (hostileRun reopens).
		})
	})
	t.Run("on a result", func(t *testing.T) {
		hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
			e.build("mounts", "", func(dir string) error {
				bind(t, c.sub, filepath.Join(e.root, resultDir, "keep-a"), false)
				return nil
			})
			// The result is hidden, not handed out through the mount.
			if p, err := e.s.Result("keep-a"); err == nil {
				t.Errorf("Result(keep-a) = %s through a mount", p)
			} else {
				t.Logf("Result(keep-a) (as expected): %v", err)
			}
			e.reopen() // detaches the mount: keep-a is back, not lost
		})
	})
	t.Run("on result-tmp", func(t *testing.T) {
		hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
			// The step's path leads into the mount from then on: what
			// it writes is not in its work subvolume, and nothing is
			// published; the mount is detached as the build ends.
			err := e.buildErr("mounts", "", func(dir string) error {
				tmpfs(t, filepath.Join(e.root, resultTmpDir))
				return nil
			})
			wantReplaced(t, err, "nothing is published")
			if e.log.count("detached a mount", resultTmpDir) == 0 {
				t.Errorf("the mount on result-tmp was not detached as the build ended")
			}
			e.reopen()
			e.build("after", "keep-a", func(dir string) error { return writeFile(dir, "f", "f") })
		})
	})
	t.Run("in and on a cache clone", func(t *testing.T) {
		hostileRun(t, "", func(e *hardEnv, c *hardCanary) {
			l, err := e.s.Cache(t.Context(), "c", Owner{})
			must(t, err)
			must(t, writeFile(l.Path(), "v", "1"))
			tmpfs(t, filepath.Join(l.Path(), "tmp"))
			bind(t, c.dir, filepath.Join(l.Path(), "canary"), false)
			must(t, l.Release(t.Context()))
			e.noTmp()
			l, err = e.s.Cache(t.Context(), "c", Owner{})
			must(t, err)
			must(t, writeFile(l.Path(), "v", "2"))
			bind(t, c.dir, l.Path(), false)
			err = l.Release(t.Context())
			wantReplaced(t, err, "mount")
			e.noTmp()
			l, err = e.s.Cache(t.Context(), "c", Owner{})
			must(t, err)
			if got := readFile(t, filepath.Join(l.Path(), "v")); got != "1" {
				t.Errorf("cache = %q after a refused release, want the old version 1", got)
			}
			must(t, l.Release(t.Context()))
		})
	})
}

// TestHostileWithoutOpenat2 runs the scenarios as on a kernel without
// openat2 (before 5.6, or a seccomp filter that refuses it with ENOSYS):
// paths are then opened one component at a time with O_NOFOLLOW, and a
// component on another mount is refused by its mount id.
func TestHostileWithoutOpenat2(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: every hostile case again without openat2, 61 s in a TCG guest (make vmtest-cross); make test and make vmtest run it")
	}
	t.Cleanup(beneath.DisableOpenat2())
	// The fallback itself: no symlink, no "..", no mount crossed.
	e := newHardEnv(t, "")
	c := newHardCanary(t)
	e.keep()
	resultDirPath := filepath.Join(e.root, resultDir)
	must(t, os.Symlink(c.dir, filepath.Join(resultDirPath, "link")))
	must(t, os.Mkdir(filepath.Join(resultDirPath, "mnt"), 0o755))
	must(t, unix.Mount(c.dir, filepath.Join(resultDirPath, "mnt"), "", unix.MS_BIND, ""))
	t.Cleanup(func() { unix.Unmount(filepath.Join(resultDirPath, "mnt"), unix.MNT_DETACH) })
	// A symlink gives ELOOP, or ENOTDIR where O_DIRECTORY is checked
	// first; either way nothing is opened through it.
	for name, want := range map[string][]error{
		"keep-a/snapshot":  nil,
		"link":             {unix.ELOOP, unix.ENOTDIR},
		"link/inner":       {unix.ELOOP, unix.ENOTDIR},
		"keep-a/../keep-b": {unix.EXDEV},
		"/":                {unix.EXDEV},
		"mnt":              {unix.EXDEV},
		"mnt/inner":        {unix.EXDEV},
	} {
		fd, err := openDirAt(e.s.resultFd, name)
		if err == nil {
			unix.Close(fd)
		}
		ok := (want == nil) == (err == nil)
		if err != nil && want != nil {
			ok = slices.ContainsFunc(want, func(w error) bool { return errors.Is(err, w) })
		}
		if !ok {
			t.Errorf("openDirAt(result, %q) without openat2 = %v, want one of %v", name, err, want)
		}
	}
	must(t, unix.Unmount(filepath.Join(resultDirPath, "mnt"), unix.MNT_DETACH))
	must(t, os.Remove(filepath.Join(resultDirPath, "mnt")))
	must(t, os.Remove(filepath.Join(resultDirPath, "link")))
	c.check(t)
	t.Run("work replaced", TestHostileWorkReplaced)
	t.Run("symlinks", TestHostileSymlinks)
	t.Run("mounts", TestHostileMounts)
	t.Run("nested", TestHostileNestedSubvolumes)
}

// (f) Without privilege (uid 1000, no capability, user_subvol_rm_allowed)
// a step that leaves directories without permissions (0000, 0555: its
// work directory's root, a nested subvolume's parent, a directory beside
// its work directory) is cleaned up all the same: the store, which owns
// what its builds leave, gives the owner its permissions back.
func TestHostileUnwritableDirsUnprivileged(t *testing.T) {
	if !btrfstest.KernelAtLeast(6, 13) {
		t.Skip("a store without CAP_SYS_ADMIN needs Linux 6.13 (SUBVOL_SYNC_WAIT)")
	}
	fsys := btrfstest.New(t, btrfstest.MountOptions("user_subvol_rm_allowed"))
	must(t, os.Chown(fsys.Path, privUID, privGID))
	out, err := btrfstest.RunAs(t, btrfstest.Cred{UID: privUID, GID: privGID}, hardUnwritableChild, fsys.Path)
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), fsys.Path, Config{})
	must(t, err)
	defer s.Close()
	checkInvariants(t, fsys.Path)
	if _, err := s.Result("kept"); err != nil {
		t.Errorf("result kept: %v", err)
	}
}

const hardUnwritableChild = "store.hardUnwritable"

func init() {
	btrfstest.Register(hardUnwritableChild, func(args []string) error {
		ctx := context.Background()
		s, err := Open(ctx, args[0], Config{})
		if err != nil {
			return err
		}
		defer s.Close()
		lock := func(dir string) error {
			for _, step := range []func() error{
				func() error { return os.MkdirAll(filepath.Join(dir, "a/b"), 0o755) },
				func() error { return writeFile(dir, "a/b/f", "f") },
				func() error { return os.Mkdir(filepath.Join(dir, "m"), 0o755) },
				func() error { return ioctl.CreateSubvolume(filepath.Join(dir, "m/n")) },
				func() error {
					return ioctl.Snapshot(filepath.Join(dir, "m/n"), filepath.Join(dir, "m/n-ro"), ioctl.SnapshotReadOnly)
				},
				func() error { return os.Chmod(filepath.Join(dir, "a/b"), 0) },
				func() error { return os.Chmod(filepath.Join(dir, "a"), 0o555) },
				func() error { return os.Chmod(filepath.Join(dir, "m"), 0o555) },
				func() error { return os.Chmod(dir, 0o555) },
			} {
				if err := step(); err != nil {
					return err
				}
			}
			return nil
		}
		for _, id := range []string{"kept", "deleted", "failed"} {
			err := s.Build(ctx, id, "", func(_ context.Context, dir string) error {
				if err := lock(filepath.Dir(dir) + "/side"); err != nil {
					return err
				}
				if err := os.Mkdir(filepath.Dir(dir)+"/side/x", 0o755); err == nil {
					return errors.New("side/x could be made in a 0555 directory")
				}
				if err := lock(dir); err != nil {
					return err
				}
				if id == "failed" {
					return errors.New("fails")
				}
				return nil
			})
			if (err != nil) != (id == "failed") {
				return fmt.Errorf("build %s: %w", id, err)
			}
			fmt.Printf("built %s: %v\n", id, err)
		}
		if err := s.Delete(ctx, "deleted"); err != nil {
			return err
		}
		for _, d := range []string{resultTmpDir, cacheTmpDir} {
			names, err := os.ReadDir(filepath.Join(args[0], d))
			if err != nil || len(names) != 0 {
				return fmt.Errorf("%s: %v %v", d, names, err)
			}
		}
		fmt.Println("clean")
		return s.CompleteDeletes(ctx)
	})
}
