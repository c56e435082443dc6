package mountinfo

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const sampleMountInfo = `24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334492k,nr_inodes=3083623,mode=755
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
43 27 0:39 / /tmp/btrfstest-1/fs-2/mnt rw,relatime - btrfs /dev/loop0 rw,discard=async,space_cache=v2,user_subvol_rm_allowed,subvolid=5,subvol=/
44 43 0:39 /a\040b /tmp/with\040space/c\011d\134e rw,noatime shared:7 master:3 propagate_from:2 unbindable - btrfs /dev/loop0 ro,subvolid=256,subvol=/a\040b
45 27 0:50 / /srv/nosrc rw - tmpfs  rw,opt\054with\054commas
`

func TestParse(t *testing.T) {
	got, err := Parse(strings.NewReader(sampleMountInfo + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{ID: 24, ParentID: 27, Major: 0, Minor: 6, Root: "/", MountPoint: "/dev", FSType: "devtmpfs", Source: "devtmpfs",
			Options: []string{"rw", "relatime"}, SuperOptions: []string{"rw", "size=12334492k", "nr_inodes=3083623", "mode=755"}},
		{ID: 27, ParentID: 1, Major: 254, Minor: 0, Root: "/", MountPoint: "/", FSType: "ext4", Source: "/dev/vda",
			Options: []string{"rw", "relatime"}, SuperOptions: []string{"rw", "discard"}},
		{ID: 43, ParentID: 27, Major: 0, Minor: 39, Root: "/", MountPoint: "/tmp/btrfstest-1/fs-2/mnt", FSType: "btrfs", Source: "/dev/loop0",
			Options:      []string{"rw", "relatime"},
			SuperOptions: []string{"rw", "discard=async", "space_cache=v2", "user_subvol_rm_allowed", "subvolid=5", "subvol=/"}},
		{ID: 44, ParentID: 43, Major: 0, Minor: 39, Root: "/a b", MountPoint: "/tmp/with space/c\td\\e", FSType: "btrfs", Source: "/dev/loop0",
			Options: []string{"rw", "noatime"}, SuperOptions: []string{"ro", "subvolid=256", "subvol=/a b"}},
		{ID: 45, ParentID: 27, Major: 0, Minor: 50, Root: "/", MountPoint: "/srv/nosrc", FSType: "tmpfs", Source: "",
			Options: []string{"rw"}, SuperOptions: []string{"rw", "opt,with,commas"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
	}

	if !want[2].HasOption("user_subvol_rm_allowed") || want[1].HasOption("user_subvol_rm_allowed") {
		t.Error("HasOption(user_subvol_rm_allowed) wrong")
	}
	for opt, wantHas := range map[string]bool{
		"ro": true, "rw": true, "noatime": true, "subvol": true, "subvol=/a b": true,
		"subvol=/a": false, "subvolid=256": true, "subvolid=5": false, "relatime": false, "sub": false,
	} {
		if got := want[3].HasOption(opt); got != wantHas {
			t.Errorf("HasOption(%q) = %v, want %v", opt, got, wantHas)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{
		"24 27 0:6 / /dev rw,relatime devtmpfs devtmpfs rw",   // no separator
		"24 27 0:6 / /dev - devtmpfs devtmpfs rw",             // 5 fields before
		"24 27 0:6 / /dev rw - devtmpfs devtmpfs",             // 2 after
		"x 27 0:6 / /dev rw - devtmpfs devtmpfs rw",           // id
		"24 y 0:6 / /dev rw - devtmpfs devtmpfs rw",           // parent
		"24 27 06 / /dev rw - devtmpfs devtmpfs rw",           // device
		"24 27 0:x / /dev rw - devtmpfs devtmpfs rw",          // minor
		"24 27 4294967296:0 / /dev rw - devtmpfs devtmpfs rw", // major overflow
	} {
		in := sampleMountInfo + bad + "\n"
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse accepted %q", bad)
		} else if !strings.Contains(err.Error(), "line 6") {
			t.Errorf("error %q does not name line 6", err)
		}
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:           "/plain",
		`/a\040b`:          "/a b",
		`/t\011x\134y\012`: "/t\tx\\y\n",
		`/short\04`:        `/short\04`,
		`/end\`:            `/end\`,
		`/not\999\040`:     `/not\999 `,
		`/big\400`:         `/big\400`,
		`\377`:             "\xff",
		`\\040`:            `\ `,
		`/two\040\040sp`:   "/two  sp",
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// escape is the inverse of Unescape, escaping more than the kernel does so
// that any field survives.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("/_.:=+@", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, `\%03o`, c)
		}
	}
	return b.String()
}

func formatLine(m Mount) string {
	opts := func(list []string) string {
		esc := make([]string, len(list))
		for i, o := range list {
			esc[i] = escape(o)
		}
		return strings.Join(esc, ",")
	}
	return fmt.Sprintf("%d %d %d:%d %s %s %s - %s %s %s", m.ID, m.ParentID, m.Major, m.Minor,
		escape(m.Root), escape(m.MountPoint), opts(m.Options),
		escape(m.FSType), escape(m.Source), opts(m.SuperOptions))
}

// FuzzParse checks that Parse never panics, and that what it parses
// survives formatting and parsing again. The seed corpus is in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleMountInfo))
	f.Fuzz(func(t *testing.T, data []byte) {
		mounts, err := Parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		var again bytes.Buffer
		for _, m := range mounts {
			// A list with one empty option formats like an empty list.
			if len(m.Options) == 1 && m.Options[0] == "" || len(m.SuperOptions) == 1 && m.SuperOptions[0] == "" {
				return
			}
			fmt.Fprintln(&again, formatLine(m))
		}
		got, err := Parse(&again)
		if err != nil {
			t.Fatalf("reparse of %q: %v", again.String(), err)
		}
		if !reflect.DeepEqual(got, mounts) {
			t.Fatalf("round trip changed the mounts:\n got %+v\nwant %+v", got, mounts)
		}
	})
}

func TestRead(t *testing.T) {
	mounts, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if m.MountPoint == "/" && m.FSType != "" {
			return
		}
	}
	t.Errorf("no mount of / among %d mounts of /proc/self/mountinfo", len(mounts))
}

func TestOnOrBelow(t *testing.T) {
	for _, tc := range []struct {
		point string
		want  bool
	}{
		{"/a/b", true},
		{"/a/b/c", true},
		{"/a/bc", false},
		{"/a", false},
		{"/", false},
	} {
		if got := (Mount{MountPoint: tc.point}).OnOrBelow("/a/b"); got != tc.want {
			t.Errorf("mount on %s: OnOrBelow(/a/b) = %v, want %v", tc.point, got, tc.want)
		}
	}
}
