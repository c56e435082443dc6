package kernel

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"golang.org/x/sys/unix"
)

var probes = []struct {
	name  string
	probe func(string) error
	p     *probe
}{
	{"ProbeSnapDestroyV2", ProbeSnapDestroyV2, snapDestroyV2},
	{"ProbeSubvolSyncWait", ProbeSubvolSyncWait, subvolSyncWait},
	{"ProbeGetSubvolInfo", ProbeGetSubvolInfo, getSubvolInfo},
}

func resetProbes() {
	for _, p := range probes {
		p.p.reset()
	}
}

// checkProbeResult checks the result of a probe on btrfs against the running
// kernel: nil on a kernel that is new enough, ErrNotSupported naming the
// minimum otherwise (or nil: distributions backport).
func checkProbeResult(t *testing.T, p *probe, err error) {
	t.Helper()
	v, verr := Running()
	if verr != nil {
		t.Fatal(verr)
	}
	switch {
	case err == nil:
		if v.Compare(p.min) < 0 {
			t.Logf("%s works on %s, older than %s: backported", p.op, v, p.min)
		}
	case errors.Is(err, ErrNotSupported):
		if v.Compare(p.min) >= 0 {
			t.Errorf("%s: kernel %s is at least %s but the probe says %v", p.op, v, p.min, err)
		}
		want := p.op + " needs Linux " + strings.TrimSuffix(p.min.String(), ".0")
		if !strings.Contains(err.Error(), want) || !errors.Is(err, ioctl.ErrNotSupported) {
			t.Errorf("%s: error %q does not say %q", p.op, err, want)
		}
	default:
		t.Errorf("%s: unexpected error %v", p.op, err)
	}
}

func TestProbesOnBtrfs(t *testing.T) {
	fsys := btrfstest.New(t)
	resetProbes()
	file := filepath.Join(fsys.Path, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, pr := range probes {
		checkProbeResult(t, pr.p, pr.probe(fsys.Path))
		// Cached now: a regular file gets the same answer.
		if !pr.p.done {
			t.Errorf("%s did not cache its answer", pr.name)
		}
		checkProbeResult(t, pr.p, pr.probe(file))
		// The cache does not hide that a path is missing.
		if err := pr.probe(filepath.Join(fsys.Path, "missing")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s(missing) = %v, want fs.ErrNotExist", pr.name, err)
		}
	}
}

func TestProbesNotBtrfs(t *testing.T) {
	resetProbes()
	// Not t.TempDir(): under the VM harness TMPDIR is on btrfs.
	for _, path := range []string{"/proc", "/dev"} {
		for _, pr := range probes {
			err := pr.probe(path)
			if !errors.Is(err, ioctl.ErrNotBtrfs) || errors.Is(err, ErrNotSupported) {
				t.Errorf("%s(%s) = %v, want ioctl.ErrNotBtrfs and not ErrNotSupported", pr.name, path, err)
			}
			if pr.p.done {
				t.Errorf("%s(%s) cached its answer", pr.name, path)
			}
		}
	}
	// Not poisoned: btrfs still gets the real answer.
	fsys := btrfstest.New(t)
	for _, pr := range probes {
		checkProbeResult(t, pr.p, pr.probe(fsys.Path))
	}
}

func TestProbeRefusesSpecialFiles(t *testing.T) {
	fsys := btrfstest.New(t)
	fifo := filepath.Join(fsys.Path, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	resetProbes()
	for _, pr := range probes {
		for _, path := range []string{fifo, "/dev/null"} {
			err := pr.probe(path)
			if !errors.Is(err, errNotDirOrFile) || errors.Is(err, ErrNotSupported) {
				t.Errorf("%s(%s) = %v, want a refusal", pr.name, path, err)
			}
			if pr.p.done {
				t.Errorf("%s(%s) cached its answer", pr.name, path)
			}
		}
	}
}

// TestProbeSnapDestroyV2DeletesNothing probes, uncached, on a filesystem
// with subvolumes, also read-only, and checks that they are all still there.
func TestProbeSnapDestroyV2DeletesNothing(t *testing.T) {
	fsys := btrfstest.New(t)
	subs := []string{filepath.Join(fsys.Path, "a"), filepath.Join(fsys.Path, "b")}
	for _, s := range subs {
		if err := ioctl.CreateSubvolume(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{fsys.Path, subs[0], subs[1]} {
		snapDestroyV2.reset()
		checkProbeResult(t, snapDestroyV2, ProbeSnapDestroyV2(dir))
	}
	fsys.Remount(t, unix.MS_RDONLY, "")
	snapDestroyV2.reset()
	checkProbeResult(t, snapDestroyV2, ProbeSnapDestroyV2(fsys.Path))
	fsys.Remount(t, 0, "")
	if err := ioctl.Sync(fsys.Path); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if ok, err := ioctl.IsSubvolume(s); !ok || err != nil {
			t.Errorf("after the probes IsSubvolume(%s) = %v, %v", s, ok, err)
		}
	}
}

func TestProbesConcurrent(t *testing.T) {
	fsys := btrfstest.New(t)
	resetProbes()
	var wg sync.WaitGroup
	for range 8 {
		for _, pr := range probes {
			wg.Go(func() { checkProbeResult(t, pr.p, pr.probe(fsys.Path)) })
		}
	}
	wg.Wait()
}

func TestNotSupportedError(t *testing.T) {
	err := error(&notSupportedError{op: "BTRFS_IOC_SNAP_DESTROY_V2", min: Version{5, 7, 0}, running: Version{5, 4, 0}})
	want := "BTRFS_IOC_SNAP_DESTROY_V2 needs Linux 5.7 (running 5.4.0): not supported by this kernel"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
	for _, target := range []error{ErrNotSupported, ioctl.ErrNotSupported, unix.ENOTTY} {
		if !errors.Is(err, target) {
			t.Errorf("error does not match %v", target)
		}
	}
	if errors.Is(err, ErrMissingPrivilege) || errors.Is(err, fs.ErrPermission) {
		t.Error("not-supported error matches a privilege error")
	}
}
