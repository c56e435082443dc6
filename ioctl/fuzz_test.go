package ioctl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"
)

// Fuzz targets for the parsers of tree search results, which read buffers
// the kernel filled. The seed corpora are in testdata/fuzz/<FuzzName>; the
// seeds added below are built with encoding/binary from the kernel's struct
// definitions (btrfs_tree.h), independently of the parsers' offset
// constants. Run one with
//
//	go test -run '^$' -fuzz '^FuzzSearchItems$' -fuzztime 30s ./ioctl

// diskKey is struct btrfs_disk_key (packed, little-endian on disk).
type diskKey struct {
	Objectid uint64
	Type     uint8
	Offset   uint64
}

// diskTimespec is struct btrfs_timespec (packed).
type diskTimespec struct {
	Sec  uint64
	Nsec uint32
}

// diskRootItem is struct btrfs_root_item as the kernel lays it out on disk:
// packed, little-endian. encoding/binary writes it without padding.
type diskRootItem struct {
	Inode        [160]byte // struct btrfs_inode_item
	Generation   uint64
	RootDirid    uint64
	Bytenr       uint64
	ByteLimit    uint64
	BytesUsed    uint64
	LastSnapshot uint64
	Flags        uint64
	Refs         uint32
	DropProgress diskKey
	DropLevel    uint8
	Level        uint8
	// The v2 part, valid when GenerationV2 == Generation (kernel ≥ 3.5).
	GenerationV2 uint64
	UUID         [16]byte
	ParentUUID   [16]byte
	ReceivedUUID [16]byte
	Ctransid     uint64
	Otransid     uint64
	Stransid     uint64
	Rtransid     uint64
	Ctime        diskTimespec
	Otime        diskTimespec
	Stime        diskTimespec
	Rtime        diskTimespec
	Reserved     [8]uint64
}

// diskRootRefHead is the fixed part of struct btrfs_root_ref; the name
// follows it.
type diskRootRefHead struct {
	Dirid    uint64
	Sequence uint64
	NameLen  uint16
}

func encodeLE(t testing.TB, v any) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeRootItem(t testing.TB, item *diskRootItem) []byte {
	b := encodeLE(t, item)
	if len(b) != sizeofRootItem {
		t.Fatalf("encoded root item is %d bytes, want %d", len(b), sizeofRootItem)
	}
	return b
}

func encodeRootRef(t testing.TB, dirid, sequence uint64, name string) []byte {
	b := encodeLE(t, diskRootRefHead{Dirid: dirid, Sequence: sequence, NameLen: uint16(len(name))})
	if len(b) != SizeofRootRef {
		t.Fatalf("encoded root ref head is %d bytes, want %d", len(b), SizeofRootRef)
	}
	return append(b, name...)
}

// searchItem is one item of a TREE_SEARCH result: a header in native byte
// order (the ioctl's struct btrfs_ioctl_search_header), then Len bytes.
type searchItem struct {
	h    SearchHeader
	data []byte
}

func appendSearchItem(buf []byte, h SearchHeader, data []byte) []byte {
	h.Len = uint32(len(data))
	return append(appendSearchHeader(buf, h), data...)
}

func appendSearchHeader(buf []byte, h SearchHeader) []byte {
	buf = binary.NativeEndian.AppendUint64(buf, h.Transid)
	buf = binary.NativeEndian.AppendUint64(buf, h.Objectid)
	buf = binary.NativeEndian.AppendUint64(buf, h.Offset)
	buf = binary.NativeEndian.AppendUint32(buf, h.Type)
	return binary.NativeEndian.AppendUint32(buf, h.Len)
}

// sampleRootItem is a root item as a current kernel writes it for a
// read-only snapshot.
func sampleRootItem() diskRootItem {
	return diskRootItem{
		Generation: 12, RootDirid: 256, Bytenr: 30523392, BytesUsed: 16384,
		Flags: BTRFS_ROOT_SUBVOL_RDONLY, Refs: 1, Level: 0,
		GenerationV2: 12,
		UUID:         [16]byte{0x3e, 0x1f, 0x7a, 0x01, 0x9c, 0x44, 0x4b, 0x2e, 0x8a, 0x3d, 0x55, 0x0f, 0x21, 0x6c, 0x90, 0x11},
		ParentUUID:   [16]byte{0xa0, 0x0b, 0x42, 0x9e, 0x31, 0x7c, 0x4f, 0x0a, 0xb2, 0x19, 0x6e, 0x38, 0xd4, 0x02, 0x5f, 0x77},
		Ctransid:     12, Otransid: 12,
		Ctime: diskTimespec{1735689600, 123456789},
		Otime: diskTimespec{1735689600, 123456789},
	}
}

