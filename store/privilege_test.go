package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/go-logr/logr/funcr"
	"golang.org/x/sys/unix"
)

// The unprivileged user the children run as; it owns the store's root.
const privUID, privGID = 1000, 1000

// Child functions, run by RunAs as privUID. Each takes the store's root,
// checks everything it can see from inside, prints what the parent should
// check afterwards ("deleted <subvolume id>" lines) and returns every
// failure at once.
func init() {
	btrfstest.Register("store-priv-admin", privAdminChild)
	btrfstest.Register("store-priv-none", privNoneChild)
	btrfstest.Register("store-priv-rm-allowed", privRmAllowedChild)
}

// privChild collects a child's failures and its report to the parent.
type privChild struct {
	ctx  context.Context
	errs []error
	out  strings.Builder
}

func (c *privChild) failf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

func (c *privChild) result() error {
	fmt.Print(c.out.String())
	return errors.Join(c.errs...)
}

// subvolID returns the id of the subvolume at path, to be reported as
// deleted once it is.
func (c *privChild) subvolID(path string) uint64 {
	info, err := ioctl.SubvolumeInfo(path)
	if err != nil {
		c.failf("SubvolumeInfo(%s): %v", path, err)
		return 0
	}
	return info.ID
}

func (c *privChild) deleted(ids ...uint64) {
	for _, id := range ids {
		if id != 0 {
			fmt.Fprintf(&c.out, "deleted %d\n", id)
		}
	}
}

// build builds id on base, checking that the work dir holds the files
// named in inherited and then writing a file named id, plus whatever
// extra does.
func (c *privChild) build(s *Store, id, base string, inherited []string, extra func(dir string) error) {
	err := s.Build(c.ctx, id, base, func(_ context.Context, dir string) error {
		if got := stressNames(dir); !slices.Equal(got, inherited) {
			return fmt.Errorf("work dir holds %v, want %v", got, inherited)
		}
		if err := writeFile(dir, id, id); err != nil {
			return err
		}
		if extra != nil {
			return extra(dir)
		}
		return nil
	})
	if err != nil {
		c.failf("Build(%s on %q): %v", id, base, err)
	}
}

// checkResult checks that result id exists, is read-only, belongs to
// privUID and holds exactly files.
func (c *privChild) checkResult(s *Store, id string, files ...string) {
	p, err := s.Result(id)
	if err != nil {
		c.failf("Result(%s): %v", id, err)
		return
	}
	if got := stressNames(p); !slices.Equal(got, files) {
		c.failf("result %s holds %v, want %v", id, got, files)
	}
	for _, f := range files {
		if b, err := os.ReadFile(filepath.Join(p, f)); err == nil && len(b) > 0 && string(b) != f {
			c.failf("result %s: file %s = %q", id, f, b)
		}
	}
	if ro, err := ioctl.ReadOnly(p); err != nil || !ro {
		c.failf("result %s read-only = %v, %v", id, ro, err)
	}
	c.checkOwner(p, privUID, privGID)
}

