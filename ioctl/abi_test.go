package ioctl

import (
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"unsafe"
)

// The request numbers, written out by hand from the kernel's ioctl.h files
// for the two encodings: include/uapi/asm-generic/ioctl.h (_IOC_NONE 0,
// _IOC_WRITE 1, _IOC_READ 2, 14 size bits) and arch/powerpc/include/uapi/
// asm/ioctl.h, which mips, sparc and alpha share (_IOC_NONE 1, _IOC_READ 2,
// _IOC_WRITE 4, 13 size bits). The values are for 64-bit architectures;
// requestNumbers32 lists where 32-bit ones differ.
var requestNumbers = []struct {
	name             string
	got              uint64
	dir              string // IO, R, W or WR
	nr, size         uint64 // the size on 64-bit architectures
	generic, powerpc uint64
}{
	{"BTRFS_IOC_SYNC", BTRFS_IOC_SYNC, "IO", 8, 0, 0x00009408, 0x20009408},
	{"BTRFS_IOC_SNAP_DESTROY", BTRFS_IOC_SNAP_DESTROY, "W", 15, 4096, 0x5000940f, 0x9000940f},
	{"BTRFS_IOC_TREE_SEARCH", BTRFS_IOC_TREE_SEARCH, "WR", 17, 4096, 0xd0009411, 0xd0009411},
	{"BTRFS_IOC_TREE_SEARCH_V2", BTRFS_IOC_TREE_SEARCH_V2, "WR", 17, 112, 0xc0709411, 0xc0709411},
	{"BTRFS_IOC_INO_LOOKUP", BTRFS_IOC_INO_LOOKUP, "WR", 18, 4096, 0xd0009412, 0xd0009412},
	{"BTRFS_IOC_DEFAULT_SUBVOL", BTRFS_IOC_DEFAULT_SUBVOL, "W", 19, 8, 0x40089413, 0x80089413},
	{"BTRFS_IOC_SPACE_INFO", BTRFS_IOC_SPACE_INFO, "WR", 20, 16, 0xc0109414, 0xc0109414},
	{"BTRFS_IOC_WAIT_SYNC", BTRFS_IOC_WAIT_SYNC, "W", 22, 8, 0x40089416, 0x80089416},
	{"BTRFS_IOC_SNAP_CREATE_V2", BTRFS_IOC_SNAP_CREATE_V2, "W", 23, 4096, 0x50009417, 0x90009417},
	{"BTRFS_IOC_START_SYNC", BTRFS_IOC_START_SYNC, "R", 24, 8, 0x80089418, 0x40089418},
	{"BTRFS_IOC_SUBVOL_CREATE_V2", BTRFS_IOC_SUBVOL_CREATE_V2, "W", 24, 4096, 0x50009418, 0x90009418},
	{"BTRFS_IOC_SUBVOL_GETFLAGS", BTRFS_IOC_SUBVOL_GETFLAGS, "R", 25, 8, 0x80089419, 0x40089419},
	{"BTRFS_IOC_SUBVOL_SETFLAGS", BTRFS_IOC_SUBVOL_SETFLAGS, "W", 26, 8, 0x4008941a, 0x8008941a},
	{"BTRFS_IOC_DEV_INFO", BTRFS_IOC_DEV_INFO, "WR", 30, 4096, 0xd000941e, 0xd000941e},
	{"BTRFS_IOC_FS_INFO", BTRFS_IOC_FS_INFO, "R", 31, 1024, 0x8400941f, 0x4400941f},
	{"BTRFS_IOC_SET_RECEIVED_SUBVOL", BTRFS_IOC_SET_RECEIVED_SUBVOL, "WR", 37, 200, 0xc0c89425, 0xc0c89425},
	{"BTRFS_IOC_SEND", BTRFS_IOC_SEND, "W", 38, 72, 0x40489426, 0x80489426},
	{"BTRFS_IOC_GET_SUBVOL_INFO", BTRFS_IOC_GET_SUBVOL_INFO, "R", 60, 504, 0x81f8943c, 0x41f8943c},
	{"BTRFS_IOC_GET_SUBVOL_ROOTREF", BTRFS_IOC_GET_SUBVOL_ROOTREF, "WR", 61, 4096, 0xd000943d, 0xd000943d},
	{"BTRFS_IOC_INO_LOOKUP_USER", BTRFS_IOC_INO_LOOKUP_USER, "WR", 62, 4096, 0xd000943e, 0xd000943e},
	{"BTRFS_IOC_SNAP_DESTROY_V2", BTRFS_IOC_SNAP_DESTROY_V2, "W", 63, 4096, 0x5000943f, 0x9000943f},
	{"BTRFS_IOC_ENCODED_WRITE", BTRFS_IOC_ENCODED_WRITE, "W", 64, 128, 0x40809440, 0x80809440},
	{"BTRFS_IOC_SUBVOL_SYNC_WAIT", BTRFS_IOC_SUBVOL_SYNC_WAIT, "W", 65, 16, 0x40109441, 0x80109441},
}

