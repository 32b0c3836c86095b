/* The parsers of values users write into device files (src/fs/parse.c)
 * and the display escaping of outside bytes (src/common/text.c).  The
 * first byte picks the parser; checks: no crash, and each answer is one
 * the caller can trust (a range inside the flash, sector-aligned; an
 * escaped text that is valid UTF-8 without control bytes). */
#include <errno.h>
#include <string.h>
#include "espfs/text.h"
#include "parse.h"

static void check_escaped(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		size_t k = esp_utf8_seq(u + i, n - i);
		if (k == 0 || (k == 1 && (u[i] < 0x20 || u[i] == 0x7f)))
			__builtin_trap();
		i += k;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *buf = (const char *)data + 1;
	size_t len = size - 1;
	char why[200], ssid[33], pass[65], out[256];
	uint32_t off = 0, n = 0;
	struct state_req q;
	int rc;
	switch (data[0] % 5) {
	case 0: {
		uint32_t fsize = (data[0] & 0x80) ? 0 : 4u << 20;
		rc = parse_erase(buf, len, fsize, &off, &n, why, sizeof why);
		if (rc == 0 && n && (off % 0x1000 || n % 0x1000 ||
				     (uint64_t)off + n > (fsize ? fsize : 0xffffffffu)))
			__builtin_trap();
		if (rc < 0 && rc != -EINVAL && rc != -EFBIG)
			__builtin_trap();
		char word[PART_WORD_MAX + 1];
		rc = parse_part_word(buf, len, word, sizeof word, why, sizeof why);
		if (rc == 0) {
			size_t wl = strlen(word);
			if (!wl || wl > PART_WORD_MAX)
				__builtin_trap();
			for (size_t i = 0; i < wl; i++)
				if ((unsigned char)word[i] <= 0x20 || (unsigned char)word[i] >= 0x7F)
					__builtin_trap();
		}
		break;
	}
	case 1:
		memset(pass, 'X', sizeof pass);  /* must be wiped on every failure */
		rc = parse_wifi(buf, len, ssid, sizeof ssid, pass, sizeof pass, why, sizeof why);
		if (rc == 0 && (!ssid[0] || strlen(ssid) > SSID_MAX || strlen(pass) > PASS_MAX))
			__builtin_trap();
		if (rc < 0)
			for (size_t i = 0; i < sizeof pass; i++)
				if (pass[i])
					__builtin_trap();  /* wiped */
		break;
	case 2:
		rc = parse_state_cmd(buf, len, &q, why, sizeof why);
		if (rc < 0)
			check_escaped(why, strlen(why));
		else if (q.pct < 0 || q.pct > 100 || !(q.rate >= 0 && q.rate <= 1))
			__builtin_trap();
		break;
	case 3: {
		char name[1100];
		size_t l = len < sizeof name - 1 ? len : sizeof name - 1;
		memcpy(name, buf, l);
		name[l] = 0;
		rc = check_name(name);
		if (rc == 0 && (strlen(name) > ESPFS_NAME_MAX || strchr(name, '/')))
			__builtin_trap();
		uint32_t at = 0;
		if (esp_name_forced_offset(name, &at) && !strchr(name, '@'))
			__builtin_trap();
		break;
	}
	default: {
		size_t cap = 1 + (len ? (unsigned char)buf[0] % sizeof out : 0);
		size_t w = esp_text_escape(out, cap, buf, len);
		if (w >= cap || out[w] != 0 || strlen(out) != w)
			__builtin_trap();
		check_escaped(out, w);
		break;
	}
	}
	return 0;
}
