// Package consumer is an example module of its own that tests btrfs code
// with btrstore's public fixture, github.com/btrstore/btrstore/btrfstest,
// as a project outside btrstore would: its test makes subvolumes with
// btrstore's ioctl package on a fresh loop-mounted btrfs per test, as root
// and, in a child process, as an unprivileged user.
//
// On the host (root; BTRFS_TEST_REQUIRE=1 makes the tests fail rather than
// skip where they cannot run):
//
//	go test ./...
//
// In a qemu VM with Debian's 6.12 kernel (no root needed), with btrstore's VM
// harness built from this module's requirement:
//
//	go run github.com/btrstore/btrstore/test/vm -kernels 6.12 ./...
//
// From the repository's root, make test covers this module (it has its own
// go.mod) and make vmtest-consumer runs the second command.
package consumer

// Subvolumes is the name of the directory the tests make their subvolumes
// in: this package exists only for its test.
const Subvolumes = "subvolumes"
