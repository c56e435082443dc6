package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
)

// Arch is what the harness needs to know about a guest architecture: how to
// build for it, which Debian packages hold its kernel and tools, and how qemu
// boots it. The guest is always TCG-emulated unless it is the host's own
// architecture and VMTEST_ACCEL=kvm.
type Arch struct {
	GOARCH  string // as go build knows it; also the -arch name
	Debian  string // dpkg architecture
	Triplet string // Debian multiarch directory: /lib/<triplet>

	QEMU        string   // qemu-system-* binary
	QEMUPackage string   // Debian package that provides it
	Machine     []string // machine and CPU arguments for TCG
	Console     string   // the kernel's console device for qemu's -serial stdio
	DiskDevice  string   // qemu -device model for the virtio disk

	// Modules are what the guest needs beyond its kernel: the virtio bus
	// and disk, loop devices for the btrfs test fixture, and btrfs itself.
	// The harness adds their dependencies and skips built-in ones.
	Modules []string
	// Kernels maps -kernels names to Debian kernel packages (a metapackage
	// is resolved to the image package it depends on). DefaultKernels is
	// the matrix when -kernels is not given.
	Kernels        map[string]string
	DefaultKernels []string
	// ImageGlob finds the bootable image in an unpacked kernel package:
	// qemu boots vmlinuz on x86 and s390x, arm64's vmlinuz is the
	// uncompressed Image in Debian's package, ppc64 boots the ELF vmlinux.
	ImageGlob string
}

// arches are the architectures the harness can boot. amd64 runs the host's
// tools in the guest; the others run Debian's btrfs-progs for that
// architecture (tools.go).
var arches = []Arch{
	{
		GOARCH: "amd64", Debian: "amd64", Triplet: "x86_64-linux-gnu",
		QEMU: "qemu-system-x86_64", QEMUPackage: "qemu-system-x86",
		Machine: []string{"-cpu", "qemu64"},
		Console: "ttyS0", DiskDevice: "virtio-blk-pci",
		// virtio_pci is a module in Debian's 6.1 cloud kernel.
		Modules: []string{"virtio_pci", "virtio_blk", "loop", "btrfs"},
		Kernels: map[string]string{
			"6.1":  "linux-image-cloud-amd64",
			"6.12": "linux-image-6.12-cloud-amd64",
		},
		DefaultKernels: []string{"6.1", "6.12"},
		ImageGlob:      "vmlinuz-*",
	},
	{
		GOARCH: "arm64", Debian: "arm64", Triplet: "aarch64-linux-gnu",
		QEMU: "qemu-system-aarch64", QEMUPackage: "qemu-system-arm",
		// cortex-a57 rather than max: max's pointer authentication is
		// expensive to emulate.
		Machine: []string{"-machine", "virt", "-cpu", "cortex-a57"},
		Console: "ttyAMA0", DiskDevice: "virtio-blk-pci",
		Modules: []string{"virtio_pci", "virtio_blk", "loop", "btrfs"},
		Kernels: map[string]string{
			"6.1": "linux-image-cloud-arm64",
		},
		DefaultKernels: []string{"6.1"},
		ImageGlob:      "vmlinuz-*",
	},
	{
		GOARCH: "ppc64le", Debian: "ppc64el", Triplet: "powerpc64le-linux-gnu",
		QEMU: "qemu-system-ppc64", QEMUPackage: "qemu-system-ppc",
		// TCG implements none of the speculation-barrier capabilities that
		// pseries asks for by default: say so, rather than be warned.
		Machine: []string{"-machine", "pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off", "-cpu", "power9"},
		Console: "hvc0", DiskDevice: "virtio-blk-pci",
		Modules: []string{"virtio_pci", "virtio_blk", "loop", "btrfs"},
		Kernels: map[string]string{
			"6.1": "linux-image-powerpc64le",
		},
		DefaultKernels: []string{"6.1"},
		ImageGlob:      "vmlinux-*",
	},
	{
		GOARCH: "s390x", Debian: "s390x", Triplet: "s390x-linux-gnu",
		QEMU: "qemu-system-s390x", QEMUPackage: "qemu-system-misc",
		// -serial stdio becomes the SCLP VT220 console; virtio_ccw is built
		// in (CONFIG_S390_GUEST).
		Machine: []string{"-machine", "s390-ccw-virtio"},
		Console: "ttysclp0", DiskDevice: "virtio-blk-ccw",
		Modules: []string{"virtio_blk", "loop", "btrfs"},
		Kernels: map[string]string{
			"6.1": "linux-image-s390x",
		},
		DefaultKernels: []string{"6.1"},
		ImageGlob:      "vmlinuz-*",
	},
}

// lookupArch returns the architecture called name (a GOARCH).
func lookupArch(name string) (Arch, error) {
	for _, a := range arches {
		if a.GOARCH == name {
			return a, nil
		}
	}
	var names []string
	for _, a := range arches {
		names = append(names, a.GOARCH)
	}
	return Arch{}, fmt.Errorf("unknown -arch %q: want one of %s", name, strings.Join(names, ", "))
}

// native reports whether the guest runs the host's architecture: its guest
// gets the host's mkfs.btrfs and btrfs, and VMTEST_ACCEL=kvm can apply.
func (a Arch) native() bool { return a.GOARCH == runtime.GOARCH }

// aptName qualifies a Debian package name with the architecture, for apt-get
// and apt-cache ("btrfs-progs:s390x"), unless it already is.
func (a Arch) aptName(pkg string) string {
	if strings.Contains(pkg, ":") || a.native() {
		return pkg
	}
	return pkg + ":" + a.Debian
}

// kernelNames lists the -kernels names the architecture knows, for messages.
func (a Arch) kernelNames() string {
	var names []string
	for n := range a.Kernels {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
