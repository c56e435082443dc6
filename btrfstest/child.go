package btrfstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv names the variable that tells Main it runs in a child, and which
// registered function to call.
const childEnv = "BTRFSTEST_CHILD"

// secbitNoRoot is SECBIT_NOROOT from linux/securebits.h, which x/sys lacks.
const secbitNoRoot = 1 << 0

var registry struct {
	mu  sync.Mutex // guards fns
	fns map[string]func(args []string) error
}

// mainStarted is set by Main before any test runs; RunAs needs it, because
// without Main the child would not dispatch to the registered function.
var mainStarted bool

// Register makes fn runnable in a child process started by [RunAs] under name.
// Call it from init or a package-level var initializer, so that the child,
// which is the same binary, has it registered too. Registering a name twice
// panics. Register is safe for concurrent use and needs no privilege.
func Register(name string, fn func(args []string) error) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if _, dup := registry.fns[name]; dup {
		panic("btrfstest: Register called twice for " + name)
	}
	if registry.fns == nil {
		registry.fns = make(map[string]func([]string) error)
	}
	registry.fns[name] = fn
}

func registered(name string) func([]string) error {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	return registry.fns[name]
}

// Cred is the identity of a child process started by [RunAs].
type Cred struct {
	UID, GID uint32
	Groups   []uint32  // supplementary groups; nil = none
	Caps     []uintptr // capability numbers, e.g. unix.CAP_SYS_ADMIN; nil = none
}

// RunAs runs the function registered as name in a child process with cred's
// uid, gid and groups, and exactly cred.Caps as its effective and permitted
// capabilities, also for uid 0. It returns the child's stdout; a child that
// exits non-zero gives an error that includes its stderr. RunAs needs root
// (a kernel with ambient capabilities, 4.3+), and the test package's TestMain
// must call [Main]. It is safe to call from parallel tests.
func RunAs(t testing.TB, cred Cred, name string, args ...string) (stdout string, err error) {
	t.Helper()
	RequireRoot(t)
	cmd := childCmd(t, name, nil, args)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: cred.UID, Gid: cred.GID, Groups: cred.Groups},
		AmbientCaps: cred.Caps,
	}
	var outBuf, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outBuf, &errBuf
	if err := startNoRoot(cmd); err != nil {
		return "", fmt.Errorf("btrfstest: start child %q as %+v: %w", name, cred, err)
	}
	err = cmd.Wait()
	if err != nil {
		return outBuf.String(), fmt.Errorf("btrfstest: child %q as %+v: %w; stderr:\n%s", name, cred, err, errBuf.Bytes())
	}
	if errBuf.Len() > 0 {
		t.Logf("btrfstest: child %q stderr:\n%s", name, errBuf.Bytes())
	}
	return outBuf.String(), nil
}

// childCmd is the command that runs the function registered as name in a
// child, with args after "--" and env added to this process's environment.
func childCmd(t testing.TB, name string, env, args []string) *exec.Cmd {
	t.Helper()
	if !mainStarted {
		t.Fatalf("btrfstest: a child needs the package's TestMain to call btrfstest.Main")
	}
	if registered(name) == nil {
		t.Fatalf("btrfstest: no function registered as %q", name)
	}
	// /proc/self/exe rather than os.Executable: exec through the magic link
	// skips the path walk, so the child needs no search permission on go
	// test's 0700 build directory. -test.run=^$ keeps the child from running
	// tests even if its dispatch in Main were bypassed.
	return &exec.Cmd{
		Path: "/proc/self/exe",
		Args: append([]string{os.Args[0], "-test.run=^$", "--"}, args...),
		Env:  append(append(os.Environ(), childEnv+"="+name, raceNoExitSleep()), env...),
	}
}

// Child is a child process started by [Start]: the test binary running a
// registered function, with this process's identity, until it returns or
// is killed. Ready, Exited, WaitReady, Kill and Wait are safe for
// concurrent use; Killed, State, Stderr and Raced read what Wait settled.
type Child struct {
	Started time.Time // when Start started it
	cmd     *exec.Cmd
	stdout  readyWriter
	stderr  bytes.Buffer  // read only after exited is closed
	exited  chan struct{} // closed once the child has ended and been reaped
}

