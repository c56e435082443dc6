package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Kernel is a bootable kernel and the modules built for it.
type Kernel struct {
	Name       string // as asked for: "6.1", "6.12", or the VMTEST_KERNEL path
	Release    string // uname -r, the directory under lib/modules
	Image      string // what qemu boots: vmlinuz, or vmlinux on ppc64
	ModulesDir string // lib/modules/<release>; "" if the kernel needs no modules
	Config     string // its .config, "" if unknown
}

// cacheDir is where fetched kernels are kept between runs.
func cacheDir() (string, error) {
	if d := os.Getenv("VMTEST_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir() // $XDG_CACHE_HOME or ~/.cache
	if err != nil {
		return "", fmt.Errorf("no cache directory: set VMTEST_CACHE: %w", err)
	}
	return filepath.Join(d, "btrstore-vmtest"), nil
}

// getKernel returns the kernel of architecture a called name: VMTEST_KERNEL
// if set, else the Debian kernel, downloaded and unpacked into the cache on
// first use.
func getKernel(a Arch, name string) (Kernel, error) {
	if img := os.Getenv("VMTEST_KERNEL"); img != "" {
		return customKernel(img, os.Getenv("VMTEST_MODULES"))
	}
	cache, pkg, err := kernelPackage(a, name)
	if err != nil {
		return Kernel{}, err
	}
	image, err := resolvePackage(cache, pkg)
	if err != nil {
		return Kernel{}, err
	}
	dir := filepath.Join(cache, cacheName(image))
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := fetchPackages(dir, image); err != nil {
			return Kernel{}, err
		}
	}
	return unpackedKernel(a, name, dir)
}

// cachedKernel returns the kernel called name if it is already in the cache,
// without apt: the harness's tests use it to skip quickly rather than fetch.
func cachedKernel(a Arch, name string) (Kernel, error) {
	if img := os.Getenv("VMTEST_KERNEL"); img != "" {
		return customKernel(img, os.Getenv("VMTEST_MODULES"))
	}
	cache, pkg, err := kernelPackage(a, name)
	if err != nil {
		return Kernel{}, err
	}
	image, err := resolvedBefore(cache, pkg)
	if err != nil {
		return Kernel{}, fmt.Errorf("kernel %s (%s) is not in the cache %s", name, a.GOARCH, cache)
	}
	return unpackedKernel(a, name, filepath.Join(cache, cacheName(image)))
}

// kernelPackage returns the cache directory and the package, qualified with
// its architecture for apt, for a -kernels name.
func kernelPackage(a Arch, name string) (cache, pkg string, err error) {
	pkg, ok := a.Kernels[name]
	if !ok {
		if !strings.HasPrefix(name, "linux-image-") {
			return "", "", fmt.Errorf("unknown %s kernel %q: want %s or a Debian linux-image-* package", a.GOARCH, name, a.kernelNames())
		}
		pkg = name
	}
	cache, err = cacheDir()
	return cache, a.aptName(pkg), err
}

// cacheName is a package's name as a file name in the cache: the ":arch" of
// a foreign package becomes "_arch" (a colon would be qemu's option syntax).
func cacheName(pkg string) string { return strings.ReplaceAll(pkg, ":", "_") }

// resolvePackage turns a metapackage into the image package it depends on
// (apt-cache reads the local package lists; no network). The answer is
// remembered in the cache so that a host without apt can reuse a kernel.
func resolvePackage(cache, pkg string) (string, error) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		if image, err := resolvedBefore(cache, pkg); err == nil {
			return image, nil
		}
		return "", fmt.Errorf("apt-cache not found and %s not cached: set VMTEST_KERNEL to a kernel image", pkg)
	}
	out, err := exec.Command("apt-cache", "depends", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w (run apt-get update?)", pkg, exitDetail(err))
	}
	image := pkg // a package with no linux-image dependency is the image itself
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		dep, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Depends: ")
		if ok && strings.HasPrefix(dep, "linux-image-") {
			image = dep
			break
		}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	return image, os.WriteFile(filepath.Join(cache, cacheName(pkg)+".resolved"), []byte(image+"\n"), 0o644)
}

