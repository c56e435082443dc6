package main

import (
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
)

// TestMain fails the package if a test leaks a file descriptor, mount or
// loop device.
func TestMain(m *testing.M) { btrfstest.Main(m) }
