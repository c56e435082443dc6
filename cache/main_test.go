package cache

import (
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
)

// TestMain fails the package if a test leaks a file descriptor (the cache
// package uses no btrfs, but every test package checks the same way).
func TestMain(m *testing.M) { btrfstest.Main(m) }