// sampleSearchBuffer is a TREE_SEARCH result as pathByID and rootItem
// see it: a backref and a root item, then zeros, where the kernel's buffer
// has 4 KiB of them. Here only 40: room for one empty item and a cut-off
// header. (The fuzzer's minimizer is quadratic in the input's length: a
// 4 KiB seed makes each new input take a minute to minimize.)
func sampleSearchBuffer(t testing.TB) []byte {
	item := sampleRootItem()
	var buf []byte
	buf = appendSearchItem(buf, SearchHeader{Transid: 12, Objectid: 257, Offset: 5, Type: BTRFS_ROOT_BACKREF_KEY},
		encodeRootRef(t, 256, 2, "snapshot"))
	buf = appendSearchItem(buf, SearchHeader{Transid: 12, Objectid: 257, Offset: 0, Type: BTRFS_ROOT_ITEM_KEY},
		encodeRootItem(t, &item))
	return append(buf, make([]byte, SizeofSearchHeader+8)...)
}

// FuzzSearchItems: for any buffer and item count, searchItems never panics
// and never reads outside the buffer; the items it yields tile a prefix of
// the buffer exactly (header, data, next header...); each header is the
// bytes at its place; it fails exactly when the next item does not fit, and
// it stops when the callback says so.
func FuzzSearchItems(f *testing.F) {
	f.Add(sampleSearchBuffer(f), uint32(2), uint8(0))
	f.Add(sampleSearchBuffer(f), uint32(1), uint8(0))
	f.Add(sampleSearchBuffer(f), uint32(3), uint8(0))       // a third, empty item in the zeros
	f.Add(sampleSearchBuffer(f), uint32(2), uint8(1))       // stopped after one
	f.Add(sampleSearchBuffer(f)[:100], uint32(2), uint8(0)) // second header cut off
	f.Add([]byte{}, uint32(0), uint8(0))
	f.Add([]byte{}, uint32(1), uint8(0))
	f.Add(bytes.Repeat([]byte{0}, 200), uint32(math.MaxUint32), uint8(0)) // 6 empty items, then 8 bytes
	f.Add(appendSearchItem(nil, SearchHeader{}, nil)[:31], uint32(1), uint8(0))
	huge := appendSearchItem(nil, SearchHeader{Objectid: 5}, []byte("abc"))
	binary.NativeEndian.PutUint32(huge[28:], math.MaxUint32) // Len far past the end
	f.Add(huge, uint32(1), uint8(0))

	f.Fuzz(func(t *testing.T, data []byte, n uint32, stopAfter uint8) {
		// The buffer has spare capacity holding a marker: slicing past its
		// length would not panic but would show up below.
		const spare = 64
		backing := make([]byte, len(data)+spare)
		copy(backing, data)
		for i := len(data); i < len(backing); i++ {
			backing[i] = 0xa5
		}
		buf := backing[:len(data)]

		var items []searchItem
		var starts []int // offset of each item's data in buf
		err := searchItems(buf, n, func(h *SearchHeader, d []byte) bool {
			// Every data slice is a subslice of buf sharing its end of
			// capacity, so its offset is cap(buf) - cap(d).
			start := cap(buf) - cap(d)
			if start < 0 || start+len(d) > len(buf) {
				t.Fatalf("item %d: data [%d, %d) outside the %d-byte buffer", len(items), start, start+len(d), len(buf))
			}
			items = append(items, searchItem{*h, d})
			starts = append(starts, start)
			return stopAfter == 0 || len(items) < int(stopAfter)
		})
		if uint64(len(items)) > uint64(n) {
			t.Fatalf("%d items yielded for n = %d", len(items), n)
		}

		// The items tile buf[:end]: each header right after the
		// previous item's data, each data right after its header.
		end := 0
		for i, it := range items {
			if starts[i] != end+SizeofSearchHeader {
				t.Fatalf("item %d: data at %d, want %d (header at %d)", i, starts[i], end+SizeofSearchHeader, end)
			}
			if want := appendSearchHeader(nil, it.h); !bytes.Equal(buf[end:end+SizeofSearchHeader], want) {
				t.Fatalf("item %d: header %+v does not encode to the buffer's bytes % x", i, it.h, buf[end:end+SizeofSearchHeader])
			}
			if uint64(it.h.Len) != uint64(len(it.data)) {
				t.Fatalf("item %d: header Len %d, data %d bytes", i, it.h.Len, len(it.data))
			}
			end = starts[i] + len(it.data)
		}

		stopped := stopAfter != 0 && len(items) == int(stopAfter)
		switch {
		case stopped:
			if err != nil {
				t.Fatalf("stopped by the callback after %d items, but error %v", len(items), err)
			}
		case uint64(len(items)) == uint64(n):
			if err != nil {
				t.Fatalf("all %d items yielded, but error %v", n, err)
			}
		default:
			// It gave up early: the next item must not fit.
			if !errors.Is(err, errBadSearchResult) {
				t.Fatalf("%d of %d items yielded, error %v, want errBadSearchResult", len(items), n, err)
			}
			rest := len(buf) - end
			if rest >= SizeofSearchHeader {
				if l := binary.NativeEndian.Uint32(buf[end+28:]); uint64(l) <= uint64(rest-SizeofSearchHeader) {
					t.Fatalf("item %d (Len %d) fits in the %d bytes left, but searchItems failed", len(items), l, rest)
				}
			}
		}
		for i := len(data); i < len(backing); i++ {
			if backing[i] != 0xa5 {
				t.Fatalf("searchItems wrote past the buffer at %d", i)
			}
		}
	})
}

