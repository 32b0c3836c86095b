/* Improv packets from a device (src/proto/improv_codec.c): one packet
 * decoded as is, its RPC result strings split and copied; a decoded
 * packet must re-encode to the same bytes. */
#include <string.h>
#include "espfs/improv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct improv_packet p;
	int used = improv_decode(data, size, &p);
	if (used <= 0)
		return 0;
	if ((size_t)used > size || p.len > IMPROV_MAX_DATA)
		__builtin_trap();
	uint8_t wire[IMPROV_MAX_WIRE];
	int n = improv_encode_packet(p.type, p.data, p.len, wire);
	if (n < used || memcmp(wire, data, (size_t)used))
		__builtin_trap();
	struct improv_strings s;
	if (improv_parse_result(&p, &s) == 0) {
		if (s.n < 0 || s.n > IMPROV_MAX_STRINGS)
			__builtin_trap();
		char out[300];
		for (int i = 0; i < s.n + 1; i++) {  /* one past the end, too */
			improv_string_copy(&s, i, out, sizeof out);
			improv_string_copy(&s, i, out, 3);
		}
	}
	improv_state_name(p.data[0]);
	improv_error_name(p.data[0]);
	improv_error_errno(p.data[0]);
	return 0;
}
