package ioctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

// The parity operations as uid 1000 without capabilities, in a directory
// it owns on a filesystem with quotas and qgroup 1/100. args: the
// directory, the filesystem's top level. It prints the ids of what it
// made, for the parent to check against the CLI.
var _ = registerChild("parity-unprivileged", func(args []string) error {
	dir, top := args[0], args[1]
	makeTreeErr := func() error {
		for _, rel := range []string{"s", "s/n1", "s/n1/n2"} {
			if err := CreateSubvolume(filepath.Join(dir, rel)); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, rel, "f"), []byte(filepath.Base(rel)), 0o644); err != nil {
				return err
			}
		}
		return os.Mkdir(filepath.Join(dir, "s/plain"), 0o755)
	}
	if err := makeTreeErr(); err != nil {
		return err
	}
	s := filepath.Join(dir, "s")
	own, err := SubvolumeID(s)
	if err != nil {
		return fmt.Errorf("SubvolumeID: %w", err)
	}
	// What needs CAP_SYS_ADMIN says so.
	needAdmin := map[string]error{}
	_, needAdmin["DefaultSubvolume"] = DefaultSubvolume(s)
	needAdmin["SetDefaultSubvolume"] = SetDefaultSubvolume(s)
	_, needAdmin["DeletedSubvolumes"] = DeletedSubvolumes(s)
	_, needAdmin["SubvolumePath"] = SubvolumePath(s, 0)
	_, needAdmin["SubvolumeInfoByID(5)"] = SubvolumeInfoByID(s, BTRFS_FS_TREE_OBJECTID)
	for _, err := range SubvolumesWith(s, ListOptions{Top: BTRFS_FS_TREE_OBJECTID}) {
		needAdmin["SubvolumesWith(Top: 5)"] = err
		break
	}
	for name, err := range needAdmin {
		if !errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("%s without CAP_SYS_ADMIN = %v, want fs.ErrPermission", name, err)
		}
	}
	// What needs nothing works.
	for _, rel := range []string{"s/plain", "s/f"} {
		if id, err := SubvolumeID(filepath.Join(dir, rel)); err != nil || id != own {
			return fmt.Errorf("SubvolumeID(%s) = %d, %v; want %d", rel, id, err, own)
		}
	}
	info, err := SubvolumeInfoByID(filepath.Join(s, "plain"), 0)
	if err != nil || info.ID != own || info.Path != "" || info.Name != "s" {
		return fmt.Errorf("SubvolumeInfoByID(s/plain, 0) = %+v, %v; want id %d, no path", info, err, own)
	}
	// From the top level, s is another subvolume: a tree search.
	if info, err := SubvolumeInfoByID(top, own); !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("SubvolumeInfoByID(top, %d) = %+v, %v; want fs.ErrPermission", own, info, err)
	}
	if info, err := SubvolumeInfoByID(top, 0); err != nil || info.ID != BTRFS_FS_TREE_OBJECTID {
		return fmt.Errorf("SubvolumeInfoByID(top, 0) = %+v, %v; want the top level", info, err)
	}
	var order []string
	for info, err := range SubvolumesWith(s, ListOptions{Top: own, PostOrder: true}) {
		if err != nil {
			return fmt.Errorf("SubvolumesWith(own Top, PostOrder): %w", err)
		}
		order = append(order, info.Path)
	}
	if want := []string{"n1/n2", "n1"}; !slices.Equal(order, want) {
		return fmt.Errorf("unprivileged post-order = %v, want %v", order, want)
	}
	transid, err := SyncStart(s)
	if err == nil {
		err = SyncWait(s, transid)
	}
	if err != nil {
		return fmt.Errorf("SyncStart/SyncWait: %w", err)
	}
	// Recursive snapshots, writable and read-only, as the owner.
	for name, flags := range map[string]SnapshotFlags{"rw": SnapshotRecursive, "ro": SnapshotRecursive | SnapshotReadOnly} {
		dst := filepath.Join(dir, name)
		if err := Snapshot(s, dst, flags); err != nil {
			return fmt.Errorf("recursive snapshot %s: %w", name, err)
		}
		for _, rel := range []string{"", "n1", "n1/n2"} {
			fd, err := unix.Open(filepath.Join(dst, rel), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			isSub, err1 := IsSubvolumeFd(fd)
			ro, err2 := ReadOnlyFd(fd)
			unix.Close(fd)
			if !isSub || err1 != nil || err2 != nil || ro != (name == "ro") {
				return fmt.Errorf("%s/%s: subvolume %v (%v), read-only %v (%v)", name, rel, isSub, err1, ro, err2)
			}
		}
	}
	// Qgroup inheritance needs no privilege beyond the create's.
	inherit := &QgroupInherit{Qgroups: []uint64{QgroupID(1, 100)}}
	q := filepath.Join(dir, "q")
	if err := CreateSubvolumeWith(q, CreateOptions{QgroupInherit: inherit}); err != nil {
		return fmt.Errorf("CreateSubvolumeWith(QgroupInherit) unprivileged: %w", err)
	}
	qid, err := SubvolumeID(q)
	if err != nil {
		return err
	}
	fmt.Print(qid)
	return nil
})

func TestParityUnprivileged(t *testing.T) {
	fsys := btrfstest.New(t)
	btrfsCLI(t, "quota", "enable", fsys.Path)
	btrfsCLI(t, "qgroup", "create", "1/100", fsys.Path)
	dir := filepath.Join(fsys.Path, "home")
	mustMkdir(t, dir)
	if err := os.Chown(dir, testUID, testUID); err != nil {
		t.Fatal(err)
	}
	out, err := btrfstest.RunAs(t, btrfstest.Cred{UID: testUID, GID: testUID}, "parity-unprivileged", dir, fsys.Path)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	q := qgroupString(QgroupID(0, subvolID(t, filepath.Join(dir, "q"))))
	if strings.TrimSpace(out) != strings.TrimPrefix(q, "0/") {
		t.Fatalf("child made %q, parent sees %s", out, q)
	}
	if parents := cliQgroupParents(t, fsys.Path); parents[q] != "1/100" {
		t.Errorf("qgroup %s made unprivileged has parent %q, want 1/100", q, parents[q])
	}
}
