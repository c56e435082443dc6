package kernel_test

import (
	"fmt"
	"log"

	"github.com/btrstore/btrstore/kernel"
)

// Check explains what is missing before a store is opened at a path.
func ExampleCheck() {
	r := kernel.Check("/var/lib/btrstore")
	fmt.Print(r) // every fact and requirement, "ok" or "missing" with the fix
	if err := r.CanDeleteSubvolumes(); err != nil {
		log.Fatal(err) // names CAP_SYS_ADMIN and user_subvol_rm_allowed
	}
}

func ExampleParseVersion() {
	v, err := kernel.ParseVersion("6.12.111+deb12-cloud-amd64")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v, v.AtLeast(6, 13))
	// Output: 6.12.111 false
}
