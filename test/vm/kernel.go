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
)

// kernelPackages maps the names accepted by -kernels to Debian's cloud kernel
// metapackages, which depend on the current real image package.
var kernelPackages = map[string]string{
	"6.1":  "linux-image-cloud-amd64",
	"6.12": "linux-image-6.12-cloud-amd64",
}

// Kernel is a bootable kernel and the modules built for it.
type Kernel struct {
	Name       string // as asked for: "6.1", "6.12", or the VMTEST_KERNEL path
	Release    string // uname -r, the directory under lib/modules
	Image      string // vmlinuz
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

// getKernel returns the kernel called name: VMTEST_KERNEL if set, else the
// Debian cloud kernel, downloaded and unpacked into the cache on first use.
func getKernel(name string) (Kernel, error) {
	if img := os.Getenv("VMTEST_KERNEL"); img != "" {
		return customKernel(img, os.Getenv("VMTEST_MODULES"))
	}
	cache, pkg, err := kernelPackage(name)
	if err != nil {
		return Kernel{}, err
	}
	image, err := resolvePackage(cache, pkg)
	if err != nil {
		return Kernel{}, err
	}
	if _, err := os.Stat(filepath.Join(cache, image)); errors.Is(err, os.ErrNotExist) {
		if err := fetchPackage(cache, image); err != nil {
			return Kernel{}, err
		}
	}
	return unpackedKernel(name, filepath.Join(cache, image))
}

// cachedKernel returns the kernel called name if it is already in the cache,
// without apt: the harness's tests use it to skip quickly rather than fetch.
func cachedKernel(name string) (Kernel, error) {
	if img := os.Getenv("VMTEST_KERNEL"); img != "" {
		return customKernel(img, os.Getenv("VMTEST_MODULES"))
	}
	cache, pkg, err := kernelPackage(name)
	if err != nil {
		return Kernel{}, err
	}
	image, err := resolvedBefore(cache, pkg)
	if err != nil {
		return Kernel{}, fmt.Errorf("kernel %s is not in the cache %s", name, cache)
	}
	return unpackedKernel(name, filepath.Join(cache, image))
}

// kernelPackage returns the cache directory and the package for a -kernels name.
func kernelPackage(name string) (cache, pkg string, err error) {
	pkg, ok := kernelPackages[name]
	if !ok {
		if !strings.HasPrefix(name, "linux-image-") {
			return "", "", fmt.Errorf("unknown kernel %q: want 6.1, 6.12 or a Debian linux-image-* package", name)
		}
		pkg = name
	}
	cache, err = cacheDir()
	return cache, pkg, err
}

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
	return image, os.WriteFile(filepath.Join(cache, pkg+".resolved"), []byte(image+"\n"), 0o644)
}

// resolvedBefore returns what resolvePackage last answered for pkg.
func resolvedBefore(cache, pkg string) (string, error) {
	b, err := os.ReadFile(filepath.Join(cache, pkg+".resolved"))
	return strings.TrimSpace(string(b)), err
}

// fetchPackage downloads pkg with apt-get and unpacks it with dpkg-deb, both
// of which work without root, into cache/pkg (renamed into place when complete).
func fetchPackage(cache, pkg string) error {
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: needed to fetch %s (or set VMTEST_KERNEL)", tool, pkg)
		}
	}
	tmp, err := os.MkdirTemp(cache, "fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(os.Stderr, "vmtest: downloading %s\n", pkg)
	get := exec.Command("apt-get", "download", pkg)
	get.Dir = tmp
	if out, err := get.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s: expected one .deb, found %d", pkg, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w\n%s", debs[0], err, out)
	}
	err = os.Rename(root, filepath.Join(cache, pkg))
	if _, statErr := os.Stat(filepath.Join(cache, pkg)); err != nil && statErr == nil {
		return nil // another harness run unpacked it first
	}
	return err
}

// unpackedKernel finds the pieces of an unpacked Debian image package.
func unpackedKernel(name, dir string) (Kernel, error) {
	imgs, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(imgs) != 1 {
		return Kernel{}, fmt.Errorf("no vmlinuz in package (%s/boot)", dir)
	}
	release := strings.TrimPrefix(filepath.Base(imgs[0]), "vmlinuz-")
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
