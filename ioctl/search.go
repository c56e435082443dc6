package ioctl

import (
	"encoding/binary"
	"errors"
	"math"
)

// errBadSearchResult: the kernel's tree search buffer did not parse; it
// would mean a layout mismatch, never a user error.
var errBadSearchResult = errors.New("malformed tree search result")

// searchItems calls fn for each of the n items in a TREE_SEARCH result
// buffer, stopping early when fn returns false. It checks every length
// against the buffer, so a corrupt buffer is an error, not a panic.
func searchItems(buf []byte, n uint32, fn func(h *SearchHeader, data []byte) bool) error {
	off := 0
	for i := uint32(0); i < n; i++ {
		if len(buf)-off < SizeofSearchHeader {
			return errBadSearchResult
		}
		h := SearchHeader{
			Transid:  binary.NativeEndian.Uint64(buf[off:]),
			Objectid: binary.NativeEndian.Uint64(buf[off+8:]),
			Offset:   binary.NativeEndian.Uint64(buf[off+16:]),
			Type:     binary.NativeEndian.Uint32(buf[off+24:]),
			Len:      binary.NativeEndian.Uint32(buf[off+28:]),
		}
		off += SizeofSearchHeader
		if uint64(len(buf)-off) < uint64(h.Len) {
			return errBadSearchResult
		}
		data := buf[off : off+int(h.Len)]
		off += int(h.Len)
		if !fn(&h, data) {
			return nil
		}
	}
	return nil
}

// rootTreeKey is the tree search key for every item of type typ with
// objectid id in the root tree, at any offset and transid: a subvolume's
// ROOT_ITEM_KEY, ROOT_REF_KEY (its children) or ROOT_BACKREF_KEY (its
// parent) items, or with BTRFS_ORPHAN_OBJECTID the orphan items of deleted
// subvolumes. Root tree searches take their key from here rather than
// spelling it out; searchAll pages it by offset.
func rootTreeKey(id uint64, typ uint32) SearchKey {
	return SearchKey{
		Tree_id:      BTRFS_ROOT_TREE_OBJECTID,
		Min_objectid: id, Max_objectid: id,
		Min_type: typ, Max_type: typ,
		Max_offset: math.MaxUint64, Max_transid: math.MaxUint64,
	}
}

// searchAll runs a tree search for key over every matching item, paging
// through results, and calls fn for each item until fn returns false. key
// must fix objectid and type, so that paging advances the offset only.
// args is the 4 KiB buffer to use (it escapes to the heap, since fn sees
// slices of it): pollers pass one to reuse, others nil.
func searchAll(fd int, args *SearchArgs, key SearchKey, fn func(h *SearchHeader, data []byte) bool) error {
	if args == nil {
		args = new(SearchArgs)
	}
	args.Key = key
	for {
		args.Key.Nr_items = math.MaxUint32
		if err := TreeSearch(fd, args); err != nil {
			return err
		}
		if args.Key.Nr_items == 0 {
			return nil
		}
		var last uint64
		stop := false
		err := searchItems(args.Buf[:], args.Key.Nr_items, func(h *SearchHeader, data []byte) bool {
			last = h.Offset
			if !fn(h, data) {
				stop = true
			}
			return !stop
		})
		if err != nil || stop || last == math.MaxUint64 {
			return err
		}
		args.Key.Min_offset = last + 1
	}
}

// rootRef is a parsed struct btrfs_root_ref (packed: dirid, sequence,
// name_len, then the name).
type rootRef struct {
	dirid uint64
	name  string
}

func parseRootRef(data []byte) (rootRef, bool) {
	if len(data) < SizeofRootRef {
		return rootRef{}, false
	}
	n := int(binary.LittleEndian.Uint16(data[16:]))
	if len(data)-SizeofRootRef < n {
		return rootRef{}, false
	}
	return rootRef{
		dirid: binary.LittleEndian.Uint64(data[0:]),
		name:  string(data[SizeofRootRef : SizeofRootRef+n]),
	}, true
}

// parseRootItem fills the fields of info that a root item holds. Items
// written by kernels before 3.5 lack the v2 part (UUIDs, transids, times);
// those fields then stay zero, as the kernel itself treats them.
func parseRootItem(data []byte, info *SubvolInfo) bool {
	if len(data) < rootItemGenerationV2 {
		return false
	}
	le := binary.LittleEndian
	info.Generation = le.Uint64(data[rootItemGeneration:])
	info.Flags = le.Uint64(data[rootItemFlags:])
	info.ReadOnly = info.Flags&BTRFS_ROOT_SUBVOL_RDONLY != 0
	if len(data) < sizeofRootItem || le.Uint64(data[rootItemGenerationV2:]) != info.Generation {
		return true
	}
	copy(info.UUID[:], data[rootItemUUID:])
	copy(info.ParentUUID[:], data[rootItemParentUUID:])
	copy(info.ReceivedUUID[:], data[rootItemReceivedUUID:])
	info.CTransID = le.Uint64(data[rootItemCtransid:])
	info.OTransID = le.Uint64(data[rootItemCtransid+8:])
	info.STransID = le.Uint64(data[rootItemCtransid+16:])
	info.RTransID = le.Uint64(data[rootItemCtransid+24:])
	ts := func(i int) (uint64, uint32) {
		o := rootItemCtime + 12*i
		return le.Uint64(data[o:]), le.Uint32(data[o+8:])
	}
	info.Ctime = btrfsTime(ts(0))
	info.Otime = btrfsTime(ts(1))
	info.Stime = btrfsTime(ts(2))
	info.Rtime = btrfsTime(ts(3))
	return true
}

// rootItem reads subvolume id's root item by tree search (CAP_SYS_ADMIN).
// found is false when the subvolume has no root item: it never existed or
// the cleaner has removed it.
func rootItem(fd int, id uint64, info *SubvolInfo) (found bool, err error) {
	bad := false
	err = searchAll(fd, nil, rootTreeKey(id, BTRFS_ROOT_ITEM_KEY), func(h *SearchHeader, data []byte) bool {
		found = true
		if info != nil && !parseRootItem(data, info) {
			bad = true
		}
		return false
	})
	if err == nil && bad {
		err = errBadSearchResult
	}
	return found, err
}

// inoLookupPath returns the path of directory dirid inside subvolume
// treeid, relative to the subvolume's root ("" for the root itself), by
// INO_LOOKUP (CAP_SYS_ADMIN).
func inoLookupPath(fd int, treeid, dirid uint64) (string, error) {
	args := InoLookupArgs{Treeid: treeid, Objectid: dirid}
	if err := InoLookup(fd, &args); err != nil {
		return "", err
	}
	return cstring(args.Name[:]), nil
}
