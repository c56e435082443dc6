package receive

import (
	"encoding/binary"
	"errors"
)

var errLZO = errors.New("corrupt LZO data")

// lzo1xDecompress decompresses one LZO1X block (the format of the kernel's
// lib/lzo, without the lzo-rle extension, which btrfs does not use) into
// dst[:0], producing at most limit bytes. It follows the kernel's
// lzo1x_decompress_safe, with every read and write bounds-checked.
func lzo1xDecompress(dst, src []byte, limit int) ([]byte, error) {
	out := dst[:0]
	ip := 0
	need := func(n int) bool { return ip+n <= len(src) }
	// count255 reads the run of zero bytes and the final byte of a long
	// length: 255 per zero byte plus the last byte.
	count255 := func() (int, bool) {
		start := ip
		for need(1) && src[ip] == 0 {
			ip++
		}
		if !need(1) {
			return 0, false
		}
		zeros := ip - start
		if zeros > 1<<20 {
			return 0, false
		}
		v := zeros*255 + int(src[ip])
		ip++
		return v, true
	}
	copyLit := func(t int) bool {
		if !need(t) || len(out)+t > limit {
			return false
		}
		out = append(out, src[ip:ip+t]...)
		ip += t
		return true
	}
	copyMatch := func(dist, t int) bool {
		m := len(out) - dist
		if m < 0 || len(out)+t > limit {
			return false
		}
		for i := 0; i < t; i++ { // may overlap: byte by byte
			out = append(out, out[m+i])
		}
		return true
	}
	if len(src) < 3 {
		return nil, errLZO
	}
	state := 0
	var t, next int
	if src[0] > 17 {
		// A first literal run; fewer than 4 literals act as the literals
		// after a match.
		t = int(src[0]) - 17
		ip = 1
		if !copyLit(t) {
			return nil, errLZO
		}
		state = min(t, 4)
	}
	for {
		if !need(1) {
			return nil, errLZO
		}
		t = int(src[ip])
		ip++
		var dist int
		switch {
		case t < 16:
			switch state {
			case 0:
				if t == 0 {
					v, ok := count255()
					if !ok {
						return nil, errLZO
					}
					t = 15 + v
				}
				t += 3
				if !copyLit(t) {
					return nil, errLZO
				}
				state = 4
				continue
			case 4:
				next = t & 3
				if !need(1) {
					return nil, errLZO
				}
				dist = 1 + 0x0800 + (t >> 2) + int(src[ip])<<2
				ip++
				t = 3
			default:
				next = t & 3
				if !need(1) {
					return nil, errLZO
				}
				dist = 1 + (t >> 2) + int(src[ip])<<2
				ip++
				t = 2
			}
		case t >= 64:
			next = t & 3
			if !need(1) {
				return nil, errLZO
			}
			dist = 1 + ((t >> 2) & 7) + int(src[ip])<<3
			ip++
			t = (t >> 5) - 1 + 2
		case t >= 32:
			t = (t & 31) + 2
			if t == 2 {
				v, ok := count255()
				if !ok {
					return nil, errLZO
				}
				t += 31 + v
			}
			if !need(2) {
				return nil, errLZO
			}
			n := int(binary.LittleEndian.Uint16(src[ip:]))
			ip += 2
			dist = 1 + (n >> 2)
			next = n & 3
		default: // 16..31
			high := (t & 8) << 11
			t = (t & 7) + 2
			if t == 2 {
				v, ok := count255()
				if !ok {
					return nil, errLZO
				}
				t += 7 + v
			}
			if !need(2) {
				return nil, errLZO
			}
			n := int(binary.LittleEndian.Uint16(src[ip:]))
			ip += 2
			next = n & 3
			dist = high + (n >> 2)
			if dist == 0 { // the end marker; nothing may follow it
				if t != 3 || ip != len(src) {
					return nil, errLZO
				}
				return out, nil
			}
			dist += 0x4000
		}
		if !copyMatch(dist, t) {
			return nil, errLZO
		}
		state = next
		if next > 0 && !copyLit(next) {
			return nil, errLZO
		}
	}
}

// btrfsLZO decompresses btrfs' LZO framing: a 32-bit total length, then
// one segment per sector of output (32-bit length and an LZO1X block),
// where a segment header never straddles a sector boundary of the input
// (the rest of the sector is padding then). It returns at most limit bytes.
func btrfsLZO(src []byte, sector int, limit int) ([]byte, error) {
	if len(src) < 4 {
		return nil, errLZO
	}
	total := int(binary.LittleEndian.Uint32(src))
	if total < 4 || total > len(src) {
		return nil, errLZO
	}
	src = src[:total]
	out := make([]byte, 0, limit)
	pos := 4
	for pos < total && len(out) < limit {
		if rem := sector - pos%sector; rem < 4 {
			pos += rem
			if pos >= total {
				break
			}
		}
		if pos+4 > total {
			return nil, errLZO
		}
		n := int(binary.LittleEndian.Uint32(src[pos:]))
		pos += 4
		if n <= 0 || n > total-pos {
			return nil, errLZO
		}
		seg, err := lzo1xDecompress(out[len(out):], src[pos:pos+n], min(sector, limit-len(out)))
		if err != nil {
			return nil, err
		}
		out = out[:len(out)+len(seg)]
		pos += n
	}
	return out, nil
}
