package btrfstest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btrstore/btrstore/internal/loopfs"
	"github.com/btrstore/btrstore/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// Main is what every test package's TestMain calls:
//
//	func TestMain(m *testing.M) { btrfstest.Main(m) }
//
// In a child started by [RunAs] it runs the registered function and exits.
// Otherwise it runs the tests, then exits with status 1 if they leaked a file
// descriptor, a mount or a loop device (see the package documentation), and
// removes the temp root. Main needs no privilege of its own (the leak checks
// read /proc and /sys); call it once, from TestMain.
func Main(m *testing.M) {
	if name, ok := os.LookupEnv(childEnv); ok {
		os.Exit(runChild(name))
	}
	mainStarted = true

	// The runtime opens its poller (an epoll fd and an eventfd) on first use
	// of a pipe or socket and keeps it forever; open it now so that the first
	// RunAs does not look like a leak.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	fdsBefore, err := openFDs()
	if err != nil {
		fmt.Fprintf(os.Stderr, "btrfstest: %v\n", err)
		os.Exit(1)
	}

	code := m.Run()

	rootDir := existingTempRoot() // "" if no test made a filesystem
	if leaks := findLeaks(fdsBefore, rootDir); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "btrfstest: FAIL: the tests leaked:\n\t%s\n", strings.Join(leaks, "\n\t"))
		code = 1
	}
	if rootDir != "" {
		cleanRoot(rootDir)
	}
	os.Exit(code)
}

// openFDs returns the process's open file descriptors and what each refers to.
func openFDs() (map[int]string, error) {
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	fds := make(map[int]string, len(names))
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || uintptr(fd) == dir.Fd() {
			continue
		}
		// An fd closed since Readdirnames has nothing to report.
		if target, err := os.Readlink("/proc/self/fd/" + name); err == nil {
			fds[fd] = target
		}
	}
	return fds, nil
}

// findLeaks describes, one per line, each file descriptor open now that was
// not in fdsBefore (or referred to something else then), and, if rootDir is
// not "", each mount point below rootDir and each loop device bound to a file
// below rootDir.
func findLeaks(fdsBefore map[int]string, rootDir string) []string {
	var leaks []string
	fds, err := openFDs()
	if err != nil {
		return []string{fmt.Sprintf("cannot list file descriptors: %v", err)}
	}
	for _, fd := range slices.Sorted(maps.Keys(fds)) {
		if target := fds[fd]; fdsBefore[fd] != target {
			leaks = append(leaks, fmt.Sprintf("file descriptor %d (%s)", fd, target))
		}
	}
	if rootDir == "" {
		return leaks
	}

	mounts, err := mountsUnder(rootDir)
	if err != nil {
		leaks = append(leaks, fmt.Sprintf("cannot list mounts: %v", err))
	}
	for _, m := range mounts {
		leaks = append(leaks, "mount "+m)
	}
	// A loop device whose filesystem was detached lazily is released when the
	// last user lets go, which may be a moment after the test ends.
	var loops []string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		loops = loopsBoundUnder(rootDir)
		if len(loops) == 0 || len(mounts) > 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range loops {
		leaks = append(leaks, "loop device "+l)
	}
	return leaks
}

// mountsUnder returns the mount points below dir, from /proc/self/mountinfo.
func mountsUnder(dir string) ([]string, error) {
	all, err := mountinfo.Read()
	var mounts []string
	for _, m := range all {
		if strings.HasPrefix(m.MountPoint, dir+"/") {
			mounts = append(mounts, m.MountPoint)
		}
	}
	return mounts, err
}

// loopsBoundUnder returns "/dev/loopN (file)" for each loop device bound to a
// file below dir. Other processes' loop devices do not match.
func loopsBoundUnder(dir string) []string {
	paths, _ := filepath.Glob("/sys/block/loop*")
	var loops []string
	for _, p := range paths {
		dev := "/dev/" + filepath.Base(p)
		if file := loopfs.BackingFile(dev); strings.HasPrefix(file, dir+"/") {
			loops = append(loops, dev+" ("+file+")")
		}
	}
	return loops
}

// cleanRoot removes the temp root after the leak report: it detaches any mount
// left below it first (deepest first), so that removal cannot reach into a
// live filesystem. Loop devices still bound go away with their last user.
func cleanRoot(rootDir string) {
	mounts, err := mountsUnder(rootDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "btrfstest: not removing %s: %v\n", rootDir, err)
		return
	}
	slices.Reverse(mounts)
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			fmt.Fprintf(os.Stderr, "btrfstest: not removing %s: unmount %s: %v\n", rootDir, m, err)
			return
		}
	}
	if err := os.RemoveAll(rootDir); err != nil {
		fmt.Fprintf(os.Stderr, "btrfstest: %v\n", err)
	}
}
