/* Shared by the sim app tests: a flash buffer, an output recorder, and
 * builders for synthetic images, written independently of src/sim (SHA-256
 * and MD5 from libmd) so the tests do not share mistakes with the code. */
#ifndef TEST_APP_UTIL_H
#define TEST_APP_UTIL_H
#include <md5.h>
#include <sha2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tests/t.h"
#include "src/sim/app_priv.h"

/* ---- flash ---- */
struct tflash {
	uint8_t *d;
	uint32_t size;
};

static inline int tflash_read(void *ctx, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct tflash *f = ctx;
	if (off > f->size || len > f->size - off)
		return -22;
	memcpy(buf, f->d + off, len);
	return 0;
}

static inline void tflash_init(struct tflash *f, uint32_t size)
{
	f->size = size;
	f->d = malloc(size);
	memset(f->d, 0xFF, size);
}

static inline void tflash_put(struct tflash *f, uint32_t off, const void *p, size_t n)
{
	if (off + n <= f->size)
		memcpy(f->d + off, p, n);
}

/* ---- output recorder ---- */
struct tout {
	uint8_t *b;
	size_t len, cap;
	int pieces, bad_pieces;     /* pieces not ending in '\n' */
};

static inline void tout_emit(void *ctx, const uint8_t *buf, size_t n)
{
	struct tout *o = ctx;
	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		o->b = realloc(o->b, o->cap);
	}
	memcpy(o->b + o->len, buf, n);
	o->len += n;
	o->b[o->len] = 0;
	o->pieces++;
	if (n == 0 || buf[n - 1] != '\n')
		o->bad_pieces++;
}

static inline int tout_count(const struct tout *o, const char *s)
{
	int c = 0;
	size_t k = strlen(s);
	for (size_t i = 0; o->b && i + k <= o->len; i++)
		if (memcmp(o->b + i, s, k) == 0)
			c++;
	return c;
}

static inline bool tout_has(const struct tout *o, const char *s)
{
	return tout_count(o, s) > 0;
}

/* Improv packets found at line starts, in order. */
struct tpkt {
	uint8_t type, len, data[256];
	bool csum_ok;
};
static inline int tout_improv(const struct tout *o, struct tpkt *out, int max)
{
	int n = 0;
	for (size_t i = 0; o->b && i + 11 <= o->len && n < max; i++) {
		if ((i != 0 && o->b[i - 1] != '\n') || memcmp(o->b + i, "IMPROV", 6) != 0)
			continue;
		uint8_t L = o->b[i + 8];
		if (i + 11u + L > o->len)
			break;
		uint8_t sum = 0;
		for (size_t k = 0; k < 9u + L; k++)
			sum = (uint8_t)(sum + o->b[i + k]);
		out[n].type = o->b[i + 7];
		out[n].len = L;
		memcpy(out[n].data, o->b + i + 9, L);
		out[n].csum_ok = sum == o->b[i + 9 + L] && o->b[i + 10 + L] == '\n' && o->b[i + 6] == 1;
		n++;
		i += 10u + L;
	}
	return n;
}

/* String k of an RPC result (data = [cmd, total, (len, str)...]). */
static inline bool tpkt_str(const struct tpkt *p, int k, char *out, size_t cap)
{
	size_t o = 2, end = 2u + p->data[1];
	if (p->len < 2 || end > p->len)
		return false;
	for (int i = 0; o < end; i++) {
		uint8_t l = p->data[o];
		if (o + 1 + l > end)
			return false;
		if (i == k) {
			size_t c = l < cap - 1 ? l : cap - 1;
			memcpy(out, p->data + o + 1, c);
			out[c] = 0;
			return true;
		}
		o += 1u + l;
	}
	return false;
}

static inline int tpkt_nstr(const struct tpkt *p)
{
	size_t o = 2, end = 2u + p->data[1];
	int n = 0;
	while (o < end) {
		o += 1u + p->data[o];
		n++;
	}
	return o == end ? n : -1;
}

/* ---- images ---- */
struct tseg {
	uint32_t addr;
	const uint8_t *data;
	uint32_t len;
};

