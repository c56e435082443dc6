package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/btrstore/btrstore/test/vm/internal/plan"
	"golang.org/x/sys/unix"
)

// loadModules loads the modules in the given (dependency) order. A module that
// is already loaded (EEXIST) is fine; an optional one may fail.
func loadModules(mods []plan.Module) error {
	for _, m := range mods {
		err := loadModule(m)
		switch {
		case err == nil, errors.Is(err, unix.EEXIST):
		case m.Optional:
			fmt.Fprintf(os.Stderr, "vmtest init: optional module %s: %v\n", m.Name, err)
		default:
			return fmt.Errorf("load module %s: %w", m.Name, err)
		}
	}
	return nil
}

func loadModule(m plan.Module) error {
	f, err := os.Open(m.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if m.Compressed {
		// The kernel decompresses it (CONFIG_MODULE_DECOMPRESS, checked by the harness).
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	return unix.FinitModule(int(f.Fd()), "", flags)
}
