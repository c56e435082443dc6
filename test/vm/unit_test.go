package main

import (
	"bytes"
	"debug/elf"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btrstore/btrstore/test/vm/internal/plan"
)

// cpioEntry is one entry read back by readCpio.
type cpioEntry struct {
	name      string
	mode      uint32
	data      string
	rdevMajor uint32
	rdevMinor uint32
}

// readCpio parses a newc archive, checking the 4-byte alignment on the way.
func readCpio(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("offset %d field %d: %v", off, i, err)
		}
		return uint32(v)
	}
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("offset %d: bad magic %q", off, b[off:off+6])
		}
		mode, size, namesize := field(1), int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+namesize-1])
		e := cpioEntry{name: name, mode: mode, rdevMajor: field(9), rdevMinor: field(10)}
		off += (110 + namesize + 3) &^ 3
		e.data = string(b[off : off+size])
		off += (size + 3) &^ 3
		if name == "TRAILER!!!" {
			return out
		}
		out = append(out, e)
	}
}

func TestCpio(t *testing.T) {
	var buf bytes.Buffer
	c := newCpioWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.CharDev("/dev/console", 0o600, 5, 1))
	must(c.WriteFile("/a/b/c.txt", 0o644, []byte("hello")))
	must(c.WriteFile("/a/d", 0o755, []byte("1234")))
	must(c.Symlink("/etc/mtab", "/proc/self/mounts"))
	must(c.Close())

	var got []string
	for _, e := range readCpio(t, buf.Bytes()) {
		got = append(got, e.name)
		switch e.name {
		case "dev/console":
			if e.mode != syscall.S_IFCHR|0o600 || e.rdevMajor != 5 || e.rdevMinor != 1 {
				t.Errorf("console: mode %o rdev %d:%d", e.mode, e.rdevMajor, e.rdevMinor)
			}
		case "a/b/c.txt":
			if e.data != "hello" || e.mode != syscall.S_IFREG|0o644 {
				t.Errorf("c.txt: %q mode %o", e.data, e.mode)
			}
		case "etc/mtab":
			if e.data != "/proc/self/mounts" || e.mode&syscall.S_IFMT != syscall.S_IFLNK {
				t.Errorf("mtab: %q mode %o", e.data, e.mode)
			}
		}
	}
	// Parents come before their children, each once.
	want := []string{"dev", "dev/console", "a", "a/b", "a/b/c.txt", "a/d", "etc", "etc/mtab"}
	if !slices.Equal(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}
}

func TestConsole(t *testing.T) {
	c := newConsole(time.Now())
	for _, l := range []string{
		"\x1bc\x1b[?7l\x1b[2JSeaBIOS",
		"Booting from ROM.." + plan.Started + " uptime=2.500 init=1.250",
		"--- FAIL: TestX",
		plan.Result + " example.com/p exit=1 time=85ms",
		"",
		plan.Exit + "1",
	} {
		c.line(stripEscapes(l))
	}
	if !c.sawExit || c.exit != 1 {
		t.Errorf("exit %d (seen %v), want 1", c.exit, c.sawExit)
	}
	if c.uptime != 2.5 || c.initUptime != 1.25 || c.firstTest == 0 {
		t.Errorf("start marker: uptime %v init %v first test %v", c.uptime, c.initUptime, c.firstTest)
	}
	if r := c.results["example.com/p"]; r.Exit != 1 || r.Time != "85ms" {
		t.Errorf("result %+v", r)
	}
	if c.tail[0] != "SeaBIOS" {
		t.Errorf("escape sequences kept: %q", c.tail[0])
	}
	for range 2 * tailLines {
		c.line("x")
	}
	if len(c.tail) != tailLines {
		t.Errorf("tail has %d lines, want %d", len(c.tail), tailLines)
	}
}

