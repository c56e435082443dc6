package sendstream

import (
	"hash/crc32"
	"runtime"
)

type runtimeMem struct{}

func (runtimeMem) read() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// crcStd is the CRC32C register after p, from an initial register of
// ^seed, before the final inversion.
func crcStd(p string, seed uint32) uint32 {
	return crc32.Update(^seed, crc32.MakeTable(crc32.Castagnoli), []byte(p))
}
