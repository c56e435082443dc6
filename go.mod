module github.com/btrstore/btrstore

go 1.25.0

require (
	github.com/go-logr/logr v1.4.4
	golang.org/x/sys v0.47.0
)