func TestParseArgs(t *testing.T) {
	t.Setenv("VMTEST_KERNEL", "")
	t.Setenv("VMTEST_KERNELS", "")
	t.Setenv("VMTEST_ARCH", "")
	o, err := parseArgs([]string{"-kernels", "6.12", "-run", "TestA", "./a", "-v", "./b", "-count", "2",
		"--", "-test.timeout=1m", "-test.paniconexit0", "-timeout", "5m", "-benchtime=1x", "-test.testlogfile", "/x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.kernels, []string{"6.12"}) || !slices.Equal(o.pkgs, []string{"./a", "./b"}) {
		t.Errorf("kernels %q pkgs %q", o.kernels, o.pkgs)
	}
	want := []string{"-test.run=TestA", "-test.v", "-test.count=2", "-test.benchtime=1x"}
	if !slices.Equal(o.testArgs, want) {
		t.Errorf("test args %q, want %q", o.testArgs, want)
	}

	o, err = parseArgs(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.kernels != nil || len(o.arches) != 1 || o.arches[0].GOARCH != "amd64" ||
		!slices.Equal(o.pkgs, []string{"./..."}) || o.timeout != 20*time.Minute {
		t.Errorf("defaults: %+v", o)
	}
	if !slices.Equal(o.arches[0].DefaultKernels, []string{"6.1", "6.12"}) {
		t.Errorf("amd64 kernels %q, want 6.1 and 6.12", o.arches[0].DefaultKernels)
	}

	o, err = parseArgs([]string{"-arch", "arm64,ppc64le,s390x", "./ioctl"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range o.arches {
		got = append(got, a.GOARCH)
	}
	if !slices.Equal(got, []string{"arm64", "ppc64le", "s390x"}) {
		t.Errorf("-arch arm64,ppc64le,s390x: %q", got)
	}
	if _, err := parseArgs([]string{"-arch", "mips"}, io.Discard); err == nil {
		t.Error("-arch mips accepted")
	}
}

func TestQEMUArgs(t *testing.T) {
	t.Setenv("VMTEST_ACCEL", "kvm")
	for _, tc := range []struct {
		arch string
		want []string
	}{
		{"amd64", []string{"-accel kvm -cpu host", "console=ttyS0 ", "-device virtio-blk-pci,drive=scratch"}},
		{"arm64", []string{"-accel tcg -machine virt", "console=ttyAMA0 ", "-device virtio-blk-pci,drive=scratch"}},
		{"ppc64le", []string{"-accel tcg -machine pseries", "console=hvc0 ", "-device virtio-blk-pci,drive=scratch"}},
		{"s390x", []string{"-accel tcg -machine s390-ccw-virtio", "console=ttysclp0 ", "-device virtio-blk-ccw,drive=scratch"}},
	} {
		a, err := lookupArch(tc.arch)
		if err != nil {
			t.Fatal(err)
		}
		args := strings.Join(qemuArgs(a, Kernel{Image: "/k"}, "/i", "/d"), " ")
		for _, w := range tc.want {
			if !strings.Contains(args, w) {
				t.Errorf("%s: %q lacks %q", tc.arch, args, w)
			}
		}
	}
}

func TestResolveModules(t *testing.T) {
	for _, a := range arches {
		for _, name := range a.DefaultKernels {
			t.Run(a.GOARCH+"/"+name, func(t *testing.T) { testResolveModules(t, a, name) })
		}
	}
}

func testResolveModules(t *testing.T, a Arch, name string) {
	k, err := cachedKernel(a, name)
	if err != nil {
		t.Skip(err)
	}
	mods, err := resolveModules(k, a.Modules)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		pos[m.Name] = i
		if m.Compressed != strings.HasSuffix(m.File, ".xz") {
			t.Errorf("%s: compressed %v, file %s", m.Name, m.Compressed, m.File)
		}
	}
	t.Logf("load order: %v", slices.Collect(func(yield func(string) bool) {
		for _, m := range mods {
			if !yield(m.Name) {
				return
			}
		}
	}))
	for _, need := range []string{"btrfs", "virtio_blk", "loop", "raid6_pq", "xor"} {
		if _, ok := pos[need]; !ok {
			t.Errorf("%s missing", need)
		}
	}
	if pos["raid6_pq"] > pos["btrfs"] || pos["xor"] > pos["btrfs"] {
		t.Error("btrfs comes before its dependencies")
	}
}

func TestHostTools(t *testing.T) {
	a, _ := lookupArch("amd64")
	if !a.native() {
		t.Skip("not an amd64 host")
	}
	files, err := tools(a)
	if err != nil {
		t.Skip(err) // no btrfs-progs on this host
	}
	var dests []string
	for _, f := range files {
		dests = append(dests, f.Dest)
	}
	for _, want := range []string{"/usr/sbin/mkfs.btrfs", "/usr/sbin/btrfs", "/lib64/ld-linux-x86-64.so.2"} {
		if !slices.Contains(dests, want) {
			t.Errorf("%s missing from %q", want, dests)
		}
	}
	if !slices.ContainsFunc(dests, func(d string) bool { return strings.HasSuffix(d, "/libc.so.6") }) {
		t.Errorf("libc.so.6 missing from %q", dests)
	}
}

// TestDebRootResolve: symlinks in an unpacked package tree are resolved in
// the tree, absolute ones included (/lib/ld64.so.1 -> /lib/s390x-linux-gnu/...),
// as is a symlinked directory (lib64 -> lib), and never lead out of it.
func TestDebRootResolve(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "lib", "s390x-linux-gnu"), 0o755))
	must(os.WriteFile(filepath.Join(root, "lib", "s390x-linux-gnu", "ld64.so.1"), []byte("loader"), 0o755))
	must(os.Symlink("/lib/s390x-linux-gnu/ld64.so.1", filepath.Join(root, "lib", "ld64.so.1")))
	must(os.Symlink("lib", filepath.Join(root, "lib64")))
	must(os.Symlink("../../../../etc/passwd", filepath.Join(root, "lib", "escape")))
	want := filepath.Join(root, "lib", "s390x-linux-gnu", "ld64.so.1")
	for _, p := range []string{"/lib/ld64.so.1", "/lib64/ld64.so.1", "/lib64/s390x-linux-gnu/../ld64.so.1"} {
		got, err := debRoot(root).resolve(p)
		if err != nil || got != want {
			t.Errorf("resolve(%s) = %q, %v; want %q", p, got, err, want)
		}
	}
	// ".." stops at the tree's root, as at /: there is no etc/passwd in it.
	if got, err := debRoot(root).resolve("/lib/escape"); err == nil {
		t.Errorf("resolve(/lib/escape) = %q, want an error", got)
	}
}

