package btrfstest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btrstore/btrstore/internal/loopfs"
	"github.com/btrstore/btrstore/internal/mountinfo"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { Main(m) }

func init() {
	// status prints the child's identity lines from /proc/self/status, then
	// lists each directory given as an argument to show it can reach it.
	Register("status", func(args []string) error {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, key := range []string{"Uid:", "Gid:", "Groups:", "CapEff:", "CapPrm:"} {
				if strings.HasPrefix(line, key) {
					fmt.Println(line)
				}
			}
		}
		for _, dir := range args {
			if _, err := os.ReadDir(dir); err != nil {
				return err
			}
			fmt.Println("listed", dir)
		}
		return nil
	})
	Register("echo", func(args []string) error {
		fmt.Print(strings.Join(args, "|"))
		return nil
	})
	// wait prints its arguments and $BTRFSTEST_TEST_WORD, says ready, and
	// sleeps until killed.
	Register("wait", func(args []string) error {
		fmt.Fprintln(os.Stderr, strings.Join(args, "|"), os.Getenv("BTRFSTEST_TEST_WORD"))
		fmt.Println("ready")
		time.Sleep(time.Hour)
		return nil
	})
	Register("fail", func(args []string) error {
		return errors.New("child failed on purpose: " + strings.Join(args, " "))
	})
}

// childStatus runs the "status" child and returns its /proc/self/status
// fields by key, e.g. "CapEff" → "0000000000000000".
func childStatus(t *testing.T, cred Cred, dirs ...string) map[string]string {
	t.Helper()
	out, err := RunAs(t, cred, "status", dirs...)
	if err != nil {
		t.Fatal(err)
	}
	status := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		key, value, _ := strings.Cut(line, ":")
		status[key] = strings.TrimSpace(value)
	}
	return status
}

func capMask(caps ...uintptr) string {
	var mask uint64
	for _, c := range caps {
		mask |= 1 << c
	}
	return fmt.Sprintf("%016x", mask)
}

// mountOf returns the mount on the mount point dir (the last one, on top,
// if several are), or ok false if dir is not mounted.
func mountOf(t *testing.T, dir string) (m mountinfo.Mount, ok bool) {
	t.Helper()
	mounts, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, mm := range mounts {
		if mm.MountPoint == dir {
			m, ok = mm, true
		}
	}
	return m, ok
}

func TestNewIsEmptyBtrfs(t *testing.T) {
	fs := New(t)

	var st unix.Statfs_t
	if err := unix.Statfs(fs.Path, &st); err != nil {
		t.Fatal(err)
	}
	if uint32(st.Type) != unix.BTRFS_SUPER_MAGIC {
		t.Errorf("statfs(%s).Type = %#x, want BTRFS_SUPER_MAGIC", fs.Path, st.Type)
	}
	var sst unix.Stat_t
	if err := unix.Stat(fs.Path, &sst); err != nil {
		t.Fatal(err)
	}
	if sst.Ino != 256 {
		t.Errorf("inode of %s = %d, want 256 (a subvolume root)", fs.Path, sst.Ino)
	}
	if perm := sst.Mode & 0o7777; perm != 0o755 {
		t.Errorf("mode of %s = %#o, want 0755", fs.Path, perm)
	}
	if entries, err := os.ReadDir(fs.Path); err != nil || len(entries) != 0 {
		t.Errorf("ReadDir(%s) = %v, %v; want empty", fs.Path, entries, err)
	}
	if got := loopfs.BackingFile(fs.Device); got != fs.Image {
		t.Errorf("%s is bound to %q, want %q", fs.Device, got, fs.Image)
	}
	if m, _ := mountOf(t, fs.Path); m.FSType != "btrfs" || m.Source != fs.Device {
		t.Errorf("mountinfo for %s: %+v, want btrfs from %s", fs.Path, m, fs.Device)
	}
}

func TestSize(t *testing.T) {
	const size = 256 << 20
	fs := New(t, Size(size))
	var st unix.Statfs_t
	if err := unix.Statfs(fs.Path, &st); err != nil {
		t.Fatal(err)
	}
	if total := int64(st.Blocks) * int64(st.Bsize); total > size || total < size/2 {
		t.Errorf("filesystem size %d, want about %d", total, size)
	}
}

func TestMountOptions(t *testing.T) {
	fs := New(t, MountOptions("user_subvol_rm_allowed"), MountOptions("compress=zstd:3,commit=7"))
	m, ok := mountOf(t, fs.Path)
	if !ok {
		t.Fatalf("%s not in mountinfo", fs.Path)
	}
	for _, want := range []string{"user_subvol_rm_allowed", "compress=zstd:3", "commit=7"} {
		if !slices.Contains(m.SuperOptions, want) {
			t.Errorf("super options %q lack %s", m.SuperOptions, want)
		}
	}
}

