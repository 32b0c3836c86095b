/* Builders of synthetic firmware images and partition tables for tests,
 * written independently of src/proto (own XOR checksum, libmd SHA-256 and
 * MD5), so a misreading of the format cannot hide in both. */
#ifndef ESPFS_TEST_IMAGE_SYNTH_H
#define ESPFS_TEST_IMAGE_SYNTH_H
#include <md5.h>
#include <sha2.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

struct tseg { uint32_t addr; uint32_t len; uint8_t fill; const uint8_t *data; };

/* Build an image: ext header unless ext_chip < 0 (ESP8266 layout). */
static inline size_t build_image(uint8_t *out, int ext_chip, uint8_t mode, uint8_t sf, uint32_t entry,
                          const struct tseg *segs, int n, bool hash)
{
	size_t p = 0;
	out[p++] = 0xE9;
	out[p++] = (uint8_t)n;
	out[p++] = mode;
	out[p++] = sf;
	put32(out + p, entry);
	p += 4;
	if (ext_chip >= 0) {
		memset(out + p, 0, 16);
		out[p] = 0xEE;
		out[p + 4] = (uint8_t)ext_chip;
		out[p + 5] = (uint8_t)(ext_chip >> 8);
		out[p + 9] = 0xFF; out[p + 10] = 0xFF;     /* max_rev_full unset */
		out[p + 15] = hash ? 1 : 0;
		p += 16;
	}
	uint8_t x = 0xEF;
	for (int i = 0; i < n; i++) {
		put32(out + p, segs[i].addr);
		put32(out + p + 4, segs[i].len);
		p += 8;
		for (uint32_t k = 0; k < segs[i].len; k++) {
			uint8_t b = segs[i].data ? segs[i].data[k] : (uint8_t)(segs[i].fill + k * 7);
			out[p++] = b;
			x ^= b;
		}
	}
	while ((p + 1) % 16)
		out[p++] = 0;
	out[p++] = x;
	if (hash) {
		SHA2_CTX c;
		SHA256Init(&c);
		SHA256Update(&c, out, p);
		SHA256Final(out + p, &c);
		p += 32;
	}
	return p;
}

struct tent { uint8_t type, sub; uint32_t off, size; const char *label; uint32_t flags; };
static inline size_t synth_pt(uint8_t *out, const struct tent *e, int n, bool md5)
{
	size_t p = 0;
	memset(out, 0xFF, 0xC00);
	for (int i = 0; i < n; i++, p += 32) {
		out[p] = 0xAA; out[p + 1] = 0x50; out[p + 2] = e[i].type; out[p + 3] = e[i].sub;
		put32(out + p + 4, e[i].off);
		put32(out + p + 8, e[i].size);
		memset(out + p + 12, 0, 16);
		memcpy(out + p + 12, e[i].label, strlen(e[i].label));
		put32(out + p + 28, e[i].flags);
	}
	if (md5) {
		out[p] = 0xEB; out[p + 1] = 0xEB;
		MD5_CTX c;
		MD5Init(&c);
		MD5Update(&c, out, p);
		MD5Final(out + p + 16, &c);
		p += 32;
	}
	return 0xC00;
}

#endif
