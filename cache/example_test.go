package cache_test

import (
	"context"
	"fmt"
	"log"

	"github.com/btrstore/btrstore/cache"
)

// Two builds clone the cache "opam" from the same generation. The first to
// release makes its clone the new cache; the second is discarded. A clone
// taken before DeleteCache is discarded too.
func Example() {
	var caches cache.Table
	ctx := context.Background()
	lock := func() *cache.Held {
		h, err := caches.Lock(ctx, "opam")
		if err != nil {
			log.Fatal(err)
		}
		return h
	}
	// Cache: remember the generation the clone is taken from.
	clone := func() uint64 {
		h := lock()
		defer h.Unlock()
		return h.Generation()
	}
	// Release: the clone wins if the generation has not moved.
	release := func(build string, seen uint64) {
		h := lock()
		defer h.Unlock()
		if h.CompareAndBump(seen) {
			fmt.Printf("%s: clone of generation %d becomes the cache, now generation %d\n", build, seen, h.Generation())
		} else {
			fmt.Printf("%s: clone of generation %d discarded, the cache is at generation %d\n", build, seen, h.Generation())
		}
	}

	a, b := clone(), clone()
	release("a", a)
	release("b", b)

	c := clone()
	h := lock() // DeleteCache
	fmt.Println("cache deleted, now generation", h.Bump())
	h.Unlock()
	release("c", c)

	// Output:
	// a: clone of generation 0 becomes the cache, now generation 1
	// b: clone of generation 0 discarded, the cache is at generation 1
	// cache deleted, now generation 2
	// c: clone of generation 1 discarded, the cache is at generation 2
}
