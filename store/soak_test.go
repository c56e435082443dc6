//go:build soak

package store

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/go-logr/logr"
)

// The soak test ("make soak"; build tag soak, so not in the default run):
// the crash test's machinery, run for a chosen duration (-soak.duration,
// or $SOAK_DURATION) against a mixed, concurrent workload. A worker child
// runs soakBuilders goroutines that build chained results (the crash
// test's files plus a payload of real data extents; each build checks its
// base's files in its work dir, then writes its own), delete the oldest
// results beyond soakMaxResults and random ones, lease, check, rewrite and
// release the shared caches, and now and then delete a cache; one more
// goroutine calls CompleteDeletes every few hundred milliseconds, and
// another prunes a few results (Prune with a Limit of 1-4, half the time
// with UsedBefore too) every 50-400 ms. The pruner checks that Prune
// deleted no base of a build that ran through the whole Prune; the parent
// allows a result to disappear only through a Delete of it or a Prune.
//
// The parent lets the worker run 1-5 s after it is ready (one round in
// soakEarlyKill: under 100 ms after its start, before or in its Open's
// repair) and kills it with SIGKILL. Then it checks the layout with
// leftovers allowed, the content of every result and cache, and the disk
// against the worker's log; opens the store, which must succeed, repair
// exactly the leftovers and change nothing complete (but may publish a
// result that a killed build had frozen); checks the invariants; and
// closes it. Problems are logged and counted, and the soak
// goes on; the test fails at the end if there were any. Last, everything
// is deleted: no subvolume may be left, and the free space must come back.
//
// The child's log, state/soak.log, is an opLog: the lines about results
// (build-failed too), and these (v is a cache version or delete token,
// unique over the whole soak):
//
//	cache-start <entry> <v>      before Cache; the clone will be rewritten as version v
//	cloned <entry> <v> <p>       after Cache returned a clone holding version p
//	release-start <entry> <v>    before Release
//	released <entry> <v>         after Release returned (the clone won or was discarded)
//	deletecache-start <entry> <v> before DeleteCache
//	cache-deleted <entry> <v>    after DeleteCache returned
//	completedeletes-start        before CompleteDeletes
//	completedeletes-done         after CompleteDeletes returned
//	completedeletes-failed <q>   after CompleteDeletes failed; <q> is the quoted error
//
// Entries are escaped cache names (Escape), so lines split on spaces.
//
// Two kinds of failure are counted, and either fails the test at the end:
// invariant violations (what the parent finds on disk, in the log or in
// Open's repairs), and worker errors (a store call failing in the worker).
// A failed CompleteDeletes changes nothing on disk, so the worker logs it
// and goes on; any other error ends the worker, and the round with it.

const (
	soakChildName   = "store.soakChild"
	soakLogName     = "soak.log"
	soakSeedEnv     = "SOAK_SEED" // set to repeat a run's plan
	soakDurationEnv = "SOAK_DURATION"
	soakBuilders    = 8
	soakMaxResults  = 32      // live results; builders delete the oldest beyond this
	soakImageSize   = 4 << 30 // sparse
	soakEarlyKill   = 20      // one round in this many kills the child at start
	soakMaxBadRuns  = 10      // consecutive rounds with violations that stop the soak
	soakVersionStep = 1_000_000
)

// soakCaches are the shared caches; the last one needs escaping.
var soakCaches = []string{"shared-a", "shared-b", "pkg cache/ü"}

var soakDuration = flag.Duration("soak.duration", time.Minute, "how long TestSoak runs (default from $"+soakDurationEnv+", else 1m)")

func init() { btrfstest.Register(soakChildName, soakChild) }

// soakWorker is the state the child's goroutines share.
type soakWorker struct {
	s        *Store
	tag      int    // the round: makes ids and versions unique
	log      *opLog // state/soak.log
	versions atomic.Int64

	mu   sync.Mutex        // guards live, held and gone
	live []string          // results built and not being deleted, oldest first
	held map[string]string // id being built -> its base, while its function runs
	gone map[string]bool   // results Prune deleted

	pruning sync.Mutex // held by the pruner from before Prune until gone is updated
}