// requestNumbers32 are the request numbers whose argument size differs on
// 32-bit architectures, per layout class (see layoutClass): on 386 a
// btrfs_ioctl_timespec is 12 bytes and a pointer 4 with no padding after
// it; on arm and mips (generic and powerpc encodings) only the pointer and
// unsigned long of encoded_io_args shrink.
var requestNumbers32 = map[string]map[string]uint64{
	"i386": {
		"BTRFS_IOC_SET_RECEIVED_SUBVOL": 0xc0c09425, // 192 bytes
		"BTRFS_IOC_SEND":                0x40449426, // 68 bytes
		"BTRFS_IOC_GET_SUBVOL_INFO":     0x81e8943c, // 488 bytes
		"BTRFS_IOC_ENCODED_WRITE":       0x40789440, // 120 bytes
	},
	"ilp32/generic": {
		"BTRFS_IOC_ENCODED_WRITE": 0x40789440, // 120 bytes
	},
	"ilp32/powerpc": {
		"BTRFS_IOC_ENCODED_WRITE": 0x80789440, // 120 bytes
	},
}

// archIOCFamily is the _IOC encoding family of goarch, by the kernel's
// arch directories (independently of the build tags of ioc_*.go).
func archIOCFamily(goarch string) string {
	switch goarch {
	case "ppc", "ppc64", "ppc64le", "mips", "mipsle", "mips64", "mips64le",
		"mips64p32", "mips64p32le", "sparc", "sparc64", "alpha":
		return "powerpc"
	}
	return "generic"
}

// layoutClass is how the C ABI of goarch lays out the btrfs structs: lp64
// (64-bit), ilp32 (32-bit, __u64 aligned to 8: arm EABI, mips o32) or i386
// (32-bit, __u64 aligned to 4).
func layoutClass(goarch string) string {
	switch {
	case goarch == "386":
		return "i386"
	case strconv.IntSize == 32:
		return "ilp32"
	}
	return "lp64"
}

// kernelIOC is the kernel's _IOC macro for either family.
func kernelIOC(family, dir string, nr, size uint64) uint64 {
	none, read, write, sizeBits := uint64(0), uint64(2), uint64(1), uint64(14)
	if family == "powerpc" {
		none, read, write, sizeBits = 1, 2, 4, 13
	}
	d := map[string]uint64{"IO": none, "R": read, "W": write, "WR": read | write}[dir]
	return d<<(16+sizeBits) | size<<16 | 0x94<<8 | nr
}

