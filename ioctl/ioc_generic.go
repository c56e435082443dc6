//go:build !(ppc || ppc64 || ppc64le || mips || mipsle || mips64 || mips64le || mips64p32 || mips64p32le || sparc || sparc64 || alpha)

package ioctl

// The generic _IOC encoding (include/uapi/asm-generic/ioctl.h), used by
// x86, arm, arm64, riscv, loongarch, s390 and every architecture not in
// ioc_powerpc.go: 14 size bits, 2 direction bits, _IOC_NONE 0.
const (
	iocFamily   = "generic"
	iocSizeBits = 14
	iocNone     = 0
	iocWrite    = 1
	iocRead     = 2
)
