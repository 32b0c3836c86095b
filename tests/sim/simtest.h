/* Helpers for byte-level tests of the simulator engine.  Written from
 * PROTOCOL.md, independent of src/proto: commands are built and replies
 * parsed here by hand (SLIP from src/common is the only shared code). */
#ifndef SIMTEST_H
#define SIMTEST_H
#include <errno.h>
#include <stdbool.h>
#include "espfs/sim.h"
#include "espfs/slip.h"

struct st {
	sim_device *d;
	esp_transport *t;
	esp_fake_clock fc;
	slip_decoder dec;
	uint8_t frame[70000];
	uint8_t in[8192];
	size_t in_pos, in_len;
};

static inline void st_put32(uint8_t *p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static inline uint32_t st_le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static inline int st_open_cfg(struct st *s, struct sim_config *cfg)
{
	memset(s, 0, sizeof *s);
	esp_fake_clock_init(&s->fc, 1000000);
	cfg->clock = &s->fc.clock;
	char err[200];
	s->d = sim_device_new(cfg, err, sizeof err);
	if (!s->d) {
		printf("# sim_device_new: %s\n", err);
		return -1;
	}
	slip_decoder_init(&s->dec, s->frame, sizeof s->frame);
	return sim_transport_open(s->d, &s->t);
}

static inline int st_open(struct st *s, const char *chip)
{
	struct sim_config cfg = { .chip = chip };
	return st_open_cfg(s, &cfg);
}

static inline void st_close(struct st *s)
{
	esp_tr_close(s->t);
	s->t = NULL;
	sim_device_free(s->d);
	s->d = NULL;
}

/* Re-open the transport (after a re-enumeration). */
static inline int st_reopen(struct st *s)
{
	esp_tr_close(s->t);
	s->t = NULL;
	s->in_pos = s->in_len = 0;
	slip_decoder_reset(&s->dec);
	return sim_transport_open(s->d, &s->t);
}

static inline int st_send_frame(struct st *s, const uint8_t *payload, size_t n)
{
	uint8_t *enc = malloc(SLIP_MAX_ENCODED(n));
	size_t m = slip_encode(payload, n, enc);
	int r = esp_tr_write(s->t, enc, m);
	free(enc);
	return r;
}

static inline int st_cmd(struct st *s, uint8_t op, const uint8_t *data, size_t n, uint32_t chk)
{
	uint8_t *p = malloc(8 + n);
	p[0] = 0;
	p[1] = op;
	p[2] = n & 0xFF;
	p[3] = (n >> 8) & 0xFF;
	st_put32(p + 4, chk);
	if (n)
		memcpy(p + 8, data, n);
	int r = st_send_frame(s, p, 8 + n);
	free(p);
	return r;
}

/* Next frame (payload in s->dec.buf, length returned), or -ETIMEDOUT /
 * -ENODEV.  Text outside frames ends up in s->dec.text. */
static inline int st_frame(struct st *s, uint32_t timeout_ms)
{
	uint64_t deadline = esp_now_us(&s->fc.clock) + (uint64_t)timeout_ms * 1000;
	for (;;) {
		while (s->in_pos < s->in_len) {
			size_t used = 0;
			int done = slip_decoder_feed(&s->dec, s->in + s->in_pos, s->in_len - s->in_pos, &used);
			s->in_pos += done ? used : s->in_len - s->in_pos;
			if (done)
				return (int)s->dec.len;
		}
		uint64_t now = esp_now_us(&s->fc.clock);
		if (now >= deadline)
			return -ETIMEDOUT;
		int r = esp_tr_read(s->t, s->in, sizeof s->in, (uint32_t)((deadline - now + 999) / 1000));
		if (r < 0)
			return r;
		s->in_pos = 0;
		s->in_len = (size_t)r;
	}
}

/* Next response frame (direction 1). */
static inline int st_resp(struct st *s, uint32_t timeout_ms)
{
	for (;;) {
		int n = st_frame(s, timeout_ms);
		if (n < 0 || (n >= 8 && s->dec.buf[0] == 1))
			return n;
	}
}

/* All bytes the device sends within ms (raw). */
static inline size_t st_drain_raw(struct st *s, uint8_t *buf, size_t cap, uint32_t ms)
{
	size_t got = 0;
	uint64_t deadline = esp_now_us(&s->fc.clock) + (uint64_t)ms * 1000;
	while (got < cap) {
		uint64_t now = esp_now_us(&s->fc.clock);
		if (now >= deadline)
			break;
		int r = esp_tr_read(s->t, buf + got, cap - got, (uint32_t)((deadline - now + 999) / 1000));
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

static inline void st_flush(struct st *s)
{
	s->in_pos = s->in_len = 0;
	slip_decoder_reset(&s->dec);
	esp_tr_flush_input(s->t);
}

static const uint8_t st_sync_data[36] = {
	0x07, 0x07, 0x12, 0x20,
	0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
	0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55 };

/* SYNC and consume the 8 replies; returns the value of the first. */
static inline int st_sync(struct st *s, uint32_t *value)
{
	st_cmd(s, 0x08, st_sync_data, sizeof st_sync_data, 0);
	for (int i = 0; i < 8; i++) {
		int n = st_resp(s, 200);
		if (n < 0)
			return n;
		if (s->dec.buf[1] != 0x08)
			return -EPROTO;
		if (i == 0 && value)
			*value = st_le32(s->dec.buf + 4);
	}
	return 0;
}

/* Send a command, wait for the reply with the same opcode; returns the
 * data+status length (bytes after the 8-byte header). */
static inline int st_check(struct st *s, uint8_t op, const uint8_t *data, size_t n, uint32_t chk, uint32_t timeout_ms)
{
	st_cmd(s, op, data, n, chk);
	for (;;) {
		int r = st_resp(s, timeout_ms);
		if (r < 0)
			return r;
		if (s->dec.buf[1] == op)
			return r - 8;
	}
}

static inline uint32_t st_read_reg(struct st *s, uint32_t addr)
{
	uint8_t a[4];
	st_put32(a, addr);
	if (st_check(s, 0x0A, a, 4, 0, 500) < 0)
		return 0xDEADBEEF;
	return st_le32(s->dec.buf + 4);
}

static inline int st_write_reg(struct st *s, uint32_t addr, uint32_t val)
{
	uint8_t a[16];
	st_put32(a, addr);
	st_put32(a + 4, val);
	st_put32(a + 8, 0xFFFFFFFF);
	st_put32(a + 12, 0);
	int r = st_check(s, 0x09, a, 16, 0, 500);
	if (r < 2)
		return -EPROTO;
	return s->dec.buf[8] == 0 ? 0 : -EIO;
}

static inline uint8_t st_xor(const uint8_t *p, size_t n)
{
	uint8_t x = 0xEF;
	for (size_t i = 0; i < n; i++)
		x ^= p[i];
	return x;
}

/* A DATA command: 16-byte sub-header + data, checksum over data. */
static inline int st_data(struct st *s, uint8_t op, uint32_t seq, const uint8_t *data, uint32_t len, uint32_t timeout_ms)
{
	uint8_t *p = malloc(16 + len);
	st_put32(p, len);
	st_put32(p + 4, seq);
	st_put32(p + 8, 0);
	st_put32(p + 12, 0);
	memcpy(p + 16, data, len);
	int r = st_check(s, op, p, 16 + len, st_xor(data, len), timeout_ms);
	free(p);
	return r;
}

static inline int st_words(struct st *s, uint8_t op, const uint32_t *w, int nw, uint32_t timeout_ms)
{
	uint8_t b[32];
	for (int i = 0; i < nw; i++)
		st_put32(b + 4 * i, w[i]);
	return st_check(s, op, b, (size_t)(4 * nw), 0, timeout_ms);
}

/* Status byte 0 of the last reply, given the expected data length. */
static inline uint8_t st_status(struct st *s, size_t data_len) { return s->dec.buf[8 + data_len]; }
static inline uint8_t st_status2(struct st *s, size_t data_len) { return s->dec.buf[9 + data_len]; }

#endif