// TestForeignTools checks each foreign architecture's tools in the cache
// (fetched by a cross run; BTRFS_TEST_REQUIRE=1 fetches them): the three
// tools, the loader and the C library, all built for that architecture.
func TestForeignTools(t *testing.T) {
	for _, a := range arches {
		if a.native() {
			continue
		}
		t.Run(a.GOARCH, func(t *testing.T) {
			if os.Getenv("BTRFS_TEST_REQUIRE") != "1" {
				cache, err := cacheDir()
				if err != nil {
					t.Skip(err)
				}
				if _, err := os.Stat(filepath.Join(cache, "tools-"+a.Debian)); err != nil {
					t.Skipf("%s tools not in the cache (make vmtest-cross fetches them)", a.GOARCH)
				}
			}
			files, err := tools(a)
			if err != nil {
				t.Fatal(err)
			}
			var dests []string
			for _, f := range files {
				dests = append(dests, f.Dest)
				ef, err := elf.Open(f.Src)
				if err != nil {
					t.Errorf("%s: %v", f.Src, err)
					continue
				}
				if ef.Machine != a.elfMachine() {
					t.Errorf("%s is for %v", f.Src, ef.Machine)
				}
				ef.Close()
			}
			for _, want := range []string{"/usr/sbin/mkfs.btrfs", "/usr/sbin/btrfs", "/usr/sbin/sh", "/lib/" + a.Triplet + "/libc.so.6"} {
				if !slices.Contains(dests, want) {
					t.Errorf("%s missing from %q", want, dests)
				}
			}
			if !slices.ContainsFunc(dests, func(d string) bool { return strings.Contains(d, "/ld") }) {
				t.Errorf("no loader in %q", dests)
			}
		})
	}
}
