package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btrstore/btrstore/internal/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/go-logr/logr"
)

// The crash test: a child process builds, deletes, takes and releases a
// cache lease and deletes the cache in a loop, and is killed with SIGKILL,
// either by itself at a step boundary (CRASH_AT=<step>:<n>: the n-th time
// it reaches <step>) or by the parent at a random moment. All kills happen
// on one filesystem, so state accumulates. After each kill the parent
// checks what must hold at every instant (results complete and read-only,
// the cache a complete version, nothing reported done lost), opens the
// store, checks that Open repaired everything and changed nothing
// complete, and closes it.
//
// The child logs to state/crash.log (O_APPEND, fsync after each line):
//
//	build-start <id>   before Build
//	done <id>          after Build returned
//	delete-start <id>  before Delete
//	deleted <id>       after Delete returned
//	release-start <v>  before Release of a clone holding version v
//	released <v>       after Release returned
//	deletecache-start  before DeleteCache
//	cache-deleted      after DeleteCache returned

const (
	crashChildName  = "store.crashChild"
	crashAtEnv      = "CRASH_AT"
	crashSeedEnv    = "CRASH_SEED" // set to repeat a run
	crashLogName    = "crash.log"
	crashCache      = "shared"
	crashFiles      = 20 // files per result, plus "base" and "DONE"
	crashCacheFiles = 10 // files per cache version, plus "sum"
	crashMaxResults = 4  // the child deletes the oldest result beyond this

	// btrfstest's (unexported) variable that makes a test binary run a
	// registered function; RunAs cannot be used because it waits for the
	// child, and this test must kill it.
	crashChildEnv = "BTRFSTEST_CHILD"
)

// crashSteps are the boundaries at which the child can kill itself.
var crashSteps = []string{
	"in-fn-start",       // work subvolume exists in result-tmp, nothing written
	"in-fn-after-write", // half the files written
	"in-fn-end",         // everything written, fn about to return nil
	"after-build",       // Build returned: result published, tmp removed
	"after-delete",      // Delete returned
	"after-cache",       // Cache returned: clone in cache-tmp
	"in-clone-write",    // clone half rewritten
	"after-release",     // Release returned
	"after-deletecache", // DeleteCache returned
}

func init() { btrfstest.Register(crashChildName, crashChild) }

