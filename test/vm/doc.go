// Command vm runs the privileged test suite inside a qemu VM with a btrfs
// disk, on a matrix of kernels, for users who are not root, whose kernel lacks
// btrfs, or who must test a particular kernel:
//
//	go run ./test/vm [-arch amd64,arm64,ppc64le,s390x] [-kernels 6.1,6.12]
//	                 [-timeout 20m] [-run REGEX] [-v] [-count N] [-bench REGEX]
//	                 [-short] [packages] [-- test flags]
//
// # From another module
//
// The harness runs any module's tests, not only btrstore's. From the
// directory of your module (which need not require btrstore), with a
// released version, or with the version your go.mod requires:
//
//	go run github.com/btrstore/btrstore/test/vm@VERSION -kernels 6.1,6.12 ./...
//	go run github.com/btrstore/btrstore/test/vm -kernels 6.12 ./...
//
// The packages are listed and their test binaries built (go list, go test -c)
// in the working directory's module; the guest init is built from the
// harness's own source (source.go: the path the compiler recorded, else the
// module cache, fetched with go mod download when the binary was built with
// -trimpath), so it matches the harness whatever the working directory's
// module requires. The harness uses the standard library only, and the guest
// init golang.org/x/sys, which the library requires anyway: being in the
// root module adds nothing to a library user's module graph. Tests that use
// github.com/btrstore/btrstore/btrfstest, the fixture btrstore's own tests
// use, get a fresh btrfs per test in the guest as on the host;
// examples/fixture-consumer is such a module (make vmtest-consumer).
//
// # What it does
//
// Packages default to ./... (those with test files; the harness's own
// packages are left out). For each architecture of -arch (default the
// host's, amd64) each is built with go test -c, CGO_ENABLED=0 and that
// GOARCH (arch.go has what differs per architecture), and for each kernel
// the harness:
//
//   - gets a Debian kernel (amd64: "6.1" = linux-image-cloud-amd64, "6.12" =
//     linux-image-6.12-cloud-amd64, both by default; arm64, ppc64le, s390x:
//     "6.1" = linux-image-cloud-arm64, linux-image-powerpc64le,
//     linux-image-s390x) with apt-get download and dpkg-deb -x into the cache
//     ($VMTEST_CACHE, else $XDG_CACHE_HOME/btrstore-vmtest or
//     ~/.cache/btrstore-vmtest), or uses $VMTEST_KERNEL (+ $VMTEST_MODULES,
//     its lib/modules/<release> directory) instead of the matrix;
//   - resolves the virtio bus and disk modules, loop and btrfs and their
//     dependencies from the modules' modinfo, skipping built-in ones
//     (modules.go);
//   - writes an uncompressed newc initramfs (initramfs.go, cpio.go) with the
//     guest init (./guestinit, see above) as /init, the test binaries and their testdata,
//     the modules, and mkfs.btrfs, btrfs and sh with their shared libraries
//     and loader (tools.go): the host's for the host's architecture, else
//     Debian's btrfs-progs and dash for the guest's, fetched with their
//     dependencies into the cache (tools-<arch>; foreign architectures
//     need dpkg --add-architecture: make deps-cross);
//   - creates a fresh sparse 4 GiB disk image (disk.go);
//   - boots qemu (TCG; VMTEST_ACCEL=kvm for KVM on the host's architecture),
//     streaming the serial console (qemu.go). The guest formats the disk with
//     its mkfs.btrfs, mounts it on /mnt/scratch, sets TMPDIR=/mnt/scratch,
//     runs every binary, prints a result line per binary and the exit
//     sentinel, and powers off (internal/plan has the protocol).
//
// A run without the sentinel (kernel panic, hang until -timeout, init crash)
// fails and prints the last console lines. The tests get BTRFS_TEST_* from the
// host's environment and BTRSTORE_VMTEST=<kernel>. Nothing needs root: apt-get
// download, dpkg-deb -x and qemu TCG all work without.
//
// The exit status is 0 when every package built and passed on every kernel.
package main
