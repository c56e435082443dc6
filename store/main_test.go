package store

import (
	"testing"

	"github.com/btrstore/btrstore/internal/btrfstest"
)

func TestMain(m *testing.M) { btrfstest.Main(m) }
