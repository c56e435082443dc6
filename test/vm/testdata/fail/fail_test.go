// Package fail has one passing and one failing test, to show that the
// harness reports failures and that -run selects tests in the guest.
package fail

import "testing"

func TestPass(t *testing.T) {}

func TestFail(t *testing.T) { t.Fatal("deliberate failure") }
