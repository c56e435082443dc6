package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btrstore/btrstore/btrfstest"
	"github.com/btrstore/btrstore/ioctl"
	"github.com/btrstore/btrstore/kernel"
	"golang.org/x/sys/unix"
)

// The privilege matrix: every store operation, run by a child process in
// each privilege setup, recorded as working, failing (with which error) or
// not applicable, and compared with what the kernel's rules predict:
//
//   - deleting subvolumes by ioctl needs CAP_SYS_ADMIN or
//     user_subvol_rm_allowed; without them the store empties a subvolume
//     and rmdirs it (Linux 4.18): it works, deletes cost O(files);
//   - waiting for deleted subvolumes needs CAP_SYS_ADMIN (tree search) or
//     SUBVOL_SYNC_WAIT (Linux 6.13); without them CompleteDeletes commits
//     and returns (see rootless.go for what that promises);
//   - giving a cache to another uid/gid needs CAP_CHOWN.
//
// TestPrivilegeMatrix logs the matrix as a Markdown table (go test -v).

// The operations, in the order the child runs them and the table lists
// them.
const (
	opOpen            = "Open"
	opBuild           = "Build"
	opBuildOnBase     = "Build on base"
	opResult          = "Result"
	opLogFile         = "LogFile"
	opDelete          = "Delete"
	opBuildRO         = "Build + Delete, step leaves its dir 0555"
	opBuildNested     = "Build + Delete, step leaves a subvolume in a 0555 dir"
	opBuildGiven      = "Build, step gives its dir to 123:456, + Build on it"
	opCacheOwn        = "Cache (own owner)"
	opReleaseOwn      = "Release (own owner)"
	opCacheOther      = "Cache (123:456)"
	opReleaseOther    = "Release (123:456)"
	opDeleteCache     = "DeleteCache"
	opPrune           = "Prune"
	opCompleteDeletes = "CompleteDeletes"
	opFreeSpace       = "FreeSpace"
	opReopen          = "Open again (after all the above)"
)

var matrixOps = []string{opOpen, opBuild, opBuildOnBase, opResult, opLogFile, opDelete,
	opBuildRO, opBuildNested, opBuildGiven,
	opCacheOwn, opReleaseOwn, opCacheOther, opReleaseOther, opDeleteCache, opPrune, opCompleteDeletes, opFreeSpace,
	opReopen}

// matrixOther is the owner the child gives a cache to: not itself.
var matrixOther = Owner{123, 456}

// Outcome kinds.
const (
	outcomeWorks = "works"
	outcomeFails = "fails"
	outcomeNA    = "n/a"
)

// opOutcome is what the child reports for one operation, as JSON.
type opOutcome struct {
	Op     string `json:"op"`
	Result string `json:"result"`          // works, fails or n/a
	Err    string `json:"err,omitempty"`   // the error, for fails
	Why    string `json:"why,omitempty"`   // for n/a: which failure made it so
	Perm   bool   `json:"perm,omitempty"`  // the error matches fs.ErrPermission
	Priv   bool   `json:"priv,omitempty"`  // ... and kernel.ErrMissingPrivilege
	Value  string `json:"value,omitempty"` // what a working operation returned, if telling
}

func init() {
	btrfstest.Register("store-priv-matrix", privMatrixChild)
}

// matrixChild runs the operations and collects their outcomes.
type matrixChild struct {
	ctx      context.Context
	root     string // the store's root, written <root> in errors
	outcomes []opOutcome
}

func (m *matrixChild) record(op string, err error, value string) bool {
	o := opOutcome{Op: op, Result: outcomeWorks, Value: value}
	if err != nil {
		o = opOutcome{Op: op, Result: outcomeFails, Err: strings.ReplaceAll(err.Error(), m.root, "<root>"),
			Perm: errors.Is(err, fs.ErrPermission), Priv: errors.Is(err, kernel.ErrMissingPrivilege)}
	}
	m.outcomes = append(m.outcomes, o)
	return err == nil
}

