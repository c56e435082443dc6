package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// guestTools are the programs the tests shell out to (the btrfs fixture
// runs mkfs.btrfs, the builder example's steps run sh); they are copied into
// the guest's /usr/sbin.
var guestTools = []string{"mkfs.btrfs", "btrfs", "sh"}

// toolPackages are the Debian packages a foreign guest's tools come from:
// btrfs-progs with its dependencies (its libraries, the C library and its
// loader), and dash for sh, which needs nothing beyond the C library.
var toolPackages = []string{"btrfs-progs"}

const shPackage = "dash"

// File is a host file to copy into the initramfs.
type File struct {
	Src  string // on the host
	Dest string // absolute, in the guest
}

// tools returns the guest tools for a with every shared library they need
// and the dynamic loader. A native guest gets the host's; a foreign one
// gets its architecture's from Debian, fetched into the cache (sysroot).
func tools(a Arch) ([]File, error) {
	if a.native() {
		return toolFiles(hostRoot{}, a, guestTools)
	}
	root, err := sysroot(a)
	if err != nil {
		return nil, err
	}
	return toolFiles(root, a, guestTools)
}

// fsRoot is where the tools and libraries are looked up: the host's root
// or an unpacked Debian tree.
type fsRoot interface {
	// resolve returns the host path of the guest path p, or an error if
	// there is no such file.
	resolve(p string) (string, error)
	// tool returns the guest path of the program name.
	tool(name string) (string, error)
}

// hostRoot is the host itself: guest paths are host paths.
type hostRoot struct{}

func (hostRoot) resolve(p string) (string, error) {
	_, err := os.Stat(p)
	return p, err
}

func (hostRoot) tool(name string) (string, error) { return lookTool(name) }

// debRoot is a tree unpacked from Debian packages with dpkg-deb -x: its
// symlinks may be absolute, meaning paths in the tree, not on the host.
type debRoot string

func (r debRoot) resolve(p string) (string, error) {
	p = path.Clean("/" + p)
	for range 40 { // as the kernel's MAXSYMLINKS
		// Resolve the directories first: only then is the last element's
		// Lstat about the tree's file.
		dir, err := r.resolveDir(path.Dir(p))
		if err != nil {
			return "", err
		}
		p = path.Join(dir, path.Base(p))
		host := filepath.Join(string(r), p)
		fi, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return host, nil
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = path.Clean(target)
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links in %s", p, string(r))
}

// resolveDir returns dir with every symlink among its elements resolved
// in the tree.
func (r debRoot) resolveDir(dir string) (string, error) {
	if dir == "/" {
		return dir, nil
	}
	parent, err := r.resolveDir(path.Dir(dir))
	if err != nil {
		return "", err
	}
	host, err := r.resolve(path.Join(parent, path.Base(dir)))
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(string(r), host)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("%s leaves %s", dir, string(r))
	}
	return "/" + filepath.ToSlash(rel), nil
}

func (r debRoot) tool(name string) (string, error) {
	names := []string{name}
	if name == "sh" {
		names = append(names, "dash") // dash's postinst makes the sh link
	}
	for _, n := range names {
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
			if _, err := r.resolve(path.Join(dir, n)); err == nil {
				return path.Join(dir, n), nil
			}
		}
	}
	return "", fmt.Errorf("%s not found in %s", name, string(r))
}

// toolFiles returns the named tools from root, each with the shared
// libraries it needs at the guest path where the loader's default search
// finds them, plus the loader itself.
func toolFiles(root fsRoot, a Arch, names []string) ([]File, error) {
	libDirs := []string{
		"/lib/" + a.Triplet, "/usr/lib/" + a.Triplet,
		"/lib64", "/usr/lib64", "/lib", "/usr/lib",
	}
	var files []File
	seen := map[string]bool{}
	add := func(guest string) error {
		if seen[guest] {
			return nil
		}
		seen[guest] = true
		src, err := root.resolve(guest)
		if err != nil {
			return err
		}
		files = append(files, File{Src: src, Dest: guest})
		return nil
	}
	var addLibs func(guest string) error
	addLibs = func(guest string) error {
		src, err := root.resolve(guest)
		if err != nil {
			return err
		}
		f, err := elf.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		if f.Machine != a.elfMachine() {
			return fmt.Errorf("%s is for %v, not %s", src, f.Machine, a.GOARCH)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				interp := make([]byte, p.Filesz)
				if _, err := p.ReadAt(interp, 0); err != nil {
					return fmt.Errorf("%s: PT_INTERP: %w", src, err)
				}
				if err := add(string(bytes.TrimRight(interp, "\x00"))); err != nil {
					return fmt.Errorf("%s's loader: %w", src, err)
				}
			}
		}
		needed, err := f.ImportedLibraries() // DT_NEEDED
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		for _, lib := range needed {
			found := ""
			for _, dir := range libDirs {
				if _, err := root.resolve(path.Join(dir, lib)); err == nil {
					found = path.Join(dir, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s (needed by %s): not found in %v", lib, src, libDirs)
			}
			if seen[found] {
				continue
			}
			if err := add(found); err != nil {
				return err
			}
			if err := addLibs(found); err != nil {
				return err
			}
		}
		return nil
	}
	for _, name := range names {
		guest, err := root.tool(name)
		if err != nil {
			return nil, err
		}
		src, err := root.resolve(guest)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Src: src, Dest: "/usr/sbin/" + name})
		if err := addLibs(guest); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// elfMachine is the ELF e_machine of the architecture's programs.
func (a Arch) elfMachine() elf.Machine {
	switch a.GOARCH {
	case "amd64":
		return elf.EM_X86_64
	case "arm64":
		return elf.EM_AARCH64
	case "ppc64le":
		return elf.EM_PPC64
	case "s390x":
		return elf.EM_S390
	}
	return elf.EM_NONE
}

// lookTool finds a program in PATH or, for users whose PATH lacks them, in
// the sbin directories.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (install btrfs-progs)", name)
}

// sysroot returns the tree of a's tool packages (toolPackages with their
// dependencies, and dash) unpacked in the cache, fetching it on first use.
// Remove the directory to fetch the packages' current versions.
func sysroot(a Arch) (debRoot, error) {
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "tools-"+a.Debian)
	if _, err := os.Stat(dir); err == nil {
		return debRoot(dir), nil
	}
	pkgs, err := aptClosure(a, toolPackages)
	if err != nil {
		return "", err
	}
	pkgs = append(pkgs, a.aptName(shPackage))
	if err := fetchPackages(dir, pkgs...); err != nil {
		return "", err
	}
	return debRoot(dir), nil
}

// aptClosure lists pkgs of architecture a and, recursively, what they
// depend on (Depends and Pre-Depends), from the local package lists.
func aptClosure(a Arch, pkgs []string) ([]string, error) {
	args := []string{"depends", "--recurse", "--no-recommends", "--no-suggests",
		"--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"}
	for _, p := range pkgs {
		args = append(args, a.aptName(p))
	}
	out, err := exec.Command("apt-cache", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache %s: %w (did make deps-cross add the %s architecture?)", strings.Join(args, " "), exitDetail(err), a.Debian)
	}
	var list []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		// Package lines are unindented; virtual packages are <bracketed>.
		if l == "" || strings.HasPrefix(l, " ") || strings.HasPrefix(l, "<") || seen[l] {
			continue
		}
		seen[l] = true
		list = append(list, a.aptName(l))
	}
	if len(list) == 0 {
		return nil, errors.New("apt-cache depends listed no packages")
	}
	return list, nil
}
