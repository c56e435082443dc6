package btrfstest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/btrstore/btrstore/internal/kversion"
	"github.com/btrstore/btrstore/internal/loopfs"
	"golang.org/x/sys/unix"
)

// requireEnv names the variable that turns skips into failures.
const requireEnv = "BTRFS_TEST_REQUIRE"

// FS is a mounted btrfs made by [New].
type FS struct {
	Path   string // mount point: the top-level subvolume (id 5) of the new filesystem
	Device string // /dev/loopN
	Image  string // the sparse image file

	dir     string // holds Image and Path; removed last
	loopFD  int    // open on Device until teardown, -1 once closed
	mounted bool
}

type config struct {
	size      int64
	mountData []string
}

// Option changes how [New] makes the filesystem.
type Option func(*config)

// Size sets the size of the sparse image in bytes. The default is 1 GiB;
// mkfs.btrfs refuses images smaller than about 110 MiB.
func Size(bytes int64) Option { return func(c *config) { c.size = bytes } }

// MountOptions adds a comma-separated list of btrfs mount options, passed as
// mount data, e.g. "user_subvol_rm_allowed". Repeated options accumulate. The
// data holds filesystem options only: mount flags such as noatime or nodev are
// not accepted there (they are mount(2) flags), and options the kernel rejects
// fail the test rather than skip it.
func MountOptions(opts string) Option {
	return func(c *config) {
		if opts != "" {
			c.mountData = append(c.mountData, opts)
		}
	}
}

// SkipOrFail skips the test with the formatted reason, or fails it when
// BTRFS_TEST_REQUIRE=1 is set. Like t.Skipf and t.Fatalf, it must be called
// from the test's goroutine. No privilege; any kernel.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf(format+" ("+requireEnv+"=1, so this fails instead of skipping)", args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot calls [SkipOrFail] unless the effective uid is 0. Call it from
// the test's goroutine.
func RequireRoot(t testing.TB) {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		SkipOrFail(t, "btrfstest: needs root, running as euid %d", euid)
	}
}

// root is the per-process directory holding every image and mount point,
// made on first use by New and removed by Main.
var root struct {
	mu  sync.Mutex // guards dir
	dir string
}

// tempRoot returns the temp root, creating it the first time.
func tempRoot() (string, error) {
	root.mu.Lock()
	defer root.mu.Unlock()
	if root.dir != "" {
		return root.dir, nil
	}
	dir, err := os.MkdirTemp("", "btrfstest-")
	if err != nil {
		return "", err
	}
	// MkdirTemp makes 0700; children running as other users must get through.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	// The kernel reports mount points and loop backing files by their real
	// path, which the leak checks compare against.
	if root.dir, err = filepath.EvalSymlinks(dir); err != nil {
		return "", err
	}
	return root.dir, nil
}

// existingTempRoot returns the temp root, or "" if New never made one.
func existingTempRoot() string {
	root.mu.Lock()
	defer root.mu.Unlock()
	return root.dir
}

