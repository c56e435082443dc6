// Package loopfs makes loop-mounted btrfs filesystems from image files:
// the test fixture and the examples use it. It binds loop devices by ioctl
// (LOOP_CTL_GET_FREE, LOOP_CONFIGURE) and formats images with mkfs.btrfs.
package loopfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/btrstore/btrstore/internal/beneath"
	"golang.org/x/sys/unix"
)

// Attach binds image to a free loop device and returns the device's path
// and a descriptor open on it.
//
// The device has LO_FLAGS_AUTOCLEAR: the kernel detaches it at its last close.
// The caller keeps the returned descriptor open while the filesystem is
// mounted and closes it in teardown, so a test process that dies at any point
// after Attach leaves no bound device behind (a mount it made stays, as
// mounts outlive processes, and the device goes with its unmount).
func Attach(image string) (dev string, loopFD int, err error) {
	imageFD, err := beneath.Openat(unix.AT_FDCWD, image, unix.O_RDWR)
	if err != nil {
		return "", -1, &os.PathError{Op: "open", Path: image, Err: err}
	}
	// The loop device holds its own reference to the file once bound.
	defer unix.Close(imageFD)
	ctlFD, err := beneath.Openat(unix.AT_FDCWD, "/dev/loop-control", unix.O_RDWR)
	if err != nil {
		return "", -1, &os.PathError{Op: "open", Path: "/dev/loop-control", Err: err}
	}
	defer unix.Close(ctlFD)

	// Other goroutines and processes race for the same free device: whoever
	// binds it second gets EBUSY and asks for another one.
	const attempts = 100
	for range attempts {
		n, err := unix.IoctlRetInt(ctlFD, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", -1, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev = fmt.Sprintf("/dev/loop%d", n)
		loopFD, err = beneath.Openat(unix.AT_FDCWD, dev, unix.O_RDWR)
		if err != nil {
			return "", -1, &os.PathError{Op: "open", Path: dev, Err: err}
		}
		err = bindLoop(loopFD, imageFD, image)
		if err == nil {
			return dev, loopFD, nil
		}
		unix.Close(loopFD)
		if !errors.Is(err, unix.EBUSY) {
			return "", -1, fmt.Errorf("%s: %w", dev, err)
		}
	}
	return "", -1, fmt.Errorf("no free loop device after %d attempts: each was taken by another process first", attempts)
}

// bindLoop binds the loop device loopFD to imageFD with autoclear set.
func bindLoop(loopFD, imageFD int, image string) error {
	cfg := unix.LoopConfig{Fd: uint32(imageFD)}
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	// For losetup's listing only; the kernel truncates, so do we.
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], image)
	err := unix.IoctlLoopConfigure(loopFD, &cfg)
	if err != unix.EINVAL && err != unix.ENOTTY {
		if err != nil {
			return fmt.Errorf("LOOP_CONFIGURE: %w", err)
		}
		return nil
	}
	// Kernels before 5.8 lack LOOP_CONFIGURE: bind, then set the flags.
	if err := unix.IoctlSetInt(loopFD, unix.LOOP_SET_FD, imageFD); err != nil {
		return fmt.Errorf("LOOP_SET_FD: %w", err)
	}
	if err := unix.IoctlLoopSetStatus64(loopFD, &cfg.Info); err != nil {
		unix.IoctlSetInt(loopFD, unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("LOOP_SET_STATUS64: %w", err)
	}
	return nil
}

// Detach detaches the loop device dev, open as loopFD, from image, closes
// loopFD, and waits until the kernel has really let go of the image.
//
// Holding loopFD open since attach guarantees the device is still ours: a bound
// device cannot be rebound by anyone else. LOOP_CLR_FD detaches at the last
// close, which is normally our close right below; if something else still has
// the device open (a lazily detached filesystem), wait for it briefly.
func Detach(loopFD int, dev, image string) error {
	err := unix.IoctlSetInt(loopFD, unix.LOOP_CLR_FD, 0)
	unix.Close(loopFD)
	if err != nil && err != unix.ENXIO { // ENXIO: already detached
		return fmt.Errorf("LOOP_CLR_FD %s: %w", dev, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for BackingFile(dev) == image {
		if time.Now().After(deadline) {
			return fmt.Errorf("loop device %s still bound to %s: something still has it open", dev, image)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// BackingFile returns the file the loop device dev (/dev/loopN) is bound
// to, or "" if it is not bound. A deleted file is reported by its old path.
func BackingFile(dev string) string {
	b, err := os.ReadFile("/sys/block/" + strings.TrimPrefix(dev, "/dev/") + "/loop/backing_file")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), " (deleted)")
}

// Format creates a sparse image of the given size at path and formats it
// with mkfs.btrfs (the one step that needs the btrfs-progs binary), with
// 4 KiB sectors whatever the page size.
func Format(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// Formatting the file rather than the loop device saves the discard that
	// mkfs issues on block devices. -s 4096: btrfs-progs before 6.7 make
	// the sector size the page size, 64 KiB on Debian's ppc64el kernels,
	// where a small filesystem then fills differently (store's
	// TestFullDisk, 256 MiB: ENOSPC creating a subvolume after a build
	// filled the data space, where amd64's has room); 4 KiB sectors on a
	// 64 KiB-page kernel (subpage) are read-write since Linux 5.15, and
	// the default from btrfs-progs 6.7. The same layout on every
	// architecture.
	out, err := exec.Command("mkfs.btrfs", "-q", "-f", "-s", "4096", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.btrfs -q -f -s 4096 %s: %v\n%s", path, err, out)
	}
	return nil
}

// Unmount unmounts dir, retrying for a while when it is busy (a process may
// still be closing files in it) and then detaching it lazily. A dir that is no
// longer a mount point (the test unmounted it) is fine.
func Unmount(dir string) (detached bool, err error) {
	for range 100 {
		err = unix.Unmount(dir, 0)
		switch err {
		case nil, unix.EINVAL:
			return false, nil
		case unix.EBUSY:
			time.Sleep(10 * time.Millisecond)
			continue
		}
		return false, err
	}
	return true, unix.Unmount(dir, unix.MNT_DETACH)
}
