// Package modgraph holds a test of the library's module graph: a
// throw-away consumer module that imports the library's packages must
// have only golang.org/x/sys and github.com/go-logr/logr (and their own
// requirements) in `go list -m all`. The test needs the go command and
// the Go module proxy (or a module cache that holds x/sys and logr).
package modgraph
