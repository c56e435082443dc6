package kernel

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// threadCapEff reads the effective set of the calling thread from
// /proc/thread-self/status.
func threadCapEff(t *testing.T) uint64 {
	t.Helper()
	f, err := os.Open("/proc/thread-self/status")
	if err != nil {
		t.Skipf("cannot read the second source: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return mask
		}
	}
	t.Fatalf("no CapEff in /proc/thread-self/status (%v)", sc.Err())
	return 0
}

func TestHasCapabilityMatchesStatus(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mask := threadCapEff(t)
	for c := uintptr(0); c <= 63; c++ {
		got, err := HasCapability(c)
		if err != nil {
			t.Fatalf("HasCapability(%s): %v", CapabilityName(c), err)
		}
		if want := mask&(1<<c) != 0; got != want {
			t.Errorf("HasCapability(%s) = %v, CapEff %016x says %v", CapabilityName(c), got, mask, want)
		}
	}
}

func TestHasCapabilityOutOfRange(t *testing.T) {
	if _, err := HasCapability(64); err == nil {
		t.Error("HasCapability(64) gave no error")
	}
}

func TestCapabilityName(t *testing.T) {
	for c, want := range map[uintptr]string{
		unix.CAP_SYS_ADMIN:      "CAP_SYS_ADMIN",
		unix.CAP_CHOWN:          "CAP_CHOWN",
		unix.CAP_DAC_OVERRIDE:   "CAP_DAC_OVERRIDE",
		unix.CAP_FOWNER:         "CAP_FOWNER",
		unix.CAP_LAST_CAP:       "CAP_CHECKPOINT_RESTORE",
		unix.CAP_LAST_CAP + 1:   "CAP_" + strconv.Itoa(unix.CAP_LAST_CAP+1),
		^uintptr(0) /* huge */ : "CAP_" + strconv.FormatUint(uint64(^uintptr(0)), 10),
	} {
		if got := CapabilityName(c); got != want {
			t.Errorf("CapabilityName(%d) = %q, want %q", c, got, want)
		}
	}
	for c := uintptr(0); c <= unix.CAP_LAST_CAP; c++ {
		if name := CapabilityName(c); name == "CAP_"+strconv.Itoa(int(c)) {
			t.Errorf("capability %d has no name", c)
		}
	}
}
