package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrstore/btrstore/kernel"
)

// Fuzz targets for the naming rules: what becomes a directory entry of the
// store. The seed corpora are in testdata/fuzz/<FuzzName>. Run one with
//
//	go test -run '^$' -fuzz '^FuzzEscape$' -fuzztime 30s ./store

// escapeSafe reports whether Escape keeps byte c as it is.
func escapeSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// unescape is the inverse of Escape, written from its specification: "c-",
// then safe bytes as they are and every other byte as % and two lowercase
// hex digits. It refuses anything Escape cannot produce (uppercase or
// missing hex digits, an escaped safe byte, an unescaped unsafe byte), so
// that Escape is injective exactly when unescape(Escape(x)) == x for all x.
func unescape(e string) (string, error) {
	rest, ok := strings.CutPrefix(e, "c-")
	if !ok {
		return "", fmt.Errorf("%q lacks the c- prefix", e)
	}
	hexVal := func(c byte) (byte, bool) {
		switch {
		case '0' <= c && c <= '9':
			return c - '0', true
		case 'a' <= c && c <= 'f':
			return c - 'a' + 10, true
		}
		return 0, false
	}
	var b strings.Builder
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case escapeSafe(c):
			b.WriteByte(c)
		case c == '%':
			if i+2 >= len(rest) {
				return "", fmt.Errorf("%q: %% at %d lacks two hex digits", e, i+2)
			}
			hi, ok1 := hexVal(rest[i+1])
			lo, ok2 := hexVal(rest[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("%q: %%%c%c at %d is not two lowercase hex digits", e, rest[i+1], rest[i+2], i+2)
			}
			d := hi<<4 | lo
			if escapeSafe(d) {
				return "", fmt.Errorf("%q: %%%c%c at %d escapes a safe byte", e, rest[i+1], rest[i+2], i+2)
			}
			b.WriteByte(d)
			i += 2
		default:
			return "", fmt.Errorf("%q: byte %#x at %d is neither safe nor escaped", e, c, i+2)
		}
	}
	return b.String(), nil
}

// closedStore is a Store whose methods get as far as their argument
// checks: every call that passes them returns ErrClosed, without touching
// any file descriptor. Its report lets it give caches to the caller.
func closedStore() *Store {
	return &Store{closed: true, report: &kernel.Report{UID: os.Geteuid(), GID: os.Getegid()},
		rootFd: -1, resultFd: -1, resultTmpFd: -1, cacheFd: -1, cacheTmpFd: -1, lockFd: -1}
}

// maxErrLen bounds the messages of refused names: they quote the name
// shortened, however long it is.
const maxErrLen = 400

// FuzzEscape checks Escape on pairs of names: its output is "c-" and bytes
// of [A-Za-z0-9._%-] only, decodes back to the name (so distinct names
// never share an entry), has the length the rule says, and cacheEntry,
// Cache and DeleteCache accept exactly the names whose escape fits in 255
// bytes, refusing the others with fs.ErrInvalid before anything else.
func FuzzEscape(f *testing.F) {
	for _, pair := range [][2]string{
		{"", "c-"},
		{"\nb", "\xab"}, // the seed's %x collided: both "c-%ab"
		{"opam-archives", "opam-archives/"},
		{"a b", "a%20b"},
		{"%", "%25"},
		{"..", "."},
		{"/", "\x00"},
		{"\xff\xfe", "Ünïcødé"},
		{strings.Repeat("a", 253), strings.Repeat("a", 254)},             // 255 and 256 bytes escaped
		{strings.Repeat("/", 84), strings.Repeat("/", 85)},               // 254 and 257
		{strings.Repeat("a", 250) + "+", strings.Repeat("a", 251) + "+"}, // 255 and 256
	} {
		f.Add(pair[0], pair[1])
	}
	ctx := context.Background()
	s := closedStore()
	f.Fuzz(func(t *testing.T, a, b string) {
		ea, eb := Escape(a), Escape(b)
		if (a == b) != (ea == eb) {
			t.Fatalf("Escape(%q) = %q, Escape(%q) = %q", a, ea, b, eb)
		}
		for _, name := range []string{a, b} {
			e := Escape(name)
			if !strings.HasPrefix(e, "c-") {
				t.Fatalf("Escape(%q) = %q lacks the c- prefix", name, e)
			}
			for i := 0; i < len(e); i++ {
				if !escapeSafe(e[i]) && e[i] != '%' {
					t.Fatalf("Escape(%q) = %q: byte %#x at %d", name, e, e[i], i)
				}
			}
			if back, err := unescape(e); err != nil || back != name {
				t.Fatalf("Escape(%q) = %q, which decodes to %q, %v", name, e, back, err)
			}
			unsafe := 0
			for i := 0; i < len(name); i++ {
				if !escapeSafe(name[i]) {
					unsafe++
				}
			}
			if want := 2 + len(name) + 2*unsafe; len(e) != want {
				t.Fatalf("Escape(%q) is %d bytes, want %d", name, len(e), want)
			}

			fits := len(e) <= maxName
			entry, err := cacheEntry(name)
			switch {
			case fits && (err != nil || entry != e):
				t.Fatalf("cacheEntry(%q) = %q, %v; want %q", name, entry, err, e)
			case fits:
				// The entry is one safe path component.
				if err := validID(entry); err != nil {
					t.Fatalf("cacheEntry(%q) = %q, which validID refuses: %v", name, entry, err)
				}
			case !errors.Is(err, fs.ErrInvalid):
				t.Fatalf("cacheEntry(%q), %d bytes escaped = %q, %v; want fs.ErrInvalid", name, len(e), entry, err)
			case len(err.Error()) > maxErrLen:
				t.Fatalf("cacheEntry error is %d bytes long", len(err.Error()))
			}

			// The public API draws the same line, before anything else.
			want := ErrClosed
			if !fits {
				want = fs.ErrInvalid
			}
			lease, err := s.Cache(ctx, name, Owner{os.Geteuid(), os.Getegid()})
			if lease != nil || !errors.Is(err, want) {
				t.Fatalf("Cache(%q) on a closed store = %v, %v; want %v", name, lease, err, want)
			}
			if err := s.DeleteCache(ctx, name); !errors.Is(err, want) {
				t.Fatalf("DeleteCache(%q) on a closed store = %v; want %v", name, err, want)
			}
		}
	})
}