// resolvedBefore returns what resolvePackage last answered for pkg.
func resolvedBefore(cache, pkg string) (string, error) {
	b, err := os.ReadFile(filepath.Join(cache, cacheName(pkg)+".resolved"))
	return strings.TrimSpace(string(b)), err
}

// fetchPackages downloads pkgs with apt-get and unpacks them all with
// dpkg-deb into dir (renamed into place when complete). Both work without
// root. The download is retried: a mirror in sync fails it for a while.
func fetchPackages(dir string, pkgs ...string) error {
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: needed to fetch %s (or set VMTEST_KERNEL)", tool, strings.Join(pkgs, " "))
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(os.Stderr, "vmtest: downloading %s\n", strings.Join(pkgs, " "))
	for try := 1; ; try++ {
		get := exec.Command("apt-get", append([]string{"download"}, pkgs...)...)
		get.Dir = tmp
		out, err := get.CombinedOutput()
		if err == nil {
			break
		}
		if try == downloadTries {
			return fmt.Errorf("apt-get download %s: %w\n%s", strings.Join(pkgs, " "), err, out)
		}
		fmt.Fprintf(os.Stderr, "vmtest: apt-get download failed (attempt %d of %d), retrying: %s\n", try, downloadTries, bytes.TrimSpace(out))
		time.Sleep(time.Duration(try) * 10 * time.Second)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != len(pkgs) {
		return fmt.Errorf("apt-get download %s: expected %d .deb, found %d", strings.Join(pkgs, " "), len(pkgs), len(debs))
	}
	root := filepath.Join(tmp, "root")
	for _, deb := range debs {
		if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %w\n%s", deb, err, out)
		}
	}
	err = os.Rename(root, dir)
	if _, statErr := os.Stat(dir); err != nil && statErr == nil {
		return nil // another harness run unpacked it first
	}
	return err
}

// downloadTries is how often apt-get download is tried.
const downloadTries = 3

// unpackedKernel finds the pieces of an unpacked Debian image package.
func unpackedKernel(a Arch, name, dir string) (Kernel, error) {
	imgs, _ := filepath.Glob(filepath.Join(dir, "boot", a.ImageGlob))
	if len(imgs) != 1 {
		return Kernel{}, fmt.Errorf("no %s in package (%s/boot)", a.ImageGlob, dir)
	}
	release := strings.TrimPrefix(filepath.Base(imgs[0]), strings.TrimSuffix(a.ImageGlob, "*"))
	k := Kernel{
		Name:       name,
		Release:    release,
		Image:      imgs[0],
		ModulesDir: filepath.Join(dir, "lib", "modules", release),
		Config:     filepath.Join(dir, "boot", "config-"+release),
	}
	if _, err := os.Stat(k.ModulesDir); err != nil {
		return Kernel{}, fmt.Errorf("no modules for %s in package: %w", release, err)
	}
	return k, nil
}

// customKernel describes VMTEST_KERNEL: an image plus, optionally, its
// lib/modules/<release> directory (its name is taken as the release) and a
// config beside the image ("config" or "config-<release>", or .config in it).
func customKernel(img, mods string) (Kernel, error) {
	if _, err := os.Stat(img); err != nil {
		return Kernel{}, fmt.Errorf("VMTEST_KERNEL: %w", err)
	}
	k := Kernel{Name: img, Image: img, ModulesDir: mods, Release: filepath.Base(img)}
	if mods != "" {
		if _, err := os.Stat(mods); err != nil {
			return Kernel{}, fmt.Errorf("VMTEST_MODULES: %w", err)
		}
		k.Release = filepath.Base(mods)
	}
	for _, c := range []string{
		filepath.Join(filepath.Dir(img), "config-"+k.Release),
		filepath.Join(filepath.Dir(img), "config"),
		filepath.Join(filepath.Dir(img), ".config"),
	} {
		if _, err := os.Stat(c); err == nil {
			k.Config = c
			break
		}
	}
	return k, nil
}

// exitDetail adds a failed command's stderr to its error.
func exitDetail(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}
