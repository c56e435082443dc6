package ioctl

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"golang.org/x/sys/unix"
)

// TestErrorMap checks the errno map of DESIGN.md: each case gives the
// kernel's errno and an error that errors.Is matches with the io/fs
// sentinel a caller would use, and changes nothing on disk.
func TestErrorMap(t *testing.T) {
	fsys := btrfstest.New(t)
	other := btrfstest.New(t)
	root := fsys.Path
	mustCreate(t, root, "exists", "parent", "parent/child", "default", "src")
	mustMkdir(t, filepath.Join(root, "plain"))
	mustMkdir(t, filepath.Join(root, "elsewhere"))
	if err := Snapshot(filepath.Join(root, "src"), filepath.Join(root, "ro"), SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, other.Path, "foreign")
	rootFd := mustOpenDir(t, root)
	if err := DefaultSubvol(rootFd, subvolID(t, filepath.Join(root, "default"))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { DefaultSubvol(rootFd, BTRFS_FS_TREE_OBJECTID) })

	cases := []struct {
		name  string
		do    func() error
		errno unix.Errno
		is    error // io/fs sentinel, or nil where none fits
	}{
		{"existing name", func() error { return CreateSubvolume(filepath.Join(root, "exists")) }, unix.EEXIST, fs.ErrExist},
		{"dot", func() error { return CreateSubvolumeAt(rootFd, ".") }, unix.EEXIST, fs.ErrExist},
		{"empty name", func() error { return CreateSubvolumeAt(rootFd, "") }, unix.EACCES, fs.ErrPermission},
		{"slash in name", func() error { return CreateSubvolumeAt(rootFd, "a/b") }, unix.EINVAL, fs.ErrInvalid},
		{"256-byte name", func() error { return CreateSubvolumeAt(rootFd, strings.Repeat("n", 256)) }, unix.ENAMETOOLONG, nil},
		{"NUL in name", func() error { return CreateSubvolumeAt(rootFd, "a\x00b") }, unix.EINVAL, fs.ErrInvalid},
		{"source on another fs", func() error {
			return Snapshot(filepath.Join(other.Path, "foreign"), filepath.Join(root, "x"), 0)
		}, unix.EXDEV, nil},
		{"delete with child subvolumes", func() error { return DeleteSubvolume(filepath.Join(root, "parent"), 0) }, unix.ENOTEMPTY, nil},
		{"delete default subvolume", func() error { return DeleteSubvolume(filepath.Join(root, "default"), 0) }, unix.EPERM, fs.ErrPermission},
		{"delete plain directory", func() error { return DeleteSubvolume(filepath.Join(root, "plain"), 0) }, unix.EINVAL, fs.ErrInvalid},
		{"delete missing", func() error { return DeleteSubvolume(filepath.Join(root, "missing"), 0) }, unix.ENOENT, fs.ErrNotExist},
		{"create in read-only parent", func() error { return CreateSubvolume(filepath.Join(root, "ro/new")) }, unix.EROFS, nil},
		{"move read-only subvolume to another directory", func() error {
			return os.Rename(filepath.Join(root, "ro"), filepath.Join(root, "elsewhere/ro"))
		}, unix.EROFS, nil},
		{"unknown snapshot flag", func() error {
			return Snapshot(filepath.Join(root, "src"), filepath.Join(root, "y"), 1<<40)
		}, unix.EINVAL, fs.ErrInvalid},
		{"unknown delete flag", func() error { return DeleteSubvolume(filepath.Join(root, "src"), 1<<40) }, unix.EINVAL, fs.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := listAll(t, root)
			err := c.do()
			if !errors.Is(err, c.errno) {
				t.Fatalf("got %v, want errno %v (%d)", err, c.errno, int(c.errno))
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("%v does not match %v", err, c.is)
			}
			var pe *fs.PathError
			if strings.Contains(c.name, "move") { // os.Rename gives *os.LinkError
			} else if !errors.As(err, &pe) || !strings.HasPrefix(pe.Op, "BTRFS_IOC_") {
				t.Errorf("%v is not an *fs.PathError naming the ioctl", err)
			}
			if after := listAll(t, root); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("subvolumes changed: %v -> %v", before, after)
			}
		})
	}
	// Renaming a read-only subvolume within its directory works.
	if err := os.Rename(filepath.Join(root, "ro"), filepath.Join(root, "ro2")); err != nil {
		t.Errorf("rename within the directory: %v", err)
	}
}

// TestNotBtrfs checks that no btrfs ioctl reaches another filesystem.
func TestNotBtrfs(t *testing.T) {
	fsys := btrfstest.New(t)
	mustMkdir(t, filepath.Join(fsys.Path, "plain"))
	for name, err := range map[string]error{
		"create":     CreateSubvolume("/proc/x"),
		"snapshot":   Snapshot("/proc", filepath.Join(fsys.Path, "x"), 0),
		"delete":     DeleteSubvolume("/proc/self", 0),
		"delete id":  DeleteSubvolumeByID("/proc", 300),
		"sync":       Sync("/proc"),
		"read-only":  func() error { _, err := ReadOnly("/proc"); return err }(),
		"set flags":  SetReadOnly("/proc", true),
		"usage":      func() error { _, err := FilesystemUsage("/proc"); return err }(),
		"wait":       WaitDeleted(t.Context(), "/proc"),
		"info":       func() error { _, err := SubvolumeInfo("/proc"); return err }(),
		"not subvol": Snapshot(filepath.Join(fsys.Path, "plain"), filepath.Join(fsys.Path, "y"), 0),
		"list plain": firstErr(Subvolumes(filepath.Join(fsys.Path, "plain"))),
	} {
		want := ErrNotBtrfs
		if strings.Contains(name, "subvol") || strings.Contains(name, "plain") {
			want = ErrNotSubvolume
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
}

func listAll(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	for info, err := range Subvolumes(root) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Path)
	}
	return out
}

func firstErr(seq func(func(SubvolInfo, error) bool)) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return nil
}