// Start starts the function registered as name in a child process, as
// [RunAs] does but with this process's identity and capabilities and
// without waiting: the caller kills it ([Child.Kill]) or lets it end, and
// then calls [Child.Wait]. env is added to the child's environment. A child
// still running when the test ends is killed. Start needs no privilege
// beyond what the function does, and the test package's TestMain must call
// [Main]. It is safe to call from parallel tests.
func Start(t testing.TB, name string, env []string, args ...string) *Child {
	t.Helper()
	c := &Child{cmd: childCmd(t, name, env, args), exited: make(chan struct{})}
	c.stdout.ready = make(chan struct{})
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	c.Started = time.Now()
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("btrfstest: start child %q: %v", name, err)
	}
	go func() {
		c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.Kill()
		<-c.exited
	})
	return c
}

// Ready is closed when the child has written the line "ready" to its
// stdout.
func (c *Child) Ready() <-chan struct{} { return c.stdout.ready }

// WaitReady waits for the child to say "ready", and fails t if it ends
// first or is not ready within timeout.
func (c *Child) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.Ready():
	case <-c.exited:
		t.Fatalf("btrfstest: child ended before ready: %v; stderr:\n%s", c.State(), c.Stderr())
	case <-time.After(timeout):
		t.Fatalf("btrfstest: child not ready after %v", timeout)
	}
}

// Exited is closed when the child has ended.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Kill sends the child SIGKILL unless it has ended.
func (c *Child) Kill() {
	select {
	case <-c.exited:
	default:
		c.cmd.Process.Kill()
	}
}

// Wait waits for the child to end. If it has not ended within timeout, Wait
// kills it, waits for that, and returns false.
func (c *Child) Wait(timeout time.Duration) bool {
	select {
	case <-c.exited:
		return true
	case <-time.After(timeout):
		c.cmd.Process.Kill()
		<-c.exited
		return false
	}
}

// Killed reports whether SIGKILL ended the child; call it after [Child.Wait].
func (c *Child) Killed() bool {
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// State is how the child ended; call it after [Child.Wait].
func (c *Child) State() *os.ProcessState { return c.cmd.ProcessState }

// Stderr is what the child wrote to its stderr; call it after [Child.Wait].
func (c *Child) Stderr() []byte { return c.stderr.Bytes() }

// Raced reports whether the race detector reported a race in the child;
// call it after [Child.Wait].
func (c *Child) Raced() bool { return bytes.Contains(c.stderr.Bytes(), []byte("DATA RACE")) }

// readyWriter is a child's stdout; it closes ready at "ready\n".
type readyWriter struct {
	mu    sync.Mutex // guards buf and seen
	buf   bytes.Buffer
	ready chan struct{}
	seen  bool // ready is closed
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.seen && bytes.Contains(w.buf.Bytes(), []byte("ready\n")) {
		close(w.ready)
		w.seen = true
	}
	return len(p), nil
}

// raceNoExitSleep returns GORACE for the child with atexit_sleep_ms=0 added:
// a race-enabled binary otherwise sleeps a second before exiting to let other
// goroutines' races surface, and the child's function is done when it returns.
// Binaries built without -race ignore GORACE.
func raceNoExitSleep() string {
	return "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")
}

// startNoRoot starts cmd with SECBIT_NOROOT set, so that a child running as
// uid 0 does not get every capability back at exec but only its ambient set,
// like any other uid. Securebits belong to a thread and are inherited by a
// child forked from it, and Go forks on the calling thread: so set the bit on
// a locked thread, start there, and never unlock it, which makes the runtime
// end that thread with the goroutine and nothing else runs with the bit.
func startNoRoot(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		bits, err := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0)
		if err == nil {
			err = unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(bits)|secbitNoRoot, 0, 0, 0)
		}
		if err != nil {
			errc <- fmt.Errorf("set SECBIT_NOROOT: %w", err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// runChild runs the registered function name with the arguments RunAs passed
// after "--", and returns the exit status.
func runChild(name string) int {
	// The function may itself run the test binary; it must not be a child.
	os.Unsetenv(childEnv)
	fn := registered(name)
	if fn == nil {
		fmt.Fprintf(os.Stderr, "btrfstest: child: no function registered as %q\n", name)
		return 2
	}
	var args []string
	if i := slices.Index(os.Args, "--"); i >= 0 {
		args = os.Args[i+1:]
	}
	if err := fn(args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