/* chip_id < 0: ESP8266 (no extended header, never a digest). */
static inline uint8_t *timg_build(int chip_id, uint8_t mode, uint8_t size_freq, uint32_t entry,
			   const struct tseg *segs, int nseg, bool hash, size_t *out_len)
{
	size_t cap = 64 + 32;
	for (int i = 0; i < nseg; i++)
		cap += 8 + segs[i].len;
	uint8_t *b = calloc(1, cap + 32);
	size_t o = 0;
	b[o++] = 0xE9;
	b[o++] = (uint8_t)nseg;
	b[o++] = mode;
	b[o++] = size_freq;
	memcpy(b + o, &entry, 4);
	o += 4;
	if (chip_id >= 0) {
		b[o] = 0xEE;
		b[o + 4] = (uint8_t)chip_id;
		b[o + 5] = (uint8_t)(chip_id >> 8);
		b[o + 9] = 0xFF;
		b[o + 10] = 0xFF;
		b[o + 15] = hash ? 1 : 0;
		o += 16;
	}
	uint8_t cs = 0xEF;
	for (int i = 0; i < nseg; i++) {
		memcpy(b + o, &segs[i].addr, 4);
		memcpy(b + o + 4, &segs[i].len, 4);
		o += 8;
		memcpy(b + o, segs[i].data, segs[i].len);
		for (uint32_t k = 0; k < segs[i].len; k++)
			cs ^= segs[i].data[k];
		o += segs[i].len;
	}
	while (o % 16 != 15)
		b[o++] = 0;
	b[o++] = cs;
	if (hash && chip_id >= 0) {
		SHA2_CTX c;
		SHA256Init(&c);
		SHA256Update(&c, b, o);
		SHA256Final(b + o, &c);
		o += 32;
	}
	*out_len = o;
	return b;
}

/* A tiny 2nd-stage bootloader for the given chip. */
static inline uint8_t *tboot_build(int chip_id, size_t *len)
{
	static uint8_t code[256], data[64];
	for (int i = 0; i < 256; i++)
		code[i] = (uint8_t)(i * 7 + 1);
	memset(data, 0x5A, sizeof data);
	struct tseg s[2] = { { 0x3FFF0030, data, sizeof data }, { 0x40078000, code, sizeof code } };
	return timg_build(chip_id, 2, 0x20, 0x40078010, s, 2, true, len);
}

/* An app: segment 0 opens with esp_app_desc_t; segment 1 holds .rodata
 * strings (ESPHome markers when esphome_version != NULL). */
static inline uint8_t *tapp_build(int chip_id, const char *project, const char *esphome_version,
			   const char *device, bool improv, size_t *len)
{
	static uint8_t desc[256 + 64], ro[1024], code[512];
	memset(desc, 0, sizeof desc);
	uint32_t magic = 0xABCD5432u;
	memcpy(desc, &magic, 4);
	strcpy((char *)desc + 16, "1.2.3");
	strcpy((char *)desc + 48, project);
	strcpy((char *)desc + 80, "12:34:56");
	strcpy((char *)desc + 96, "Jan  2 2025");
	strcpy((char *)desc + 112, "v4.4.7");
	memset(ro, 0, sizeof ro);
	size_t o = 4;
	if (esphome_version) {
		o += (size_t)sprintf((char *)ro + o, "ESPHome version %s compiled on %%s", esphome_version) + 1;
		o += (size_t)sprintf((char *)ro + o, "Project acme.widget version 2.0") + 3;
		o += (size_t)sprintf((char *)ro + o, "Jan  2 2025, 12:34:56") + 1;
		o += (size_t)sprintf((char *)ro + o, "%s.local", device) + 1;
		if (improv)
			o += (size_t)sprintf((char *)ro + o, "improv_serial") + 1;
	}
	for (int i = 0; i < 512; i++)
		code[i] = (uint8_t)(i ^ 0x3C);
	struct tseg s[3] = { { 0x3F400020, desc, sizeof desc }, { 0x3FFB0000, ro, (uint32_t)o + 16 },
			     { 0x400D0020, code, sizeof code } };
	return timg_build(chip_id, 2, 0x20, 0x400D0100, s, 3, true, len);
}

struct tpart {
	const char *label;
	uint8_t type, subtype;
	uint32_t off, size;
};
static inline void tpt_build(uint8_t out[0xC00], const struct tpart *p, int n, bool md5)
{
	memset(out, 0xFF, 0xC00);
	int i;
	for (i = 0; i < n; i++) {
		uint8_t *e = out + 32 * i;
		memset(e, 0, 32);
		e[0] = 0xAA;
		e[1] = 0x50;
		e[2] = p[i].type;
		e[3] = p[i].subtype;
		memcpy(e + 4, &p[i].off, 4);
		memcpy(e + 8, &p[i].size, 4);
		strncpy((char *)e + 12, p[i].label, 16);
	}
	if (md5) {
		uint8_t *e = out + 32 * i;
		memset(e, 0xFF, 16);
		e[0] = e[1] = 0xEB;
		MD5_CTX c;
		MD5Init(&c);
		MD5Update(&c, out, 32u * (unsigned)i);
		MD5Final(e + 16, &c);
	}
}

