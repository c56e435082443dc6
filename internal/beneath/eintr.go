package beneath

import "golang.org/x/sys/unix"

// Retry calls fn until it returns something other than EINTR, and returns
// that. Use it for every system call that a signal can interrupt (open of a
// FIFO or of a file on a network filesystem, ioctls that sleep); Go's
// runtime sends signals (SIGURG for preemption) at any time.
func Retry(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

// Retry2 is Retry for calls that also return a value, such as a new fd.
func Retry2[T any](fn func() (T, error)) (T, error) {
	for {
		v, err := fn()
		if err != unix.EINTR {
			return v, err
		}
	}
}
