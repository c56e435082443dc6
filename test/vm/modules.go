package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Module is a kernel module to ship in the initramfs.
type Module struct {
	Name       string
	File       string // file name in the guest: name.ko, or name.ko.xz if Compressed
	Data       []byte // file contents
	Compressed bool   // the guest kernel decompresses it (CONFIG_MODULE_DECOMPRESS)
	Optional   bool   // a soft dependency
}

// resolveModules returns the modules to load for names, dependencies first.
// depmod's modules.dep is not in Debian's package (the postinst generates it),
// so dependencies come from each module's modinfo: depends= (hard) and
// softdep= (crypto drivers, such as btrfs's checksums; optional). Built-in
// modules are skipped.
func resolveModules(k Kernel, names []string) ([]Module, error) {
	if k.ModulesDir == "" {
		return nil, nil // a custom kernel without modules: all built in, or the boot says otherwise
	}
	r, err := newResolver(k)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if err := r.visit(normalize(n), false); err != nil {
			return nil, err
		}
	}
	return r.order, nil
}

// normalize makes a module name canonical: the kernel treats - and _ alike.
func normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

type resolver struct {
	dir        string
	decompress map[string]bool     // compression types the kernel decompresses itself
	files      map[string]string   // module name -> file
	builtin    map[string]bool     // module names built into the kernel
	builtinAls map[string]bool     // aliases provided by built-in modules
	aliases    map[string][]string // alias -> modules, built on first use
	seen       map[string]bool
	order      []Module
}

func newResolver(k Kernel) (*resolver, error) {
	r := &resolver{
		dir:        k.ModulesDir,
		decompress: kernelDecompresses(k.Config),
		files:      map[string]string{},
		builtin:    map[string]bool{},
		builtinAls: map[string]bool{},
		seen:       map[string]bool{},
	}
	err := filepath.WalkDir(k.ModulesDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		base := d.Name()
		if i := strings.Index(base, ".ko"); i > 0 && (strings.HasSuffix(base, ".ko") || compression(base) != "") {
			r.files[normalize(base[:i])] = path
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(k.ModulesDir, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			r.builtin[normalize(strings.TrimSuffix(filepath.Base(sc.Text()), ".ko"))] = true
		}
	}
	if b, err := os.ReadFile(filepath.Join(k.ModulesDir, "modules.builtin.modinfo")); err == nil {
		for _, kv := range strings.Split(string(b), "\x00") {
			if _, alias, ok := strings.Cut(kv, ".alias="); ok {
				r.builtinAls[alias] = true
			}
		}
	}
	return r, nil
}

// kernelDecompresses reads the kernel config: with CONFIG_MODULE_DECOMPRESS
// finit_module accepts modules compressed with the configured algorithm.
// Without a config, the harness decompresses everything itself.
func kernelDecompresses(config string) map[string]bool {
	b, err := os.ReadFile(config)
	if err != nil || !strings.Contains(string(b), "\nCONFIG_MODULE_DECOMPRESS=y\n") {
		return nil
	}
	ok := map[string]bool{}
	for algo, opt := range map[string]string{"gzip": "GZIP", "xz": "XZ", "zstd": "ZSTD"} {
		ok[algo] = strings.Contains(string(b), "\nCONFIG_MODULE_COMPRESS_"+opt+"=y\n")
	}
	return ok
}

// visit adds name and, before it, its dependencies (depth first).
func (r *resolver) visit(name string, optional bool) error {
	if r.seen[name] || r.builtin[name] {
		return nil
	}
	r.seen[name] = true
	path, ok := r.files[name]
	if !ok {
		if optional {
			return nil
		}
		return fmt.Errorf("module %s: neither built in nor in %s", name, r.dir)
	}
	obj, err := readModule(path)
	if err != nil {
		return err
	}
	info, err := modinfo(obj)
	if err != nil {
		return fmt.Errorf("modinfo %s: %w", path, err)
	}
	pre, post := softdeps(info["softdep"])
	for _, dep := range pre {
		if err := r.visitSoft(dep); err != nil {
			return err
		}
	}
	for _, deps := range info["depends"] {
		for _, dep := range strings.Split(deps, ",") {
			if dep == "" {
				continue
			}
			if err := r.visit(normalize(dep), optional); err != nil {
				return fmt.Errorf("%w (needed by %s)", err, name)
			}
		}
	}
	m := Module{Name: name, File: name + ".ko", Data: obj, Optional: optional}
	if c := compression(path); c != "" && r.decompress[c] {
		// Ship the smaller compressed file; the kernel inflates it.
		if m.Data, err = os.ReadFile(path); err != nil {
			return err
		}
		m.Compressed = true
		m.File = filepath.Base(path)
	}
	r.order = append(r.order, m)
	for _, dep := range post {
		if err := r.visitSoft(dep); err != nil {
			return err
		}
	}
	return nil
}

// softdeps parses "pre: a b post: c" values.
func softdeps(values []string) (pre, post []string) {
	for _, v := range values {
		list := &pre
		for _, f := range strings.Fields(v) {
			switch f {
			case "pre:":
				list = &pre
			case "post:":
				list = &post
			default:
				*list = append(*list, f)
			}
		}
	}
	return pre, post
}

// visitSoft adds a soft dependency, which is usually an alias ("crypto-crc32c")
// rather than a module name. A built-in provider satisfies it; otherwise every
// module providing it is added, as modprobe does, but optional: one that does
// not suit the CPU (crc32c-intel without SSE4.2) must not stop the boot.
func (r *resolver) visitSoft(dep string) error {
	if name := normalize(dep); r.builtin[name] || r.builtinAls[dep] {
		return nil
	} else if _, ok := r.files[name]; ok {
		return r.visit(name, true)
	}
	if r.aliases == nil {
		if err := r.indexCryptoAliases(); err != nil {
			return err
		}
	}
	for _, name := range r.aliases[dep] {
		if err := r.visit(name, true); err != nil {
			return err
		}
	}
	return nil
}

// indexCryptoAliases reads the aliases of the crypto modules only: soft
// dependencies name crypto algorithms, and reading all ~1000 modules' modinfo
// (decompressing most) would cost seconds per run.
func (r *resolver) indexCryptoAliases() error {
	r.aliases = map[string][]string{}
	// Sorted, so that the load order is the same on every run.
	for _, name := range slices.Sorted(maps.Keys(r.files)) {
		path := r.files[name]
		if rel, _ := filepath.Rel(r.dir, path); !strings.Contains("/"+rel, "/crypto/") {
			continue
		}
		obj, err := readModule(path)
		if err != nil {
			return err
		}
		info, err := modinfo(obj)
		if err != nil {
			return fmt.Errorf("modinfo %s: %w", path, err)
		}
		for _, a := range info["alias"] {
			r.aliases[a] = append(r.aliases[a], name)
		}
	}
	return nil
}
