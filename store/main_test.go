package store

import (
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
)

// btrfsExamples are the examples (in example_btrfs_test.go) that make a btrfs: they
// need root, and an example cannot skip itself.
const btrfsExamples = "^Example(Open_funcr|Store_LogFile)$"

func TestMain(m *testing.M) {
	btrfstest.SkipRootExamples(btrfsExamples)
	btrfstest.Main(m)
}
