/* Escaping of outside bytes for display (see espfs/text.h).  UTF-8 rules
 * from RFC 3629 section 4: no overlong forms, no surrogates, nothing past
 * U+10FFFF. */
#include <stdio.h>
#include <string.h>
#include "espfs/text.h"

size_t esp_utf8_seq(const unsigned char *s, size_t n)
{
	if (n == 0)
		return 0;
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	unsigned char lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;           /* overlong */
		else if (c == 0xED)
			hi = 0x9F;           /* surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90;           /* overlong */
		else if (c == 0xF4)
			hi = 0x8F;           /* past U+10FFFF */
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

size_t esp_text_escape(char *out, size_t cap, const char *in, size_t inlen)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;
	if (cap == 0)
		return 0;
	for (size_t i = 0; i < inlen;) {
		char esc[5];
		const char *piece = esc;
		size_t plen;
		size_t seq = esp_utf8_seq(s + i, inlen - i);
		if (seq > 1) {
			piece = (const char *)s + i;
			plen = seq;
		} else if (seq == 1 && s[i] == '\\') {
			piece = "\\\\";
			plen = 2;
		} else if (seq == 1 && s[i] == '\n') {
			piece = "\\n";
			plen = 2;
		} else if (seq == 1 && s[i] == '\r') {
			piece = "\\r";
			plen = 2;
		} else if (seq == 1 && s[i] == '\t') {
			piece = "\\t";
			plen = 2;
		} else if (seq == 1 && s[i] >= 0x20 && s[i] != 0x7F) {
			piece = (const char *)s + i;
			plen = 1;
		} else {
			snprintf(esc, sizeof esc, "\\x%02x", s[i]);
			plen = 4;
			seq = 1;
		}
		if (o + plen >= cap)
			break;
		for (size_t k = 0; k < plen; k++)
			out[o++] = piece[k];
		i += seq ? seq : 1;
	}
	out[o] = 0;
	return o;
}

bool esp_name_forced_offset(const char *name, uint32_t *off)
{
	const char *at = name ? strrchr(name, '@') : NULL;
	if (!at)
		return false;
	const char *p = at + 1;
	unsigned base = 10;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	} else if (p[0] == '0') {
		base = 8;
	}
	uint64_t v = 0;
	const char *start = p;
	for (;; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (*p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (*p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			break;
		if (d >= base)
			return false;
		v = v * base + d;
		if (v > UINT32_MAX)
			return false;
	}
	if (p == start || (strcmp(p, ".bin") && strcmp(p, ".bin.part")))
		return false;
	*off = (uint32_t)v;
	return true;
}
