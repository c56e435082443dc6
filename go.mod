module github.com/btrstore/btrstore

go 1.26.0

require golang.org/x/sys v0.50.0

require github.com/go-logr/logr v1.4.4 // indirect
