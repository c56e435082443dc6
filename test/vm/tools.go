package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// guestTools are the host programs the tests shell out to (the btrfs fixture
// runs mkfs.btrfs, the builder example's steps run sh); they are copied into
// the guest's /usr/sbin.
var guestTools = []string{"mkfs.btrfs", "btrfs", "sh"}

// libDirs are searched for shared libraries, in the order of Debian's ld.so.
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// File is a host file to copy into the initramfs.
type File struct {
	Src  string // on the host
	Dest string // absolute, in the guest
}

// hostTools returns the tools and every shared library they need, each
// library at the host path where it was found (so the dynamic loader's
// default search path finds it), plus the loader itself.
func hostTools(names []string) ([]File, error) {
	var files []File
	seen := map[string]bool{}
	var addLibs func(bin string) error
	addLibs = func(bin string) error {
		f, err := elf.Open(bin)
		if err != nil {
			return err
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				interp := make([]byte, p.Filesz)
				if _, err := p.ReadAt(interp, 0); err != nil {
					return fmt.Errorf("%s: PT_INTERP: %w", bin, err)
				}
				path := string(interp[:len(interp)-1]) // NUL-terminated
				if !seen[path] {
					seen[path] = true
					files = append(files, File{Src: path, Dest: path})
				}
			}
		}
		needed, err := f.ImportedLibraries() // DT_NEEDED
		if err != nil {
			return fmt.Errorf("%s: %w", bin, err)
		}
		for _, lib := range needed {
			path, err := findLib(lib)
			if err != nil {
				return fmt.Errorf("%s (needed by %s): %w", lib, bin, err)
			}
			if seen[path] {
				continue
			}
			seen[path] = true
			files = append(files, File{Src: path, Dest: path})
			if err := addLibs(path); err != nil {
				return err
			}
		}
		return nil
	}
	for _, name := range names {
		path, err := lookTool(name)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Src: path, Dest: "/usr/sbin/" + name})
		if err := addLibs(path); err != nil {
			return nil, err
		}
	}
	return files, nil
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

func findLib(name string) (string, error) {
	for _, dir := range libDirs {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %v", libDirs)
}
