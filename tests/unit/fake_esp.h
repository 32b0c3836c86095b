/* A scripted fake device for loader unit tests: a transport whose reads
 * return queued bytes and whose writes are decoded into frames and handed
 * to a responder.  Time is a fake clock that moves only when a read times
 * out, so "no answer" tests take no real time.  Deliberately tiny: the
 * full device model is the simulator (tests/core). */
#ifndef FAKE_ESP_H
#define FAKE_ESP_H
#include <errno.h>
#include <md5.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "espfs/clock.h"
#include "espfs/slip.h"
#include "espfs/transport.h"

#define FAKE_MAX_FRAMES 4096
#define FAKE_FLASH (4u << 20)

struct fake;
typedef void (*fake_responder)(struct fake *f, const uint8_t *p, size_t n);

struct fake {
	esp_transport t;
	esp_fake_clock clk;
	uint8_t *rx;                  /* bytes for the host */
	size_t rx_len, rx_pos, rx_cap;
	uint8_t tx_raw[256];          /* first bytes the host wrote */
	size_t tx_raw_len;
	slip_decoder dec;
	uint8_t decbuf[0x5000];
	uint8_t *frames[FAKE_MAX_FRAMES];
	size_t flen[FAKE_MAX_FRAMES];
	int nframes;
	fake_responder respond;
	/* device model for the generic responder */
	bool stub, dead, no_lines;
	int status_len;               /* 2 or 4 */
	uint32_t magic;
	int gsi;                      /* 0 unsupported, 12 or 20 data bytes */
	uint32_t gsi_chip_id;
	uint32_t regs_addr[16], regs_val[16];
	int nregs;
	uint32_t jedec;
	uint8_t *flash;
	uint32_t wr_off, wr_seq;      /* current FLASH_BEGIN */
	uint32_t rom_expect;          /* the ROM's next DATA block number */
	uint8_t *z; size_t zlen, zcap; bool defl;
	uint32_t baud_set;
	int line_calls;
	bool bad_read_md5;
	/* Pacing: with pace_us set, each pushed frame reaches the host only
	 * when the line has carried it (pace_us per byte), so replies can be
	 * in flight while the host flushes its input, as on a real UART. */
	uint32_t pace_us;
	uint64_t line_free_at;
	size_t rx_vis;                /* bytes the host may read now */
	size_t mark_end[512];
	uint64_t mark_at[512];
	int nmarks, mark_next;
	/* The ESP32 ROM answers a command it does not know by sending its
	 * previous reply again, status 01 05, as many copies as that reply
	 * had (PROTOCOL.md A2; ../shared/qemu/README.md). */
	bool repeat_unknown;
	uint8_t last_reply[8 + 256];
	size_t last_reply_len;
	int last_burst, burst;
};

static inline void fake_push(struct fake *f, const uint8_t *b, size_t n)
{
	if (n == 0)
		return;
	if (f->rx_len + n > f->rx_cap) {
		f->rx_cap = (f->rx_len + n) * 2;
		f->rx = realloc(f->rx, f->rx_cap);
	}
	memcpy(f->rx + f->rx_len, b, n);
	f->rx_len += n;
	if (!f->pace_us || f->nmarks == (int)(sizeof f->mark_at / sizeof *f->mark_at)) {
		f->rx_vis = f->rx_len;
		return;
	}
	uint64_t now = f->clk.now;
	uint64_t start = f->line_free_at > now ? f->line_free_at : now;
	f->line_free_at = start + (uint64_t)f->pace_us * n;
	f->mark_end[f->nmarks] = f->rx_len;
	f->mark_at[f->nmarks++] = f->line_free_at;
}

/* Paced bytes whose time has come become readable. */
static inline void fake_release(struct fake *f)
{
	while (f->mark_next < f->nmarks && f->mark_at[f->mark_next] <= f->clk.now)
		f->rx_vis = f->mark_end[f->mark_next++];
}