// soakChild is the worker; args are the store root, the round and a seed.
// It runs until killed, or returns the first error of its goroutines.
func soakChild(args []string) error {
	root, round, seed, err := childArgs(args)
	if err != nil {
		return err
	}
	tag, err := strconv.Atoi(round)
	if err != nil {
		return err
	}
	ctx := context.Background()
	s, log, live, err := childOpen(root, soakLogName)
	if err != nil {
		return err
	}
	w := &soakWorker{s: s, tag: tag, log: log, live: live, held: map[string]string{}, gone: map[string]bool{}}
	errc := make(chan error, soakBuilders+2)
	for g := range soakBuilders {
		rng := rand.New(rand.NewPCG(seed, uint64(g)))
		go func() { errc <- w.builder(ctx, g, rng) }()
	}
	go func() { errc <- w.completer(ctx, rand.New(rand.NewPCG(seed, soakBuilders))) }()
	go func() { errc <- w.pruner(ctx, rand.New(rand.NewPCG(seed, soakBuilders+1))) }()
	return <-errc
}

// token returns a cache version or delete token unique over the soak.
func (w *soakWorker) token() int {
	return w.tag*soakVersionStep + int(w.versions.Add(1))
}

// builder is one builder goroutine's loop: build, delete, use a cache,
// sometimes delete one.
func (w *soakWorker) builder(ctx context.Context, g int, rng *rand.Rand) error {
	for n := 0; ; n++ {
		if err := w.build(ctx, fmt.Sprintf("s%05d-%d-%06d", w.tag, g, n), rng); err != nil {
			return err
		}
		for _, victim := range w.victims(rng) {
			w.log.note("delete-start %s", victim)
			if err := w.s.Delete(ctx, victim); err != nil {
				return err
			}
			w.log.note("deleted %s", victim)
		}
		if rng.IntN(2) == 0 {
			if err := w.useCache(ctx, soakCaches[rng.IntN(len(soakCaches))], rng); err != nil {
				return err
			}
		}
		if rng.IntN(40) == 0 {
			name := soakCaches[rng.IntN(len(soakCaches))]
			v := w.token()
			w.log.note("deletecache-start %s %d", Escape(name), v)
			if err := w.s.DeleteCache(ctx, name); err != nil {
				return err
			}
			w.log.note("cache-deleted %s %d", Escape(name), v)
		}
	}
}

// build builds id on a random live result (or on nothing).
func (w *soakWorker) build(ctx context.Context, id string, rng *rand.Rand) error {
	base := ""
	w.mu.Lock()
	if len(w.live) > 0 && rng.IntN(5) != 0 {
		base = w.live[rng.IntN(len(w.live))]
	}
	w.mu.Unlock()
	ran := false
	w.log.note("build-start %s", id)
	err := w.s.Build(ctx, id, base, func(_ context.Context, dir string) error {
		ran = true
		w.mu.Lock()
		w.held[id] = base // snapshotted: Prune must leave it alone now
		w.mu.Unlock()
		return soakWriteResult(dir, id, base)
	})
	w.mu.Lock()
	delete(w.held, id)
	w.mu.Unlock()
	switch {
	case err == nil:
		w.log.note("done %s", id)
		w.mu.Lock()
		if !w.gone[id] { // a Prune may take it as soon as Build published it
			w.live = append(w.live, id)
		}
		w.mu.Unlock()
	case !ran && base != "" && errors.Is(err, fs.ErrNotExist) && w.deleted(base):
		// Another builder deleted the base, or the pruner pruned it,
		// before this build's snapshot of it began (once it begins,
		// Delete waits for it and Prune skips it).
		w.log.note("build-failed %s", id)
	default:
		return fmt.Errorf("build %s on base %q: %w", id, base, err)
	}
	return nil
}

// deleted reports whether a builder took id out of the live list to
// delete it, or a Prune deleted it: a running Prune is waited for.
func (w *soakWorker) deleted(id string) bool {
	w.pruning.Lock()
	defer w.pruning.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone[id] || !slices.Contains(w.live, id)
}