func (m *matrixChild) na(op, why string) {
	m.outcomes = append(m.outcomes, opOutcome{Op: op, Result: outcomeNA, Why: why})
}

// check returns an error for a working operation whose effect is wrong.
func matrixCheck(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf("check failed: "+format, args...)
}

// privMatrixChild runs every store operation on the store at args[0] as
// whoever it runs as, and prints the outcomes as one JSON array. It fails
// only if it cannot report.
func privMatrixChild(args []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := &matrixChild{ctx: ctx, root: args[0]}
	defer func() {
		b, err := json.Marshal(m.outcomes)
		if err != nil {
			panic(err)
		}
		fmt.Println(string(b))
	}()

	s, err := Open(ctx, args[0], privConfig)
	if !m.record(opOpen, err, "") {
		for _, op := range matrixOps[1:] {
			m.na(op, opOpen+" failed")
		}
		return nil
	}
	defer s.Close()
	self := Owner{os.Geteuid(), os.Getegid()}

	buildWorks := m.record(opBuild, s.Build(ctx, "a", "", func(_ context.Context, dir string) error {
		return writeFile(dir, "a", "a")
	}), "")
	built := buildWorks // results a and b exist
	if built {
		err = s.Build(ctx, "b", "a", func(_ context.Context, dir string) error {
			if got := stressNames(dir); !slices.Equal(got, []string{"a"}) {
				return matrixCheck(false, "work dir on base a holds %v", got)
			}
			return writeFile(dir, "b", "b")
		})
		built = m.record(opBuildOnBase, err, "")
	} else {
		m.na(opBuildOnBase, opBuild+" failed")
	}

	if built {
		p, err := s.Result("b")
		if err == nil {
			ro, rerr := ioctl.ReadOnly(p)
			err = errors.Join(rerr, matrixCheck(ro, "result b is writable"),
				matrixCheck(slices.Equal(stressNames(p), []string{"a", "b"}), "result b holds %v", stressNames(p)))
		}
		m.record(opResult, err, "")
		log, err := s.LogFile("b")
		m.record(opLogFile, errors.Join(err, matrixCheck(err != nil || log == filepath.Join(p, "log"), "LogFile(b) = %s", log)), "")
	} else {
		m.na(opResult, "no result built")
		m.na(opLogFile, "no result built")
	}

	if built {
		err := s.Delete(ctx, "a")
		if err == nil {
			_, rerr := s.Result("a")
			err = matrixCheck(errors.Is(rerr, fs.ErrNotExist), "Result(a) after Delete = %v", rerr)
		}
		m.record(opDelete, err, "")
	} else {
		m.na(opDelete, "no result built")
	}

	if !buildWorks {
		for _, op := range []string{opBuildRO, opBuildNested, opBuildGiven} {
			m.na(op, "Build does not work")
		}
	} else {
		m.hardBuilds(s)
	}

	// A cache of one's own: write into the clone; the release makes it
	// the cache.
	lease, err := s.Cache(ctx, "own", self)
	if err == nil {
		err = errors.Join(ownedBy(lease.Path(), self), writeFile(lease.Path(), "own", "own"))
	}
	if m.record(opCacheOwn, err, "") {
		err := lease.Release(ctx)
		if err == nil {
			got := stressNames(filepath.Join(s.Root(), cacheDir, Escape("own")))
			err = matrixCheck(slices.Equal(got, []string{"own"}), "cache own holds %v after the release", got)
		}
		m.record(opReleaseOwn, err, "")
	} else {
		if lease != nil {
			lease.Release(ctx)
		}
		m.na(opReleaseOwn, opCacheOwn+" failed")
	}

	// A cache given to someone else.
	lease, err = s.Cache(ctx, "other", matrixOther)
	if err == nil {
		err = ownedBy(lease.Path(), matrixOther)
	}
	if m.record(opCacheOther, err, "") {
		m.record(opReleaseOther, lease.Release(ctx), "")
	} else {
		if lease != nil {
			lease.Release(ctx)
		}
		m.na(opReleaseOther, opCacheOther+" failed")
	}

	// DeleteCache of both caches; deleting one that does not exist is not
	// an error.
	err = errors.Join(s.DeleteCache(ctx, "own"), s.DeleteCache(ctx, "other"))
	if err == nil {
		got := stressNames(filepath.Join(s.Root(), cacheDir))
		err = matrixCheck(len(got) == 0, "cache/ holds %v after DeleteCache", got)
	}
	m.record(opDeleteCache, err, "")

	// Prune: of a result made for it, the least recently used one once
	// b is used; b stays.
	if built {
		err := s.Build(ctx, "p", "", func(_ context.Context, dir string) error { return writeFile(dir, "p", "p") })
		if err == nil {
			// Later than p's publication by more than a clock tick
			// (the kernel's timestamps are coarse).
			time.Sleep(20 * time.Millisecond)
			_, err = s.Result("b")
		}
		if err == nil {
			var pruned []string
			pruned, err = s.Prune(ctx, PruneOptions{Limit: 1})
			if err == nil {
				err = matrixCheck(slices.Equal(pruned, []string{"p"}), "Prune(limit 1) deleted %v, want [p]", pruned)
			}
		}
		m.record(opPrune, err, "")
	} else {
		m.na(opPrune, "no result built")
	}

	m.record(opCompleteDeletes, s.CompleteDeletes(ctx), "")

	free, err := s.FreeSpace(ctx)
	if err == nil {
		err = matrixCheck(free > 0 && free <= 100, "FreeSpace = %v", free)
	}
	m.record(opFreeSpace, err, strconv.FormatFloat(free, 'f', 1, 64)+" %")

	// Whatever the operations left must not lock the user out.
	s.Close()
	s2, err := Open(ctx, args[0], privConfig)
	if err == nil {
		err = errors.Join(m.leftBehind(s2, nil), s2.Close())
	}
	m.record(opReopen, err, "")
	return nil
}

