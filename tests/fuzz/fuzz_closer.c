/* /proc/PID/stat and /proc/PID/status as espfs reads them for the process
 * that closes a staged file (src/fs/closer.c).  A process chooses its own
 * name (comm, up to 15 bytes of anything but NUL, ')' and spaces too):
 * "x) Z 1 2 ..." must not fool the field count, and no input may read
 * outside the buffer or leave the result inconsistent. */
#include <stdint.h>
#include <string.h>
#include "closer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct closer c;
	memset(&c, 0, sizeof c);
	const char *buf = (const char *)data + 1;
	size_t len = size - 1;
	if (data[0] & 1) {
		if (closer_parse_stat(buf, len, &c) == 0) {
			if (c.fate != CLOSER_ALIVE && c.fate != CLOSER_EXITED && c.fate != CLOSER_FAILED &&
			    c.fate != CLOSER_KILLED)
				__builtin_trap();
			if (c.fate == CLOSER_KILLED && (c.sig <= 0 || c.sig > 127))
				__builtin_trap();
			if (memchr(c.comm, 0, sizeof c.comm) == NULL)
				__builtin_trap();  /* always a C string */
		}
	} else {
		(void)closer_parse_status(buf, len, &c);
	}
	closer_judge_exit(&c, data[0] >> 1, 0);
	(void)closer_rsync_cleanup(&c);
	return 0;
}
