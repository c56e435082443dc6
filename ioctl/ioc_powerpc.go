//go:build ppc || ppc64 || ppc64le || mips || mipsle || mips64 || mips64le || mips64p32 || mips64p32le || sparc || sparc64 || alpha

package ioctl

// The _IOC encoding of powerpc, mips, sparc and alpha (arch/*/include/uapi/
// asm/ioctl.h, all four alike): 13 size bits, 3 direction bits, and
// _IOC_NONE 1, _IOC_READ 2, _IOC_WRITE 4. So FICLONE, _IOW(0x94, 9, int),
// is 0x80049409 here and 0x40049409 with the generic encoding.
const (
	iocFamily   = "powerpc"
	iocSizeBits = 13
	iocNone     = 1
	iocRead     = 2
	iocWrite    = 4
)
