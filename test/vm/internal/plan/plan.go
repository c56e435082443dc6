// Package plan is the contract between the vmtest harness on the host and the
// init it boots in the guest: what the initramfs holds, where, and the console
// lines the guest prints for the host to parse.
package plan

// Path is where the harness writes the Plan (as JSON) inside the initramfs.
const Path = "/vmtest/plan.json"

// Console markers. Each is printed at the start of a line by the guest init;
// the harness ignores everything else on the console.
const (
	// Started is printed just before the first test binary runs, with the
	// guest's CLOCK_BOOTTIME in seconds then and when the init started:
	// "BTRSTORE-VMTEST-START uptime=2.345 init=1.234".
	Started = "BTRSTORE-VMTEST-START"
	// Result is printed after each binary: "BTRSTORE-VMTEST-RESULT <name> exit=<code> time=<duration>".
	Result = "BTRSTORE-VMTEST-RESULT"
	// Exit is the sentinel carrying the overall exit code: "BTRSTORE-VMTEST-EXIT=<code>".
	// A run whose console lacks it failed (kernel panic, hang, init crash).
	Exit = "BTRSTORE-VMTEST-EXIT="
)

// Exit codes of the guest init beyond those of the test binaries.
const (
	ExitTestsFailed = 1 // at least one test binary failed
	ExitSetupFailed = 3 // the init could not prepare the guest (modules, disk)
)

// Plan tells the guest init what to do.
type Plan struct {
	Modules []Module // in load order: dependencies first
	Tests   []Test   // run one after the other
	Args    []string // flags passed to every test binary (-test.run=..., -test.v)
	Env     []string // KEY=value added to the environment of the test binaries
	// TimeoutSeconds is the harness's timeout for the whole VM run. The init
	// passes what is left of it (minus a margin) to each binary as -test.timeout
	// so that a hung test prints its goroutines before the harness kills qemu.
	TimeoutSeconds float64
	// RandomSeed is host randomness the init credits to the guest kernel's
	// entropy pool. Without it the pool stays uninitialized for long under
	// TCG, and getrandom(GRND_NONBLOCK) fails: libuuid, hence mkfs.btrfs,
	// then sleeps and retries for ~6 s per filesystem.
	RandomSeed []byte
}

// Module is one kernel module file in the initramfs.
type Module struct {
	Name       string
	Path       string // absolute path in the guest
	Compressed bool   // load with MODULE_INIT_COMPRESSED_FILE
	Optional   bool   // a soft dependency: failing to load it is logged, not fatal
}

// Test is one test binary.
type Test struct {
	Name   string // package import path, for the result line
	Binary string // absolute path in the guest
	Dir    string // working directory: the package's source dir, holding testdata/
}
