package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/go-logr/logr"
)

// checkInvariants fails t unless the store at root is in the state Open
// leaves it in (and every operation that returned leaves it in):
//
//   - result-tmp and cache-tmp are empty;
//   - every result/<id> is a plain directory holding exactly one entry,
//     "snapshot", a read-only subvolume;
//   - every cache/ entry is named c-* and is a read-only subvolume;
//   - no other subvolume exists anywhere below root.
//
// It checks the layout only, not what results hold. Call it while no
// operation runs (after Open, between operations, or after Close).
func checkInvariants(t testing.TB, root string) {
	t.Helper()
	checkLayout(t, root, false)
}

// checkLayout is checkInvariants, but with leftovers it also accepts what a
// killed process may leave and Open removes: anything in result-tmp and
// cache-tmp, an empty result/<id> (a build killed before its snapshot),
// and cache/t-* entries. The rest (results complete and
// read-only, caches read-only) must hold at every instant, crash or not.
func checkLayout(t testing.TB, root string, leftovers bool) {
	t.Helper()
	for _, dir := range []string{resultTmpDir, cacheTmpDir} {
		if names := tmpEntries(t, filepath.Join(root, dir)); len(names) > 0 && !leftovers {
			t.Errorf("invariant: %s is not empty: %v", dir, names)
		}
	}
	for _, name := range entries(t, filepath.Join(root, resultTmpDir)) {
		// A spare holds its work subvolume, or nothing while it is
		// being made or removed.
		if names, err := invNames(filepath.Join(root, resultTmpDir, name)); isSpare(name) && !leftovers && (err != nil || len(names) > 0 && !slices.Equal(names, []string{workName})) {
			t.Errorf("invariant: spare %s/%s holds %v (%v), want %s or nothing", resultTmpDir, name, names, err, workName)
		}
	}
	for _, id := range entries(t, filepath.Join(root, resultDir)) {
		if leftovers && invEmptyDir(filepath.Join(root, resultDir, id)) {
			continue
		}
		if err := invCheckResult(filepath.Join(root, resultDir, id)); err != "" {
			t.Errorf("invariant: result %s: %s", id, err)
		}
	}
	for _, name := range entries(t, filepath.Join(root, cacheDir)) {
		switch {
		case strings.HasPrefix(name, "c-"):
			if err := invCheckReadOnlySubvolume(filepath.Join(root, cacheDir, name)); err != "" {
				t.Errorf("invariant: cache/%s: %s", name, err)
			}
		case leftovers && strings.HasPrefix(name, "t-"):
		default:
			t.Errorf("invariant: cache/%s: unexpected entry (only c-* caches belong there)", name)
		}
	}
	for _, p := range invSubvolumes(t, root) {
		if !invAllowedSubvolume(p, leftovers) {
			t.Errorf("invariant: unexpected subvolume %s", p)
		}
	}
}

// invCheckResult describes what is wrong with the result directory dir, or
// returns "".
func invCheckResult(dir string) string {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err.Error()
	}
	if !fi.IsDir() {
		return "not a directory: " + fi.Mode().String()
	}
	if sub, err := ioctl.IsSubvolume(dir); err != nil || sub {
		return "not a plain directory (subvolume or error: " + invErrString(err) + ")"
	}
	names, err := invNames(dir)
	if err != nil {
		return err.Error()
	}
	if len(names) != 1 || names[0] != snapshotName {
		return "holds " + strings.Join(names, ", ") + ", want exactly " + snapshotName
	}
	if msg := invCheckReadOnlySubvolume(filepath.Join(dir, snapshotName)); msg != "" {
		return snapshotName + ": " + msg
	}
	return ""
}

// invCheckReadOnlySubvolume describes what keeps path from being a
// read-only subvolume, or returns "".
func invCheckReadOnlySubvolume(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		return err.Error()
	}
	if !fi.IsDir() {
		return "not a directory: " + fi.Mode().String()
	}
	info, err := ioctl.SubvolumeInfo(path)
	if err != nil {
		return "not a subvolume: " + err.Error()
	}
	if !info.ReadOnly {
		return "subvolume is writable"
	}
	return ""
}

