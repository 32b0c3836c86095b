/* The loader object and its command/response engine (PROTOCOL.md A2).
 * Connecting and resets: loader_link.c; chip facts and SPI flash:
 * loader_chip.c; flash data: loader_flash.c; the stub: stub.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/log.h"
#include "loader_priv.h"

#define MAX_STRAY_FRAMES 100

void esp__err(esp_loader *l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(l->err, sizeof l->err, fmt, ap);
	va_end(ap);
}

void esp__err_prefix(esp_loader *l, const char *fmt, ...)
{
	char prefix[128], old[sizeof l->err];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(old, l->err, sizeof old);
	/* the return value is checked only to say truncation is fine */
	if (snprintf(l->err, sizeof l->err, "%s: %s", prefix, old) >= (int)sizeof l->err)
		l->err[sizeof l->err - 1] = 0;
}

uint8_t esp__checksum(const uint8_t *data, size_t len)
{
	uint8_t c = ESP_CHECKSUM_SEED;
	for (size_t i = 0; i < len; i++)
		c ^= data[i];
	return c;
}

uint32_t esp__timeout_per_mb(uint32_t ms_per_mb, uint64_t bytes)
{
	uint64_t ms = (uint64_t)ms_per_mb * bytes / 1000000u;
	if (ms < ESP_TMO_DEFAULT_MS)
		ms = ESP_TMO_DEFAULT_MS;
	return ms > 0x7fffffffu ? 0x7fffffffu : (uint32_t)ms;
}

esp_loader *esp_loader_new(esp_transport *t)
{
	if (!t)
		return NULL;
	esp_loader *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	l->t = t;
	slip_reader_init(&l->rd, t, l->frame, sizeof l->frame);
	return l;
}

void esp_loader_free(esp_loader *l)
{
	if (!l)
		return;
	esp_stub_free(&l->kept_stub);
	free(l);
}

const char *esp_loader_error(const esp_loader *l)
{
	return l->err;
}

esp_transport *esp_loader_transport(esp_loader *l)
{
	return l->t;
}

bool esp_loader_is_stub(const esp_loader *l)
{
	return l->stub;
}

const struct esp_chip_info *esp_loader_chip(const esp_loader *l)
{
	return l->chip;
}

bool esp_loader_last_write_verified(const esp_loader *l)
{
	return l->last_verified;
}

bool esp_loader_synced(const esp_loader *l)
{
	return l->synced;
}

bool esp_loader_send_stalled(const esp_loader *l)
{
	return l->send_stalled;
}

bool esp_loader_secure_download(const esp_loader *l)
{
	return l->secure_download;
}

/* ---- command engine ---- */

/* ESPFS_TRACE=1: one stderr line per command sent and reply taken, with
 * the link clock in ms: the timeline the speed work is judged by. */
static int trace_on(void)
{
	static int on = -1;
	if (on < 0) {
		const char *e = getenv("ESPFS_TRACE");
		on = e && *e && *e != '0';
	}
	return on;
}

void esp__trace(const esp_loader *l, const char *what, uint8_t op, size_t len)
{
	if (trace_on())
		fprintf(stderr, "trace %s %.3f %s 0x%02x %zu\n", l->t->name,
			(double)esp_now_us(l->t->clock) / 1000.0, what, op, len);
}

int esp__send(esp_loader *l, uint8_t op, const uint8_t *data, size_t len, uint32_t chk)
{
	uint8_t small[8 + 64];
	uint8_t *pkt = small;
	if (len > 0xFFFF) {
		esp__err(l, "command 0x%02x: %zu bytes of data is too much for one packet", op, len);
		return -EINVAL;
	}
	if (8 + len > sizeof small) {
		pkt = malloc(8 + len);
		if (!pkt)
			return -ENOMEM;
	}
	pkt[0] = 0x00;
	pkt[1] = op;
	pkt[2] = (uint8_t)len;
	pkt[3] = (uint8_t)(len >> 8);
	esp__put32(pkt + 4, chk);
	if (len)
		memcpy(pkt + 8, data, len);
	esp__trace(l, "send", op, len);
	int rc = slip_write_frame(l->t, pkt, 8 + len);
	if (pkt != small)
		free(pkt);
	l->send_stalled = rc == -ETIMEDOUT;
	if (rc == -ETIMEDOUT)
		esp__err(l, "cannot send command 0x%02x: the port does not take data (the chip is not "
			 "reading its UART)", op);
	else if (rc < 0)
		esp__err(l, "cannot send command 0x%02x: %s", op, strerror(-rc));
	return rc < 0 ? rc : 0;
}