func (c *privChild) checkOwner(path string, uid, gid uint32) {
	st, err := os.Stat(path)
	if err != nil {
		c.failf("%v", err)
		return
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != uid || sys.Gid != gid {
		c.failf("%s is owned by %d:%d, want %d:%d", path, sys.Uid, sys.Gid, uid, gid)
	}
}

func (c *privChild) gone(s *Store, id string) {
	if _, err := s.Result(id); !errors.Is(err, fs.ErrNotExist) {
		c.failf("Result(%s) after Delete = %v, want fs.ErrNotExist", id, err)
	}
}

// deleteResult deletes result id and reports its subvolume as deleted.
func (c *privChild) deleteResult(s *Store, id string) {
	var subvol uint64
	if p, err := s.Result(id); err == nil {
		subvol = c.subvolID(p)
	}
	if err := s.Delete(c.ctx, id); err != nil {
		c.failf("Delete(%s): %v", id, err)
		return
	}
	c.gone(s, id)
	c.deleted(subvol)
}

// useCache leases cache name for owner, checks the clone's owner and that
// it holds exactly want, adds file if it is not "", releases, and checks
// that the clone became the new version. It reports the clone and the old
// version as deleted.
func (c *privChild) useCache(s *Store, name string, owner Owner, want []string, file string) {
	lease, err := s.Cache(c.ctx, name, owner)
	if err != nil {
		c.failf("Cache(%q, %+v): %v", name, owner, err)
		return
	}
	c.deleted(c.subvolID(lease.Path()))
	c.checkOwner(lease.Path(), uint32(owner.UID), uint32(owner.GID))
	if got := stressNames(lease.Path()); !slices.Equal(got, want) {
		c.failf("cache %q clone holds %v, want %v", name, got, want)
	}
	if file != "" {
		if err := writeFile(lease.Path(), file, file); err != nil {
			c.failf("writing into the cache clone: %v", err)
		}
	}
	version := filepath.Join(s.Root(), cacheDir, Escape(name))
	before := c.subvolID(version)
	if err := lease.Release(c.ctx); err != nil {
		c.failf("Release of cache %q given to %+v: %v", name, owner, err)
	}
	// The only lease of its generation: its clone is the new version.
	if after := c.subvolID(version); after == before {
		c.failf("cache %q is still version %d after the release of the only lease", name, before)
	} else {
		c.deleted(before)
	}
}

// finish deletes the cache, waits for the deletes and checks free space.
func (c *privChild) finish(s *Store, cacheName string) {
	if p := filepath.Join(s.Root(), cacheDir, Escape(cacheName)); privExists(p) {
		c.deleted(c.subvolID(p))
	}
	if err := s.DeleteCache(c.ctx, cacheName); err != nil {
		c.failf("DeleteCache: %v", err)
	}
	begin := time.Now()
	if err := s.CompleteDeletes(c.ctx); err != nil {
		c.failf("CompleteDeletes: %v", err)
	}
	fmt.Fprintf(&c.out, "CompleteDeletes took %v\n", time.Since(begin).Round(time.Microsecond))
	if free, err := s.FreeSpace(c.ctx); err != nil || free <= 0 || free > 100 {
		c.failf("FreeSpace = %v, %v", free, err)
	}
	for _, d := range []string{resultTmpDir, cacheTmpDir, cacheDir} {
		if names := stressNames(filepath.Join(s.Root(), d)); len(names) != 0 {
			c.failf("%s not empty at the end: %v", d, names)
		}
	}
}

// reopen closes s and opens its root again, as the same user: whatever a
// build left must not lock that user out of the store.
func (c *privChild) reopen(s *Store) {
	if err := s.Close(); err != nil {
		c.failf("Close: %v", err)
	}
	s2, err := Open(c.ctx, s.Root(), privConfig)
	if err != nil {
		c.failf("Open again: %v", err)
		return
	}
	s2.Close()
}

func privExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func newPrivChild() (*privChild, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	return &privChild{ctx: ctx}, cancel
}

// privConfig logs what an operator must see (failed cleanups) to stderr,
// which RunAs shows.
var privConfig = Config{Logger: funcr.New(func(prefix, args string) {
	fmt.Fprintln(os.Stderr, "log:", prefix, args)
}, funcr.Options{})}

// As privUID with CAP_SYS_ADMIN and CAP_CHOWN only, on a normal mount.
func privAdminChild(args []string) error {
	c, cancel := newPrivChild()
	defer cancel()
	s, err := Open(c.ctx, args[0], privConfig)
	if err != nil {
		return fmt.Errorf("Open with CAP_SYS_ADMIN and CAP_CHOWN: %w", err)
	}
	defer s.Close()
	c.build(s, "a", "", nil, nil)
	c.build(s, "b", "a", []string{"a"}, nil)
	c.build(s, "c", "b", []string{"a", "b"}, nil)
	c.checkResult(s, "b", "a", "b")
	c.checkResult(s, "c", "a", "b", "c")
	c.deleteResult(s, "a")
	c.deleteResult(s, "c")
	c.checkResult(s, "b", "a", "b")

	// A cache given to another user; the clone's top directory is theirs,
	// so this process cannot write into it.
	other := Owner{123, 456}
	c.useCache(s, "shared", other, nil, "")
	c.useCache(s, "shared", other, nil, "")
	c.finish(s, "shared")
	c.reopen(s)
	return c.result()
}

// As privUID without capabilities, on a normal mount: Open refuses.
// privNoneChild checks that Open refuses without privilege: on kernels
// before 4.18 only, where an empty subvolume cannot be rmdir'ed (not run
// on the kernels the tests run on).
func privNoneChild(args []string) error {
	s, err := Open(context.Background(), args[0], Config{})
	if err == nil {
		s.Close()
		return errors.New("Open without CAP_SYS_ADMIN on a mount without user_subvol_rm_allowed succeeded")
	}
	fmt.Println(err)
	var errs []error
	if !errors.Is(err, fs.ErrPermission) {
		errs = append(errs, fmt.Errorf("Open error does not match fs.ErrPermission: %w", err))
	}
	for _, want := range []string{"CAP_SYS_ADMIN", "user_subvol_rm_allowed"} {
		if !strings.Contains(err.Error(), want) {
			errs = append(errs, fmt.Errorf("Open error does not name %s: %w", want, err))
		}
	}
	return errors.Join(errs...)
}

// As privUID without capabilities, on a user_subvol_rm_allowed mount or a
// normal one.
func privRmAllowedChild(args []string) error {
	c, cancel := newPrivChild()
	defer cancel()
	s, err := Open(c.ctx, args[0], privConfig)
	if err != nil {
		return fmt.Errorf("Open without capabilities: %w", err)
	}
	defer s.Close()
	c.build(s, "a", "", nil, nil)
	c.build(s, "b", "a", []string{"a"}, nil)
	c.build(s, "c", "", nil, nil)
	// Builds that leave nested subvolumes in their work dir, writable
	// ones, then a read-only one: the work dir must still go away.
	c.build(s, "nested", "", nil, func(dir string) error {
		if err := ioctl.CreateSubvolume(filepath.Join(dir, "sub")); err != nil {
			return err
		}
		return ioctl.CreateSubvolume(filepath.Join(dir, "sub", "subsub"))
	})
	if names := stressNames(filepath.Join(s.Root(), resultTmpDir)); len(names) != 0 {
		c.failf("result-tmp after a build that left nested subvolumes: %v", names)
	}
	c.build(s, "nested-ro", "", nil, func(dir string) error {
		if err := ioctl.CreateSubvolume(filepath.Join(dir, "sub")); err != nil {
			return err
		}
		return ioctl.Snapshot(filepath.Join(dir, "sub"), filepath.Join(dir, "sub-ro"), ioctl.SnapshotReadOnly)
	})
	if names := stressNames(filepath.Join(s.Root(), resultTmpDir)); len(names) != 0 {
		c.failf("result-tmp after a build that left a nested read-only subvolume: %v", names)
	}
	c.checkResult(s, "b", "a", "b")
	c.deleteResult(s, "a")
	c.deleteResult(s, "c")
	c.checkResult(s, "b", "a", "b")

	// Own caches work: the released clone becomes the cache.
	self := Owner{privUID, privGID}
	c.useCache(s, "shared", self, nil, "one")
	c.useCache(s, "shared", self, []string{"one"}, "two")
	c.useCache(s, "shared", self, []string{"one", "two"}, "")

	// Another owner needs CAP_CHOWN, and is refused before the disk.
	before := stressNames(filepath.Join(s.Root(), cacheDir))
	if lease, err := s.Cache(c.ctx, "other", Owner{123, 456}); err == nil {
		c.failf("Cache for another owner without CAP_CHOWN succeeded: %s", lease.Path())
		lease.Release(c.ctx)
	} else if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "CAP_CHOWN") {
		c.failf("Cache for another owner without CAP_CHOWN = %v, want fs.ErrPermission naming CAP_CHOWN", err)
	}
	if after := stressNames(filepath.Join(s.Root(), cacheDir)); !slices.Equal(before, after) {
		c.failf("refused Cache changed cache/ from %v to %v", before, after)
	}
	if names := stressNames(filepath.Join(s.Root(), cacheTmpDir)); len(names) != 0 {
		c.failf("refused Cache left %v in cache-tmp", names)
	}
	c.finish(s, "shared")
	c.reopen(s)
	return c.result()
}

