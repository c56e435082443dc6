package ioctl

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
)

// btrfsCLI runs the btrfs command, the second source the tests check
// against. The library itself never forks.
func btrfsCLI(t testing.TB, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("btrfs"); err != nil {
		btrfstest.SkipOrFail(t, "btrfs command not found (apt-get install btrfs-progs): %v", err)
	}
	out, err := exec.Command("btrfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("btrfs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// parseShow parses `btrfs subvolume show`: the first line is the path from
// the top level, then "Key: value" lines.
func parseShow(out string) (path string, fields map[string]string) {
	fields = map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for first := true; sc.Scan(); first = false {
		line := sc.Text()
		if first {
			path = strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return path, fields
}

func TestSubvolumeInfoMatchesCLI(t *testing.T) {
	fsys := btrfstest.New(t)
	mustCreate(t, fsys.Path, "a")
	mustMkdir(t, filepath.Join(fsys.Path, "a/dir"))
	mustCreate(t, fsys.Path, "a/dir/nested")
	if err := Snapshot(filepath.Join(fsys.Path, "a"), filepath.Join(fsys.Path, "a/dir/snap"), SnapshotReadOnly); err != nil {
		t.Fatal(err)
	}
	if err := Sync(fsys.Path); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"a", "a/dir/nested", "a/dir/snap"} {
		p := filepath.Join(fsys.Path, rel)
		info, err := SubvolumeInfo(p)
		if err != nil {
			t.Fatal(err)
		}
		cliPath, f := parseShow(btrfsCLI(t, "subvolume", "show", p))
		u := func(id uint64) string { return strconv.FormatUint(id, 10) }
		flags := "-"
		if info.ReadOnly {
			flags = "readonly"
		}
		for _, c := range []struct{ name, got, want string }{
			{"path", info.Path, cliPath},
			{"Name", info.Name, f["Name"]},
			{"UUID", info.UUID.String(), f["UUID"]},
			{"Parent UUID", info.ParentUUID.String(), f["Parent UUID"]},
			{"Received UUID", info.ReceivedUUID.String(), f["Received UUID"]},
			{"Subvolume ID", u(info.ID), f["Subvolume ID"]},
			{"Generation", u(info.Generation), f["Generation"]},
			{"Gen at creation", u(info.OTransID), f["Gen at creation"]},
			{"Parent ID", u(info.ParentID), f["Parent ID"]},
			{"Flags", flags, f["Flags"]},
			{"Creation time", info.Otime.Local().Format("2006-01-02 15:04:05 -0700"), f["Creation time"]},
		} {
			if c.got != c.want {
				t.Errorf("%s: %s = %q, btrfs subvolume show says %q", rel, c.name, c.got, c.want)
			}
		}
	}
}

// TestListingMatchesCLI compares Subvolumes with `btrfs subvolume list`,
// whose paths are relative to the top level.
func TestListingMatchesCLI(t *testing.T) {
	fsys := btrfstest.New(t)
	nestedTree(t, fsys.Path)
	cli := map[string]string{} // path -> id
	for _, line := range strings.Split(strings.TrimSpace(btrfsCLI(t, "subvolume", "list", fsys.Path)), "\n") {
		// "ID 256 gen 7 top level 5 path a"
		f := strings.Fields(line)
		if len(f) < 9 {
			t.Fatalf("unexpected line %q", line)
		}
		cli[strings.Join(f[8:], " ")] = f[1]
	}
	n := 0
	for info, err := range Subvolumes(fsys.Path) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if id, ok := cli[info.Path]; !ok || id != strconv.FormatUint(info.ID, 10) {
			t.Errorf("%s (id %d): btrfs subvolume list has id %q", info.Path, info.ID, id)
		}
	}
	if n != len(cli) {
		t.Errorf("listed %d subvolumes, btrfs subvolume list %d: %v", n, len(cli), cli)
	}
}
