module github.com/btrstore/btrstore

go 1.26.0

require (
	github.com/dennwc/btrfs v0.0.0-20240418142341-0167142bde7a
	github.com/go-logr/logr v1.4.4
	github.com/klauspost/compress v1.20.4
	golang.org/x/sys v0.50.0
)

require github.com/dennwc/ioctl v1.0.0 // indirect