// privStore makes a filesystem whose root privUID owns.
func privStore(t *testing.T, opts ...btrfstest.Option) *btrfstest.FS {
	t.Helper()
	fsys := btrfstest.New(t, opts...)
	if err := os.Chown(fsys.Path, privUID, privGID); err != nil {
		t.Fatal(err)
	}
	return fsys
}

// runPriv runs a child and returns the subvolume ids it reported deleted.
func runPriv(t *testing.T, caps []uintptr, name, root string) (deleted []uint64) {
	t.Helper()
	out, err := btrfstest.RunAs(t, btrfstest.Cred{UID: privUID, GID: privGID, Caps: caps}, name, root)
	t.Logf("child %s said:\n%s", name, out)
	if err != nil {
		t.Error(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "deleted "); ok {
			id, err := strconv.ParseUint(rest, 10, 64)
			if err != nil {
				t.Fatalf("child printed %q", line)
			}
			deleted = append(deleted, id)
		}
	}
	return deleted
}

// checkPrivLayout checks, as root, what the child left: exactly the given
// results, each a read-only subvolume of privUID's, no other subvolume,
// empty tmp dirs and no cache; and that the subvolumes the child deleted
// are cleaned (no root item left).
func checkPrivLayout(t *testing.T, root string, deleted []uint64, results ...string) {
	t.Helper()
	var want []string
	for _, id := range results {
		want = append(want, resultDir+"/"+id+"/"+snapshotName)
		st, err := os.Stat(filepath.Join(root, resultDir, id, snapshotName))
		if err != nil {
			t.Error(err)
			continue
		}
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != privUID {
			t.Errorf("result %s owned by uid %d, want %d", id, sys.Uid, privUID)
		}
	}
	if got := subvolumes(t, root); !slices.Equal(got, want) {
		t.Errorf("subvolumes left by the child: %v, want %v", got, want)
	}
	if got := entries(t, filepath.Join(root, resultDir)); !slices.Equal(got, results) {
		t.Errorf("results left by the child: %v, want %v", got, results)
	}
	for _, d := range []string{resultTmpDir, cacheTmpDir, cacheDir} {
		if names := entries(t, filepath.Join(root, d)); len(names) != 0 {
			t.Errorf("%s not empty after the child: %v", d, names)
		}
	}
	if len(deleted) == 0 {
		t.Errorf("the child reported no deleted subvolume")
	}
	for _, id := range deleted {
		if privRootItemExists(t, root, id) {
			t.Errorf("subvolume %d: deleted and CompleteDeletes returned, but its root item is still there", id)
		}
	}
}