// hardBuilds runs build steps that leave their directory hard to
// delete: the store must still remove the work directory and, on Delete,
// the result.
func (m *matrixChild) hardBuilds(s *Store) {
	m.buildAndDelete(s, opBuildRO, "ro", func(dir string) error {
		if err := writeFile(dir, "f", "f"); err != nil {
			return err
		}
		return os.Chmod(dir, 0o555)
	})
	m.buildAndDelete(s, opBuildNested, "nested", func(dir string) error {
		if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
			return err
		}
		if err := ioctl.CreateSubvolume(filepath.Join(dir, "d", "sub")); err != nil {
			return err
		}
		return os.Chmod(filepath.Join(dir, "d"), 0o555)
	})
	m.buildGiven(s)
}

// leftBehind checks that result-tmp holds nothing beyond before.
func (m *matrixChild) leftBehind(s *Store, before []string) error {
	var left []string
	for _, n := range stressNames(filepath.Join(s.Root(), resultTmpDir)) {
		if !slices.Contains(before, n) {
			left = append(left, n)
		}
	}
	return matrixCheck(len(left) == 0, "left %v behind in result-tmp", left)
}

// buildAndDelete builds id with step, then deletes it, checking that
// neither leaves anything behind.
func (m *matrixChild) buildAndDelete(s *Store, op, id string, step func(dir string) error) {
	before := stressNames(filepath.Join(s.Root(), resultTmpDir))
	err := s.Build(m.ctx, id, "", func(_ context.Context, dir string) error { return step(dir) })
	if err == nil {
		err = m.leftBehind(s, before)
		if derr := s.Delete(m.ctx, id); derr != nil {
			err = errors.Join(derr, err)
		} else {
			_, rerr := s.Result(id)
			err = errors.Join(matrixCheck(errors.Is(rerr, fs.ErrNotExist), "Result(%s) after Delete = %v", id, rerr),
				m.leftBehind(s, before))
		}
	}
	m.record(op, err, "")
}

// errStepCannotChown: the step itself lacks CAP_CHOWN.
var errStepCannotChown = errors.New("the build step cannot chown without CAP_CHOWN")