// victims takes the results to delete out of the live list: the oldest
// beyond soakMaxResults, and one in four times a random one.
func (w *soakWorker) victims(rng *rand.Rand) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for len(w.live) > soakMaxResults {
		out = append(out, w.live[0])
		w.live = slices.Delete(w.live, 0, 1)
	}
	if len(w.live) > 0 && rng.IntN(4) == 0 {
		i := rng.IntN(len(w.live))
		out = append(out, w.live[i])
		w.live = slices.Delete(w.live, i, i+1)
	}
	return out
}

// useCache leases cache name, checks that the clone is a complete version
// owned as asked, rewrites it as a new version, holds it a moment (so that
// leases overlap and some releases lose), and releases it.
func (w *soakWorker) useCache(ctx context.Context, name string, rng *rand.Rand) error {
	entry, v := Escape(name), w.token()
	owner := Owner{UID: os.Getuid(), GID: os.Getgid()}
	if rng.IntN(2) == 0 {
		owner = Owner{UID: 65534, GID: 65534}
	}
	w.log.note("cache-start %s %d", entry, v)
	lease, err := w.s.Cache(ctx, name, owner)
	if err != nil {
		return err
	}
	parent, err := crashCacheVersion(lease.Path())
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(lease.Path()); err == nil {
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != owner.UID || int(st.Gid) != owner.GID {
				err = fmt.Errorf("owned by %d:%d, want %d:%d", st.Uid, st.Gid, owner.UID, owner.GID)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("clone of cache %q: %w", name, err)
	}
	w.log.note("cloned %s %d %d", entry, v, parent)
	if err := crashWriteCache(lease.Path(), v, func(string) {}); err != nil {
		return err
	}
	time.Sleep(time.Duration(rng.IntN(4)) * time.Millisecond)
	w.log.note("release-start %s %d", entry, v)
	if err := lease.Release(ctx); err != nil {
		return err
	}
	w.log.note("released %s %d", entry, v)
	return nil
}

// completer calls CompleteDeletes every 100-600 ms.
func (w *soakWorker) completer(ctx context.Context, rng *rand.Rand) error {
	for {
		time.Sleep(100*time.Millisecond + time.Duration(rng.Int64N(int64(500*time.Millisecond))))
		w.log.note("completedeletes-start")
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := w.s.CompleteDeletes(cctx)
		cancel()
		if err != nil {
			w.log.note("completedeletes-failed %s", strconv.Quote(err.Error()))
			continue
		}
		w.log.note("completedeletes-done")
	}
}

// pruner prunes 1-4 results every 50-400 ms, half the time only those
// not used in the last 0-3 s, and fails if Prune deleted the base of a
// build whose function ran all through the Prune.
func (w *soakWorker) pruner(ctx context.Context, rng *rand.Rand) error {
	for {
		time.Sleep(50*time.Millisecond + time.Duration(rng.Int64N(int64(350*time.Millisecond))))
		opts := PruneOptions{Limit: 1 + rng.IntN(4)}
		if rng.IntN(2) == 0 {
			opts.UsedBefore = time.Now().Add(-time.Duration(rng.Int64N(int64(3 * time.Second))))
		}
		w.pruning.Lock()
		w.mu.Lock()
		held := maps.Clone(w.held)
		w.mu.Unlock()
		w.log.note("prune-start %d", opts.Limit)
		pruned, err := w.s.Prune(ctx, opts)
		if err != nil {
			return fmt.Errorf("prune %+v: %w", opts, err)
		}
		for _, id := range pruned {
			w.log.note("pruned %s", id)
		}
		w.log.note("prune-done")
		w.mu.Lock()
		for id, base := range held {
			if w.held[id] == base && slices.Contains(pruned, base) {
				err = fmt.Errorf("invariant: Prune deleted %s while the build of %s on it ran", base, id)
			}
		}
		for _, id := range pruned {
			w.gone[id] = true
		}
		w.live = slices.DeleteFunc(w.live, func(id string) bool { return w.gone[id] })
		w.mu.Unlock()
		w.pruning.Unlock()
		if err != nil {
			return err
		}
	}
}

// soakWriteResult is the build function: crashWriteResult (which checks
// that the work dir holds base's files, then writes id's), plus the
// payload, checked and replaced the same way.
func soakWriteResult(dir, id, base string) error {
	payload := filepath.Join(dir, payloadName)
	if base != "" {
		if b, err := os.ReadFile(payload); err != nil || !bytes.Equal(b, resultPayload(base)) {
			return fmt.Errorf("work dir of %s from base %s: %s: %d bytes, %v; not the base's", id, base, payloadName, len(b), err)
		}
		if err := os.Remove(payload); err != nil {
			return err
		}
	}
	if err := crashWriteResult(dir, id, base, func(string) {}); err != nil {
		return err
	}
	return crashWrite(payload, resultPayload(id), true)
}

// soakAbort is the panic with which soakTB's Fatal ends the current check.
type soakAbort struct{}

// soakViolations counts and keeps the failures of the whole soak.
type soakViolations struct {
	t      testing.TB
	round  int      // the round being checked
	n      int      // invariant violations
	first  []string // the first few, for the final report
	errors int      // worker errors
	errs   []string // the first few
}

func (v *soakViolations) record(msg string) {
	v.n++
	if len(v.first) < 20 {
		v.first = append(v.first, fmt.Sprintf("round %d: %s", v.round, msg))
	}
	v.t.Logf("VIOLATION %d (round %d): %s", v.n, v.round, msg)
}

// workerError counts a store call that failed in the worker; the first
// few are logged in full.
func (v *soakViolations) workerError(msg string) {
	v.errors++
	if len(v.errs) < 10 {
		v.errs = append(v.errs, fmt.Sprintf("round %d: %s", v.round, msg))
		v.t.Logf("WORKER ERROR %d (round %d): %s", v.errors, v.round, msg)
	}
}

// soakTB is the testing.TB that the checks (crash_test.go's and
// invariants_test.go's helpers included) report to: an error is counted
// and logged without failing the test yet, a fatal error also ends the
// check it happened in. With quiet set it drops Logf (repairSink logs
// every repair).
type soakTB struct {
	testing.TB
	v     *soakViolations
	quiet bool
}

func (s soakTB) Errorf(format string, args ...any) { s.v.record(fmt.Sprintf(format, args...)) }
func (s soakTB) Error(args ...any)                 { s.v.record(fmt.Sprint(args...)) }
func (s soakTB) Fail()                             { s.v.record("Fail called") }
func (s soakTB) FailNow()                          { s.Fail(); panic(soakAbort{}) }

func (s soakTB) Fatalf(format string, args ...any) {
	s.v.record(fmt.Sprintf(format, args...))
	panic(soakAbort{})
}

func (s soakTB) Fatal(args ...any) {
	s.v.record(fmt.Sprint(args...))
	panic(soakAbort{})
}

func (s soakTB) Logf(format string, args ...any) {
	if !s.quiet {
		s.TB.Logf(format, args...)
	}
}

// soakCounts are the operations the child logged as done.
type soakCounts struct {
	builds, baseGone, deletes, leases, releases, cacheDeletes, completeDeletes int
	completeDeletesFailed                                                      int
}

// soakModel is crashModel for concurrent builders and several caches: what
// the child's log says must or may be on disk.
type soakModel struct {
	resultModel
	tail   logTail // the child's log
	line   int     // lines read
	caches map[string]*soakCacheModel
	counts soakCounts
	errors []string // worker errors logged since the last check
}

func newSoakModel() *soakModel {
	m := &soakModel{resultModel: newResultModel(), caches: map[string]*soakCacheModel{}}
	for _, name := range soakCaches {
		m.caches[Escape(name)] = &soakCacheModel{ops: map[int]*soakCacheOp{}}
	}
	return m
}

// soakCacheModel is what one cache may hold: the version it held when the
// round began, and the operations of the round. The log gives each
// operation's start and end lines but not whether a release won; the
// model keeps every version that some order of the logged operations
// allows (a release is discarded if a release or DeleteCache bumped the
// generation after its clone; the last winning release or DeleteCache
// decides what the cache holds).
type soakCacheModel struct {
	initial int                  // the version held when the round began (0: absent or empty)
	ops     map[int]*soakCacheOp // by version or delete token
	order   []*soakCacheOp
}

// soakCacheOp is a lease (cloned, then maybe released) or a DeleteCache.
// Lines are the model's line numbers; -1 if not logged.
type soakCacheOp struct {
	version   int  // a lease's new version; 0 for a DeleteCache
	del       bool // a DeleteCache
	start     int  // cache-start or deletecache-start
	cloned    int  // cloned (leases)
	parent    int  // the version the clone held
	bumpStart int  // release-start or deletecache-start: from here on it may bump the generation
	end       int  // released or cache-deleted
}

// read takes in the lines the child appended since the last read.
func (m *soakModel) read(tb testing.TB, path string) {
	tb.Helper()
	for _, line := range m.tail.read(tb, path) {
		if line != "" {
			m.line++
			m.apply(tb, line)
		}
	}
}

func (m *soakModel) apply(tb testing.TB, line string) {
	if msg, ok := strings.CutPrefix(line, "completedeletes-failed "); ok {
		if q, err := strconv.Unquote(msg); err == nil {
			msg = q
		}
		m.counts.completeDeletesFailed++
		m.errors = append(m.errors, "CompleteDeletes: "+msg)
		return
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		tb.Errorf("bad line in %s: %q", soakLogName, line)
		return
	}
	nargs := map[string]int{
		"build-start": 1, "done": 1, "build-failed": 1, "delete-start": 1, "deleted": 1,
		"cache-start": 2, "cloned": 3, "release-start": 2, "released": 2,
		"deletecache-start": 2, "cache-deleted": 2,
		"completedeletes-start": 0, "completedeletes-done": 0,
		"prune-start": 1, "pruned": 1, "prune-done": 0,
	}
	if n, ok := nargs[f[0]]; !ok || len(f) != n+1 {
		tb.Errorf("bad line in %s: %q", soakLogName, line)
		return
	}
	var c *soakCacheModel
	var o *soakCacheOp
	if nargs[f[0]] >= 2 {
		if c = m.caches[f[1]]; c == nil {
			tb.Errorf("bad line in %s (unknown cache): %q", soakLogName, line)
			return
		}
		v, err := strconv.Atoi(f[2])
		if err != nil {
			tb.Errorf("bad line in %s: %q", soakLogName, line)
			return
		}
		if o = c.ops[v]; o == nil {
			o = &soakCacheOp{version: v, start: -1, cloned: -1, bumpStart: -1, end: -1}
			c.ops[v] = o
			c.order = append(c.order, o)
		}
	}
	id := ""
	if len(f) > 1 {
		id = f[1]
	}
	m.applyResult(f[0], id)
	switch f[0] {
	case "done":
		m.counts.builds++
	case "build-failed":
		m.counts.baseGone++
	case "deleted":
		m.counts.deletes++
	case "cache-start":
		o.start = m.line
	case "cloned":
		o.cloned = m.line
		o.parent, _ = strconv.Atoi(f[3])
		m.counts.leases++
	case "release-start":
		o.bumpStart = m.line
	case "released":
		o.end = m.line
		m.counts.releases++
	case "deletecache-start":
		o.del, o.version = true, 0
		o.start, o.bumpStart = m.line, m.line
	case "cache-deleted":
		o.end = m.line
		m.counts.cacheDeletes++
	case "completedeletes-done":
		m.counts.completeDeletes++
	}
}

// check compares the disk, seen right after the kill, with the log, then
// settles what was pending at the kill according to what the disk shows.
func (m *soakModel) check(tb testing.TB, st observed) {
	tb.Helper()
	m.checkResults(tb, st.results, false)
	for _, entry := range slices.Sorted(maps.Keys(m.caches)) {
		m.caches[entry].check(tb, entry, st.caches[entry], m.line+1)
	}
}

// settle starts a new round from what the disk holds after Open, which
// published the results in published.
func (m *soakModel) settle(tb testing.TB, st observed, published []string) {
	tb.Helper()
	m.publish(tb, "invariant: ", published)
	for entry, c := range m.caches {
		c.initial = st.caches[entry]
		clear(c.ops)
		c.order = nil
	}
}

// check fails tb unless the cache can hold version got after the round's
// operations, and unless every clone of the round held a version the cache
// could hold while it was taken. now is a line number after the last.
func (c *soakCacheModel) check(tb testing.TB, entry string, got, now int) {
	tb.Helper()
	ops := []*soakCacheOp{{version: c.initial, start: -1, cloned: -1, bumpStart: -1, end: -1}} // the initial version
	for _, o := range c.order {
		if o.bumpStart >= 0 || o.cloned >= 0 {
			ops = append(ops, o)
		}
	}
	initial := ops[0]
	bumps := func(o *soakCacheOp) (from, to int) {
		to = o.end
		if to < 0 {
			to = math.MaxInt
		}
		return o.bumpStart, to
	}
	// Operations that surely changed the cache: DeleteCaches that
	// returned, and releases that returned with no other release or
	// DeleteCache able to bump the generation between their Cache call and
	// their return.
	var sure []*soakCacheOp
	for _, o := range ops[1:] {
		if o.end < 0 || o.bumpStart < 0 {
			continue
		}
		alone := true
		for _, p := range ops[1:] {
			if p == o || p.bumpStart < 0 {
				continue
			}
			if from, to := bumps(p); from < o.end && o.start < to {
				alone = false
				break
			}
		}
		if o.del || alone {
			sure = append(sure, o)
		}
	}
	// supersededBefore[o]: o's version is gone for good once this line
	// is reached (a sure change that began after o ended has ended).
	supersededBefore := map[*soakCacheOp]int{}
	for _, o := range ops {
		first := math.MaxInt
		if o == initial || o.end >= 0 {
			for _, n := range sure {
				if n != o && n.bumpStart > o.end && n.end < first {
					first = n.end
				}
			}
		}
		supersededBefore[o] = first
	}
	// A release is discarded for sure if a sure change happened between
	// its clone and its release.
	discarded := func(o *soakCacheOp) bool {
		if o.del || o.bumpStart < 0 {
			return false
		}
		for _, n := range sure {
			if n != o && n.bumpStart > o.cloned && n.end < o.bumpStart {
				return true
			}
		}
		return false
	}
	// possible returns the versions the cache may have held at some
	// moment between lines from and to.
	possible := func(from, to int) []int {
		var vs []int
		for _, o := range ops {
			if o != initial && (o.bumpStart < 0 || o.bumpStart > to) {
				continue
			}
			if supersededBefore[o] < from || discarded(o) {
				continue
			}
			if !slices.Contains(vs, o.version) {
				vs = append(vs, o.version)
			}
		}
		slices.Sort(vs)
		return vs
	}
	for _, o := range ops[1:] {
		if o.cloned < 0 {
			continue
		}
		if vs := possible(o.start, o.cloned); !slices.Contains(vs, o.parent) {
			tb.Errorf("invariant: cache %s: the clone for version %d (log lines %d-%d) held version %d, want one of %v",
				entry, o.version, o.start, o.cloned, o.parent, vs)
		}
	}
	if vs := possible(now, now); !slices.Contains(vs, got) {
		tb.Errorf("invariant: cache %s holds version %d, want one of %v (held %d when the round began; %d operations this round, %d sure)",
			entry, got, vs, c.initial, len(ops)-1, len(sure))
	}
}

// soakWait waits for a child that was sent SIGKILL and reports whether
// SIGKILL ended it; a child that ended by itself (a store call failed, or
// it panicked) is a worker error.
func soakWait(v *soakViolations, c *btrfstest.Child) bool {
	if !c.Wait(60 * time.Second) {
		v.workerError("the worker was still running 60 s after SIGKILL")
	}
	if c.Raced() {
		v.workerError(fmt.Sprintf("race in the worker:\n%s", c.Stderr()))
	}
	if c.Killed() {
		return true
	}
	v.workerError(fmt.Sprintf("the worker ended by itself (%v), not by SIGKILL; stderr:\n%s", c.State(), c.Stderr()))
	return false
}

// soakDurationSetting returns -soak.duration if given, else
// $SOAK_DURATION if set, else the flag's default.
func soakDurationSetting(t *testing.T) time.Duration {
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "soak.duration" })
	if s := os.Getenv(soakDurationEnv); s != "" && !explicit {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %v", soakDurationEnv, err)
		}
		return d
	}
	return *soakDuration
}

