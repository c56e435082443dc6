module github.com/btrstore/btrstore/tools

go 1.25.0

require (
	github.com/btrstore/btrstore v0.0.0
	github.com/dennwc/btrfs v0.0.0-20240418142341-0167142bde7a
	golang.org/x/sys v0.47.0
)

require (
	github.com/dennwc/ioctl v1.0.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
)

// Development against the enclosing checkout; this module is not
// released.
replace github.com/btrstore/btrstore => ..
