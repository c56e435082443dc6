package store

import (
	"testing"

	"github.com/btrstore/btrstore/btrfstest"
)

func TestMain(m *testing.M) { btrfstest.Main(m) }