__attribute__((unused)) static const struct tpart t_std_parts[] = {
	{ "otadata", 1, 0x00, 0x9000, 0x2000 },
	{ "phy_init", 1, 0x01, 0xB000, 0x1000 },
	{ "app0", 0, 0x10, 0x10000, 0x1C0000 },
	{ "app1", 0, 0x11, 0x1D0000, 0x1C0000 },
	{ "nvs", 1, 0x02, 0x390000, 0x6D000 },
};

/* otadata entry (ota_seq, crc32_le(~0, seq)) computed bitwise here. */
static inline void totadata_entry(uint8_t e[32], uint32_t seq)
{
	memset(e, 0xFF, 32);
	memcpy(e, &seq, 4);
	uint32_t c = ~0xFFFFFFFFu;  /* crc32_le(~0, ...): the register starts at ~crc */
	for (int i = 0; i < 4; i++) {
		c ^= e[i];
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
	}
	c = ~c;
	memcpy(e + 28, &c, 4);
}

/* ---- running a device ---- */
struct tdev {
	struct tflash fl;
	struct tout out;
	struct sim_app_env env;
	struct sim_app *app;
	uint64_t now;
	sim_app_wifi wifi[4];
	uint8_t mac[6];
};

static inline void tdev_init(struct tdev *d, esp_chip_id chip, uint32_t flash_size)
{
	memset(d, 0, sizeof *d);
	tflash_init(&d->fl, flash_size);
	static const uint8_t mac[6] = { 0x24, 0x0A, 0xC4, 0x12, 0x34, 0x56 };
	memcpy(d->mac, mac, 6);
	d->env.chip = esp_chip_get(chip);
	d->env.flash_read = tflash_read;
	d->env.flash_ctx = &d->fl;
	d->env.flash_size = flash_size;
	d->env.wifi = d->wifi;
	d->env.mac = d->mac;
	d->env.emit = tout_emit;
	d->env.emit_ctx = &d->out;
	d->now = 1000000;
}

static inline void tdev_boot(struct tdev *d)
{
	d->env.now_us = d->now;
	d->app = sim_app_boot(&d->env);
}

/* Advance sim time to now + us, polling at every scheduled event. */
static inline void tdev_run(struct tdev *d, uint64_t us)
{
	uint64_t end = d->now + us;
	while (d->now < end) {
		uint64_t nx = sim_app_next_event_us(d->app);
		d->now = nx < end ? (nx > d->now ? nx : d->now + 1) : end;
		sim_app_poll(d->app, d->now);
	}
}

static inline void tdev_send(struct tdev *d, const void *p, size_t n)
{
	sim_app_input(d->app, p, n, d->now);
}

static inline void tdev_free(struct tdev *d)
{
	sim_app_free(d->app);
	free(d->fl.d);
	free(d->out.b);
}

/* Request packet "IMPROV" 1 3 L [cmd, len, data] sum (no newline). */
static inline size_t timprov_req(uint8_t cmd, const uint8_t *data, uint8_t dl, uint8_t *out)
{
	memcpy(out, "IMPROV", 6);
	out[6] = 1;
	out[7] = 3;
	out[8] = (uint8_t)(2 + dl);
	out[9] = cmd;
	out[10] = dl;
	if (dl)
		memcpy(out + 11, data, dl);
	uint8_t s = 0;
	for (size_t i = 0; i < 11u + dl; i++)
		s = (uint8_t)(s + out[i]);
	out[11 + dl] = s;
	return 12u + dl;
}

static inline uint8_t *t_shared(const char *rel, size_t *len)
{
	char path[1024];
	if (!t_shared_path(rel, path, sizeof path))
		return NULL;
	return t_read_file(path, len);
}

/* Bootloader + partition table + app at ota_0 (0x10000), otadata blank. */
static inline void put_layout(struct tdev *d, int chip_id, const char *esphome_ver, bool improv)
{
	size_t bl_len, app_len;
	uint8_t *bl = tboot_build(chip_id, &bl_len);
	uint8_t *app = tapp_build(chip_id, "widget", esphome_ver, "my-widget", improv, &app_len);
	uint8_t pt[0xC00];
	tpt_build(pt, t_std_parts, 5, true);
	tflash_put(&d->fl, d->env.chip->bootloader_offset, bl, bl_len);
	tflash_put(&d->fl, 0x8000, pt, sizeof pt);
	tflash_put(&d->fl, 0x10000, app, app_len);
	free(bl);
	free(app);
}

#endif