bool esp__damaged_in_transit(const esp_loader *l)
{
	const uint8_t *s = l->last_status;
	/* ROM checksum error, ROM invalid message (a packet that lost bytes:
	 * seen on the real ROMs in QEMU under load), stub checksum error */
	return (s[0] == 0x01 && (s[1] == 0x07 || s[1] == 0x05)) || s[0] == 0xC1;
}

const char *esp__who(const esp_loader *l)
{
	return l->stub ? "stub" : "ROM";
}

/* The ESP32 ROM answers a command it does not know by sending its
 * previous reply again with status 01 05, as many copies as that reply
 * had: 8 after a SYNC, 1 after a READ_REG (A2; seen on the real ROM in
 * QEMU).  The copies still on the line would be taken for the replies to
 * the next commands, so read until the line has been quiet for 200 ms (as
 * esptool does), at most 2 s, and drop what came. */
#define ESP_DRAIN_QUIET_MS 200u
#define ESP_DRAIN_MAX_MS 2000u

static void drain_repeats(esp_loader *l)
{
	const esp_clock *c = l->t->clock;
	uint64_t end = esp_now_us(c) + ESP_DRAIN_MAX_MS * 1000ull;
	int dropped = 0;
	for (;;) {
		uint64_t quiet = esp_now_us(c) + ESP_DRAIN_QUIET_MS * 1000ull;
		int n = slip_read_frame(&l->rd, quiet < end ? quiet : end);
		if (n < 0)
			break; /* quiet (or the port failed: the next command says so) */
		dropped++;
		if (esp_now_us(c) >= end)
			break;
	}
	slip_reader_flush(&l->rd);
	if (dropped)
		LOGD("%s: dropped %d repeated replies after an unsupported command", l->t->name, dropped);
}

/* FLASH_BEGIN .. READ_REG: every ROM and stub has them, so a failure
 * reply under another opcode cannot be their answer, only a late copy. */
static bool every_loader_knows(uint8_t op)
{
	return op >= ESP_FLASH_BEGIN && op <= ESP_READ_REG;
}

static bool is_unsupported(const uint8_t *st)
{
	return st[0] == 0x01 && st[1] == 0x05;
}

/* Read frames until the reply to op arrives.  The status bytes sit right
 * after the expected data (A2): 2 of them from a stub or the ESP8266 ROM,
 * 4 from later ROMs, of which only the first 2 mean anything, so looking at
 * data[expect_len..+1] works for all.  A reply too short for that carries
 * its status at data[0..1] (a failure reply has no data). */
