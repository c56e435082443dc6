package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/go-logr/logr"
)

// The crash test: a child process builds, deletes, takes and releases a
// cache lease, deletes the cache and prunes in a loop, and is killed with
// SIGKILL, either by itself at a step boundary (CRASH_AT=<step>:<n>: the
// n-th time it reaches <step>) or by the parent at a random moment. All kills happen
// on one filesystem, so state accumulates. After each kill the parent
// checks what must hold at every instant (results complete and read-only,
// the cache a complete version, nothing reported done lost), opens the
// store, checks that Open repaired everything and changed nothing
// complete, and closes it.
//
// The child logs to state/crash.log, an opLog: the lines about results,
// and
//
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
	crashMaxResults = 4 // the child deletes the oldest result beyond this
)

// crashCaches are the caches the child uses: one.
var crashCaches = []string{crashCache}

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
	"after-prune",       // Prune (Limit 1) returned: one result gone
}

func init() { btrfstest.Register(crashChildName, crashChild) }

// crashChild is the child's loop; args are the store root, a tag that makes
// its ids unique, and a random seed. It runs until killed.
func crashChild(args []string) error {
	root, tag, seed, err := childArgs(args)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	hook, err := crashHook(os.Getenv(crashAtEnv))
	if err != nil {
		return err
	}
	ctx := context.Background()
	s, log, results, err := childOpen(root, crashLogName)
	if err != nil {
		return err
	}
	note := log.note
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

		if i%4 == 3 {
			note("prune-start 1")
			pruned, err := s.Prune(ctx, PruneOptions{Limit: 1})
			if err != nil {
				return err
			}
			hook("after-prune")
			for _, id := range pruned {
				note("pruned %s", id)
			}
			note("prune-done")
			results = slices.DeleteFunc(results, func(id string) bool { return slices.Contains(pruned, id) })
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

// crashModel is what the child's log says must or may be on disk.
type crashModel struct {
	resultModel
	tail  logTail      // the child's log
	cache map[int]bool // versions the cache may hold (0: absent or empty)
	last  string       // the last line read
	// killedPruned counts the results a Prune running at the last kill
	// had deleted.
	killedPruned int
}

// read takes in the lines the child appended since the last read.
func (m *crashModel) read(t *testing.T, path string) {
	t.Helper()
	for _, line := range m.tail.read(t, path) {
		m.last = line
		op, arg, _ := strings.Cut(line, " ")
		switch op {
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
			if op == "build-failed" || !m.applyResult(op, arg) { // the child's builds do not fail
				t.Fatalf("bad line in %s: %q", crashLogName, line)
			}
		}
	}
}

// check compares the disk with the log, then settles what was pending at
// the kill according to what the disk shows.
func (m *crashModel) check(t *testing.T, st observed) {
	t.Helper()
	before := m.prunedKilled
	m.checkResults(t, st.results, true)
	m.killedPruned = m.prunedKilled - before
	cache, _ := st.cache(crashCache)
	if !m.cache[cache] {
		t.Errorf("invariant: cache holds version %d, want one of %v", cache, slices.Sorted(maps.Keys(m.cache)))
	}
	m.cache = map[int]bool{cache: true}
}

// checkStep checks that the operation whose return the child was killed
// after took effect: returning means done.
func (m *crashModel) checkStep(t *testing.T, step string, st observed) {
	t.Helper()
	cache, cachePresent := st.cache(crashCache)
	op, arg, _ := strings.Cut(m.last, " ")
	want := map[string]string{"after-build": "build-start", "after-delete": "delete-start",
		"after-release": "release-start", "after-deletecache": "deletecache-start", "after-prune": "prune-start"}[step]
	if want == "" {
		return
	}
	if op != want || op == "prune-start" && arg != "1" {
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
		if v, _ := strconv.Atoi(arg); cache != v {
			t.Errorf("killed after Release of version %d returned, but the cache holds %d", v, cache)
		}
	case "deletecache-start":
		if cachePresent {
			t.Errorf("killed after DeleteCache returned, but the cache exists (version %d)", cache)
		}
	case "prune-start":
		if m.killedPruned != 1 {
			t.Errorf("killed after Prune (Limit 1) returned, but %d results are gone, want 1", m.killedPruned)
		}
	}
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a kill-at-every-step loop, 50 to 124 s in a TCG guest (make vmtest-cross); make test and make vmtest run it")
	}
	fsys := btrfstest.New(t)
	root := fsys.Path
	began := time.Now()

	rng := rand.New(rand.NewPCG(planSeed(t, crashSeedEnv), 2))

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

	model := &crashModel{resultModel: newResultModel(), cache: map[int]bool{0: true}}
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
		var env []string
		if crashAt != "" {
			env = []string{crashAtEnv + "=" + crashAt}
		}
		c := btrfstest.Start(t, crashChildName, env, root, fmt.Sprintf("%03d", k), strconv.FormatUint(rng.Uint64(), 10))
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
			c.Kill()
		case kill.step == "":
			if d, _ := awaitReady(c); d > 0 {
				startups = append(startups, d)
			}
			time.Sleep(kill.delay)
			c.Kill()
		}
		if !c.Wait(60 * time.Second) {
			t.Fatalf("%s: child still running after 60 s; stderr:\n%s", what, c.Stderr())
		}
		if !c.Killed() {
			t.Fatalf("%s: child ended by %v, not SIGKILL; stderr:\n%s", what, c.State(), c.Stderr())
		}
		if c.Raced() {
			t.Errorf("%s: race in the child:\n%s", what, c.Stderr())
		}
		byLabel[kill.label()]++

		checkStart := time.Now()
		pre := observe(t, root, true, false, crashCaches)
		model.read(t, logPath)
		model.check(t, pre)
		model.checkStep(t, kill.step, pre)
		if kill.label() == "random" {
			windows[crashWindow(model.last, pre)]++
		}
		if kill.recovery {
			select {
			case <-c.Ready():
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
			prevLeft = observe(t, root, true, false, crashCaches).tmpTree
			checkTime += time.Since(checkStart)
			continue
		}

		s, err := Open(t.Context(), root, Config{Logger: logr.New(sink)})
		if err != nil {
			t.Fatalf("%s: Open after the kill: %v", what, err)
		}
		got, published := sink.take()
		post := observe(t, root, false, false, crashCaches) // includes checkInvariants
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		checkTime += time.Since(checkStart)
		// The only change Open may make to complete data: publish a
		// result a build had frozen when it was killed (observe checked
		// its content, and the model that the child had started it).
		checkOpen(t, what+": ", pre, post, got, published)
		model.publish(t, what+": ", published)
		var want []string
		switch kill.step {
		case "in-fn-start", "in-fn-after-write", "in-fn-end":
			want = []string{repairBuild}
		case "after-cache", "in-clone-write":
			want = []string{repairClone}
		case "after-build", "after-delete", "after-release", "after-deletecache", "after-prune":
			want = []string{} // a returned call leaves nothing behind
		}
		// Spares (spare.go) may be left by any kill, made ahead for
		// the next build.
		if want != nil && !slices.Equal(slices.DeleteFunc(slices.Clone(got), func(k string) bool { return k == repairSpare }), want) {
			t.Errorf("%s: Open repaired %v, want %v", what, got, want)
		}
		for _, kind := range got {
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
	t.Logf("%d kills in %v (checks and Opens %v; child start to ready ≈ %v); final: %d results, cache version %d, %d ids built",
		len(plan), time.Since(began).Round(time.Millisecond), checkTime.Round(time.Millisecond), median(startups).Round(time.Millisecond),
		len(observe(t, root, false, false, crashCaches).results), model.maxCache(), len(model.status))
	for _, label := range slices.Sorted(maps.Keys(byLabel)) {
		t.Logf("  %-18s %2d kills, %2d followed by repairs: %v", label, byLabel[label], withRepairs[label], repairs[label])
	}
	t.Logf("prunes: %d logged done, %d killed before (in Prune or after-prune); results pruned: %d logged, %d gone in killed prunes",
		model.prunes, model.prunesKilled, model.pruned, model.prunedKilled)
	t.Logf("repairs by kind: %v", total)
	t.Logf("random kills landed: %v", windows)
	t.Logf("recovery kills landed: %v", recoveryHit)
	if len(plan) < 50 {
		t.Errorf("only %d kills", len(plan))
	}
}

// crashWindow names the window a kill landed in, from the last line of the
// child's log and what it left.
func crashWindow(last string, st observed) string {
	var prefixes []string
	for _, l := range st.leftovers {
		prefixes = append(prefixes, strings.TrimRight(l, "0123456789"))
	}
	op, arg, _ := strings.Cut(last, " ")
	switch {
	case op == "build-start" && slices.Contains(st.results, arg) && slices.Contains(prefixes, resultTmpDir+"/b"):
		return "Build: published, build dir not yet removed"
	case op == "build-start" && slices.Contains(st.leftovers, resultDir+"/"+arg):
		return "Build: result directory made, its snapshot not yet"
	case op == "build-start" && slices.Contains(st.results, arg):
		return "Build: returned, not yet logged"
	case op == "build-start":
		return "Build: before publish"
	case op == "delete-start" && slices.Contains(prefixes, resultTmpDir+"/d"):
		return "Delete: renamed away, not yet freed"
	case op == "delete-start":
		return "Delete: before rename or after return"
	case (op == "prune-start" || op == "pruned") && slices.Contains(prefixes, resultTmpDir+"/d"):
		return "Prune: renamed away, not yet freed"
	case op == "prune-start" || op == "pruned":
		return "Prune: running or returned, not yet logged"
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