func TestSoak(t *testing.T) {
	duration := soakDurationSetting(t)
	if dl, ok := t.Deadline(); ok && time.Until(dl) < duration+5*time.Minute {
		t.Fatalf("the test times out in %v, before -soak.duration=%v plus 5m: run with -timeout 0", time.Until(dl).Round(time.Second), duration)
	}
	fsys := btrfstest.New(t, btrfstest.Size(soakImageSize))
	root := fsys.Path
	ctx := t.Context()

	t.Logf("soak for %v", duration)
	rng := rand.New(rand.NewPCG(planSeed(t, soakSeedEnv), 3))

	violations := &soakViolations{t: t}
	tb := soakTB{TB: t, v: violations}
	sink := &repairSink{t: soakTB{TB: t, v: violations, quiet: true}}
	model := newSoakModel()
	logPath := filepath.Join(root, stateDir, soakLogName)

	s, err := Open(ctx, root, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ioctl.Sync(root); err != nil {
		t.Fatal(err)
	}
	freeAtStart, err := s.FreeSpace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	var (
		began      = time.Now()
		rounds     int
		kills      int // children ended by SIGKILL
		early      int // of which killed at start
		survived   int // kills after which Open succeeded and nothing was violated
		badRun     int // consecutive rounds with violations
		repairs    = map[string]int{}
		startups   []time.Duration
		minFree    = freeAtStart
		openFailed bool
	)
	summary := func() {
		c := model.counts
		r := model.resultModel
		t.Logf("soak summary: duration %v, builds completed %d, cache releases %d, deletes %d, prunes %d (results pruned %d), kills survived %d of %d (%d in a Prune, which had deleted %d results), repairs by kind %v, invariant violations %d, worker errors %d",
			time.Since(began).Round(time.Second), c.builds, c.releases, c.deletes, r.prunes, r.pruned, survived, kills, r.prunesKilled, r.prunedKilled, repairs, violations.n, violations.errors)
		t.Logf("soak details: %d rounds (%d killed at start, worker start to ready ≈ %v); %d leases, %d DeleteCaches, %d CompleteDeletes (%d failed), %d builds failed on a base deleted meanwhile; free space %.1f%% at start, %.1f%% at least",
			rounds, early, median(startups).Round(time.Millisecond), c.leases, c.cacheDeletes, c.completeDeletes, c.completeDeletesFailed, c.baseGone, freeAtStart, minFree)
	}

	for rounds = 1; time.Since(began) < duration; rounds++ {
		violations.round = rounds
		before, errorsBefore := violations.n, violations.errors
		c := btrfstest.Start(t, soakChildName, nil, root, strconv.Itoa(rounds), strconv.FormatUint(rng.Uint64(), 10))
		label := "running"
		if rng.IntN(soakEarlyKill) == 0 {
			label = "starting"
			time.Sleep(time.Duration(rng.Int64N(int64(100 * time.Millisecond))))
		} else {
			d, ok := awaitReady(c)
			if !ok {
				violations.workerError("the worker was not ready 60 s after its start")
			}
			if d > 0 {
				startups = append(startups, d)
			}
			select {
			case <-time.After(time.Second + time.Duration(rng.Int64N(int64(4*time.Second)))):
			case <-c.Exited():
			}
		}
		c.Kill()
		ranFor := time.Since(c.Started)
		killed := soakWait(violations, c)
		if killed {
			kills++
			if label == "starting" {
				early++
			}
		}
		prev, prevPruned, prevInPrune := model.counts, model.pruned+model.prunedKilled, model.prunesKilled
		var got []string
		var free float64
		opened := false
		func() {
			defer func() {
				if r := recover(); r != nil && r != (soakAbort{}) {
					panic(r)
				}
			}()
			got, free, opened = soakCheck(tb, root, model, sink, logPath)
		}()
		for _, msg := range model.errors {
			violations.workerError(msg)
		}
		model.errors = nil
		for _, kind := range got {
			repairs[kind]++
		}
		if opened {
			minFree = min(minFree, free)
		}
		if killed && opened && violations.n == before {
			survived++
		}
		nc := model.counts
		if model.prunesKilled > prevInPrune {
			label += " (in a Prune)"
		}
		t.Logf("round %d: killed while %s after %v; +%d builds, +%d releases, +%d deletes, +%d pruned; %d results live; repairs %d; free %.1f%%; violations %d, worker errors %d",
			rounds, label, ranFor.Round(time.Millisecond), nc.builds-prev.builds, nc.releases-prev.releases,
			nc.deletes-prev.deletes, model.pruned+model.prunedKilled-prevPruned, len(model.done), len(got), free, violations.n-before, violations.errors-errorsBefore)
		if violations.n > before {
			badRun++
		} else {
			badRun = 0
		}
		if !opened && openFailed {
			summary()
			t.Fatalf("Open failed twice in a row: stopping")
		}
		openFailed = !opened
		if badRun >= soakMaxBadRuns {
			summary()
			t.Fatalf("%d rounds in a row with violations: stopping", badRun)
		}
	}
	rounds--

	violations.round = 0
	func() {
		defer func() {
			if r := recover(); r != nil && r != (soakAbort{}) {
				panic(r)
			}
		}()
		soakDrain(tb, root, logPath, freeAtStart)
	}()

	summary()
	if violations.n > 0 {
		t.Errorf("%d invariant violations; the first:\n\t%s", violations.n, strings.Join(violations.first, "\n\t"))
	}
	if violations.errors > 0 {
		t.Errorf("%d worker errors; the first:\n\t%s", violations.errors, strings.Join(violations.errs, "\n\t"))
	}
}

// soakCheck is the parent's part of a round: check the disk as the kill
// left it; open, which must repair exactly the leftovers and change
// nothing complete (it may publish a result that a killed build had
// frozen); check the invariants; close. It returns Open's repairs and the
// free space, and whether Open succeeded.
func soakCheck(tb testing.TB, root string, model *soakModel, sink *repairSink, logPath string) (repairs []string, free float64, opened bool) {
	tb.Helper()
	sink.take() // drop what an aborted round left
	pre := observe(tb, root, true, true, soakCaches)
	model.read(tb, logPath)
	model.check(tb, pre)

	ctx := context.Background()
	s, err := Open(ctx, root, Config{Logger: logr.New(sink)})
	if err != nil {
		tb.Errorf("Open after the kill: %v", err)
		return nil, 0, false
	}
	defer s.Close()
	repairs, published := sink.take()
	post := observe(tb, root, false, true, soakCaches) // includes checkInvariants and the content of published results
	checkOpen(tb, "", pre, post, repairs, published)
	model.settle(tb, post, published)
	if free, err = s.FreeSpace(ctx); err != nil {
		tb.Errorf("FreeSpace: %v", err)
	}
	if err := s.Close(); err != nil {
		tb.Errorf("Close: %v", err)
	}
	return repairs, free, true
}

// soakDrain deletes everything and checks that no subvolume is left and
// that the free space came back to within 1 point of the start.
func soakDrain(tb testing.TB, root, logPath string, freeAtStart float64) {
	tb.Helper()
	ctx := context.Background()
	s, err := Open(ctx, root, Config{})
	if err != nil {
		tb.Fatalf("drain: Open: %v", err)
	}
	defer s.Close()
	for _, id := range entries(tb, filepath.Join(root, resultDir)) {
		if err := s.Delete(ctx, id); err != nil {
			tb.Errorf("drain: Delete(%s): %v", id, err)
		}
	}
	for _, name := range soakCaches {
		if err := s.DeleteCache(ctx, name); err != nil {
			tb.Errorf("drain: DeleteCache(%q): %v", name, err)
		}
	}
	if err := os.Remove(logPath); err != nil {
		tb.Errorf("drain: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := s.CompleteDeletes(cctx); err != nil {
		tb.Errorf("drain: CompleteDeletes: %v", err)
	}
	if err := ioctl.Sync(root); err != nil {
		tb.Errorf("drain: sync: %v", err)
	}
	if subs := invSubvolumes(tb, root); len(subs) > 0 {
		tb.Errorf("drain: subvolumes left after deleting everything: %v", subs)
	}
	free, err := s.FreeSpace(ctx)
	if err != nil {
		tb.Fatalf("drain: FreeSpace: %v", err)
	}
	tb.Logf("drain: free space %.2f%% after deleting everything, %.2f%% at start", free, freeAtStart)
	if d := freeAtStart - free; d > 1 || d < -1 {
		tb.Errorf("drain: free space after deleting everything = %.2f%%, want within 1 point of %.2f%% at start", free, freeAtStart)
	}
}
