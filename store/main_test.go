package store

import (
	"flag"
	"os"
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
)

// btrfsExamples are the examples (in example_btrfs_test.go) that make a btrfs: they
// need root, and an example cannot skip itself.
const btrfsExamples = "^Example(Open_funcr|Store_LogFile)$"

func TestMain(m *testing.M) {
	// As another user, skip them (-skip) unless BTRFS_TEST_REQUIRE=1, where
	// they run and fail, as a test that needs root does.
	if os.Geteuid() != 0 && os.Getenv("BTRFS_TEST_REQUIRE") != "1" {
		flag.Parse()
		skip := btrfsExamples
		if old := flag.Lookup("test.skip").Value.String(); old != "" {
			skip = old + "|" + skip
		}
		flag.Set("test.skip", skip)
	}
	btrfstest.Main(m)
}
