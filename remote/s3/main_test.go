package s3_test

import (
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
)

// TestMain runs the leak checks after the tests and removes the fixture's
// temp root, which would otherwise be left in TMPDIR.
func TestMain(m *testing.M) { btrfstest.Main(m) }