// FuzzParseRootRef: parseRootRef never panics and accepts exactly the
// buffers holding a whole struct btrfs_root_ref and its name; a ref built
// from fuzzed fields parses back to them, with any trailing bytes, and no
// cut-off copy of it parses.
func FuzzParseRootRef(f *testing.F) {
	f.Add([]byte{}, uint64(256), uint64(2), "snapshot", []byte{})
	f.Add(encodeRootRef(f, 256, 2, "snapshot"), uint64(0), uint64(0), "", []byte{0})
	f.Add(encodeRootRef(f, math.MaxUint64, math.MaxUint64, string(bytes.Repeat([]byte{'n'}, 255))), uint64(math.MaxUint64), uint64(7), "a/b\x00c", []byte("junk"))
	f.Add(encodeRootRef(f, 256, 2, "snapshot")[:SizeofRootRef+3], uint64(1), uint64(1), "x", []byte{})
	f.Add(encodeRootRef(f, 256, 2, "")[:SizeofRootRef-1], uint64(1), uint64(1), "\xff\xfe", []byte{})

	f.Fuzz(func(t *testing.T, data []byte, dirid, sequence uint64, name string, trailing []byte) {
		// Arbitrary bytes.
		ref, ok := parseRootRef(data)
		wantOK := len(data) >= SizeofRootRef &&
			len(data)-SizeofRootRef >= int(binary.LittleEndian.Uint16(data[16:]))
		if ok != wantOK {
			t.Fatalf("parseRootRef(% x) ok = %v, want %v", data, ok, wantOK)
		}
		if ok {
			n := int(binary.LittleEndian.Uint16(data[16:]))
			want := rootRef{binary.LittleEndian.Uint64(data), string(data[SizeofRootRef : SizeofRootRef+n])}
			if ref != want {
				t.Fatalf("parseRootRef(% x) = %+v, want %+v", data, ref, want)
			}
		} else if ref != (rootRef{}) {
			t.Fatalf("parseRootRef(% x) failed but returned %+v", data, ref)
		}

		// A well-formed ref (name_len is a u16) round-trips.
		if len(name) > math.MaxUint16 {
			name = name[:math.MaxUint16]
		}
		item := encodeRootRef(t, dirid, sequence, name)
		whole := append(append([]byte(nil), item...), trailing...)
		ref, ok = parseRootRef(whole)
		if want := (rootRef{dirid, name}); !ok || ref != want {
			t.Fatalf("parseRootRef of a ref for %+v = %+v, %v", want, ref, ok)
		}
		for k := range len(item) {
			if ref, ok := parseRootRef(item[:k]); ok {
				t.Fatalf("parseRootRef of the first %d of %d bytes succeeded: %+v", k, len(item), ref)
			}
		}
	})
}