// privRootItemExists reports whether the root tree still holds the root
// item of subvolume id (tree search, as root).
func privRootItemExists(t *testing.T, root string, id uint64) bool {
	t.Helper()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var args ioctl.SearchArgs
	args.Key = ioctl.SearchKey{
		Tree_id:      ioctl.BTRFS_ROOT_TREE_OBJECTID,
		Min_objectid: id, Max_objectid: id,
		Min_type: ioctl.BTRFS_ROOT_ITEM_KEY, Max_type: ioctl.BTRFS_ROOT_ITEM_KEY,
		Max_offset: math.MaxUint64, Max_transid: math.MaxUint64,
		Nr_items: 1,
	}
	if err := ioctl.TreeSearch(fd, &args); err != nil {
		t.Fatal(err)
	}
	return args.Key.Nr_items > 0
}

// The whole contract as an unprivileged user holding CAP_SYS_ADMIN and
// CAP_CHOWN only (a privileged container), on a normal mount.
func TestPrivilegeSysAdminAndChown(t *testing.T) {
	fsys := privStore(t)
	deleted := runPriv(t, []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_CHOWN}, "store-priv-admin", fsys.Path)
	checkPrivLayout(t, fsys.Path, deleted, "b")
}

// Without capabilities on a normal mount, the store works as on a
// user_subvol_rm_allowed mount: it deletes subvolumes by emptying them
// and rmdir (Linux 4.18), nested and read-only ones included, and the
// deleted subvolumes are cleaned once CompleteDeletes returns (with
// SUBVOL_SYNC_WAIT, Linux 6.13; before, CompleteDeletes cannot see the
// cleaner, see rootless.go).
func TestPrivilegeNoneNormalMount(t *testing.T) {
	if !btrfstest.KernelAtLeast(6, 13) {
		t.Skip("checking that deletes are cleaned without CAP_SYS_ADMIN needs Linux 6.13 (SUBVOL_SYNC_WAIT)")
	}
	fsys := privStore(t)
	deleted := runPriv(t, nil, "store-priv-rm-allowed", fsys.Path)
	checkPrivLayout(t, fsys.Path, deleted, "b", "nested", "nested-ro")
}

// Without capabilities on a user_subvol_rm_allowed mount, everything but
// giving caches away works; waiting for deletes uses SUBVOL_SYNC_WAIT.
func TestPrivilegeNoneRmAllowed(t *testing.T) {
	if !btrfstest.KernelAtLeast(6, 13) {
		t.Skip("waiting for deletes without CAP_SYS_ADMIN needs Linux 6.13 (SUBVOL_SYNC_WAIT)")
	}
	fsys := privStore(t, btrfstest.MountOptions("user_subvol_rm_allowed"))
	deleted := runPriv(t, nil, "store-priv-rm-allowed", fsys.Path)
	checkPrivLayout(t, fsys.Path, deleted, "b", "nested", "nested-ro")
}