static inline void fake_push_frame(struct fake *f, const uint8_t *p, size_t n)
{
	uint8_t *e = malloc(SLIP_MAX_ENCODED(n));
	size_t k = slip_encode(p, n, e);
	fake_push(f, e, k);
	free(e);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A reply: direction 1, op, size, value, data, status (s0, s1, then 0s). */
static inline void fake_reply(struct fake *f, uint8_t op, uint32_t value, const uint8_t *data,
			      size_t dlen, uint8_t s0, uint8_t s1)
{
	uint8_t b[8 + 256];
	size_t sl = f->stub ? 2 : (size_t)f->status_len;
	size_t n = dlen + sl;
	b[0] = 1; b[1] = op; b[2] = (uint8_t)n; b[3] = (uint8_t)(n >> 8);
	put32(b + 4, value);
	if (dlen)
		memcpy(b + 8, data, dlen);
	memset(b + 8 + dlen, 0, sl);
	b[8 + dlen] = s0;
	b[8 + dlen + 1] = s1;
	fake_push_frame(f, b, 8 + n);
	memcpy(f->last_reply, b, 8 + n);
	f->last_reply_len = 8 + n;
	f->burst++;
}

/* The ESP32 ROM's answer to an unknown command (see repeat_unknown). */
static inline void fake_repeat_previous(struct fake *f)
{
	uint8_t b[8 + 256];
	size_t n = f->last_reply_len;
	int copies = f->last_burst;
	if (n < 10 || copies < 1)
		return;
	memcpy(b, f->last_reply, n);
	size_t st = n - (f->stub ? 2 : (size_t)f->status_len);
	b[st] = 1;
	b[st + 1] = 5;
	for (int i = 0; i < copies; i++)
		fake_reply(f, b[1], get32(b + 4), b + 8, st - 8, 1, 5);
}

static int fk_read(esp_transport *t, uint8_t *buf, size_t len, uint32_t ms)
{
	struct fake *f = (struct fake *)t;
	fake_release(f);
	if (f->rx_pos >= f->rx_vis) {
		uint64_t until = f->clk.now + (uint64_t)ms * 1000;
		if (f->mark_next < f->nmarks && f->mark_at[f->mark_next] <= until) {
			esp_fake_clock_advance(&f->clk, f->mark_at[f->mark_next] - f->clk.now);
			fake_release(f);
		} else {
			esp_fake_clock_advance(&f->clk, (uint64_t)ms * 1000);
			return -ETIMEDOUT;
		}
	}
	size_t n = f->rx_vis - f->rx_pos;
	if (n > len)
		n = len;
	memcpy(buf, f->rx + f->rx_pos, n);
	f->rx_pos += n;
	return (int)n;
}

static int fk_write(esp_transport *t, const uint8_t *buf, size_t len)
{
	struct fake *f = (struct fake *)t;
	for (size_t i = 0; i < len && f->tx_raw_len < sizeof f->tx_raw; i++)
		f->tx_raw[f->tx_raw_len++] = buf[i];
	size_t pos = 0;
	while (pos < len) {
		size_t used = 0;
		int done = slip_decoder_feed(&f->dec, buf + pos, len - pos, &used);
		pos += used;
		if (!done)
			break;
		if (f->nframes < FAKE_MAX_FRAMES) {
			f->frames[f->nframes] = malloc(f->dec.len);
			memcpy(f->frames[f->nframes], f->dec.buf, f->dec.len);
			f->flen[f->nframes++] = f->dec.len;
		}
		f->dec.in_frame = 0;
		if (f->respond && !f->dead) {
			f->burst = 0;
			f->respond(f, f->dec.buf, f->dec.len);
			if (f->burst)
				f->last_burst = f->burst;
		}
	}
	return (int)len;
}

static int fk_flush(esp_transport *t)
{
	struct fake *f = (struct fake *)t;
	fake_release(f);
	f->rx_pos = f->rx_vis;
	return 0;
}

static int fk_baud(esp_transport *t, uint32_t baud)
{
	struct fake *f = (struct fake *)t;
	f->baud_set = baud;
	t->baud = baud;
	return 0;
}

static int fk_lines(esp_transport *t, int dtr, int rts)
{
	struct fake *f = (struct fake *)t;
	f->line_calls++;
	return f->no_lines ? -ENOTTY : 0;
}

static void fk_close(esp_transport *t) { (void)t; }

static const struct esp_transport_ops fake_ops = { fk_read, fk_write, fk_flush, fk_baud, fk_lines, fk_close };

static inline uint32_t fake_reg(struct fake *f, uint32_t addr)
{
	if (addr == 0x40001000u)
		return f->magic;
	for (int i = 0; i < f->nregs; i++)
		if (f->regs_addr[i] == addr)
			return f->regs_val[i];
	return 0;
}

static inline void fake_set_reg(struct fake *f, uint32_t addr, uint32_t v)
{
	f->regs_addr[f->nregs] = addr;
	f->regs_val[f->nregs++] = v;
}

/* Inflate what a FLASH_DEFL session sent into the flash model. */
static inline void fake_inflate(struct fake *f)
{
	if (!f->defl || !f->zlen)
		return;
	uLongf out = FAKE_FLASH - f->wr_off;
	uncompress(f->flash + f->wr_off, &out, f->z, f->zlen);
	f->zlen = 0;
	f->defl = false;
}

/* A generic ROM/stub: enough of each command for the loader's tests. */
static void fake_generic(struct fake *f, const uint8_t *p, size_t n)
{
	if (n < 8 || p[0] != 0)
		return; /* READ_FLASH acks and the like */
	uint8_t op = p[1];
	const uint8_t *d = p + 8;
	uint8_t hex[33], md[16];
	switch (op) {
	case 0x08:
		for (int i = 0; i < 8; i++)
			fake_reply(f, op, f->stub ? 0 : 0x20120707, NULL, 0, 0, 0);
		break;
	case 0x14:
		if (!f->gsi && f->repeat_unknown) {
			fake_repeat_previous(f);
		} else if (!f->gsi) {
			fake_reply(f, op, 0, NULL, 0, 1, 5);
		} else {
			uint8_t g[20] = { 0 };
			put32(g + 12, f->gsi_chip_id);
			fake_reply(f, op, 0, g, (size_t)f->gsi, 0, 0);
		}
		break;
	case 0x0A: {
		uint32_t a = get32(d);
		uint32_t v = fake_reg(f, a);
		fake_reply(f, op, v, NULL, 0, 0, 0);
		break;
	}
	case 0x02: case 0x10:
		fake_inflate(f);
		f->wr_off = get32(d + 12);
		f->wr_seq = 0;
		f->rom_expect = 0;
		f->defl = op == 0x10;
		fake_reply(f, op, 0, NULL, 0, 0, 0);
		break;
	case 0x03: {
		uint32_t len = get32(d), seq = get32(d + 4);
		uint32_t bs = len; /* blocks before the last are full */
		uint8_t c = 0xEF;
		for (uint32_t i = 0; i < len; i++)
			c ^= d[16 + i];
		/* the real ROM (QEMU, tests/conformance): a number it does not
		 * expect is refused before the checksum; a refused checksum still
		 * moves the expected number on, not the write position */
		if (!f->stub && seq != f->rom_expect) {
			fake_reply(f, op, 0, NULL, 0, 1, 5);
			break;
		}
		if (c != p[4]) {
			if (!f->stub)
				f->rom_expect++;
			fake_reply(f, op, 0, NULL, 0, 1, 7);
			break;
		}
		f->rom_expect++;
		uint32_t at = f->wr_off + f->wr_seq * (f->stub ? 0x4000u : 0x400u);
		(void)bs;
		for (uint32_t i = 0; i < len && at + i < FAKE_FLASH; i++)
			f->flash[at + i] &= d[16 + i];
		f->wr_seq++;
		fake_reply(f, op, 0, NULL, 0, 0, 0);
		break;
	}
	case 0x11: {
		uint32_t len = get32(d);
		if (f->zlen + len > f->zcap) {
			f->zcap = (f->zlen + len) * 2;
			f->z = realloc(f->z, f->zcap);
		}
		memcpy(f->z + f->zlen, d + 16, len);
		f->zlen += len;
		fake_reply(f, op, 0, NULL, 0, 0, 0);
		break;
	}
	case 0x13: {
		fake_inflate(f);
		uint32_t a = get32(d), len = get32(d + 4);
		MD5_CTX c;
		MD5Init(&c);
		MD5Update(&c, f->flash + a, len);
		MD5Final(md, &c);
		if (f->stub) {
			fake_reply(f, op, 0, md, 16, 0, 0);
		} else {
			for (int i = 0; i < 16; i++) {
				static const char x[] = "0123456789abcdef";
				hex[2 * i] = (uint8_t)x[md[i] >> 4];
				hex[2 * i + 1] = (uint8_t)x[md[i] & 15];
			}
			fake_reply(f, op, 0, hex, 32, 0, 0);
		}
		break;
	}
	case 0xD1: {
		uint32_t a = get32(d), len = get32(d + 4);
		memset(f->flash + a, 0xFF, len);
		fake_reply(f, op, 0, NULL, 0, 0, 0);
		break;
	}
	case 0x0E: {
		uint32_t a = get32(d);
		fake_reply(f, op, 0, f->flash + a, 64, 0, 0);
		break;
	}
	case 0xD2: {
		fake_inflate(f);
		uint32_t a = get32(d), len = get32(d + 4), ps = get32(d + 8);
		fake_reply(f, op, 0, NULL, 0, 0, 0);
		for (uint32_t pos = 0; pos < len; pos += ps)
			fake_push_frame(f, f->flash + a + pos, len - pos < ps ? len - pos : ps);
		MD5_CTX c;
		MD5Init(&c);
		MD5Update(&c, f->flash + a, len);
		MD5Final(md, &c);
		if (f->bad_read_md5)
			md[0] ^= 1;
		fake_push_frame(f, md, 16);
		break;
	}
	case 0x05: case 0x07:
		fake_reply(f, op, 0, NULL, 0, 0, 0);
		break;
	case 0x06:
		fake_reply(f, op, 0, NULL, 0, 0, 0);
		fake_push_frame(f, (const uint8_t *)"OHAI", 4);
		f->stub = true;
		break;
	default:
		fake_reply(f, op, 0, NULL, 0, 0, 0);
		break;
	}
}

static inline struct fake *fake_new(uint32_t magic, int status_len)
{
	struct fake *f = calloc(1, sizeof *f);
	esp_fake_clock_init(&f->clk, 1000000);
	f->t.ops = &fake_ops;
	f->t.clock = &f->clk.clock;
	f->t.baud = 115200;
	strcpy(f->t.name, "fake");
	slip_decoder_init(&f->dec, f->decbuf, sizeof f->decbuf);
	f->respond = fake_generic;
	f->magic = magic;
	f->status_len = status_len;
	f->jedec = 0x1640EF;
	f->flash = malloc(FAKE_FLASH);
	memset(f->flash, 0xFF, FAKE_FLASH);
	return f;
}

static inline void fake_free(struct fake *f)
{
	for (int i = 0; i < f->nframes; i++)
		free(f->frames[i]);
	free(f->rx);
	free(f->flash);
	free(f->z);
	free(f);
}

/* The n-th frame the host sent with this opcode (-1: the last). */
static inline const uint8_t *fake_sent(struct fake *f, uint8_t op, int nth, size_t *len)
{
	int k = 0;
	const uint8_t *last = NULL;
	for (int i = 0; i < f->nframes; i++) {
		if (f->flen[i] >= 8 && f->frames[i][0] == 0 && f->frames[i][1] == op) {
			if (k++ == nth) {
				*len = f->flen[i];
				return f->frames[i];
			}
			last = f->frames[i];
			*len = f->flen[i];
		}
	}
	return nth < 0 ? last : NULL;
}

static inline int fake_count(struct fake *f, uint8_t op)
{
	int k = 0;
	for (int i = 0; i < f->nframes; i++)
		if (f->flen[i] >= 8 && f->frames[i][0] == 0 && f->frames[i][1] == op)
			k++;
	return k;
}
#endif