func TestBadMountOptionFails(t *testing.T) {
	RequireRoot(t)
	f := runFake(t, func(tb testing.TB) { New(tb, MountOptions("no_such_option")) })
	if len(f.msgs) != 1 || !strings.HasPrefix(f.msgs[0], "fatal: ") || !strings.Contains(f.msgs[0], "no_such_option") {
		t.Errorf("New with a bad option reported %q, want one fatal naming it", f.msgs)
	}
}

func TestSkipOrFail(t *testing.T) {
	for env, want := range map[string]string{"": "skip: ", "0": "skip: ", "1": "fatal: "} {
		t.Setenv(requireEnv, env)
		f := runFake(t, func(tb testing.TB) { SkipOrFail(tb, "no %s here", "btrfs") })
		if len(f.msgs) != 1 || !strings.HasPrefix(f.msgs[0], want+"no btrfs here") {
			t.Errorf("%s=%q: SkipOrFail reported %q, want %q...", requireEnv, env, f.msgs, want)
		}
	}
}

func TestRemountReadOnly(t *testing.T) {
	fs := New(t)
	fs.Remount(t, unix.MS_RDONLY, "")
	if m, _ := mountOf(t, fs.Path); !slices.Contains(m.Options, "ro") {
		t.Errorf("mount options %q lack ro", m.Options)
	}
	err := os.WriteFile(filepath.Join(fs.Path, "f"), nil, 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write after remount: %v, want EROFS", err)
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	var fs *FS
	t.Run("use", func(t *testing.T) {
		fs = New(t)
		if err := os.WriteFile(filepath.Join(fs.Path, "data"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if fs == nil {
		t.Skip("New skipped in the subtest")
	}
	if _, mounted := mountOf(t, fs.Path); mounted {
		t.Errorf("%s still mounted", fs.Path)
	}
	if got := loopfs.BackingFile(fs.Device); got == fs.Image {
		t.Errorf("%s still bound to %s", fs.Device, got)
	}
	for _, p := range []string{fs.Image, fs.Path, filepath.Dir(fs.Path)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (%v)", p, err)
		}
	}
}

func TestParallelNew(t *testing.T) {
	var (
		mu    sync.Mutex
		inUse = make(map[string]string) // guarded by mu: device → test using it
	)
	for i := range 8 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			fs := New(t, Size(128<<20))
			mu.Lock()
			if other, ok := inUse[fs.Device]; ok {
				t.Errorf("%s handed out to %s too", fs.Device, other)
			}
			inUse[fs.Device] = t.Name()
			mu.Unlock()
			// Runs before New's cleanup detaches the device.
			t.Cleanup(func() {
				mu.Lock()
				delete(inUse, fs.Device)
				mu.Unlock()
			})
			if err := os.Mkdir(filepath.Join(fs.Path, "d"), 0o755); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestAutoclear shows that a dying test process cannot leak a loop device:
// its last close, which exit does too, detaches the device.
func TestAutoclear(t *testing.T) {
	RequireRoot(t)
	rootDir, err := tempRoot()
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(rootDir, "autoclear-image")
	t.Cleanup(func() { os.Remove(image) })
	if err := os.WriteFile(image, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, 1<<20); err != nil {
		t.Fatal(err)
	}
	dev, fd, err := loopfs.Attach(image)
	if err != nil {
		SkipOrFail(t, "attach loop device: %v", err)
	}
	if got := loopfs.BackingFile(dev); got != image {
		unix.Close(fd)
		t.Fatalf("%s bound to %q, want %q", dev, got, image)
	}
	unix.Close(fd)
	if got := loopfs.BackingFile(dev); got == image {
		t.Errorf("%s still bound to %s after its last close", dev, image)
	}
}

func TestRunAsUnprivileged(t *testing.T) {
	fs := New(t)
	st := childStatus(t, Cred{UID: 1000, GID: 1000}, fs.Path)
	if st["Uid"] != "1000\t1000\t1000\t1000" || st["Gid"] != "1000\t1000\t1000\t1000" {
		t.Errorf("child Uid %q Gid %q, want 1000 throughout", st["Uid"], st["Gid"])
	}
	if st["Groups"] != "" {
		t.Errorf("child Groups %q, want none", st["Groups"])
	}
	if st["CapEff"] != capMask() || st["CapPrm"] != capMask() {
		t.Errorf("child CapEff %s CapPrm %s, want none", st["CapEff"], st["CapPrm"])
	}
	if _, ok := st["listed "+fs.Path]; !ok {
		t.Errorf("child did not list %s: %q", fs.Path, st)
	}
}

func TestRunAsWithCapability(t *testing.T) {
	st := childStatus(t, Cred{UID: 1000, GID: 1000, Groups: []uint32{6, 1001}, Caps: []uintptr{unix.CAP_SYS_ADMIN}})
	want := capMask(unix.CAP_SYS_ADMIN)
	if st["CapEff"] != want || st["CapPrm"] != want {
		t.Errorf("child CapEff %s CapPrm %s, want %s", st["CapEff"], st["CapPrm"], want)
	}
	if st["Groups"] != "6 1001" {
		t.Errorf("child Groups %q, want 6 1001", st["Groups"])
	}
}

// TestRunAsRootWithFewCaps checks that uid 0 does not bring back every
// capability at exec, as it would without SECBIT_NOROOT.
func TestRunAsRootWithFewCaps(t *testing.T) {
	for _, caps := range [][]uintptr{nil, {unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE}} {
		st := childStatus(t, Cred{Caps: caps})
		if !strings.HasPrefix(st["Uid"], "0\t") {
			t.Errorf("child Uid %q, want 0", st["Uid"])
		}
		want := capMask(caps...)
		if st["CapEff"] != want || st["CapPrm"] != want {
			t.Errorf("caps %v: child CapEff %s CapPrm %s, want %s", caps, st["CapEff"], st["CapPrm"], want)
		}
	}
}

func TestRunAsPassesArgsAndRunsNoTests(t *testing.T) {
	out, err := RunAs(t, Cred{UID: 1000, GID: 1000}, "echo", "a b", "", "-test.v")
	if err != nil {
		t.Fatal(err)
	}
	if want := "a b||-test.v"; out != want {
		t.Errorf("child stdout %q, want exactly %q", out, want)
	}
}

func TestRunAsChildError(t *testing.T) {
	_, err := RunAs(t, Cred{UID: 1000, GID: 1000}, "fail", "with", "args")
	if err == nil || !strings.Contains(err.Error(), "child failed on purpose: with args") {
		t.Errorf("RunAs error %v, want one containing the child's message", err)
	}
}

func TestStartKillWait(t *testing.T) {
	c := Start(t, "wait", []string{"BTRFSTEST_TEST_WORD=word"}, "a b", "c")
	c.WaitReady(t, 60*time.Second)
	c.Kill()
	if !c.Wait(60 * time.Second) {
		t.Fatal("child still running 60 s after Kill")
	}
	if !c.Killed() {
		t.Errorf("child ended by %v, want SIGKILL", c.State())
	}
	if got, want := string(c.Stderr()), "a b|c word\n"; got != want {
		t.Errorf("child stderr %q, want %q", got, want)
	}
	c.Kill() // a no-op once it has ended
}

func TestStartChildEndsByItself(t *testing.T) {
	c := Start(t, "fail", nil, "x")
	if !c.Wait(60 * time.Second) {
		t.Fatal("child still running after 60 s")
	}
	if c.Killed() || c.State().ExitCode() != 1 {
		t.Errorf("child ended by %v, want exit status 1", c.State())
	}
	select {
	case <-c.Ready():
		t.Error("Ready closed for a child that never said ready")
	default:
	}
	if !strings.Contains(string(c.Stderr()), "child failed on purpose: x") {
		t.Errorf("child stderr %q, want the child's error", c.Stderr())
	}
}

func TestFindLeaks(t *testing.T) {
	dir := t.TempDir()
	before, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	if leaks := findLeaks(before, dir); len(leaks) != 0 {
		t.Fatalf("leaks before leaking anything: %q", leaks)
	}

	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("file descriptor %d (%s)", f.Fd(), dir)
	leaks := findLeaks(before, dir)
	f.Close()
	if !slices.Equal(leaks, []string{want}) {
		t.Errorf("findLeaks with an open fd = %q, want [%q]", leaks, want)
	}

	if os.Geteuid() == 0 {
		mnt := filepath.Join(dir, "mnt")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		leaks := findLeaks(before, dir)
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Fatal(err)
		}
		if want := "mount " + mnt; !slices.Equal(leaks, []string{want}) {
			t.Errorf("findLeaks with a mount = %q, want [%q]", leaks, want)
		}
	}

	if leaks := findLeaks(before, dir); len(leaks) != 0 {
		t.Errorf("leaks after closing and unmounting: %q", leaks)
	}
}

// fakeTB records what New and SkipOrFail report instead of failing or
// skipping the real test, and runs cleanups when told to.
type fakeTB struct {
	testing.TB
	msgs     []string
	cleanups []func()
}

func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(format string, args ...any) {
	f.msgs = append(f.msgs, "error: "+fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.msgs = append(f.msgs, "fatal: "+fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.msgs = append(f.msgs, "skip: "+fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func (f *fakeTB) runCleanups() {
	for _, fn := range slices.Backward(f.cleanups) {
		fn()
	}
	f.cleanups = nil
}

// runFake runs fn on a fakeTB in its own goroutine, so that a fatal or skip
// ends only fn, then runs its cleanups.
func runFake(t *testing.T, fn func(testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.runCleanups()
	return f
}

// BenchmarkNew measures New plus its cleanup.
func BenchmarkNew(b *testing.B) {
	f := &fakeTB{TB: b}
	for b.Loop() {
		New(f)
		f.runCleanups()
		if len(f.msgs) > 0 {
			b.Fatal(f.msgs)
		}
	}
}