// crashChild is the child's loop; args are the store root, a tag that makes
// its ids unique, and a random seed. It runs until killed.
func crashChild(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("crash child: want root, tag, seed; got %q", args)
	}
	root, tag := args[0], args[1]
	seed, err := strconv.ParseUint(args[2], 10, 64)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	hook, err := crashHook(os.Getenv(crashAtEnv))
	if err != nil {
		return err
	}
	ctx := context.Background()
	s, err := Open(ctx, root, Config{})
	if err != nil {
		return err
	}
	// Never closed: the process ends by SIGKILL.
	logf, err := os.OpenFile(filepath.Join(s.StateDir(), crashLogName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	note := func(format string, a ...any) {
		// One write per line: SIGKILL cannot split it.
		if _, err := logf.Write(fmt.Appendf(nil, format+"\n", a...)); err != nil {
			panic(err)
		}
		if err := logf.Sync(); err != nil {
			panic(err)
		}
	}
	results, err := invNames(filepath.Join(root, resultDir)) // sorted: oldest first
	if err != nil {
		return err
	}
	if _, err := os.Stdout.WriteString("ready\n"); err != nil {
		return err
	}
	owner := Owner{UID: os.Getuid(), GID: os.Getgid()}
	for i := 0; ; i++ {
		id := fmt.Sprintf("r%s-%04d", tag, i)
		base := ""
		if len(results) > 0 && rng.IntN(2) == 0 {
			base = results[rng.IntN(len(results))]
		}
		note("build-start %s", id)
		err := s.Build(ctx, id, base, func(_ context.Context, dir string) error {
			return crashWriteResult(dir, id, base, hook)
		})
		if err != nil {
			return err
		}
		hook("after-build")
		note("done %s", id)
		results = append(results, id)

		for len(results) > crashMaxResults {
			victim := results[0]
			results = results[1:]
			note("delete-start %s", victim)
			if err := s.Delete(ctx, victim); err != nil {
				return err
			}
			hook("after-delete")
			note("deleted %s", victim)
		}

		lease, err := s.Cache(ctx, crashCache, owner)
		if err != nil {
			return err
		}
		hook("after-cache")
		v, err := crashCacheVersion(lease.Path())
		if err != nil {
			return fmt.Errorf("clone of cache %s: %w", crashCache, err)
		}
		if err := crashWriteCache(lease.Path(), v+1, hook); err != nil {
			return err
		}
		note("release-start %d", v+1)
		if err := lease.Release(ctx); err != nil {
			return err
		}
		hook("after-release")
		note("released %d", v+1)

		if i%3 == 2 {
			note("deletecache-start")
			if err := s.DeleteCache(ctx, crashCache); err != nil {
				return err
			}
			hook("after-deletecache")
			note("cache-deleted")
		}
	}
}

// crashHook returns the function the child calls at each step boundary: it
// kills the process the n-th time it reaches the step that spec
// ("<step>:<n>") names, and does nothing if spec is "".
func crashHook(spec string) (func(step string), error) {
	if spec == "" {
		return func(string) {}, nil
	}
	step, count, _ := strings.Cut(spec, ":")
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 || !slices.Contains(crashSteps, step) {
		return nil, fmt.Errorf("crash child: bad %s=%q: want <step>:<n>, step one of %v", crashAtEnv, spec, crashSteps)
	}
	reached := 0
	return func(s string) {
		if s != step {
			return
		}
		if reached++; reached == n {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			for {
				time.Sleep(time.Hour)
			}
		}
	}, nil
}

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
		if err := crashVerifyResult(dir, base); err != nil {
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

// crashVerifyResult checks that dir holds exactly the files of result id.
func crashVerifyResult(dir, id string) error {
	names, err := invNames(dir)
	if err != nil {
		return err
	}
	want := []string{"DONE", "base"}
	for i := range crashFiles {
		want = append(want, crashFileName(i))
	}
	sort.Strings(want)
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
	return nil
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
	sort.Strings(want)
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

// crashKill is one kill of the plan.
type crashKill struct {
	step     string        // CRASH_AT step, or "" for a kill by the parent
	n        int           // kill the n-th time step is reached
	delay    time.Duration // parent kill: this long after the child is ready
	skipOpen bool          // leave the repair to the next child's Open
	recovery bool          // parent kill once the child's Open removed the first left-over entry
}

func (k crashKill) label() string {
	switch {
	case k.recovery:
		return "recovery"
	case k.step == "":
		return "random"
	}
	return k.step
}

// Kinds of repair, from Open's log.
const (
	repairBuild      = "result-tmp/b* (build in progress)"
	repairDelete     = "result-tmp/d* (delete in progress)"
	repairClone      = "cache-tmp/k* (cache clone)"
	repairCacheTmp   = "cache/t-* (cache version being made or swapped)"
	repairIncomplete = "result/<id> incomplete (VIOLATION)"
	repairPublish    = "result-tmp/b*/out/<id> published (frozen before the kill)"
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
	case msg == "removing left-over entry" && vals["dir"] == resultTmpDir && strings.HasPrefix(entry, "d"):
		kind = repairDelete
	case msg == "removing left-over entry" && vals["dir"] == cacheTmpDir && strings.HasPrefix(entry, "k"):
		kind = repairClone
	case msg == "removing left-over cache entry" && strings.HasPrefix(entry, "t-"):
		kind = repairCacheTmp
	case msg == "removing left-over cache entry":
		kind = repairCache
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

// crashState is what the parent sees on disk.
type crashState struct {
	results      []string // ids, sorted
	cache        int      // version of the cache; 0 if absent or empty
	cachePresent bool
	leftovers    []string // entries of result-tmp, cache-tmp, cache/t-*
	tmpTree      []string // entries of result-tmp and cache-tmp, two levels deep
}

// crashObserve checks the layout (allowing leftovers or not) and the
// content of every result and of the cache, and returns what it saw.
func crashObserve(t *testing.T, root string, leftovers bool) crashState {
	t.Helper()
	if leftovers {
		checkLayout(t, root, true)
	} else {
		checkInvariants(t, root)
	}
	var st crashState
	for _, id := range invReadDir(t, filepath.Join(root, resultDir)) {
		if err := crashVerifyResult(filepath.Join(root, resultDir, id, snapshotName), id); err != nil {
			t.Errorf("invariant: result %s is not complete: %v", id, err)
		}
		st.results = append(st.results, id)
	}
	for _, name := range invReadDir(t, filepath.Join(root, cacheDir)) {
		switch {
		case name == Escape(crashCache):
			v, err := crashCacheVersion(filepath.Join(root, cacheDir, name))
			if err != nil {
				t.Errorf("invariant: cache %s is not a complete version: %v", crashCache, err)
			}
			st.cache, st.cachePresent = v, true
		case strings.HasPrefix(name, "c-"):
			t.Errorf("invariant: unexpected cache %s", name)
		default:
			st.leftovers = append(st.leftovers, cacheDir+"/"+name)
		}
	}
	for _, dir := range []string{resultTmpDir, cacheTmpDir} {
		for _, name := range invReadDir(t, filepath.Join(root, dir)) {
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

// crashModel is what the child's log says must or may be on disk.
type crashModel struct {
	offset int               // of the first line not read yet
	status map[string]string // id -> started, done, deleting, gone
	cache  map[int]bool      // versions the cache may hold (0: absent or empty)
	last   string            // the last line read
	// unfinished holds the ids of builds killed before their result was
	// published: Open may still publish them, if they were frozen.
	unfinished map[string]bool
}

// read takes in the lines the child appended since the last read.
func (m *crashModel) read(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	news := data[m.offset:]
	if len(news) == 0 {
		return
	}
	if news[len(news)-1] != '\n' {
		t.Fatalf("%s ends in a partial line %q", crashLogName, news)
	}
	m.offset = len(data)
	for _, line := range strings.Split(strings.TrimSuffix(string(news), "\n"), "\n") {
		m.last = line
		op, arg, _ := strings.Cut(line, " ")
		switch op {
		case "build-start":
			m.status[arg] = "started"
		case "done":
			m.status[arg] = "done"
		case "delete-start":
			m.status[arg] = "deleting"
		case "deleted":
			m.status[arg] = "gone"
		case "release-start":
			v, _ := strconv.Atoi(arg)
			m.cache[v] = true
		case "released":
			v, _ := strconv.Atoi(arg)
			m.cache = map[int]bool{v: true}
		case "deletecache-start":
			m.cache[0] = true
		case "cache-deleted":
			m.cache = map[int]bool{0: true}
		default:
			t.Fatalf("bad line in %s: %q", crashLogName, line)
		}
	}
}

// check compares the disk with the log, then settles what was pending at
// the kill according to what the disk shows.
func (m *crashModel) check(t *testing.T, st crashState) {
	t.Helper()
	present := map[string]bool{}
	for _, id := range st.results {
		present[id] = true
		switch m.status[id] {
		case "":
			t.Errorf("invariant: result %s exists but was never built", id)
		case "gone":
			if !m.unfinished[id] { // else a killed child's Open published it
				t.Errorf("invariant: result %s exists but was deleted", id)
			}
			m.status[id] = "done"
		}
	}
	for _, id := range slices.Sorted(maps.Keys(m.status)) {
		if m.status[id] == "done" && !present[id] {
			t.Errorf("invariant: result %s, reported done, is lost", id)
		}
	}
	if !m.cache[st.cache] {
		t.Errorf("invariant: cache holds version %d, want one of %v", st.cache, slices.Sorted(maps.Keys(m.cache)))
	}
	for id, s := range m.status {
		if s == "started" || s == "deleting" {
			if present[id] {
				m.status[id] = "done"
			} else {
				m.status[id] = "gone"
				m.unfinished[id] = s == "started"
			}
		}
	}
	m.cache = map[int]bool{st.cache: true}
}

// checkStep checks that the operation whose return the child was killed
// after took effect: returning means done.
func (m *crashModel) checkStep(t *testing.T, step string, st crashState) {
	t.Helper()
	op, arg, _ := strings.Cut(m.last, " ")
	want := map[string]string{"after-build": "build-start", "after-delete": "delete-start",
		"after-release": "release-start", "after-deletecache": "deletecache-start"}[step]
	if want == "" {
		return
	}
	if op != want {
		t.Fatalf("killed %s, but the log ends with %q", step, m.last)
	}
	switch op {
	case "build-start":
		if !slices.Contains(st.results, arg) {
			t.Errorf("killed after Build(%s) returned, but the result is missing", arg)
		}
	case "delete-start":
		if slices.Contains(st.results, arg) {
			t.Errorf("killed after Delete(%s) returned, but the result exists", arg)
		}
	case "release-start":
		if v, _ := strconv.Atoi(arg); st.cache != v {
			t.Errorf("killed after Release of version %d returned, but the cache holds %d", v, st.cache)
		}
	case "deletecache-start":
		if st.cachePresent {
			t.Errorf("killed after DeleteCache returned, but the cache exists (version %d)", st.cache)
		}
	}
}

// crashChildRun is one child process.
type crashChildRun struct {
	cmd    *exec.Cmd
	start  time.Time
	ready  chan struct{} // closed when the child printed "ready"
	done   chan error    // the result of Wait
	stdout readyWriter
	stderr bytes.Buffer // read only after done
}

// readyWriter is the child's stdout; it closes ready at "ready\n".
type readyWriter struct {
	mu    sync.Mutex // guards buf and ready
	buf   bytes.Buffer
	ready chan struct{}
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.ready != nil && bytes.Contains(w.buf.Bytes(), []byte("ready\n")) {
		close(w.ready)
		w.ready = nil
	}
	return len(p), nil
}

func crashStart(t *testing.T, root string, tag int, seed uint64, crashAt string) *crashChildRun {
	t.Helper()
	c := &crashChildRun{ready: make(chan struct{}), done: make(chan error, 1)}
	c.stdout.ready = c.ready
	env := append(os.Environ(), crashChildEnv+"="+crashChildName,
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	if crashAt != "" {
		env = append(env, crashAtEnv+"="+crashAt)
	}
	// As RunAs does: exec through /proc/self/exe, tests disabled.
	c.cmd = &exec.Cmd{
		Path:   "/proc/self/exe",
		Args:   []string{os.Args[0], "-test.run=^$", "--", root, fmt.Sprintf("%03d", tag), strconv.FormatUint(seed, 10)},
		Env:    env,
		Stdout: &c.stdout,
		Stderr: &c.stderr,
	}
	c.start = time.Now()
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start crash child: %v", err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	return c
}

// wait waits for the child to end and fails t unless SIGKILL ended it.
func (c *crashChildRun) wait(t *testing.T, what string) {
	t.Helper()
	var err error
	select {
	case err = <-c.done:
	case <-time.After(60 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
		t.Fatalf("%s: child still running after 60 s; stderr:\n%s", what, c.stderr.Bytes())
	}
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s: child ended by %v, not SIGKILL; stderr:\n%s", what, err, c.stderr.Bytes())
	}
	if bytes.Contains(c.stderr.Bytes(), []byte("DATA RACE")) {
		t.Errorf("%s: race in the child:\n%s", what, c.stderr.Bytes())
	}
}

// kill kills the child unless it has ended already.
func (c *crashChildRun) kill() {
	select {
	case err := <-c.done:
		c.done <- err
	default:
		c.cmd.Process.Kill()
	}
}

func TestCrashRecovery(t *testing.T) {
	fsys := btrfstest.New(t)
	root := fsys.Path
	began := time.Now()

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", crashSeedEnv, err)
		}
	}
	t.Logf("seed %d (%s=%d repeats the plan; the kill timings still vary)", seed, crashSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 2))

	// The plan: each step boundary twice (its first and a later
	// occurrence), 40 kills at random moments 1-50 ms after the child is
	// ready, and 5 pairs that leave a kill's repair (plus 30 made-up
	// builds in progress) to the next child's Open and kill that child
	// while its Open repairs.
	var plan []crashKill
	for _, step := range crashSteps {
		plan = append(plan, crashKill{step: step, n: 1}, crashKill{step: step, n: 2 + rng.IntN(2)})
	}
	for range 40 {
		plan = append(plan, crashKill{delay: time.Millisecond + time.Duration(rng.Int64N(int64(49*time.Millisecond)))})
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	for _, step := range []string{"in-fn-after-write", "in-clone-write", "in-fn-start", "in-fn-end", "after-cache"} {
		at := rng.IntN(len(plan) + 1)
		pair := []crashKill{{step: step, n: 1, skipOpen: true}, {recovery: true}}
		plan = slices.Insert(plan, at, pair...)
	}

	model := &crashModel{status: map[string]string{}, cache: map[int]bool{0: true}, unfinished: map[string]bool{}}
	sink := &repairSink{t: t}
	logPath := filepath.Join(root, stateDir, crashLogName)
	var startups []time.Duration // start to ready of children killed at random
	var (
		byLabel     = map[string]int{}            // kills by label
		repairs     = map[string]map[string]int{} // label -> repair kind -> count
		withRepairs = map[string]int{}            // label -> kills Open repaired something after
		recoveryHit = map[string]int{}            // where recovery kills landed
		windows     = map[string]int{}            // where random kills landed
		checkTime   time.Duration
		prevLeft    []string
	)
	for k, kill := range plan {
		what := fmt.Sprintf("kill %d (%s", k, kill.label())
		if kill.step != "" {
			what += fmt.Sprintf(":%d", kill.n)
		}
		what += ")"
		crashAt := ""
		if kill.step != "" {
			crashAt = fmt.Sprintf("%s:%d", kill.step, kill.n)
		}
		c := crashStart(t, root, k, rng.Uint64(), crashAt)
		switch {
		case kill.recovery:
			// Kill as soon as the child's Open has removed the deepest
			// left-over entry: inside its repair, if the kill is fast.
			deepest := slices.MaxFunc(prevLeft, func(a, b string) int {
				return strings.Count(a, "/") - strings.Count(b, "/")
			})
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
				if _, err := os.Lstat(filepath.Join(root, deepest)); errors.Is(err, os.ErrNotExist) {
					break
				}
			}
			c.kill()
		case kill.step == "":
			select {
			case <-c.ready:
				startups = append(startups, time.Since(c.start))
			case <-c.done:
				c.done <- nil
			case <-time.After(60 * time.Second):
			}
			time.Sleep(kill.delay)
			c.kill()
		}
		c.wait(t, what)
		byLabel[kill.label()]++

		checkStart := time.Now()
		pre := crashObserve(t, root, true)
		model.read(t, logPath)
		model.check(t, pre)
		model.checkStep(t, kill.step, pre)
		if kill.label() == "random" {
			windows[crashWindow(model.last, pre)]++
		}
		if kill.recovery {
			select {
			case <-c.ready:
				recoveryHit["after the child's Open"]++
			default:
				switch {
				case slices.Equal(pre.tmpTree, prevLeft):
					recoveryHit["before the child's repair"]++
				case len(pre.leftovers) == 0:
					recoveryHit["after the child's repair, before ready"]++
				default:
					recoveryHit["inside the child's repair"]++
				}
			}
			t.Logf("%s: left-over entries (two levels deep) %d -> %d", what, len(prevLeft), len(pre.tmpTree))
		}
		if t.Failed() {
			t.Fatalf("%s: stopping: the store violates the invariants above", what)
		}
		if kill.skipOpen {
			if len(pre.leftovers) == 0 {
				t.Fatalf("%s: nothing left over for the next child's Open to repair", what)
			}
			// What a process running many builds would leave, so that
			// the next Open's repair takes long enough to be killed in.
			for i := range 30 {
				dir := filepath.Join(root, resultTmpDir, fmt.Sprintf("b%d", 1000+i))
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := ioctl.CreateSubvolume(filepath.Join(dir, workName)); err != nil {
					t.Fatal(err)
				}
			}
			prevLeft = crashObserve(t, root, true).tmpTree
			checkTime += time.Since(checkStart)
			continue
		}

		s, err := Open(t.Context(), root, Config{Logger: logr.New(sink)})
		if err != nil {
			t.Fatalf("%s: Open after the kill: %v", what, err)
		}
		got, published := sink.take()
		post := crashObserve(t, root, false) // includes checkInvariants
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		checkTime += time.Since(checkStart)
		// The only change Open may make to complete data: publish a
		// result a build had frozen when it was killed (crashObserve
		// checked its content and that the child had started it).
		wantResults := slices.Sorted(slices.Values(append(slices.Clone(pre.results), published...)))
		if !slices.Equal(wantResults, post.results) || pre.cache != post.cache || pre.cachePresent != post.cachePresent {
			t.Errorf("%s: Open changed complete data: results %v -> %v (published %v), cache %d -> %d",
				what, pre.results, post.results, published, pre.cache, post.cache)
		}
		for _, id := range published {
			if !model.unfinished[id] {
				t.Errorf("%s: Open published %s, which no killed build had started", what, id)
			}
			model.status[id] = "done"
		}
		clear(model.unfinished)
		if removals := len(got) - len(published); removals != len(pre.leftovers) {
			t.Errorf("%s: %d leftovers %v, but Open logged %d removals %v", what, len(pre.leftovers), pre.leftovers, removals, got)
		}
		var want []string
		switch kill.step {
		case "in-fn-start", "in-fn-after-write", "in-fn-end":
			want = []string{repairBuild}
		case "after-cache", "in-clone-write":
			want = []string{repairClone}
		case "after-build", "after-delete", "after-release", "after-deletecache":
			want = []string{} // a returned call leaves nothing behind
		}
		if want != nil && !slices.Equal(got, want) {
			t.Errorf("%s: Open repaired %v, want %v", what, got, want)
		}
		for _, kind := range got {
			if strings.Contains(kind, "VIOLATION") || strings.HasPrefix(kind, "other") {
				t.Errorf("%s: repair %s", what, kind)
			}
			if repairs[kill.label()] == nil {
				repairs[kill.label()] = map[string]int{}
			}
			repairs[kill.label()][kind]++
		}
		if len(got) > 0 {
			withRepairs[kill.label()]++
		}
		if t.Failed() {
			t.Fatalf("%s: stopping: the store violates the invariants above", what)
		}
	}

	// The report.
	total := map[string]int{}
	for _, kinds := range repairs {
		for kind, n := range kinds {
			total[kind] += n
		}
	}
	var medianStartup time.Duration
	if len(startups) > 0 {
		medianStartup = slices.Sorted(slices.Values(startups))[len(startups)/2]
	}
	t.Logf("%d kills in %v (checks and Opens %v; child start to ready ≈ %v); final: %d results, cache version %d, %d ids built",
		len(plan), time.Since(began).Round(time.Millisecond), checkTime.Round(time.Millisecond), medianStartup.Round(time.Millisecond),
		len(crashObserve(t, root, false).results), model.maxCache(), len(model.status))
	for _, label := range slices.Sorted(maps.Keys(byLabel)) {
		t.Logf("  %-18s %2d kills, %2d followed by repairs: %v", label, byLabel[label], withRepairs[label], repairs[label])
	}
	t.Logf("repairs by kind: %v", total)
	t.Logf("random kills landed: %v", windows)
	t.Logf("recovery kills landed: %v", recoveryHit)
	if len(plan) < 50 {
		t.Errorf("only %d kills", len(plan))
	}
}

// crashWindow names the window a kill landed in, from the last line of the
// child's log and what it left.
func crashWindow(last string, st crashState) string {
	var prefixes []string
	for _, l := range st.leftovers {
		prefixes = append(prefixes, strings.TrimRight(l, "0123456789"))
	}
	op, arg, _ := strings.Cut(last, " ")
	switch {
	case op == "build-start" && slices.Contains(st.results, arg) && slices.Contains(prefixes, resultTmpDir+"/b"):
		return "Build: published, build dir not yet removed"
	case op == "build-start" && slices.Contains(st.results, arg):
		return "Build: returned, not yet logged"
	case op == "build-start":
		return "Build: before publish"
	case op == "delete-start" && slices.Contains(prefixes, resultTmpDir+"/d"):
		return "Delete: renamed away, not yet freed"
	case op == "delete-start":
		return "Delete: before rename or after return"
	case slices.Contains(prefixes, cacheDir+"/t-"):
		return "cache: new version beside the old one"
	case slices.Contains(prefixes, cacheTmpDir+"/k"):
		return "cache: clone leased"
	}
	return "between operations (after " + op + ")"
}

// maxCache returns the cache version the model settled on.
func (m *crashModel) maxCache() int {
	return slices.Max(slices.Collect(maps.Keys(m.cache)))
}
