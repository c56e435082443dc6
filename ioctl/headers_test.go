//go:build cgo

package ioctl

import (
	"reflect"
	"testing"

	"github.com/btrstore/btrstore/ioctl/internal/cheader"
)

// TestHeaderConstants pins every request number and constant to the value
// the C compiler computes from linux/btrfs.h.
func TestHeaderConstants(t *testing.T) {
	ours := map[string]uint64{
		"BTRFS_IOC_SYNC":                    BTRFS_IOC_SYNC,
		"BTRFS_IOC_SNAP_DESTROY":            BTRFS_IOC_SNAP_DESTROY,
		"BTRFS_IOC_TREE_SEARCH":             BTRFS_IOC_TREE_SEARCH,
		"BTRFS_IOC_TREE_SEARCH_V2":          BTRFS_IOC_TREE_SEARCH_V2,
		"BTRFS_IOC_INO_LOOKUP":              BTRFS_IOC_INO_LOOKUP,
		"BTRFS_IOC_DEFAULT_SUBVOL":          BTRFS_IOC_DEFAULT_SUBVOL,
		"BTRFS_IOC_SPACE_INFO":              BTRFS_IOC_SPACE_INFO,
		"BTRFS_IOC_WAIT_SYNC":               BTRFS_IOC_WAIT_SYNC,
		"BTRFS_IOC_SNAP_CREATE_V2":          BTRFS_IOC_SNAP_CREATE_V2,
		"BTRFS_IOC_START_SYNC":              BTRFS_IOC_START_SYNC,
		"BTRFS_IOC_SUBVOL_CREATE_V2":        BTRFS_IOC_SUBVOL_CREATE_V2,
		"BTRFS_IOC_SUBVOL_GETFLAGS":         BTRFS_IOC_SUBVOL_GETFLAGS,
		"BTRFS_IOC_SUBVOL_SETFLAGS":         BTRFS_IOC_SUBVOL_SETFLAGS,
		"BTRFS_IOC_DEV_INFO":                BTRFS_IOC_DEV_INFO,
		"BTRFS_IOC_FS_INFO":                 BTRFS_IOC_FS_INFO,
		"BTRFS_IOC_GET_SUBVOL_INFO":         BTRFS_IOC_GET_SUBVOL_INFO,
		"BTRFS_IOC_GET_SUBVOL_ROOTREF":      BTRFS_IOC_GET_SUBVOL_ROOTREF,
		"BTRFS_IOC_INO_LOOKUP_USER":         BTRFS_IOC_INO_LOOKUP_USER,
		"BTRFS_IOC_SNAP_DESTROY_V2":         BTRFS_IOC_SNAP_DESTROY_V2,
		"BTRFS_IOC_SUBVOL_SYNC_WAIT":        BTRFS_IOC_SUBVOL_SYNC_WAIT,
		"BTRFS_IOCTL_MAGIC":                 BTRFS_IOCTL_MAGIC,
		"BTRFS_SUPER_MAGIC":                 BTRFS_SUPER_MAGIC,
		"BTRFS_FIRST_FREE_OBJECTID":         BTRFS_FIRST_FREE_OBJECTID,
		"BTRFS_LAST_FREE_OBJECTID":          BTRFS_LAST_FREE_OBJECTID,
		"BTRFS_FS_TREE_OBJECTID":            BTRFS_FS_TREE_OBJECTID,
		"BTRFS_ROOT_TREE_OBJECTID":          BTRFS_ROOT_TREE_OBJECTID,
		"BTRFS_ORPHAN_OBJECTID":             BTRFS_ORPHAN_OBJECTID,
		"BTRFS_ORPHAN_ITEM_KEY":             BTRFS_ORPHAN_ITEM_KEY,
		"BTRFS_ROOT_ITEM_KEY":               BTRFS_ROOT_ITEM_KEY,
		"BTRFS_ROOT_BACKREF_KEY":            BTRFS_ROOT_BACKREF_KEY,
		"BTRFS_ROOT_REF_KEY":                BTRFS_ROOT_REF_KEY,
		"BTRFS_VOL_NAME_MAX":                BTRFS_VOL_NAME_MAX,
		"BTRFS_PATH_NAME_MAX":               BTRFS_PATH_NAME_MAX,
		"BTRFS_SUBVOL_NAME_MAX":             BTRFS_SUBVOL_NAME_MAX,
		"BTRFS_INO_LOOKUP_PATH_MAX":         BTRFS_INO_LOOKUP_PATH_MAX,
		"BTRFS_INO_LOOKUP_USER_PATH_MAX":    BTRFS_INO_LOOKUP_USER_PATH_MAX,
		"BTRFS_SEARCH_ARGS_BUFSIZE":         BTRFS_SEARCH_ARGS_BUFSIZE,
		"BTRFS_MAX_ROOTREF_BUFFER_NUM":      BTRFS_MAX_ROOTREF_BUFFER_NUM,
		"BTRFS_UUID_SIZE":                   BTRFS_UUID_SIZE,
		"BTRFS_FSID_SIZE":                   BTRFS_FSID_SIZE,
		"BTRFS_DEVICE_PATH_NAME_MAX":        BTRFS_DEVICE_PATH_NAME_MAX,
		"BTRFS_SUBVOL_RDONLY":               BTRFS_SUBVOL_RDONLY,
		"BTRFS_SUBVOL_QGROUP_INHERIT":       BTRFS_SUBVOL_QGROUP_INHERIT,
		"BTRFS_SUBVOL_SPEC_BY_ID":           BTRFS_SUBVOL_SPEC_BY_ID,
		"BTRFS_SUBVOL_CREATE_ARGS_MASK":     BTRFS_SUBVOL_CREATE_ARGS_MASK,
		"BTRFS_SUBVOL_DELETE_ARGS_MASK":     BTRFS_SUBVOL_DELETE_ARGS_MASK,
		"BTRFS_SUBVOL_SYNC_WAIT_FOR_ONE":    BTRFS_SUBVOL_SYNC_WAIT_FOR_ONE,
		"BTRFS_SUBVOL_SYNC_WAIT_FOR_QUEUED": BTRFS_SUBVOL_SYNC_WAIT_FOR_QUEUED,
		"BTRFS_SUBVOL_SYNC_COUNT":           BTRFS_SUBVOL_SYNC_COUNT,
		"BTRFS_SUBVOL_SYNC_PEEK_FIRST":      BTRFS_SUBVOL_SYNC_PEEK_FIRST,
		"BTRFS_SUBVOL_SYNC_PEEK_LAST":       BTRFS_SUBVOL_SYNC_PEEK_LAST,
		"BTRFS_BLOCK_GROUP_DATA":            BTRFS_BLOCK_GROUP_DATA,
		"BTRFS_BLOCK_GROUP_SYSTEM":          BTRFS_BLOCK_GROUP_SYSTEM,
		"BTRFS_BLOCK_GROUP_METADATA":        BTRFS_BLOCK_GROUP_METADATA,
		"BTRFS_BLOCK_GROUP_RAID0":           BTRFS_BLOCK_GROUP_RAID0,
		"BTRFS_BLOCK_GROUP_RAID1":           BTRFS_BLOCK_GROUP_RAID1,
		"BTRFS_BLOCK_GROUP_DUP":             BTRFS_BLOCK_GROUP_DUP,
		"BTRFS_BLOCK_GROUP_RAID10":          BTRFS_BLOCK_GROUP_RAID10,
		"BTRFS_BLOCK_GROUP_RAID5":           BTRFS_BLOCK_GROUP_RAID5,
		"BTRFS_BLOCK_GROUP_RAID6":           BTRFS_BLOCK_GROUP_RAID6,
		"BTRFS_BLOCK_GROUP_RAID1C3":         BTRFS_BLOCK_GROUP_RAID1C3,
		"BTRFS_BLOCK_GROUP_RAID1C4":         BTRFS_BLOCK_GROUP_RAID1C4,
		"BTRFS_SPACE_INFO_GLOBAL_RSV":       BTRFS_SPACE_INFO_GLOBAL_RSV,
		"BTRFS_ROOT_SUBVOL_RDONLY":          BTRFS_ROOT_SUBVOL_RDONLY,
		"SizeofRootRef":                     SizeofRootRef,
		"sizeofRootItem":                    sizeofRootItem,
		"rootItemGeneration":                rootItemGeneration,
		"rootItemFlags":                     rootItemFlags,
		"rootItemRefs":                      rootItemRefs,
		"rootItemGenerationV2":              rootItemGenerationV2,
		"rootItemUUID":                      rootItemUUID,
		"rootItemParentUUID":                rootItemParentUUID,
		"rootItemReceivedUUID":              rootItemReceivedUUID,
		"rootItemCtransid":                  rootItemCtransid,
		"rootItemCtime":                     rootItemCtime,
		"SizeofTimespecPacked":              12,

		// Send and receive.
		"BTRFS_IOC_SET_RECEIVED_SUBVOL": BTRFS_IOC_SET_RECEIVED_SUBVOL,
		"BTRFS_IOC_SEND":                BTRFS_IOC_SEND,
		"BTRFS_IOC_ENCODED_WRITE":       BTRFS_IOC_ENCODED_WRITE,
	}
	if cheader.SyncWaitFromCopy {
		t.Log("linux/btrfs.h predates 6.13: SUBVOL_SYNC_WAIT checked against the copied 6.13 definition")
	}
	for name, want := range cheader.Values {
		got, ok := ours[name]
		if !ok {
			t.Errorf("%s: in the oracle but not checked here", name)
			continue
		}
		if got != want {
			t.Errorf("%s = %#x, header says %#x", name, got, want)
		}
	}
	for name := range ours {
		if _, ok := cheader.Values[name]; !ok {
			t.Errorf("%s: not in the oracle", name)
		}
	}
}

