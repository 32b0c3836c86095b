/* SLIP decoding of what a serial port delivers (src/common/slip.c): any
 * bytes, fed in pieces of any size, into a small frame buffer; every frame
 * that comes out must survive an encode/decode round trip. */
#include <stdint.h>
#include <string.h>
#include "espfs/slip.h"

static void round_trip(const uint8_t *p, size_t n)
{
	uint8_t enc[SLIP_MAX_ENCODED(512)], out[512];
	size_t e = slip_encode(p, n, enc), used = 0;
	slip_decoder d;
	slip_decoder_init(&d, out, sizeof out);
	if (slip_decoder_feed(&d, enc, e, &used) != 1 || d.len != n || memcmp(out, p, n))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* first byte: frame buffer size and piece size, so the overflow path
	 * and byte-by-byte feeding are both reached */
	size_t cap = 1 + (data[0] & 0x3f) * 8, piece = 1 + (data[0] >> 6) * 5;
	uint8_t buf[512];
	slip_decoder d;
	slip_decoder_init(&d, buf, cap);
	data++;
	size--;
	while (size) {
		size_t n = size < piece ? size : piece, used = 0;
		int r = slip_decoder_feed(&d, data, n, &used);
		if (used > n || (r == 1 && (used == 0 || d.len > cap)) || (r == 0 && used != n))
			__builtin_trap();
		if (r == 1)
			round_trip(d.buf, d.len);
		data += used;
		size -= used;
	}
	return 0;
}