// FuzzParseRootItem: parseRootItem never panics; it accepts exactly the
// items that hold the v1 part; it fills the v2 fields only for a whole item
// whose generation_v2 matches; and an item built from fuzzed fields parses
// back to them, cut-off copies to their v1 part.
func FuzzParseRootItem(f *testing.F) {
	seed := func(item diskRootItem, cut int, trailing []byte) {
		f.Add(encodeRootItem(f, &item)[:cut], item.Generation, item.GenerationV2, item.Flags,
			item.UUID[:], item.ParentUUID[:], item.ReceivedUUID[:],
			item.Ctransid, item.Otransid, item.Stransid, item.Rtransid,
			item.Ctime.Sec, item.Ctime.Nsec, item.Otime.Sec, item.Otime.Nsec,
			item.Stime.Sec, item.Stime.Nsec, item.Rtime.Sec, item.Rtime.Nsec, trailing)
	}
	item := sampleRootItem()
	seed(item, sizeofRootItem, nil)
	seed(item, rootItemGenerationV2, []byte{1, 2, 3}) // a pre-3.5 item
	seed(item, rootItemGenerationV2-1, nil)
	seed(item, sizeofRootItem-1, nil)
	old := item
	old.GenerationV2 = 0 // written by an old kernel, then updated by a new one
	seed(old, sizeofRootItem, nil)
	full := diskRootItem{Generation: math.MaxUint64, GenerationV2: math.MaxUint64, Flags: math.MaxUint64,
		Ctransid: 1, Otransid: 2, Stransid: 3, Rtransid: 4,
		Ctime: diskTimespec{math.MaxUint64, 999999999}, Otime: diskTimespec{1 << 63, 0},
		Stime: diskTimespec{0, 1}, Rtime: diskTimespec{1, 0}}
	for i := range full.UUID {
		full.UUID[i], full.ParentUUID[i], full.ReceivedUUID[i] = byte(i), byte(0x10+i), byte(0x20+i)
	}
	seed(full, sizeofRootItem, make([]byte, 64))

	f.Fuzz(func(t *testing.T, data []byte, gen, genV2, flags uint64, uuid, parentUUID, receivedUUID []byte,
		ctransid, otransid, stransid, rtransid uint64,
		csec uint64, cnsec uint32, osec uint64, onsec uint32, ssec uint64, snsec uint32, rsec uint64, rnsec uint32,
		trailing []byte) {
		// Arbitrary bytes.
		var info SubvolInfo
		ok := parseRootItem(data, &info)
		if ok != (len(data) >= rootItemGenerationV2) {
			t.Fatalf("parseRootItem of %d bytes: ok = %v", len(data), ok)
		}
		if !ok {
			return
		}
		le := binary.LittleEndian
		if info.Generation != le.Uint64(data[160:]) || info.Flags != le.Uint64(data[208:]) ||
			info.ReadOnly != (info.Flags&1 != 0) {
			t.Fatalf("parseRootItem: generation %d flags %#x read-only %v, want %d %#x", info.Generation, info.Flags,
				info.ReadOnly, le.Uint64(data[160:]), le.Uint64(data[208:]))
		}
		v2 := len(data) >= sizeofRootItem && le.Uint64(data[239:]) == info.Generation
		if !v2 {
			checkOnlyV1(t, info)
		}

		// An item built from fuzzed fields.
		item := diskRootItem{Generation: gen, GenerationV2: genV2, Flags: flags,
			Ctransid: ctransid, Otransid: otransid, Stransid: stransid, Rtransid: rtransid,
			Ctime: diskTimespec{csec, cnsec}, Otime: diskTimespec{osec, onsec},
			Stime: diskTimespec{ssec, snsec}, Rtime: diskTimespec{rsec, rnsec}}
		copy(item.UUID[:], uuid)
		copy(item.ParentUUID[:], parentUUID)
		copy(item.ReceivedUUID[:], receivedUUID)
		// Bytes the parser must not read: the inode item, the reserved
		// tail, and what follows.
		for i := range item.Inode {
			item.Inode[i] = 0xee
		}
		for i := range item.Reserved {
			item.Reserved[i] = math.MaxUint64
		}
		enc := append(encodeRootItem(t, &item), trailing...)
		info = SubvolInfo{}
		if !parseRootItem(enc, &info) {
			t.Fatal("parseRootItem failed on a whole item")
		}
		if info.Generation != gen || info.Flags != flags || info.ReadOnly != (flags&BTRFS_ROOT_SUBVOL_RDONLY != 0) {
			t.Fatalf("parsed generation %d flags %#x read-only %v, want %d %#x", info.Generation, info.Flags, info.ReadOnly, gen, flags)
		}
		if genV2 != gen {
			checkOnlyV1(t, info)
		} else {
			want := SubvolInfo{
				Generation: gen, Flags: flags, ReadOnly: info.ReadOnly,
				UUID: item.UUID, ParentUUID: item.ParentUUID, ReceivedUUID: item.ReceivedUUID,
				CTransID: ctransid, OTransID: otransid, STransID: stransid, RTransID: rtransid,
			}
			got := info
			got.Ctime, got.Otime, got.Stime, got.Rtime = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if got != want {
				t.Fatalf("parsed %+v, want %+v", got, want)
			}
			for _, tc := range []struct {
				name string
				got  time.Time
				ts   diskTimespec
			}{{"ctime", info.Ctime, item.Ctime}, {"otime", info.Otime, item.Otime}, {"stime", info.Stime, item.Stime}, {"rtime", info.Rtime, item.Rtime}} {
				checkTime(t, tc.name, tc.got, tc.ts)
			}
		}
		// Cut off inside the v2 part, only the v1 part is read; inside
		// the v1 part, the item is refused.
		for _, k := range []int{rootItemGenerationV2 - 1, rootItemGenerationV2, rootItemUUID + 5, sizeofRootItem - 1} {
			var cut SubvolInfo
			ok := parseRootItem(enc[:k], &cut)
			if ok != (k >= rootItemGenerationV2) {
				t.Fatalf("parseRootItem of the first %d bytes: ok = %v", k, ok)
			}
			if ok {
				if cut.Generation != gen || cut.Flags != flags {
					t.Fatalf("first %d bytes: generation %d flags %#x, want %d %#x", k, cut.Generation, cut.Flags, gen, flags)
				}
				checkOnlyV1(t, cut)
			}
		}
	})
}