// TestHeaderStructs compares each struct's size and the offset and size of
// every named field, in order, with the kernel's struct.
func TestHeaderStructs(t *testing.T) {
	for _, c := range []struct {
		ours, kernel any
		size         uintptr // our Sizeof constant
	}{
		{VolArgs{}, cheader.VolArgs{}, SizeofVolArgs},
		{VolArgsV2{}, cheader.VolArgsV2{}, SizeofVolArgsV2},
		{SearchKey{}, cheader.SearchKey{}, SizeofSearchKey},
		{SearchHeader{}, cheader.SearchHeader{}, SizeofSearchHeader},
		{SearchArgs{}, cheader.SearchArgs{}, SizeofSearchArgs},
		{SearchArgsV2{}, cheader.SearchArgsV2{}, SizeofSearchArgsV2},
		{InoLookupArgs{}, cheader.InoLookupArgs{}, SizeofInoLookupArgs},
		{InoLookupUserArgs{}, cheader.InoLookupUserArgs{}, SizeofInoLookupUserArgs},
		{Timespec{}, cheader.Timespec{}, SizeofTimespec},
		{GetSubvolInfoArgs{}, cheader.GetSubvolInfoArgs{}, SizeofGetSubvolInfoArgs},
		{GetSubvolRootrefArgs{}, cheader.GetSubvolRootrefArgs{}, SizeofGetSubvolRootrefArgs},
		{SpaceArgs{}, cheader.SpaceArgs{}, SizeofSpaceArgs},
		{SpaceInfo{}, cheader.SpaceInfo{}, SizeofSpaceInfo},
		{DevInfoArgs{}, cheader.DevInfoArgs{}, SizeofDevInfoArgs},
		{FsInfoArgs{}, cheader.FsInfoArgs{}, SizeofFsInfoArgs},
		{SubvolWait{}, cheader.SubvolWait{}, SizeofSubvolWait},
	} {
		ours, kernel := reflect.TypeOf(c.ours), reflect.TypeOf(c.kernel)
		t.Run(ours.Name(), func(t *testing.T) {
			if ours.Size() != kernel.Size() || c.size != kernel.Size() {
				t.Errorf("size: Go %d, Sizeof const %d, kernel %d", ours.Size(), c.size, kernel.Size())
			}
			of, kf := namedFields(ours), namedFields(kernel)
			if len(of) != len(kf) {
				t.Fatalf("%d named fields, kernel has %d: %v vs %v", len(of), len(kf), of, kf)
			}
			for i := range of {
				if of[i].Offset != kf[i].Offset || of[i].Type.Size() != kf[i].Type.Size() {
					t.Errorf("field %s: offset %d size %d; kernel %s: offset %d size %d",
						of[i].Name, of[i].Offset, of[i].Type.Size(), kf[i].Name, kf[i].Offset, kf[i].Type.Size())
				}
			}
		})
	}
}

// namedFields lists a struct's fields, leaving out padding ("_") and the
// zero-size flexible arrays that end some kernel structs.
func namedFields(t reflect.Type) []reflect.StructField {
	var fs []reflect.StructField
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == "_" || f.Type.Size() == 0 {
			continue
		}
		fs = append(fs, f)
	}
	return fs
}
