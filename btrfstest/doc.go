// Package btrfstest is the fixture every privileged btrstore test uses: a fresh,
// empty, loop-mounted btrfs per test, child processes with chosen credentials,
// and a TestMain that fails the package when the fixture's resources leak.
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
// the image. New is safe to call from parallel tests.
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
// message naming what is missing. With BTRFS_TEST_REQUIRE=1 in the environment,
// as in CI and in the VM harness, the same condition fails the test instead, so
// that a broken setup cannot pass by skipping everything. Use [SkipOrFail] for
// checks of your own.
//
// # Child processes
//
// Privilege tests need a process with other credentials than the root test
// binary. A test package registers functions with [Register] (from init or a
// package-level var) and calls [Main] from its TestMain:
//
//	func TestMain(m *testing.M) { btrfstest.Main(m) }
//
// [RunAs] re-executes the test binary (through /proc/self/exe, so that the
// child does not need search permission on go test's private build directory)
// with the environment variable BTRFSTEST_CHILD set to the function's name, the
// requested uid, gid and groups, and exactly the requested capabilities. [Main]
// sees the variable before running any test, calls the function with the
// arguments, and exits: 0, or 1 with the error on stderr. RunAs returns the
// child's stdout, or an error that includes its stderr. [Start] starts the
// same kind of child with the test's own identity and does not wait: the
// crash tests kill it ([Child.Kill], [Child.Wait]), once it has written
// "ready" ([Child.Ready]) or at any other moment. Nothing outside this
// package names the variable.
//
// # Leak checks
//
// Outside a child, [Main] runs the tests and then fails the package (exit
// status 1, with one line per leak on stderr) if, compared with before the
// tests, the process holds a new file descriptor, if a mount below the temp root
// is still present, or if a loop device is still bound to one of the fixture's
// images. Loop devices and mounts of other processes are not counted. Leaked
// mounts are then detached so that the machine is left clean.
package btrfstest