// checkOnlyV1 fails unless info holds nothing beyond a v1 root item's
// fields (it was zero before parsing).
func checkOnlyV1(t *testing.T, info SubvolInfo) {
	t.Helper()
	v1 := SubvolInfo{Generation: info.Generation, Flags: info.Flags, ReadOnly: info.ReadOnly}
	if info != v1 {
		t.Fatalf("a v1 root item filled v2 fields: %+v", info)
	}
}

// checkTime checks a parsed time against the on-disk timespec: zero stays
// the zero time, anything else is sec (signed, as the kernel's time64_t)
// plus nsec.
func checkTime(t *testing.T, name string, got time.Time, ts diskTimespec) {
	t.Helper()
	if ts.Sec == 0 && ts.Nsec == 0 {
		if !got.IsZero() {
			t.Fatalf("%s: zero timespec parsed as %v, want the zero time", name, got)
		}
		return
	}
	want := time.Unix(int64(ts.Sec), int64(ts.Nsec))
	if !got.Equal(want) {
		t.Fatalf("%s: %+v parsed as %v, want %v", name, ts, got, want)
	}
	if ts.Nsec < 1e9 && (got.Unix() != int64(ts.Sec) || got.Nanosecond() != int(ts.Nsec)) {
		t.Fatalf("%s: %+v parsed as %d s %d ns", name, ts, got.Unix(), got.Nanosecond())
	}
}
