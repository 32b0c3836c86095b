/* The line-aware Improv stream parser (src/proto/improv_codec.c): serial
 * bytes mixing console text and packets, fed in pieces, with a gap (a
 * pause on the line) at every 0xFE byte's position. */
#include <string.h>
#include "espfs/improv.h"

static void on_line(void *ctx, const char *line)
{
	(*(size_t *)ctx) += strlen(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct improv_parser ps;  /* 16 KiB: not on the stack */
	size_t total = 0;
	if (size < 1)
		return 0;
	size_t piece = 1 + data[0] % 97;
	improv_parser_init(&ps);
	ps.on_line = on_line;
	ps.line_ctx = &total;
	data++;
	size--;
	while (size) {
		size_t n = size < piece ? size : piece, used = 0;
		struct improv_packet pkt;
		if (data[0] == 0xFE) {
			improv_parser_gap(&ps);
			data++;
			size--;
			continue;
		}
		int r = improv_parser_feed(&ps, data, n, &used, &pkt);
		if (used > n || (r == 0 && used != n) || (r == 1 && pkt.len > IMPROV_MAX_DATA))
			__builtin_trap();
		if (r == 1 && used == 0)
			used = 1;  /* never loop on a packet that used nothing */
		data += used;
		size -= used;
	}
	for (unsigned i = 0; i < improv_console_count(&ps) + 1; i++) {
		const char *l = improv_console_line(&ps, i);
		if (l && strlen(l) >= IMPROV_CONSOLE_LINE_MAX)
			__builtin_trap();
	}
	return 0;
}
