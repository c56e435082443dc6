module example.com/fixture-consumer

go 1.25.0

require (
	github.com/btrstore/btrstore v0.0.0
	golang.org/x/sys v0.47.0
)

// The module under test is this repository; a real consumer requires a
// released version instead and drops the replace.
replace github.com/btrstore/btrstore => ../..