int esp__recv(esp_loader *l, uint8_t op, uint32_t timeout_ms, uint32_t *value,
	      uint8_t *resp_data, size_t resp_cap, size_t expect_len)
{
	uint64_t deadline = esp_now_us(l->t->clock) + (uint64_t)timeout_ms * 1000u;
	int strays = 0;
	l->last_status[0] = l->last_status[1] = 0;
	for (;;) {
		int n = slip_read_frame(&l->rd, deadline);
		if (n == -ETIMEDOUT) {
			esp__err(l, "no reply to command 0x%02x within %u ms", op, timeout_ms);
			return n;
		}
		if (n < 0) {
			esp__err(l, "port failed while waiting for command 0x%02x: %s", op, strerror(-n));
			return n;
		}
		const uint8_t *f = l->frame;
		if (n < 8 || f[0] != 0x01 || f[1] != op) {
			/* The ROM answers an unknown command with status 1/0x05;
			 * some ROMs do so under another opcode (A2). */
			if (n >= 10 && n <= 12 && f[0] == 0x01 && f[8] != 0 && f[9] == 0x05 &&
			    !every_loader_knows(op)) {
				esp__err(l, "%s does not support command 0x%02x", esp__who(l), op);
				if (!l->stub)
					drain_repeats(l);
				return l->secure_download ? -EACCES : -EOPNOTSUPP;
			}
			if (++strays > MAX_STRAY_FRAMES) {
				esp__err(l, "no reply to command 0x%02x among %d unrelated frames", op, strays - 1);
				return -EPROTO;
			}
			continue;
		}
		const uint8_t *p = f + 8;
		size_t plen = (size_t)n - 8;
		esp__trace(l, "recv", op, plen);
		if (value)
			*value = esp__get32(f + 4);
		if (expect_len == ESP_EXPECT_RAW) {
			size_t c = plen < resp_cap ? plen : resp_cap;
			if (c)
				memcpy(resp_data, p, c);
			/* a failure reply under our own opcode: the ROM
			 * repeated an earlier reply of this command (the
			 * drain reuses the frame buffer, so copy first) */
			if (!l->stub && (plen == 2 || plen == 4) && is_unsupported(p))
				drain_repeats(l);
			return (int)plen;
		}
		if (plen < 2) {
			esp__err(l, "reply to command 0x%02x has no status bytes", op);
			return -EPROTO;
		}
		size_t st = plen >= expect_len + 2 ? expect_len : 0;
		if (p[st] != 0 && !l->stub && p[st] != 0x01) {
			/* a ROM only ever says 0 or 1 here: the reply is damaged */
			esp__err(l, "garbled status 0x%02x 0x%02x in the reply to command 0x%02x",
				 p[st], p[st + 1], op);
			return -EPROTO;
		}
		if (p[st] != 0) {
			int e = esp_status_to_errno(p[st], p[st + 1]);
			bool drain = !l->stub && is_unsupported(p + st);
			l->last_status[0] = p[st];
			l->last_status[1] = p[st + 1];
			if (l->secure_download && e == -EOPNOTSUPP)
				e = -EACCES;
			if (p[st] == 0x01)
				esp__err(l, "%s error 0x%02x (%s) for command 0x%02x", esp__who(l), p[st + 1],
					 esp_status_text(p[st], p[st + 1]), op);
			else
				esp__err(l, "%s error 0x%02x (%s) for command 0x%02x", esp__who(l), p[st],
					 esp_status_text(p[st], p[st + 1]), op);
			if (drain) /* after the message: it reuses the frame buffer */
				drain_repeats(l);
			return e;
		}
		if (st != expect_len) {
			esp__err(l, "reply to command 0x%02x has %zu data bytes, expected %zu", op,
				 plen - 2, expect_len);
			return -EPROTO;
		}
		if (expect_len && resp_data)
			memcpy(resp_data, p, expect_len < resp_cap ? expect_len : resp_cap);
		return (int)expect_len;
	}
}

int esp_loader_command(esp_loader *l, uint8_t op, const uint8_t *data, size_t len, uint32_t chk,
		       uint32_t timeout_ms, uint32_t *value, uint8_t *resp_data, size_t resp_cap,
		       size_t expect_len)
{
	/* Stale frames (extra SYNC replies, a repeated error reply, a
	 * READ_FLASH digest) must not be taken for this reply. */
	slip_reader_flush(&l->rd);
	/* A chip that stopped reading its UART must not hold the write
	 * longer than the command's own deadline (plus the bytes' time on
	 * the line): a 100 ms SYNC used to block for the port's 10 s. */
	uint32_t baud = l->t->baud ? l->t->baud : 115200;
	uint64_t wire_ms = (uint64_t)(8 + len) * 2 * 10 * 1000 / baud + 100;
	uint64_t wt = timeout_ms + wire_ms;
	uint32_t saved = l->t->write_timeout_ms;
	l->t->write_timeout_ms = wt > 10000 ? 10000 : (uint32_t)wt;
	int rc = esp__send(l, op, data, len, chk);
	l->t->write_timeout_ms = saved;
	if (rc < 0)
		return rc;
	return esp__recv(l, op, timeout_ms, value, resp_data, resp_cap, expect_len);
}