// FuzzValidID checks that validID accepts exactly the single safe path
// components: not "", ".", "..", nothing with / or NUL, at most 255 bytes.
// It cross-checks the rule with path/filepath (an accepted id is its own
// Base and Clean, local, and joins to a direct child), and checks that
// Result, LogFile, Delete and Build (id and base) refuse exactly these
// ids with fs.ErrInvalid before anything else.
func FuzzValidID(f *testing.F) {
	for _, id := range []string{
		"", ".", "..", "...", "/", "a/", "/a", "a/b", "./a", "a\x00", "\x00",
		"sha256:0123456789abcdef", "build 1", ".hidden", "..a", "a..", "-rf", "~", "\\",
		"\xff", "\n", " ", "%2F",
		strings.Repeat("x", 255), strings.Repeat("x", 256), strings.Repeat("é", 128),
	} {
		f.Add(id)
	}
	ctx := context.Background()
	s := closedStore()
	f.Fuzz(func(t *testing.T, id string) {
		want := id != "" && id != "." && id != ".." && len(id) <= maxName && !strings.ContainsAny(id, "/\x00")
		err := validID(id)
		if (err == nil) != want {
			t.Fatalf("validID(%q) = %v, want valid = %v", id, err, want)
		}
		if err != nil && !errors.Is(err, fs.ErrInvalid) {
			t.Fatalf("validID(%q) = %v, want fs.ErrInvalid", id, err)
		}
		if err != nil && len(err.Error()) > maxErrLen {
			t.Fatalf("validID error is %d bytes long", len(err.Error()))
		}

		// The same rule in path/filepath's terms: one component that
		// filepath neither changes nor reads as "here" or "up".
		component := filepath.Base(id) == id && id != "/" && id != "." && id != ".."
		if fpWant := component && !strings.Contains(id, "\x00") && len(id) <= maxName; fpWant != want {
			t.Fatalf("validID(%q): filepath says one component = %v", id, fpWant)
		}
		if want {
			const root = "/store/result"
			joined := filepath.Join(root, id)
			if filepath.Clean(id) != id || !filepath.IsLocal(id) || filepath.Dir(joined) != root || filepath.Base(joined) != id {
				t.Fatalf("valid id %q: Clean %q, IsLocal %v, Join gives %q", id, filepath.Clean(id), filepath.IsLocal(id), joined)
			}
			if dir, file := filepath.Split(id); dir != "" || file != id {
				t.Fatalf("valid id %q splits into %q, %q", id, dir, file)
			}
		}

		// The public API refuses invalid ids before anything else.
		wantErr := ErrClosed
		if !want {
			wantErr = fs.ErrInvalid
		}
		fn := func(context.Context, string) error {
			t.Fatalf("Build on a closed store ran fn")
			return nil
		}
		if p, err := s.Result(id); p != "" || !errors.Is(err, wantErr) {
			t.Fatalf("Result(%q) = %q, %v; want %v", id, p, err, wantErr)
		}
		if p, err := s.LogFile(id); p != "" || !errors.Is(err, wantErr) {
			t.Fatalf("LogFile(%q) = %q, %v; want %v", id, p, err, wantErr)
		}
		if err := s.Delete(ctx, id); !errors.Is(err, wantErr) {
			t.Fatalf("Delete(%q) = %v; want %v", id, err, wantErr)
		}
		if err := s.Build(ctx, id, "", fn); !errors.Is(err, wantErr) {
			t.Fatalf("Build(%q, \"\") = %v; want %v", id, err, wantErr)
		}
		// As a base, "" means "start empty".
		baseErr := wantErr
		if id == "" {
			baseErr = ErrClosed
		}
		if err := s.Build(ctx, "x", id, fn); !errors.Is(err, baseErr) {
			t.Fatalf("Build(\"x\", base %q) = %v; want %v", id, err, baseErr)
		}
	})
}

// TestFuzzUnescapeRefuses checks the test's decoder itself: it must refuse
// everything Escape cannot produce, or FuzzEscape would not prove
// injectivity.
func TestFuzzUnescapeRefuses(t *testing.T) {
	for _, e := range []string{
		"", "x", "c", "C-a", "c-%", "c-%4", "c-%4g", "c-%AB", "c-%Ab", "c-%61", "c-%2e", "c-%2d", "c-%5f",
		"c- ", "c-/", "c-\x00", "c-\xff", "c-a%2", "c-%%20",
	} {
		if d, err := unescape(e); err == nil {
			t.Errorf("unescape(%q) = %q, want an error", e, d)
		}
	}
	for e, want := range map[string]string{"c-": "", "c-a.b_c-D9": "a.b_c-D9", "c-%25%2f%00%ff": "%/\x00\xff", "c-c-": "c-"} {
		if d, err := unescape(e); err != nil || d != want {
			t.Errorf("unescape(%q) = %q, %v; want %q", e, d, err, want)
		}
	}
}
