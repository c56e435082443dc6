package ioctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/internal/beneath"
	"golang.org/x/sys/unix"
)

var _ = registerChild("list-json", func(args []string) error {
	type entry struct {
		Path string
		ID   uint64
	}
	if len(args) > 1 && args[1] == "no-openat2" {
		beneath.DisableOpenat2()
	}
	var out []entry
	for info, err := range Subvolumes(args[0]) {
		if err != nil {
			return err
		}
		out = append(out, entry{info.Path, info.ID})
	}
	return json.NewEncoder(os.Stdout).Encode(out)
})

func mustMount(t *testing.T, source, target, fstype string, flags uintptr) {
	t.Helper()
	if err := unix.Mount(source, target, fstype, flags, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", source, target, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(target, 0); err != nil {
			unix.Unmount(target, unix.MNT_DETACH)
		}
	})
}

// Issue 9 item 2: the unprivileged listing skips what the caller cannot
// reach, or what is not the subvolume the root tree names at that place,
// and still lists the normal subvolume beside each. The privileged listing
// reads the root tree and lists them all.
func TestSubvolumesUnprivilegedSkips(t *testing.T) {
	fsys := btrfstest.New(t)
	other := btrfstest.New(t) // a second btrfs, to mount below
	mustCreate(t, other.Path, "wrongfs-sub")
	mustCreate(t, fsys.Path, "elsewhere", "elsewhere/deep")
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, s string)
		all   []string // what the privileged listing has beside normal, normal/n2
	}{
		{"unsearchable directory", func(t *testing.T, s string) {
			mustMkdir(t, filepath.Join(s, "lockeddir"))
			mustCreate(t, s, "lockeddir/hidden")
			mustChmod(t, filepath.Join(s, "lockeddir"), 0o700)
		}, []string{"lockeddir/hidden"}},
		{"unsearchable subvolume", func(t *testing.T, s string) {
			mustCreate(t, s, "lockedsv", "lockedsv/inner")
			mustChmod(t, filepath.Join(s, "lockedsv"), 0o700)
		}, []string{"lockedsv", "lockedsv/inner"}},
		{"tmpfs mounted below", func(t *testing.T, s string) {
			mustCreate(t, s, "tmpfs")
			mustMount(t, "tmpfs", filepath.Join(s, "tmpfs"), "tmpfs", 0)
		}, []string{"tmpfs"}},
		{"other btrfs mounted below", func(t *testing.T, s string) {
			mustCreate(t, s, "wrongfs")
			mustMount(t, other.Path, filepath.Join(s, "wrongfs"), "", unix.MS_BIND)
		}, []string{"wrongfs"}},
		{"same-fs subvolume bind-mounted over another", func(t *testing.T, s string) {
			mustCreate(t, s, "bound")
			mustMount(t, filepath.Join(fsys.Path, "elsewhere"), filepath.Join(s, "bound"), "", unix.MS_BIND)
		}, []string{"bound"}},
	} {
		for _, resolve := range []string{"openat2", "no-openat2"} {
			t.Run(c.name+","+resolve, func(t *testing.T) {
				s := filepath.Join(fsys.Path, strings.ReplaceAll(c.name, " ", "-")+"-"+resolve)
				mustCreate(t, fsys.Path, filepath.Base(s), filepath.Base(s)+"/normal", filepath.Base(s)+"/normal/n2")
				c.setup(t, s)
				out, err := btrfstest.RunAs(t, btrfstest.Cred{UID: testUID, GID: testUID}, "list-json", s, resolve)
				if err != nil {
					t.Fatalf("unprivileged listing: %v\n%s", err, out)
				}
				var got []struct {
					Path string
					ID   uint64
				}
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("child output %q: %v", out, err)
				}
				var paths []string
				for _, e := range got {
					paths = append(paths, e.Path)
					if want := subvolID(t, filepath.Join(s, e.Path)); e.ID != want {
						t.Errorf("%s listed with id %d, want %d", e.Path, e.ID, want)
					}
				}
				if want := []string{"normal", "normal/n2"}; !slices.Equal(paths, want) {
					t.Errorf("unprivileged listing = %v, want %v", got, want)
				}
				var all []string
				for info, err := range Subvolumes(s) {
					if err != nil {
						t.Fatal(err)
					}
					all = append(all, info.Path)
				}
				want := append([]string{"normal", "normal/n2"}, c.all...)
				slices.Sort(all)
				slices.Sort(want)
				if !slices.Equal(all, want) {
					t.Errorf("privileged listing = %v, want %v", all, want)
				}
			})
		}
	}
}

func mustChmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
