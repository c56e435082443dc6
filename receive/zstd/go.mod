module github.com/btrstore/btrstore/receive/zstd

go 1.25.0

require (
	github.com/btrstore/btrstore v0.0.0
	github.com/klauspost/compress v1.20.4
)

require golang.org/x/sys v0.47.0 // indirect

// Development against the enclosing checkout; a release of this module
// (tag receive/zstd/vX.Y.Z) requires a tagged root version instead.
replace github.com/btrstore/btrstore => ../..