// TestRequestNumbers pins every BTRFS_IOC_* request number to the value
// written out above for this architecture's family and layout, and checks
// the written-out values of both families against the _IOC encoding.
func TestRequestNumbers(t *testing.T) {
	family, class := archIOCFamily(runtime.GOARCH), layoutClass(runtime.GOARCH)
	if iocFamily != family {
		t.Errorf("built with the %s _IOC encoding; GOARCH=%s uses the %s one", iocFamily, runtime.GOARCH, family)
	}
	exceptions := requestNumbers32[class]
	if class == "ilp32" {
		exceptions = requestNumbers32[class+"/"+family]
	}
	for _, r := range requestNumbers {
		if g := kernelIOC("generic", r.dir, r.nr, r.size); g != r.generic {
			t.Errorf("%s: written-out generic value %#x, _IOC gives %#x", r.name, r.generic, g)
		}
		if p := kernelIOC("powerpc", r.dir, r.nr, r.size); p != r.powerpc {
			t.Errorf("%s: written-out powerpc value %#x, _IOC gives %#x", r.name, r.powerpc, p)
		}
		want, from := r.generic, family
		if family == "powerpc" {
			want = r.powerpc
		}
		if w, ok := exceptions[r.name]; ok {
			want, from = w, class+" "+family
		}
		if r.got != want {
			t.Errorf("%s = %#x on %s, want %#x (%s)", r.name, r.got, runtime.GOARCH, want, from)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d request numbers match the %s encoding with the %s layout", len(requestNumbers), family, class)
}

// TestStructLayout pins the size of every argument struct, and the offsets
// of the fields that move between layouts, to what the C ABI of each layout
// class gives the kernel's struct; and checks each Sizeof constant against
// unsafe.Sizeof of its struct. (The cgo oracle, headers_test.go, compares
// every field with linux/btrfs.h, but only for the host architecture.)
func TestStructLayout(t *testing.T) {
	class := layoutClass(runtime.GOARCH)
	type sizes struct{ lp64, ilp32, i386 uintptr }
	pick := func(s sizes) uintptr {
		switch class {
		case "i386":
			return s.i386
		case "ilp32":
			return s.ilp32
		}
		return s.lp64
	}
	all := func(n uintptr) sizes { return sizes{n, n, n} }
	for _, c := range []struct {
		v       any
		sizeof  uintptr // the Sizeof constant
		size    sizes
		offsets map[string]sizes
	}{
		{VolArgs{}, SizeofVolArgs, all(4096), map[string]sizes{"Name": all(8)}},
		{VolArgsV2{}, SizeofVolArgsV2, all(4096), map[string]sizes{"Flags": all(16), "Unused": all(24), "Name": all(56)}},
		{SearchKey{}, SizeofSearchKey, all(104), map[string]sizes{"Min_type": all(56), "Nr_items": all(64), "Unused1": all(72)}},
		{SearchHeader{}, SizeofSearchHeader, all(32), map[string]sizes{"Type": all(24), "Len": all(28)}},
		{SearchArgs{}, SizeofSearchArgs, all(4096), map[string]sizes{"Buf": all(104)}},
		{SearchArgsV2{}, SizeofSearchArgsV2, all(112), map[string]sizes{"Buf_size": all(104)}},
		{InoLookupArgs{}, SizeofInoLookupArgs, all(4096), map[string]sizes{"Name": all(16)}},
		{InoLookupUserArgs{}, SizeofInoLookupUserArgs, all(4096), map[string]sizes{"Name": all(16), "Path": all(272)}},
		{Timespec{}, SizeofTimespec, sizes{16, 16, 12}, map[string]sizes{"Nsec": all(8)}},
		{GetSubvolInfoArgs{}, SizeofGetSubvolInfoArgs, sizes{504, 504, 488}, map[string]sizes{
			"Parent_id": all(264), "Uuid": all(296), "Ctransid": all(344), "Rtransid": all(368),
			"Ctime": all(376), "Otime": {392, 392, 388}, "Stime": {408, 408, 400},
			"Rtime": {424, 424, 412}, "Reserved": {440, 440, 424}}},
		{GetSubvolRootrefArgs{}, SizeofGetSubvolRootrefArgs, all(4096), map[string]sizes{"Rootref": all(8), "Num_items": all(4088)}},
		{SpaceArgs{}, SizeofSpaceArgs, all(16), map[string]sizes{"Total_spaces": all(8)}},
		{SpaceInfo{}, SizeofSpaceInfo, all(24), map[string]sizes{"Used_bytes": all(16)}},
		{DevInfoArgs{}, SizeofDevInfoArgs, all(4096), map[string]sizes{"Bytes_used": all(24), "Unused": all(40), "Path": all(3072)}},
		{FsInfoArgs{}, SizeofFsInfoArgs, all(1024), map[string]sizes{
			"Nodesize": all(32), "Csum_type": all(44), "Csum_size": all(46),
			"Flags": all(48), "Generation": all(56), "Metadata_uuid": all(64), "Reserved": all(80)}},
		{SubvolWait{}, SizeofSubvolWait, all(16), map[string]sizes{"Mode": all(8), "Count": all(12)}},
	} {
		typ := reflect.TypeOf(c.v)
		if want := pick(c.size); typ.Size() != want || c.sizeof != want {
			t.Errorf("%s: unsafe.Sizeof %d, Sizeof constant %d, want %d (%s)", typ.Name(), typ.Size(), c.sizeof, want, class)
		}
		for name, off := range c.offsets {
			f, ok := typ.FieldByName(name)
			if !ok {
				t.Errorf("%s has no field %s", typ.Name(), name)
				continue
			}
			if want := pick(off); f.Offset != want {
				t.Errorf("%s.%s at offset %d, want %d (%s)", typ.Name(), name, f.Offset, want, class)
			}
		}
	}
	for _, c := range []struct {
		name string
		got  uintptr
		want sizes
	}{
		{"btrfs_ioctl_received_subvol_args", sizeofReceivedSubvolArgs, sizes{200, 200, 192}},
		{"btrfs_ioctl_send_args", sizeofSendArgs, sizes{72, 72, 68}},
		{"btrfs_ioctl_encoded_io_args", sizeofEncodedIOArgs, sizes{128, 120, 120}},
	} {
		if want := pick(c.want); c.got != want {
			t.Errorf("sizeof(struct %s) = %d, want %d (%s)", c.name, c.got, want, class)
		}
	}
}

// TestSearchByteOrder checks the byte order of a tree search result as the
// kernel writes it on any architecture: each btrfs_ioctl_search_header is a
// struct copied in native order, and the item after it is on-disk data,
// little-endian everywhere (run on s390x for the big-endian case).
func TestSearchByteOrder(t *testing.T) {
	body := []byte{
		0x02, 0x01, 0, 0, 0, 0, 0, 0, // dirid 0x102
		0x07, 0, 0, 0, 0, 0, 0, 0, // sequence
		0x03, 0x00, // name_len 3
		'a', 'b', 'c',
	}
	words := make([]uint64, (SizeofSearchHeader+len(body)+7)/8)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), SizeofSearchHeader+len(body))
	*(*SearchHeader)(unsafe.Pointer(&buf[0])) = SearchHeader{
		Transid: 0x1122334455667788, Objectid: 257, Offset: 5,
		Type: BTRFS_ROOT_BACKREF_KEY, Len: uint32(len(body)),
	}
	copy(buf[SizeofSearchHeader:], body)
	n := 0
	err := searchItems(buf, 1, func(h *SearchHeader, data []byte) bool {
		n++
		if h.Transid != 0x1122334455667788 || h.Objectid != 257 || h.Offset != 5 ||
			h.Type != BTRFS_ROOT_BACKREF_KEY || h.Len != uint32(len(body)) {
			t.Errorf("header %+v", *h)
		}
		ref, ok := parseRootRef(data)
		if !ok || ref.dirid != 0x102 || ref.name != "abc" {
			t.Errorf("parseRootRef = %+v, %v; want dirid 0x102, name abc", ref, ok)
		}
		return true
	})
	if err != nil || n != 1 {
		t.Fatalf("searchItems: %d items, %v", n, err)
	}
}
