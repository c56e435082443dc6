package main

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// compression returns how a module file is compressed, by its suffix:
// "" (plain .ko), "xz", "zstd" or "gzip".
func compression(path string) string {
	switch {
	case strings.HasSuffix(path, ".ko.xz"):
		return "xz"
	case strings.HasSuffix(path, ".ko.zst"):
		return "zstd"
	case strings.HasSuffix(path, ".ko.gz"):
		return "gzip"
	}
	return ""
}

// readModule returns a module file's contents as an uncompressed ELF object.
// Go has no xz or zstd decoder, so those go through the host's xz/zstd.
func readModule(path string) ([]byte, error) {
	switch c := compression(path); c {
	case "":
		return os.ReadFile(path)
	case "gzip":
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return io.ReadAll(zr)
	default:
		if _, err := exec.LookPath(c); err != nil {
			return nil, fmt.Errorf("%s not found: needed to read %s", c, path)
		}
		out, err := exec.Command(c, "-dc", path).Output()
		if err != nil {
			return nil, fmt.Errorf("%s -dc %s: %w", c, path, exitDetail(err))
		}
		return out, nil
	}
}

// modinfo parses the .modinfo section of a module: NUL-separated key=value
// strings. Keys may repeat (softdep, alias), so values are lists.
func modinfo(object []byte) (map[string][]string, error) {
	f, err := elf.NewFile(bytes.NewReader(object))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	info := map[string][]string{}
	for _, kv := range strings.Split(string(data), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			info[k] = append(info[k], v)
		}
	}
	return info, nil
}