// buildGiven builds a result whose top directory the step gives to
// matrixOther (as a step building a root file system owned by root
// would), builds on it, and deletes both.
func (m *matrixChild) buildGiven(s *Store) {
	before := stressNames(filepath.Join(s.Root(), resultTmpDir))
	err := s.Build(m.ctx, "given", "", func(_ context.Context, dir string) error {
		if err := os.Chown(dir, matrixOther.UID, matrixOther.GID); err != nil {
			return fmt.Errorf("%w: %w", errStepCannotChown, err)
		}
		return nil
	})
	if errors.Is(err, errStepCannotChown) {
		m.na(opBuildGiven, err.Error())
		return
	}
	if err == nil {
		err = s.Build(m.ctx, "on-given", "given", func(_ context.Context, dir string) error {
			return ownedBy(dir, matrixOther)
		})
	}
	err = errors.Join(err, s.Delete(m.ctx, "given"), s.Delete(m.ctx, "on-given"), m.leftBehind(s, before))
	m.record(opBuildGiven, err, "")
}

func ownedBy(path string, want Owner) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	sys := st.Sys().(*syscall.Stat_t)
	return matrixCheck(int(sys.Uid) == want.UID && int(sys.Gid) == want.GID,
		"%s is owned by %d:%d, want %d:%d", path, sys.Uid, sys.Gid, want.UID, want.GID)
}

// privSetup is one column of the matrix.
type privSetup struct {
	name   string
	cred   btrfstest.Cred
	mount  []btrfstest.Option
	rmOK   bool // mounted with user_subvol_rm_allowed
	admin  bool // holds CAP_SYS_ADMIN (in the initial user namespace)
	chown  bool // holds CAP_CHOWN
	dac    bool // holds CAP_DAC_OVERRIDE
	fowner bool // holds CAP_FOWNER
	detail string
}

// effectiveCaps returns this process's effective capabilities, which the
// "root" setup hands on to its child as they are.
func effectiveCaps(t *testing.T) []uintptr {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			var caps []uintptr
			for c := uintptr(0); c < 64; c++ {
				if mask&(1<<c) != 0 {
					caps = append(caps, c)
				}
			}
			return caps
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return nil
}

func privSetups(t *testing.T) []privSetup {
	rootCaps := effectiveCaps(t)
	return []privSetup{
		{name: "root", cred: btrfstest.Cred{UID: 0, GID: 0, Caps: rootCaps},
			admin: slices.Contains(rootCaps, unix.CAP_SYS_ADMIN), chown: slices.Contains(rootCaps, unix.CAP_CHOWN),
			dac: slices.Contains(rootCaps, unix.CAP_DAC_OVERRIDE), fowner: slices.Contains(rootCaps, unix.CAP_FOWNER),
			detail: "uid 0 with the test's capabilities, normal mount"},
		{name: "CAP_SYS_ADMIN + CAP_CHOWN", cred: btrfstest.Cred{UID: privUID, GID: privGID, Caps: []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_CHOWN}},
			admin: true, chown: true, detail: "uid 1000, normal mount (a privileged container)"},
		{name: "CAP_SYS_ADMIN only", cred: btrfstest.Cred{UID: privUID, GID: privGID, Caps: []uintptr{unix.CAP_SYS_ADMIN}},
			admin: true, detail: "uid 1000, normal mount"},
		{name: "user_subvol_rm_allowed", cred: btrfstest.Cred{UID: privUID, GID: privGID},
			mount: []btrfstest.Option{btrfstest.MountOptions("user_subvol_rm_allowed")}, rmOK: true,
			detail: "uid 1000 without capabilities, mounted with user_subvol_rm_allowed"},
		{name: "no privilege", cred: btrfstest.Cred{UID: privUID, GID: privGID},
			detail: "uid 1000 without capabilities, normal mount"},
	}
}

// matrixExpectation is what the kernel's rules predict for one operation.
type matrixExpectation struct {
	result string   // works, fails or n/a
	names  []string // what a failure's message must name
	// notPriv: the failure is the kernel's EPERM, explained, rather
	// than one of kernel.Report's checks (kernel.ErrMissingPrivilege).
	notPriv bool
}

