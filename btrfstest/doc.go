// Package btrfstest is a test fixture for Go code that works on btrfs: a
// fresh, empty, loop-mounted btrfs per test, a skip-or-fail rule for machines
// that cannot provide one, child processes with a chosen uid, gid, groups and
// capabilities, and a TestMain that fails the package when the fixture's
// resources leak. btrstore's own privileged tests use it; so can yours:
//
//	import "github.com/btrstore/btrstore/btrfstest"
//
//	func TestMain(m *testing.M) { btrfstest.Main(m) }
//
//	func TestMyCode(t *testing.T) {
//		fsys := btrfstest.New(t) // skipped (or failed, see below) unless it can run
//		// ... work below fsys.Path, a new btrfs's top-level subvolume ...
//	}
//
// It depends on the standard library and golang.org/x/sys only, and runs no
// btrfs command but mkfs.btrfs. example_test.go is a complete, runnable
// example; examples/fixture-consumer in the btrstore repository is a module
// of its own that uses it, on the host and in the VM harness (test/vm).
//
// # Requirements
//
// Linux, root (effective uid 0), a kernel with btrfs and loop devices (any kernel btrfs
// supports: LOOP_CONFIGURE is used from 5.8, LOOP_SET_FD before), and
// mkfs.btrfs (btrfs-progs) in PATH. Where any of that is missing, [New]
// skips or fails the test; see below.
//
// # Filesystems
//
// [New] creates a sparse image (1 GiB unless [Size] says otherwise), formats it
// with mkfs.btrfs, binds it to a free loop device by ioctl (LOOP_CONFIGURE, with
// LO_FLAGS_AUTOCLEAR so that a killed test process cannot leak the device) and
// mounts it with mount(2), passing [MountOptions] as mount data. The returned
// [FS] is the top-level subvolume (id 5) of the new filesystem. Everything is
// removed in t.Cleanup, whether the test passed, failed or panicked: unmount
// (retrying briefly on EBUSY, then MNT_DETACH), detach the loop device, delete
// the image. New is safe to call from parallel tests (t.Parallel); each call
// makes its own filesystem. A test may call it more than once.
//
// Images and mount points live under one temp root per test process, created in
// [os.TempDir] (so TMPDIR chooses the disk) with mode 0755 rather than
// t.TempDir's 0700, so that an unprivileged child started by [RunAs] can reach
// the mount.
//
// # Skipping and BTRFS_TEST_REQUIRE
//
// A test whose environment cannot run it (not root, no /dev/loop-control, no
// mkfs.btrfs in PATH, no btrfs in the kernel, mount refused) is skipped with a
// message naming what is missing, so that `go test ./...` passes for a
// developer without root. With BTRFS_TEST_REQUIRE=1 in the environment, as in
// CI and in the VM harness, the same condition fails the test instead, so
// that a broken setup cannot pass by skipping everything. Use [SkipOrFail]
// for checks of your own (a kernel feature, a tool), [RequireRoot] for tests
// that need root without a filesystem, and [KernelAtLeast] to tell an old
// kernel (skip) from a missing feature on a new one (fail).
//
// # Leak checks
//
// [Main] is the test package's TestMain. Outside a child, it runs the tests and
// then fails the package (exit status 1, with one line per leak on stderr) if,
// compared with before the tests, the process holds a new file descriptor, if a
// mount below the temp root is still present, or if a loop device is still
// bound to one of the fixture's images. Loop devices and mounts of other
// processes are not counted. Leaked mounts are then detached and the temp
// root removed, so that the machine is left clean. [New] works without Main,
// but then nothing checks for leaks and the empty temp root is left in
// [os.TempDir]; [RunAs] and [Start] need Main.
//
// # Child processes
//
// Privilege tests need a process with other credentials than the root test
// binary. A test package registers functions with [Register] (from init or a
// package-level var, so that the re-executed binary has them too) and calls
// [Main] from its TestMain.
//
// [RunAs] re-executes the test binary (through /proc/self/exe, so that the
// child does not need search permission on go test's private build directory)
// with the requested uid, gid and groups, and exactly the requested
// capabilities ([Cred]; SECBIT_NOROOT keeps uid 0 from regaining the rest).
// [Main] sees, before running any test, that it is in a child, calls the
// registered function with the arguments, and exits: 0, or 1 with the error
// on stderr. RunAs returns the child's stdout, or an error that includes its
// stderr.
//
// [Start] starts the same kind of child with the test's own identity and does
// not wait, for tests that kill a process mid-operation: [Child.WaitReady]
// waits for the child to write "ready" on stdout, [Child.Kill] sends SIGKILL,
// [Child.Wait] reaps it, and [Child.Killed], [Child.State], [Child.Stderr]
// and [Child.Raced] (a race report in the child) say how it ended. A child
// still running at the end of its test is killed.
//
// The children are found by an environment variable that only this package
// reads and sets; they get the test's environment, and -test.run=^$ as their
// only test flag, so that a child never runs tests.
package btrfstest