// invAllowedSubvolume reports whether a subvolume may exist at p (relative
// to the store's root).
func invAllowedSubvolume(p string, leftovers bool) bool {
	parts := strings.Split(p, "/")
	switch {
	case len(parts) == 3 && parts[0] == resultDir && parts[2] == snapshotName:
		return true
	case len(parts) == 2 && parts[0] == cacheDir && strings.HasPrefix(parts[1], "c-"):
		return true
	case len(parts) == 3 && parts[0] == resultTmpDir && isSpare(parts[1]) && parts[2] == workName:
		return true
	case !leftovers:
		return false
	case parts[0] == resultTmpDir, parts[0] == cacheTmpDir:
		return true
	default:
		return len(parts) == 2 && parts[0] == cacheDir && strings.HasPrefix(parts[1], "t-")
	}
}

// invSubvolumes lists every subvolume below root, relative to root. Root
// need not be a subvolume itself: the listing starts at the subvolume that
// holds it.
func invSubvolumes(t testing.TB, root string) []string {
	t.Helper()
	top := root
	for {
		sub, err := ioctl.IsSubvolume(top)
		if err != nil {
			t.Fatalf("invariant check: %v", err)
		}
		if sub || top == "/" {
			break
		}
		top = filepath.Dir(top)
	}
	rel, err := filepath.Rel(top, root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for info, err := range ioctl.Subvolumes(top) {
		if err != nil {
			t.Fatalf("invariant check: list subvolumes: %v", err)
		}
		p := info.Path
		if rel != "." {
			var ok bool
			if p, ok = strings.CutPrefix(p, rel+"/"); !ok {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

// invNames lists dir, sorted.
// invEmptyDir reports whether p is an empty directory (not a symlink to
// one).
func invEmptyDir(p string) bool {
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() {
		return false
	}
	names, err := invNames(p)
	return err == nil && len(names) == 0
}

func invNames(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names, err
}

func invErrString(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}

// What follows is shared by the crash test and the soak (soak_test.go,
// build tag soak): the files a child writes into results and caches and
// how the parent checks them, the child's operation log, what the parent
// sees on disk after a kill, and what Open repairs.

// Files of a result and of a cache version.
const (
	crashFiles      = 20 // files per result, plus "base" and "DONE"
	crashCacheFiles = 10 // files per cache version, plus "sum"
	payloadName     = "payload"
)

func crashFileName(i int) string { return fmt.Sprintf("f%02d", i) }

// crashContent is the content of file i of result id.
func crashContent(id string, i int) []byte {
	return bytes.Repeat(fmt.Appendf(nil, "%s/%02d\n", id, i), 100)
}

// crashWriteResult is the build function: it checks that a work dir made
// from base holds base's files, then writes id's files, syncing some, and
// "DONE" last.
func crashWriteResult(dir, id, base string, hook func(string)) error {
	hook("in-fn-start")
	if base != "" {
		if err := verifyResult(dir, base, false); err != nil {
			return fmt.Errorf("work dir of %s from base %s: %w", id, base, err)
		}
		if err := os.Remove(filepath.Join(dir, "DONE")); err != nil {
			return err
		}
	}
	for i := range crashFiles {
		if err := crashWrite(filepath.Join(dir, crashFileName(i)), crashContent(id, i), i%5 == 4); err != nil {
			return err
		}
		if i == crashFiles/2 {
			hook("in-fn-after-write")
		}
	}
	if err := crashWrite(filepath.Join(dir, "base"), []byte(base), false); err != nil {
		return err
	}
	if err := crashWrite(filepath.Join(dir, "DONE"), []byte(id), true); err != nil {
		return err
	}
	hook("in-fn-end")
	return nil
}

// verifyResult checks that dir holds exactly the files of result id: the
// crash test's, and with payload the soak's payload too.
func verifyResult(dir, id string, payload bool) error {
	names, err := invNames(dir)
	if err != nil {
		return err
	}
	want := []string{"DONE", "base"}
	if payload {
		want = append(want, payloadName)
	}
	for i := range crashFiles {
		want = append(want, crashFileName(i))
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		return fmt.Errorf("holds %v, want %v", names, want)
	}
	for i := range crashFiles {
		b, err := os.ReadFile(filepath.Join(dir, crashFileName(i)))
		if err != nil {
			return err
		}
		if !bytes.Equal(b, crashContent(id, i)) {
			return fmt.Errorf("%s: wrong content %.40q...", crashFileName(i), b)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "DONE")); err != nil || string(b) != id {
		return fmt.Errorf("DONE = %q, %v; want %q", b, err, id)
	}
	if !payload {
		return nil
	}
	if b, err := os.ReadFile(filepath.Join(dir, payloadName)); err != nil || !bytes.Equal(b, resultPayload(id)) {
		return fmt.Errorf("%s: %d bytes, %v; not %s's", payloadName, len(b), err, id)
	}
	return nil
}

// resultPayload is the content of a soak result's payload file:
// 16-512 KiB of pseudo-random bytes (real data extents, unlike the crash
// test's small files, which btrfs keeps inline in the metadata).
func resultPayload(id string) []byte {
	h := fnv.New64a()
	h.Write([]byte(id))
	rng := rand.New(rand.NewPCG(h.Sum64(), 0))
	b := make([]byte, 16<<10+rng.IntN(496<<10))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b
}

// crashCacheContent is the content of file i of cache version v.
func crashCacheContent(v, i int) []byte {
	return bytes.Repeat(fmt.Appendf(nil, "version %d file %d\n", v, i), 50)
}

func crashCacheSum(files [][]byte) string {
	h := sha256.New()
	for _, f := range files {
		h.Write(f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// crashWriteCache rewrites the clone dir as version v, "sum" last.
func crashWriteCache(dir string, v int, hook func(string)) error {
	var files [][]byte
	for i := range crashCacheFiles {
		c := crashCacheContent(v, i)
		files = append(files, c)
		if err := crashWrite(filepath.Join(dir, fmt.Sprintf("v%02d", i)), c, i%4 == 3); err != nil {
			return err
		}
		if i == crashCacheFiles/2 {
			hook("in-clone-write")
		}
	}
	return crashWrite(filepath.Join(dir, "sum"), []byte(crashCacheSum(files)), true)
}

// crashCacheVersion returns the version a cache (or clone) dir holds: 0 if
// it is empty, else the version all its files agree on, checked against
// "sum". Anything else is an error.
func crashCacheVersion(dir string) (int, error) {
	names, err := invNames(dir)
	if err != nil || len(names) == 0 {
		return 0, err
	}
	want := []string{"sum"}
	for i := range crashCacheFiles {
		want = append(want, fmt.Sprintf("v%02d", i))
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		return 0, fmt.Errorf("holds %v, want %v", names, want)
	}
	version := -1
	var files [][]byte
	for i := range crashCacheFiles {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("v%02d", i)))
		if err != nil {
			return 0, err
		}
		var v, j int
		if _, err := fmt.Sscanf(string(b), "version %d file %d\n", &v, &j); err != nil || j != i || !bytes.Equal(b, crashCacheContent(v, i)) {
			return 0, fmt.Errorf("v%02d: bad content %.40q...", i, b)
		}
		if version >= 0 && v != version {
			return 0, fmt.Errorf("mixed versions: v00..v%02d hold %d, v%02d holds %d", i-1, version, i, v)
		}
		version = v
		files = append(files, b)
	}
	sum, err := os.ReadFile(filepath.Join(dir, "sum"))
	if err != nil {
		return 0, err
	}
	if string(sum) != crashCacheSum(files) {
		return 0, fmt.Errorf("sum %.16s... does not match version %d's files", sum, version)
	}
	return version, nil
}

func crashWrite(path string, content []byte, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(content)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// opLog is a child's log of its operations, in the store's state
// directory (O_APPEND, one write and an fsync per line), read by the
// parent after each kill (logTail). The lines about results, which
// resultModel reads:
//
//	build-start <id>   before Build
//	done <id>          after Build returned nil
//	build-failed <id>  Build failed because another builder deleted its base first (soak)
//	delete-start <id>  before Delete
//	deleted <id>       after Delete returned
//	prune-start <n>    before Prune with Limit n (0: none)
//	pruned <id>        after Prune returned, one line per id it deleted
//	prune-done         after the pruned lines
//
// The crash test and the soak add their own lines about caches.
type opLog struct{ f *os.File }

// childArgs parses a crash or soak child's arguments: the store root, a
// tag that makes its ids unique, and a random seed.
func childArgs(args []string) (root, tag string, seed uint64, err error) {
	if len(args) != 3 {
		return "", "", 0, fmt.Errorf("child: want root, tag, seed; got %q", args)
	}
	seed, err = strconv.ParseUint(args[2], 10, 64)
	return args[0], args[1], seed, err
}

// childOpen is how a crash or soak child starts: it opens the store at
// root and the opLog name, lists the results (oldest first: ids sort by
// age), and says "ready" (btrfstest.Child.Ready). Neither the store nor the
// log is closed: the child ends by SIGKILL.
func childOpen(root, logName string) (s *Store, log *opLog, results []string, err error) {
	if s, err = Open(context.Background(), root, Config{}); err != nil {
		return nil, nil, nil, err
	}
	if log, err = openOpLog(s, logName); err != nil {
		return nil, nil, nil, err
	}
	if results, err = invNames(filepath.Join(root, resultDir)); err != nil {
		return nil, nil, nil, err
	}
	_, err = os.Stdout.WriteString("ready\n")
	return s, log, results, err
}

// openOpLog opens (creates) the log name in s's state directory for
// appending.
func openOpLog(s *Store, name string) (*opLog, error) {
	f, err := os.OpenFile(filepath.Join(s.StateDir(), name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	return &opLog{f}, err
}

// note appends a line to the log, in one write (SIGKILL cannot split it),
// and syncs it.
func (l *opLog) note(format string, a ...any) {
	if _, err := l.f.Write(fmt.Appendf(nil, format+"\n", a...)); err != nil {
		panic(err)
	}
	if err := l.f.Sync(); err != nil {
		panic(err)
	}
}

// logTail reads a child's opLog as it grows.
type logTail struct{ offset int64 } // of the first byte not read yet

// read returns the whole lines appended to the log at path since the last
// call (none if there is no log). A partial line after them fails tb
// (SIGKILL cannot split a line) and is dropped.
func (l *logTail) read(tb testing.TB, path string) (lines []string) {
	tb.Helper()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	defer f.Close()
	if _, err := f.Seek(l.offset, io.SeekStart); err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	news, err := io.ReadAll(f)
	if err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	l.offset += int64(len(news))
	whole := bytes.LastIndexByte(news, '\n') + 1
	if whole > 0 {
		lines = strings.Split(string(news[:whole-1]), "\n")
	}
	if whole < len(news) {
		tb.Errorf("%s ends in a partial line %q (dropped)", filepath.Base(path), news[whole:])
	}
	return lines
}

// planSeed returns the seed of a crash test's or soak's plan: $env if
// set, else a new one, which it logs.
func planSeed(t *testing.T, env string) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(env); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", env, err)
		}
	}
	t.Logf("seed %d (%s=%d repeats the plan; the kill timings still vary)", seed, env, seed)
	return seed
}

// awaitReady waits up to 60 s for child c to say it is ready, or to end,
// and returns how long it took to get ready (0 if it did not), and false
// if it did neither.
func awaitReady(c *btrfstest.Child) (startup time.Duration, ok bool) {
	select {
	case <-c.Ready():
		return time.Since(c.Started), true
	case <-c.Exited():
		return 0, true
	case <-time.After(60 * time.Second):
		return 0, false
	}
}

// resultModel is what a child's log says about results: which must be on
// disk after a kill, and which may be. The crash and soak models hold one.
// A result may disappear only through a Delete of it or a Prune.
type resultModel struct {
	status  map[string]string // id -> started, done, deleting, gone, pruned, lost
	done    map[string]bool   // ids whose status is done
	pending map[string]bool   // ids whose status is started or deleting
	// unfinished holds the ids of builds killed before their result was
	// published: Open may still publish them, if they were frozen.
	unfinished map[string]bool
	// A Prune started and not done: pruneLimit is its Limit, or -1 if
	// none runs; prunedNow counts the pruned lines it logged so far.
	pruneLimit, prunedNow int
	// Prunes: done; killed (running at a kill); results pruned, as
	// logged and as seen missing after a Prune was killed.
	prunes, prunesKilled, pruned, prunedKilled int
}

func newResultModel() resultModel {
	return resultModel{status: map[string]string{}, done: map[string]bool{}, pending: map[string]bool{}, unfinished: map[string]bool{}, pruneLimit: -1}
}

// applyResult takes in a log line op arg about results, and reports
// whether op is one: build-start, done, build-failed, delete-start,
// deleted, prune-start, pruned or prune-done.
func (m *resultModel) applyResult(op, arg string) bool {
	id := arg
	switch op {
	case "build-start":
		m.status[id] = "started"
		m.pending[id] = true
	case "done":
		delete(m.pending, id)
		if m.status[id] == "pruned" {
			break // a Prune took it between Build's return and this line
		}
		m.status[id] = "done"
		m.done[id] = true
	case "build-failed":
		m.status[id] = "gone"
		delete(m.pending, id)
	case "delete-start":
		m.status[id] = "deleting"
		delete(m.done, id)
		m.pending[id] = true
	case "deleted":
		m.status[id] = "gone"
		delete(m.pending, id)
	case "prune-start":
		m.pruneLimit, _ = strconv.Atoi(arg)
		m.prunedNow = 0
	case "pruned":
		m.status[id] = "pruned"
		delete(m.done, id)
		delete(m.pending, id)
		m.prunedNow++
		m.pruned++
	case "prune-done":
		m.pruneLimit = -1
		m.prunes++
	default:
		return false
	}
	return true
}

// checkResults compares the results on disk, seen right after a kill,
// with the log, then settles what was pending at the kill according to
// what the disk shows. With childOpens, a build that an earlier killed
// child left unfinished may since have been published by the next
// child's Open (the crash test leaves some repairs to it).
func (m *resultModel) checkResults(tb testing.TB, results []string, childOpens bool) {
	tb.Helper()
	present := map[string]bool{}
	for _, id := range results {
		present[id] = true
		switch m.status[id] {
		case "":
			tb.Errorf("invariant: result %s exists but was never built", id)
		case "gone":
			if childOpens && m.unfinished[id] {
				m.status[id] = "done"
				m.done[id] = true
				break
			}
			tb.Errorf("invariant: result %s exists but was deleted, or its build failed", id)
		case "lost":
			tb.Errorf("invariant: result %s, lost earlier, is back", id)
		case "pruned":
			tb.Errorf("invariant: result %s exists but Prune returned it as pruned", id)
		}
	}
	// A Prune killed while it ran may have deleted any result, up to
	// its Limit.
	vanished := 0
	for _, id := range slices.Sorted(maps.Keys(m.done)) {
		switch {
		case present[id]:
		case m.pruneLimit >= 0:
			vanished++
			m.status[id] = "pruned"
			delete(m.done, id)
		default:
			tb.Errorf("invariant: result %s, reported done, is lost (no Delete or Prune ran)", id)
			m.status[id] = "lost" // reported once
			delete(m.done, id)
		}
	}
	if m.pruneLimit >= 0 {
		if m.pruneLimit > 0 && m.prunedNow+vanished > m.pruneLimit {
			tb.Errorf("invariant: a Prune with Limit %d deleted %d results (%d returned, %d more gone at the kill)",
				m.pruneLimit, m.prunedNow+vanished, m.prunedNow, vanished)
		}
		m.prunesKilled++
		m.prunedKilled += vanished
		m.pruneLimit = -1
	}
	for id := range m.pending {
		if present[id] {
			m.status[id] = "done"
			m.done[id] = true
		} else {
			m.unfinished[id] = m.status[id] == "started"
			m.status[id] = "gone"
		}
	}
	clear(m.pending)
}

// publish takes in the results Open published after a kill, each of which
// must be a build a killed child left unfinished; what prefixes the
// message.
func (m *resultModel) publish(tb testing.TB, what string, published []string) {
	tb.Helper()
	for _, id := range published {
		if !m.unfinished[id] {
			tb.Errorf("%sOpen published %s, which no killed build had started", what, id)
		}
		m.status[id] = "done"
		m.done[id] = true
	}
	clear(m.unfinished)
}

// observed is what the parent sees on disk.
type observed struct {
	results   []string       // ids, sorted
	caches    map[string]int // escaped name -> version, for the caches present
	leftovers []string       // entries of result-tmp, cache-tmp, cache/t-*
	tmpTree   []string       // entries of result-tmp and cache-tmp, two levels deep
}

// cache returns the version cache name holds (0 if empty), and whether it
// is present.
func (o observed) cache(name string) (version int, present bool) {
	version, present = o.caches[Escape(name)]
	return version, present
}

// observe checks the layout (allowing leftovers or not) and the content of
// every result (with a payload if payload) and of the caches named caches,
// and returns what it saw.
func observe(tb testing.TB, root string, leftovers, payload bool, caches []string) observed {
	tb.Helper()
	if leftovers {
		checkLayout(tb, root, true)
	} else {
		checkInvariants(tb, root)
	}
	st := observed{caches: map[string]int{}}
	for _, id := range entries(tb, filepath.Join(root, resultDir)) {
		if leftovers && invEmptyDir(filepath.Join(root, resultDir, id)) {
			st.leftovers = append(st.leftovers, resultDir+"/"+id) // a build killed before its snapshot
			continue
		}
		if err := verifyResult(filepath.Join(root, resultDir, id, snapshotName), id, payload); err != nil {
			tb.Errorf("invariant: result %s is not complete: %v", id, err)
		}
		st.results = append(st.results, id)
	}
	known := map[string]string{}
	for _, name := range caches {
		known[Escape(name)] = name
	}
	for _, entry := range entries(tb, filepath.Join(root, cacheDir)) {
		switch name, ok := known[entry]; {
		case ok:
			v, err := crashCacheVersion(filepath.Join(root, cacheDir, entry))
			if err != nil {
				tb.Errorf("invariant: cache %s is not a complete version: %v", name, err)
			}
			st.caches[entry] = v
		case strings.HasPrefix(entry, "c-"):
			tb.Errorf("invariant: unexpected cache %s", entry)
		default:
			st.leftovers = append(st.leftovers, cacheDir+"/"+entry)
		}
	}
	for _, dir := range []string{resultTmpDir, cacheTmpDir} {
		for _, name := range entries(tb, filepath.Join(root, dir)) {
			st.leftovers = append(st.leftovers, dir+"/"+name)
			st.tmpTree = append(st.tmpTree, dir+"/"+name)
			inner, _ := invNames(filepath.Join(root, dir, name)) // nil for a file
			for _, n := range inner {
				st.tmpTree = append(st.tmpTree, dir+"/"+name+"/"+n)
			}
		}
	}
	return st
}

// checkOpen fails tb unless Open, which found pre and left post, changed
// nothing complete (it may publish a result a build had frozen when it was
// killed: published), logged one removal per leftover, and logged no
// VIOLATION or unknown repair. what prefixes the messages.
func checkOpen(tb testing.TB, what string, pre, post observed, repairs, published []string) {
	tb.Helper()
	wantResults := slices.Sorted(slices.Values(append(slices.Clone(pre.results), published...)))
	if !slices.Equal(wantResults, post.results) || !maps.Equal(pre.caches, post.caches) {
		tb.Errorf("%sOpen changed complete data: results %v -> %v (published %v), caches %v -> %v",
			what, pre.results, post.results, published, pre.caches, post.caches)
	}
	if removals := len(repairs) - len(published); removals != len(pre.leftovers) {
		tb.Errorf("%s%d leftovers %v, but Open logged %d removals %v", what, len(pre.leftovers), pre.leftovers, removals, repairs)
	}
	for _, kind := range repairs {
		if strings.Contains(kind, "VIOLATION") || strings.HasPrefix(kind, "other") {
			tb.Errorf("%srepair %s", what, kind)
		}
	}
}

// Kinds of repair, from Open's log.
const (
	repairBuild      = "result-tmp/b* (build in progress)"
	repairSpare      = "result-tmp/s* (spare work subvolume)"
	repairDelete     = "result-tmp/d* (delete in progress)"
	repairClone      = "cache-tmp/k* (cache clone)"
	repairCacheTmp   = "cache/t-* (cache version being made or swapped)"
	repairIncomplete = "result/<id> incomplete (VIOLATION)"
	repairEmpty      = "result/<id> empty (a build killed before its snapshot)"
	repairPublish    = "result-tmp/b*/out/<id> published (staged by an earlier version)"
	repairCache      = "cache/c-* not read-only (VIOLATION)"
)

// repairSink is a logr sink that records Open's repairs (V(0) messages).
type repairSink struct {
	t         testing.TB
	mu        sync.Mutex // guards repairs and published
	repairs   []string
	published []string // ids of results Open published from result-tmp
}

func (r *repairSink) Init(logr.RuntimeInfo)          {}
func (r *repairSink) Enabled(level int) bool         { return level == 0 }
func (r *repairSink) WithValues(...any) logr.LogSink { return r }
func (r *repairSink) WithName(string) logr.LogSink   { return r }
func (r *repairSink) Error(err error, msg string, kv ...any) {
	r.t.Errorf("open logged an error: %s: %v %s", msg, err, crashKV(kv))
}

func (r *repairSink) Info(_ int, msg string, kv ...any) {
	r.t.Logf("open: %s %s", msg, crashKV(kv))
	vals := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		vals[fmt.Sprint(kv[i])] = fmt.Sprint(kv[i+1])
	}
	var kind string
	switch entry := vals["entry"]; {
	case msg == "removing left-over entry" && vals["dir"] == resultTmpDir && strings.HasPrefix(entry, "b"):
		kind = repairBuild
	case msg == "removing left-over entry" && vals["dir"] == resultTmpDir && isSpare(entry):
		kind = repairSpare
	case msg == "removing left-over entry" && vals["dir"] == resultTmpDir && strings.HasPrefix(entry, "d"):
		kind = repairDelete
	case msg == "removing left-over entry" && vals["dir"] == cacheTmpDir && strings.HasPrefix(entry, "k"):
		kind = repairClone
	case msg == "removing left-over cache entry" && strings.HasPrefix(entry, "t-"):
		kind = repairCacheTmp
	case msg == "removing left-over cache entry":
		kind = repairCache
	case msg == "removed the empty directory of an unfinished result":
		kind = repairEmpty
	case msg == "removing incomplete result":
		kind = repairIncomplete
	case msg == "published a result frozen before a crash":
		kind = repairPublish
		r.mu.Lock()
		r.published = append(r.published, vals["id"])
		r.mu.Unlock()
	default:
		kind = "other: " + msg + " " + crashKV(kv)
	}
	r.mu.Lock()
	r.repairs = append(r.repairs, kind)
	r.mu.Unlock()
}

// crashKV formats logr key/value pairs.
func crashKV(kv []any) string {
	var b strings.Builder
	for i, v := range kv {
		if i%2 == 1 {
			b.WriteByte('=')
		} else if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, v)
	}
	return b.String()
}

// take returns the repairs logged since the last call, and the ids of the
// results among them that Open published.
func (r *repairSink) take() (repairs, published []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	repairs, published = r.repairs, r.published
	r.repairs, r.published = nil, nil
	slices.Sort(repairs)
	return repairs, published
}