// New returns a fresh, empty, mounted btrfs, and removes all of it (mount,
// loop device, image) in t.Cleanup. Every user can reach Path, whose mode is
// 0755. It skips or fails the test through [SkipOrFail] when the machine
// cannot provide one.
//
// The cleanup unmounts the filesystem, so the test must have closed the files
// it opened in it by then; a filesystem still busy after a second is detached
// lazily, and the test fails if its loop device is still held 5 s later.
//
// New needs root, a kernel with btrfs and loop devices, and mkfs.btrfs in
// PATH. It is safe to call from parallel tests, from the test's goroutine.
func New(t testing.TB, opts ...Option) *FS {
	t.Helper()
	cfg := config{size: 1 << 30}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.size <= 0 {
		t.Fatalf("btrfstest: image size %d is not positive", cfg.size)
	}

	RequireRoot(t)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		SkipOrFail(t, "btrfstest: no loop device support (%v); load the loop module", err)
	}
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		SkipOrFail(t, "btrfstest: mkfs.btrfs not found in PATH; install btrfs-progs")
	}

	rootDir, err := tempRoot()
	if err != nil {
		t.Fatalf("btrfstest: make temp root: %v", err)
	}
	dir, err := os.MkdirTemp(rootDir, "fs-")
	if err != nil {
		t.Fatalf("btrfstest: %v", err)
	}
	fsys := &FS{
		Path:   filepath.Join(dir, "mnt"),
		Image:  filepath.Join(dir, "image"),
		dir:    dir,
		loopFD: -1,
	}
	// Registered before anything else exists, so that every later failure,
	// skip or panic is cleaned up; teardown copes with a half-made FS.
	t.Cleanup(func() { fsys.teardown(t) })

	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("btrfstest: %v", err)
	}
	if err := os.Mkdir(fsys.Path, 0o755); err != nil {
		t.Fatalf("btrfstest: %v", err)
	}
	if err := loopfs.Format(fsys.Image, cfg.size); err != nil {
		t.Fatalf("btrfstest: %v", err)
	}
	fsys.Device, fsys.loopFD, err = loopfs.Attach(fsys.Image)
	if err != nil {
		SkipOrFail(t, "btrfstest: attach loop device: %v", err)
	}

	data := strings.Join(cfg.mountData, ",")
	if err := unix.Mount(fsys.Device, fsys.Path, "btrfs", 0, data); err != nil {
		if err == unix.EINVAL && data != "" {
			// Most likely the test's options are wrong: skipping would hide that.
			t.Fatalf("btrfstest: mount -t btrfs -o %q %s %s: %v (options rejected? see dmesg)",
				data, fsys.Device, fsys.Path, err)
		}
		SkipOrFail(t, "btrfstest: mount -t btrfs -o %q %s %s: %v (%s)",
			data, fsys.Device, fsys.Path, err, btrfsSupportHint())
	}
	fsys.mounted = true

	// The fresh root directory is 0755 already; only chmod (which costs a
	// transaction) if mkfs ever changes that.
	if st, err := os.Stat(fsys.Path); err != nil {
		t.Fatalf("btrfstest: %v", err)
	} else if st.Mode().Perm() != 0o755 {
		if err := os.Chmod(fsys.Path, 0o755); err != nil {
			t.Fatalf("btrfstest: %v", err)
		}
	}
	return fsys
}

// btrfsSupportHint explains a failed mount as far as /proc/filesystems can.
func btrfsSupportHint() string {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Sprintf("cannot check /proc/filesystems: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(strings.TrimPrefix(line, "nodev")) == "btrfs" {
			return "btrfs is in /proc/filesystems; see dmesg"
		}
	}
	return "btrfs is not in /proc/filesystems: the kernel lacks btrfs or could not load the module"
}

// Remount changes the mount flags and options of the filesystem, e.g. flags
// unix.MS_RDONLY. MS_REMOUNT is added; data holds btrfs options to change.
// It fails the test if the kernel refuses. Root; call it from the test's
// goroutine, not while another goroutine remounts the same FS.
func (f *FS) Remount(t testing.TB, flags uintptr, data string) {
	t.Helper()
	if err := unix.Mount("", f.Path, "", unix.MS_REMOUNT|flags, data); err != nil {
		t.Fatalf("btrfstest: remount %s with flags %#x data %q: %v", f.Path, flags, data, err)
	}
}

// teardown undoes whatever New got done. Errors fail the test, as a fixture
// that cannot clean up leaves the machine in a state later runs trip over.
func (f *FS) teardown(t testing.TB) {
	t.Helper()
	if f.mounted {
		detached, err := loopfs.Unmount(f.Path)
		if err != nil {
			t.Errorf("btrfstest: unmount %s: %v", f.Path, err)
			// Removing the directory below would fail or, worse, recurse
			// into a live filesystem; leave it for Main's leak report.
			return
		}
		if detached {
			t.Logf("btrfstest: %s stayed busy; detached it lazily (is a file in it still open?)", f.Path)
		}
	}
	if f.loopFD >= 0 {
		if err := loopfs.Detach(f.loopFD, f.Device, f.Image); err != nil {
			t.Errorf("btrfstest: %v", err)
		}
		f.loopFD = -1
	}
	for _, p := range []string{f.Image, f.Path, f.dir} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("btrfstest: %v", err)
		}
	}
}

// KernelAtLeast reports whether the running kernel is at least
// major.minor (false if uname fails), for tests that expect a feature from
// that version on. No privilege; safe for concurrent use.
func KernelAtLeast(major, minor int) bool {
	v, err := kversion.Running()
	return err == nil && v.AtLeast(major, minor)
}