// expectedMatrix derives each operation's outcome for setup p on a kernel
// with or without SUBVOL_SYNC_WAIT.
func expectedMatrix(p privSetup, syncWait bool) map[string]matrixExpectation {
	want := make(map[string]matrixExpectation)
	// Without CAP_SYS_ADMIN or user_subvol_rm_allowed the store deletes
	// by emptying and rmdir (Linux 4.18), and without SUBVOL_SYNC_WAIT
	// CompleteDeletes commits only: every operation works all the same.
	_ = syncWait
	for _, op := range matrixOps {
		want[op] = matrixExpectation{result: outcomeWorks}
	}
	if !p.chown {
		want[opCacheOther] = matrixExpectation{result: outcomeFails, names: []string{"CAP_CHOWN"}}
		want[opReleaseOther] = matrixExpectation{result: outcomeNA}
	}
	// Deleting a subvolume: write and search on its parent directory
	// (CAP_DAC_OVERRIDE bypasses), and without CAP_SYS_ADMIN on its root
	// too. The store owns what its builds leave, so it can restore them.
	chmodBug := false
	if !p.admin {
		want[opBuildRO] = matrixExpectation{result: outcomeWorks}
		chmodBug = true
	}
	if !p.dac {
		want[opBuildNested] = matrixExpectation{result: outcomeWorks}
		chmodBug = true
	}
	if chmodBug {
		want[opReopen] = matrixExpectation{result: outcomeWorks}
	}
	// Snapshotting a subvolume needs owning its root or CAP_FOWNER; the
	// step needs CAP_CHOWN to give its directory away at all.
	switch {
	case !p.chown:
		want[opBuildGiven] = matrixExpectation{result: outcomeNA}
	case !p.fowner:
		want[opBuildGiven] = matrixExpectation{result: outcomeFails, names: []string{"CAP_FOWNER"}, notPriv: true}
	}
	return want
}

// TestPrivilegeMatrix runs every store operation in every privilege setup
// and checks the outcomes against the kernel's rules; with -v it logs the
// matrix as a Markdown table.
func TestPrivilegeMatrix(t *testing.T) {
	btrfstest.RequireRoot(t)
	setups := privSetups(t)
	var (
		mu       sync.Mutex
		observed = make(map[string]map[string]opOutcome) // guarded by mu: setup → op → outcome
		kernelV  string
	)
	t.Run("setups", func(t *testing.T) {
		for _, p := range setups {
			t.Run(strings.NewReplacer(" ", "_", "+", "and").Replace(p.name), func(t *testing.T) {
				t.Parallel()
				fsys := btrfstest.New(t, p.mount...)
				if err := os.Chown(fsys.Path, int(p.cred.UID), int(p.cred.GID)); err != nil {
					t.Fatal(err)
				}
				syncWait := kernel.ProbeSubvolSyncWait(fsys.Path) == nil
				want := expectedMatrix(p, syncWait)

				out, err := btrfstest.RunAs(t, p.cred, "store-priv-matrix", fsys.Path)
				if err != nil {
					t.Fatalf("child: %v\nstdout:\n%s", err, out)
				}
				var outcomes []opOutcome
				if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &outcomes); err != nil {
					t.Fatalf("child printed %q: %v", out, err)
				}
				got := make(map[string]opOutcome)
				for _, o := range outcomes {
					got[o.Op] = o
					t.Logf("%-20s %-5s %s%s%s", o.Op, o.Result, o.Err, o.Why, o.Value)
				}
				mu.Lock()
				observed[p.name] = got
				mu.Unlock()

				for _, op := range matrixOps {
					for _, problem := range outcomeProblems(got[op], want[op]) {
						t.Errorf("%s: %s", op, problem)
					}
				}
				if len(outcomes) != len(matrixOps) {
					t.Errorf("child reported %d outcomes, want %d", len(outcomes), len(matrixOps))
				}
				checkMatrixLayout(t, fsys.Path, want[opOpen].result == outcomeWorks)
			})
		}
	})
	if v, err := kernel.Running(); err == nil {
		kernelV = v.String()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(observed) == len(setups) {
		t.Logf("privilege matrix (Linux %s):\n%s", kernelV, matrixTable(setups, observed))
	}
}

