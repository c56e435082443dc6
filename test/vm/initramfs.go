package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/btrstore/btrstore/test/vm/internal/plan"
)

// Guest layout.
const (
	guestBin     = "/vmtest/bin"     // test binaries
	guestSrc     = "/vmtest/src"     // per package: its testdata/, and the working directory
	guestModules = "/vmtest/modules" // kernel modules
)

// writeInitramfs writes an uncompressed cpio archive to out holding the guest
// init as /init, the test binaries (with their testdata), the modules, the
// host tools and the plan, which it completes with the guest paths.
//
// Uncompressed: measured with a 14 MB smoke image, gzip saved no boot time
// under TCG and cost the harness about 0.3 s to write.
func writeInitramfs(out, initBin string, pkgs []TestPkg, mods []Module, tools []File, p plan.Plan) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	c := newCpioWriter(f)

	// The kernel opens /dev/console as the init's stdin/stdout/stderr before
	// the init can mount devtmpfs.
	if err := c.CharDev("/dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := c.Symlink("/etc/mtab", "/proc/self/mounts"); err != nil {
		return err
	}
	if err := c.CopyFile("/init", initBin); err != nil {
		return err
	}
	for _, m := range mods {
		guest := path.Join(guestModules, m.File)
		if err := c.WriteFile(guest, 0o644, m.Data); err != nil {
			return err
		}
		p.Modules = append(p.Modules, plan.Module{Name: m.Name, Path: guest, Compressed: m.Compressed, Optional: m.Optional})
	}
	for _, t := range tools {
		if err := c.CopyFile(t.Dest, t.Src); err != nil {
			return err
		}
	}
	for _, pkg := range pkgs {
		if pkg.Binary == "" {
			continue // did not build
		}
		bin := path.Join(guestBin, pkg.Name())
		dir := path.Join(guestSrc, filepath.ToSlash(pkg.RelDir))
		if err := c.CopyFile(bin, pkg.Binary); err != nil {
			return err
		}
		if err := c.Mkdir(dir); err != nil {
			return err
		}
		if err := copyTree(c, filepath.Join(pkg.Dir, "testdata"), path.Join(dir, "testdata")); err != nil {
			return err
		}
		p.Tests = append(p.Tests, plan.Test{Name: pkg.ImportPath, Binary: bin, Dir: dir})
	}
	js, err := json.MarshalIndent(p, "", "\t")
	if err != nil {
		return err
	}
	if err := c.WriteFile(plan.Path, 0o644, js); err != nil {
		return err
	}
	if err := c.Close(); err != nil {
		return err
	}
	return f.Close()
}

// copyTree copies the host directory src, if it exists, to dest in the guest.
func copyTree(c *cpioWriter, src, dest string) error {
	if _, err := os.Stat(src); err != nil {
		return nil
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		guest := path.Join(dest, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			return c.Mkdir(guest)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return c.Symlink(guest, target)
		case d.Type().IsRegular():
			return c.CopyFile(guest, p)
		}
		return nil // sockets, fifos: not test data
	})
}