func outcomeProblems(got opOutcome, want matrixExpectation) []string {
	if got.Result != want.result {
		return []string{fmt.Sprintf("%s (%s%s), want %s %v", got.Result, got.Err, got.Why, want.result, want.names)}
	}
	if got.Result != outcomeFails {
		return nil
	}
	var problems []string
	if !got.Perm {
		problems = append(problems, fmt.Sprintf("error %q does not match fs.ErrPermission", got.Err))
	}
	if !got.Priv && !want.notPriv {
		problems = append(problems, fmt.Sprintf("error %q does not match kernel.ErrMissingPrivilege", got.Err))
	}
	for _, name := range want.names {
		if !strings.Contains(got.Err, name) {
			problems = append(problems, fmt.Sprintf("error %q does not name %s", got.Err, name))
		}
	}
	return problems
}

// checkMatrixLayout checks, as root, what the child left: after a refused
// Open, nothing; otherwise exactly result b and empty cache and tmp
// directories.
func checkMatrixLayout(t *testing.T, root string, opened bool) {
	t.Helper()
	if !opened {
		if names := entries(t, root); len(names) != 0 {
			t.Errorf("refused Open left %v in the root", names)
		}
		return
	}
	if got := entries(t, filepath.Join(root, resultDir)); !slices.Equal(got, []string{"b"}) {
		t.Errorf("results left by the child: %v, want [b]", got)
	}
	for _, d := range []string{cacheTmpDir, cacheDir, resultTmpDir} {
		if names := entries(t, filepath.Join(root, d)); len(names) != 0 {
			t.Errorf("%s not empty after the child: %v", d, names)
		}
	}
}

// matrixTerms are the requirements an error can name, in the order a cell
// lists them.
var matrixTerms = []string{"CAP_SYS_ADMIN", "user_subvol_rm_allowed", "Linux 6.13", "CAP_CHOWN", "CAP_FOWNER"}

// matrixTable renders the observed outcomes as a Markdown table: one row
// per operation, one column per setup.
func matrixTable(setups []privSetup, observed map[string]map[string]opOutcome) string {
	var b strings.Builder
	b.WriteString("| operation |")
	for _, p := range setups {
		fmt.Fprintf(&b, " %s |", p.name)
	}
	b.WriteString("\n| --- |")
	for range setups {
		b.WriteString(" --- |")
	}
	b.WriteString("\n")
	for _, op := range matrixOps {
		fmt.Fprintf(&b, "| %s |", op)
		for _, p := range setups {
			fmt.Fprintf(&b, " %s |", matrixCell(observed[p.name][op]))
		}
		b.WriteString("\n")
	}
	b.WriteString("\nSetups: ")
	for i, p := range setups {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "**%s**: %s", p.name, p.detail)
	}
	b.WriteString(".\n")
	return b.String()
}

func matrixCell(o opOutcome) string {
	switch o.Result {
	case outcomeWorks:
		return "works"
	case outcomeNA:
		return "n/a"
	case outcomeFails:
		var named []string
		for _, term := range matrixTerms {
			if strings.Contains(o.Err, term) {
				named = append(named, term)
			}
		}
		kind := "error"
		if o.Perm {
			kind = "`fs.ErrPermission`"
		}
		if len(named) == 0 {
			// Unexpected: the error's first line, shortened.
			msg, _, _ := strings.Cut(o.Err, "\n")
			if len(msg) > 100 {
				msg = msg[:100] + "…"
			}
			return "fails, " + kind + ": " + strings.ReplaceAll(msg, "|", `\|`)
		}
		return "fails, " + kind + ": needs " + strings.Join(named, " or ")
	}
	return "?"
}
