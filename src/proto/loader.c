/* Command/response engine, connect, chip facts, registers, SPI flash
 * identification, baud change and resets (PROTOCOL.md A2-A8, A14, A15). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/log.h"
#include "loader_priv.h"

#define MAX_STRAY_FRAMES 100
#define SYNC_TRIES_PER_RESET 5
#define USB_JTAG_SERIAL_PID 0x1001
#define ESPRESSIF_VID 0x303A

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

bool esp_loader_secure_download(const esp_loader *l)
{
	return l->secure_download;
}

/* ---- command engine ---- */

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
	int rc = slip_write_frame(l->t, pkt, 8 + len);
	if (pkt != small)
		free(pkt);
	if (rc < 0)
		esp__err(l, "cannot send command 0x%02x: %s", op, strerror(-rc));
	return rc < 0 ? rc : 0;
}

static const char *who(const esp_loader *l)
{
	return l->stub ? "stub" : "ROM";
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
			if (n >= 10 && n <= 12 && f[0] == 0x01 && f[8] != 0 && f[9] == 0x05) {
				esp__err(l, "%s does not support command 0x%02x", who(l), op);
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
		if (value)
			*value = esp__get32(f + 4);
		if (expect_len == ESP_EXPECT_RAW) {
			size_t c = plen < resp_cap ? plen : resp_cap;
			if (c)
				memcpy(resp_data, p, c);
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
			l->last_status[0] = p[st];
			l->last_status[1] = p[st + 1];
			if (l->secure_download && e == -EOPNOTSUPP)
				e = -EACCES;
			if (p[st] == 0x01)
				esp__err(l, "%s error 0x%02x (%s) for command 0x%02x", who(l), p[st + 1],
					 esp_status_text(p[st], p[st + 1]), op);
			else
				esp__err(l, "%s error 0x%02x (%s) for command 0x%02x", who(l), p[st],
					 esp_status_text(p[st], p[st + 1]), op);
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
	int rc = esp__send(l, op, data, len, chk);
	if (rc < 0)
		return rc;
	return esp__recv(l, op, timeout_ms, value, resp_data, resp_cap, expect_len);
}

/* ---- reset and connect ---- */

static void forget_session(esp_loader *l)
{
	l->stub = l->synced = l->attached = l->params_set = false;
}

/* Drive DTR/RTS; -ENOTTY when the port has none. */
static int lines(esp_loader *l, int dtr, int rts)
{
	return esp_tr_set_lines(l->t, dtr, rts);
}

#define LINES(d, r) do { int _rc = lines(l, (d), (r)); if (_rc < 0) return _rc; } while (0)

static int reset_classic(esp_loader *l, uint32_t delay_ms)
{
	const esp_clock *c = l->t->clock;
	LINES(0, 1);           /* EN low */
	esp_sleep_ms(c, 100);
	LINES(1, -1);          /* IO0 low */
	LINES(-1, 0);          /* EN high: boots into download mode */
	esp_sleep_ms(c, delay_ms);
	LINES(0, -1);
	return 0;
}

/* Both lines change in one ioctl, so no glitch resets the chip early. */
static int reset_unix_tight(esp_loader *l, uint32_t delay_ms)
{
	const esp_clock *c = l->t->clock;
	LINES(0, 0);
	LINES(1, 1);
	LINES(0, 1);
	esp_sleep_ms(c, 100);
	LINES(1, 0);
	esp_sleep_ms(c, delay_ms);
	LINES(0, 0);
	LINES(0, -1);
	return 0;
}

static int reset_usb_jtag(esp_loader *l)
{
	const esp_clock *c = l->t->clock;
	LINES(0, 0);
	esp_sleep_ms(c, 100);
	LINES(1, 0);
	esp_sleep_ms(c, 100);
	LINES(0, 1);
	esp_sleep_ms(c, 100);
	LINES(0, 0);
	return 0;
}

static bool is_usb_jtag(const esp_transport *t)
{
	return t->usb_vid == ESPRESSIF_VID && t->usb_pid == USB_JTAG_SERIAL_PID;
}

static int do_reset(esp_loader *l, esp_reset_mode mode, int attempt)
{
	uint32_t delay = attempt % 2 ? 550 : 50;
	switch (mode) {
	case ESP_RESET_NONE:
		return 0;
	case ESP_RESET_CLASSIC:
		return reset_classic(l, delay);
	case ESP_RESET_USB_JTAG:
		return reset_usb_jtag(l);
	case ESP_RESET_AUTO:
	default:
		if (is_usb_jtag(l->t))
			return reset_usb_jtag(l);
		/* esptool's POSIX order: tight 50, tight 550, classic 50, classic 550 */
		return (attempt / 2) % 2 ? reset_classic(l, delay) : reset_unix_tight(l, delay);
	}
}

static const uint8_t sync_payload[36] = {
	0x07, 0x07, 0x12, 0x20,
	0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
	0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
};

/* One SYNC; on success drain the other replies (8 in all, A5) and tell a
 * running stub (value 0) from the ROM (non-zero). */
static int sync_once(esp_loader *l)
{
	uint32_t v = 0;
	int rc = esp_loader_command(l, ESP_SYNC, sync_payload, sizeof sync_payload, 0,
				    ESP_TMO_SYNC_MS, &v, NULL, 0, 0);
	if (rc < 0)
		return rc;
	bool all_zero = v == 0;
	for (int i = 0; i < 7; i++) {
		uint32_t v2 = 0;
		if (esp__recv(l, ESP_SYNC, ESP_TMO_SYNC_MS, &v2, NULL, 0, 0) < 0)
			break;
		if (v2 != 0)
			all_zero = false;
	}
	l->stub = all_zero;
	l->synced = true;
	return 0;
}

int esp_loader_connect(esp_loader *l, esp_reset_mode mode, int attempts)
{
	if (attempts <= 0)
		attempts = 4;
	forget_session(l);
	l->rd.dec.text_len = 0;
	l->rd.dec.text[0] = 0;
	bool have_lines = !(l->t->flags & ESP_TR_NO_LINES);
	int last = -ETIMEDOUT;
	for (int a = 0; a < attempts; a++) {
		if (have_lines && mode != ESP_RESET_NONE) {
			int rc = do_reset(l, mode, a);
			if (rc == -ENOTTY || rc == -EINVAL) {
				have_lines = false; /* a pty or socket: SYNC only */
				LOGD("%s: no modem lines, connecting without reset", l->t->name);
			} else if (rc == -ENODEV) {
				esp__err(l, "port went away during reset");
				return rc;
			}
		}
		for (int s = 0; s < SYNC_TRIES_PER_RESET; s++) {
			int rc = sync_once(l);
			if (rc == 0) {
				LOGD("%s: in sync with the %s", l->t->name, who(l));
				return 0;
			}
			last = rc;
			if (rc == -ENODEV)
				return rc;
			esp_sleep_ms(l->t->clock, 50);
		}
	}
	const char *text = l->rd.dec.text;
	if (strstr(text, "waiting for download"))
		esp__err(l, "chip is in download mode but does not answer SYNC");
	else if (strstr(text, "boot:"))
		esp__err(l, "chip booted normally instead of entering download mode (hold BOOT and press RESET)");
	else if (l->rd.dec.noise)
		esp__err(l, "no SYNC reply after %d attempts; the port carries other data", attempts);
	else
		esp__err(l, "no SYNC reply after %d attempts (is the chip in download mode?)", attempts);
	return last == -EPROTO ? -EPROTO : -ETIMEDOUT;
}

/* ---- registers ---- */

int esp_loader_read_reg(esp_loader *l, uint32_t addr, uint32_t *val)
{
	uint8_t p[4];
	esp__put32(p, addr);
	int rc = esp_loader_command(l, ESP_READ_REG, p, 4, 0, ESP_TMO_DEFAULT_MS, val, NULL, 0, 0);
	if (rc < 0)
		esp__err_prefix(l, "read register 0x%08x", addr);
	return rc < 0 ? rc : 0;
}

int esp_loader_write_reg(esp_loader *l, uint32_t addr, uint32_t val, uint32_t mask, uint32_t delay_us)
{
	uint8_t p[16];
	esp__put32(p, addr);
	esp__put32(p + 4, val);
	esp__put32(p + 8, mask);
	esp__put32(p + 12, delay_us);
	int rc = esp_loader_command(l, ESP_WRITE_REG, p, 16, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	if (rc < 0)
		esp__err_prefix(l, "write register 0x%08x", addr);
	return rc < 0 ? rc : 0;
}

static int wreg(esp_loader *l, uint32_t addr, uint32_t val)
{
	return esp_loader_write_reg(l, addr, val, 0xFFFFFFFFu, 0);
}

/* ---- chip detection ---- */

int esp_loader_detect_chip(esp_loader *l, const struct esp_chip_info **chip)
{
	uint8_t d[40];
	int gsi_len = 0;
	const struct esp_chip_info *c = NULL;
	slip_reader_flush(&l->rd);
	int rc = esp__send(l, ESP_GET_SECURITY_INFO, NULL, 0, 0);
	if (rc < 0)
		return rc;
	rc = esp__recv(l, ESP_GET_SECURITY_INFO, ESP_TMO_DEFAULT_MS, NULL, d, sizeof d, ESP_EXPECT_RAW);
	if (rc == -ENODEV)
		return rc;
	if (rc >= 2) {
		/* 20 data bytes (S3 and later), 12 (ESP32-S2), or a failure
		 * reply from ROMs without the command; the size field is not
		 * to be trusted (A2), the frame length is. */
		size_t plen = (size_t)rc < sizeof d ? (size_t)rc : sizeof d;
		size_t dl = plen >= 22 ? 20 : plen >= 14 ? 12 : 0;
		if (dl && d[dl] == 0) {
			gsi_len = (int)dl;
			l->secure_download = (esp__get32(d) & (1u << 2)) != 0;
			if (dl == 20)
				c = esp_chip_by_image_id((int)esp__get32(d + 12));
		}
	}
	if (!c) {
		uint32_t magic = 0;
		rc = esp_loader_read_reg(l, ESP_CHIP_DETECT_MAGIC_REG, &magic);
		if (rc == -ENODEV || rc == -ETIMEDOUT)
			return rc;
		if (rc < 0 && gsi_len == 12) {
			/* READ_REG refused after a 12-byte security info: an
			 * ESP32-S2 in Secure Download Mode (A6 step 2b) */
			c = esp_chip_get(ESP_CHIP_ESP32S2);
			l->secure_download = true;
		} else if (rc < 0) {
			return rc;
		} else {
			c = esp_chip_by_magic(magic);
			if (!c) {
				esp__err(l, "unknown chip (magic value 0x%08x)", magic);
				return -EOPNOTSUPP;
			}
		}
	}
	l->chip = c;
	if (chip)
		*chip = c;
	if (is_usb_jtag(l->t) && !l->stub && !l->secure_download) {
		rc = esp_loader_disable_watchdogs(l);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Over USB-Serial/JTAG the ROM's watchdogs stay armed and would reset the
 * chip in the middle of a long operation; esptool disarms them right after
 * connecting (A15, "_post_connect"; not in Secure Download Mode, not
 * needed once a stub runs, which does it itself). */
static int need_chip(esp_loader *l);

struct wdt_off {
	esp_chip_id id;
	uint32_t rtc_wprotect, rtc_config0, rtc_key;
	uint32_t swd_conf, swd_bit, swd_wprotect, swd_key;
};
static const struct wdt_off wdt_offs[] = {
	{ ESP_CHIP_ESP32C3, 0x600080A8, 0x60008090, 0x50D83AA1, 0x600080AC, 1u << 31, 0x600080B0, 0x8F1D312A },
	{ ESP_CHIP_ESP32S3, 0x600080B0, 0x60008098, 0x50D83AA1, 0x600080B4, 1u << 31, 0x600080B8, 0x8F1D312A },
	{ ESP_CHIP_ESP32C6, 0x600B1C18, 0x600B1C00, 0x50D83AA1, 0x600B1C1C, 1u << 18, 0x600B1C20, 0x50D83AA1 },
	{ ESP_CHIP_ESP32H2, 0x600B1C1C, 0x600B1C00, 0x50D83AA1, 0x600B1C20, 1u << 18, 0x600B1C24, 0x50D83AA1 },
};

int esp_loader_disable_watchdogs(esp_loader *l)
{
	int rc = need_chip(l);
	if (rc < 0)
		return rc;
	if (l->stub || l->secure_download)
		return 0;
	for (size_t i = 0; i < sizeof wdt_offs / sizeof *wdt_offs; i++) {
		const struct wdt_off *w = &wdt_offs[i];
		if (w->id != l->chip->id)
			continue;
		uint32_t conf = 0;
		if ((rc = wreg(l, w->rtc_wprotect, w->rtc_key)) < 0 ||
		    (rc = wreg(l, w->rtc_config0, 0)) < 0 ||
		    (rc = wreg(l, w->rtc_wprotect, 0)) < 0 ||
		    (rc = wreg(l, w->swd_wprotect, w->swd_key)) < 0 ||
		    (rc = esp_loader_read_reg(l, w->swd_conf, &conf)) < 0 ||
		    (rc = wreg(l, w->swd_conf, conf | w->swd_bit)) < 0 ||
		    (rc = wreg(l, w->swd_wprotect, 0)) < 0) {
			esp__err_prefix(l, "disabling the ROM watchdogs");
			return rc;
		}
		return 0;
	}
	return 0;
}

static int need_chip(esp_loader *l)
{
	return l->chip ? 0 : esp_loader_detect_chip(l, NULL);
}

int esp_loader_read_mac(esp_loader *l, uint8_t mac[6])
{
	int rc = need_chip(l);
	if (rc < 0)
		return rc;
	const struct esp_chip_info *c = l->chip;
	uint32_t w0, w1;
	if ((rc = esp_loader_read_reg(l, c->mac_reg[0], &w0)) < 0 ||
	    (rc = esp_loader_read_reg(l, c->mac_reg[1], &w1)) < 0)
		return rc;
	if (c->id == ESP_CHIP_ESP8266) {
		/* A7: the OUI is in MAC3, or implied by a byte of MAC1 */
		uint32_t w3;
		if ((rc = esp_loader_read_reg(l, c->mac_reg[2], &w3)) < 0)
			return rc;
		if (w3 != 0) {
			mac[0] = (uint8_t)(w3 >> 16); mac[1] = (uint8_t)(w3 >> 8); mac[2] = (uint8_t)w3;
		} else if (((w1 >> 16) & 0xFF) == 0) {
			mac[0] = 0x18; mac[1] = 0xFE; mac[2] = 0x34;
		} else if (((w1 >> 16) & 0xFF) == 1) {
			mac[0] = 0xAC; mac[1] = 0xD0; mac[2] = 0x74;
		} else {
			esp__err(l, "unknown ESP8266 OUI in eFuse (MAC1 0x%08x)", w1);
			return -EIO;
		}
		mac[3] = (uint8_t)(w1 >> 8); mac[4] = (uint8_t)w1; mac[5] = (uint8_t)(w0 >> 24);
		return 0;
	}
	mac[0] = (uint8_t)(w1 >> 8); mac[1] = (uint8_t)w1;
	mac[2] = (uint8_t)(w0 >> 24); mac[3] = (uint8_t)(w0 >> 16);
	mac[4] = (uint8_t)(w0 >> 8); mac[5] = (uint8_t)w0;
	return 0;
}

/* ---- SPI flash ---- */

#define ESP32_EFUSE_RDATA3 0x3FF5A00Cu
#define ESP32_EFUSE_WORD4 0x3FF5A010u   /* low byte: 8 MHz clock calibration */
#define ESP32_RTC_CALI_REG 0x3FF5F06Cu  /* RTC calibration value, bits 7..31 */
#define ESP32_EFUSE_RDATA5 0x3FF5A014u

/* The ESP32 ROM attaches in-package flash only when told its pins, which
 * eFuse knows (A8); 0 means the default pins. */
static uint32_t esp32_spi_pads(esp_loader *l)
{
	uint32_t r5 = 0, r3 = 0;
	if (esp_loader_read_reg(l, ESP32_EFUSE_RDATA5, &r5) < 0 ||
	    esp_loader_read_reg(l, ESP32_EFUSE_RDATA3, &r3) < 0)
		return 0;
	uint32_t clk = r5 & 0x1F, q = (r5 >> 5) & 0x1F, d = (r5 >> 10) & 0x1F,
		 cs = (r5 >> 15) & 0x1F, hd = (r3 >> 4) & 0x1F;
	if (!clk && !q && !d && !cs && !hd)
		return 0;
	return hd << 24 | cs << 18 | d << 12 | q << 6 | clk;
}

int esp__flash_begin(esp_loader *l, uint8_t op, uint32_t size_word, uint32_t blocks,
		     uint32_t block_size, uint32_t offset, uint32_t timeout_ms)
{
	uint8_t p[20];
	esp__put32(p, size_word);
	esp__put32(p + 4, blocks);
	esp__put32(p + 8, block_size);
	esp__put32(p + 12, offset);
	esp__put32(p + 16, 0); /* not encrypted */
	/* A3 safe rule: ESP8266/ESP32 ROM take 16 bytes, later ROMs 20, stubs either */
	size_t n = !l->stub && l->chip && l->chip->rom_begin_has_encrypt_word ? 20 : 16;
	return esp_loader_command(l, op, p, n, 0, timeout_ms, NULL, NULL, 0, 0);
}

int esp_loader_spi_attach(esp_loader *l)
{
	int rc = need_chip(l);
	if (rc < 0)
		return rc;
	uint8_t p[8] = { 0 };
	if (l->stub) {
		rc = esp_loader_command(l, ESP_SPI_ATTACH, p, 4, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	} else if (!l->chip->rom_has_spi_attach) {
		/* ESP8266 ROM: an empty FLASH_BEGIN attaches the flash */
		rc = esp__flash_begin(l, ESP_FLASH_BEGIN, 0, 0, ESP_ROM_WRITE_BLOCK, 0, ESP_TMO_DEFAULT_MS);
	} else {
		uint32_t cfg = l->chip->id == ESP_CHIP_ESP32 && !l->secure_download ? esp32_spi_pads(l) : 0;
		esp__put32(p, cfg);
		rc = esp_loader_command(l, ESP_SPI_ATTACH, p, 8, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	}
	if (rc < 0) {
		esp__err_prefix(l, "attaching SPI flash");
		return rc;
	}
	l->attached = true;
	return 0;
}

int esp_loader_spi_set_params(esp_loader *l, uint32_t flash_size)
{
	int rc = need_chip(l);
	if (rc < 0)
		return rc;
	if (!l->stub && l->chip->id == ESP_CHIP_ESP8266) {
		l->params_set = true; /* the ESP8266 ROM has no such command */
		return 0;
	}
	uint8_t p[24];
	esp__put32(p, 0);
	esp__put32(p + 4, flash_size);
	esp__put32(p + 8, 0x10000);
	esp__put32(p + 12, ESP_SECTOR);
	esp__put32(p + 16, 0x100);
	esp__put32(p + 20, 0xFFFF);
	rc = esp_loader_command(l, ESP_SPI_SET_PARAMS, p, sizeof p, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	if (rc < 0) {
		esp__err_prefix(l, "setting flash parameters");
		return rc;
	}
	l->params_set = true;
	return 0;
}

/* RDID (0x9F) through the SPI controller's user-command registers (A8). */
static int read_jedec(esp_loader *l, uint32_t *id)
{
	const struct esp_spi_regs *r = &l->chip->spi;
	uint32_t usr, usr2, cmd = 0;
	int rc;
	if ((rc = esp_loader_read_reg(l, r->usr, &usr)) < 0 ||
	    (rc = esp_loader_read_reg(l, r->usr2, &usr2)) < 0)
		return rc;
	if (l->chip->spi_has_dlen)
		rc = wreg(l, r->miso_dlen, 24 - 1);
	else
		rc = wreg(l, r->usr1, (24 - 1) << 8);
	if (rc < 0 ||
	    (rc = wreg(l, r->usr, 1u << 31 | 1u << 28)) < 0 ||
	    (rc = wreg(l, r->usr2, 7u << 28 | 0x9F)) < 0 ||
	    (rc = wreg(l, r->w0, 0)) < 0 ||
	    (rc = wreg(l, r->cmd, 1u << 18)) < 0)
		return rc;
	int polls;
	for (polls = 0; polls < 10; polls++) {
		if ((rc = esp_loader_read_reg(l, r->cmd, &cmd)) < 0)
			return rc;
		if (!(cmd & 1u << 18))
			break;
	}
	if (polls == 10) {
		esp__err(l, "SPI flash command did not complete");
		return -EIO;
	}
	if ((rc = esp_loader_read_reg(l, r->w0, id)) < 0 ||
	    (rc = wreg(l, r->usr, usr)) < 0 ||
	    (rc = wreg(l, r->usr2, usr2)) < 0)
		return rc;
	*id &= 0xFFFFFF;
	return 0;
}

int esp_loader_flash_id(esp_loader *l, uint32_t *jedec, uint32_t *size)
{
	int rc = need_chip(l);
	if (rc < 0)
		return rc;
	if (!l->attached && (rc = esp_loader_spi_attach(l)) < 0)
		return rc;
	uint32_t id = 0;
	if ((rc = read_jedec(l, &id)) < 0) {
		esp__err_prefix(l, "reading the flash ID");
		return rc;
	}
	if (id == 0xFFFFFF || id == 0 || id == 0xFFFF3F) {
		esp__err(l, "no SPI flash answers (JEDEC ID 0x%06x)", id);
		return -EIO;
	}
	uint32_t sz = esp_flash_size_from_jedec(id);
	if (!sz) {
		LOGW("%s: unknown flash size for JEDEC ID 0x%06x, assuming %u MB", l->t->name, id,
		     l->chip->default_flash_size >> 20);
		sz = l->chip->default_flash_size;
	}
	if (sz != l->flash_size)
		l->params_set = false;
	l->jedec = id;
	l->flash_size = sz;
	if (jedec)
		*jedec = id;
	if (size)
		*size = sz;
	return 0;
}

int esp__flash_ready(esp_loader *l)
{
	int rc = need_chip(l);
	if (rc < 0)
		return rc;
	if (!l->attached && (rc = esp_loader_spi_attach(l)) < 0)
		return rc;
	if (!l->flash_size) {
		rc = esp_loader_flash_id(l, NULL, NULL);
		if (rc == -EACCES) /* Secure Download Mode: no register access */
			l->flash_size = l->chip->default_flash_size;
		else if (rc < 0)
			return rc;
	}
	if (!l->params_set && (rc = esp_loader_spi_set_params(l, l->flash_size)) < 0)
		return rc;
	return 0;
}

uint32_t esp_loader_flash_size(const esp_loader *l)
{
	return l->flash_size;
}

static bool usb_otg(const esp_loader *l)
{
	return l->chip && l->chip->usb_otg_rom_pid && l->t->usb_vid == ESPRESSIF_VID &&
	       l->t->usb_pid == l->chip->usb_otg_rom_pid;
}

uint32_t esp__write_block(const esp_loader *l)
{
	if (!l->stub)
		return ESP_ROM_WRITE_BLOCK;
	return usb_otg(l) ? 0x800 : ESP_STUB_WRITE_BLOCK;
}

uint32_t esp__ram_block(const esp_loader *l)
{
	return usb_otg(l) ? 0x800 : ESP_RAM_BLOCK;
}

/* ---- baud rate ---- */

int esp_loader_change_baud(esp_loader *l, uint32_t baud)
{
	int rc = need_chip(l);
	if (rc < 0)
		return rc;
	if (!l->stub && !l->chip->rom_has_change_baud) {
		esp__err(l, "the %s ROM cannot change the baud rate (load the stub first)", l->chip->name);
		return -EOPNOTSUPP;
	}
	/* A14: the ESP32 ROM runs its UART from an 8 MHz clock it calibrated
	 * itself and gets the divider slightly wrong; esptool asks it for a
	 * rate scaled by (the ROM's crystal estimate / the true crystal) so
	 * the line ends up at the rate we want. */
	uint32_t ask = baud;
	if (!l->stub && l->chip->id == ESP_CHIP_ESP32) {
		uint32_t cali = 0, ck8m = 0;
		if (esp_loader_read_reg(l, ESP32_RTC_CALI_REG, &cali) == 0 &&
		    esp_loader_read_reg(l, ESP32_EFUSE_WORD4, &ck8m) == 0) {
			uint64_t rom_hz = (uint64_t)((cali >> 7) & 0x1FFFFFF) * 15625u * (ck8m & 0xFF) / 40;
			uint64_t xtal = rom_hz > 33000000u ? 40000000u : 26000000u;
			if (rom_hz)
				ask = (uint32_t)((uint64_t)baud * rom_hz / xtal);
		}
	}
	/* the stub needs the old rate to compute its divider; the ROM 0 */
	uint8_t p[8];
	esp__put32(p, ask);
	esp__put32(p + 4, l->stub ? l->t->baud : 0);
	rc = esp_loader_command(l, ESP_CHANGE_BAUDRATE, p, 8, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	if (rc < 0) {
		esp__err_prefix(l, "changing baud rate to %u", baud);
		return rc;
	}
	rc = esp_tr_set_baud(l->t, baud);
	if (rc < 0) {
		esp__err(l, "port cannot use %u baud: %s", baud, strerror(-rc));
		return rc;
	}
	esp_sleep_ms(l->t->clock, 50);
	slip_reader_flush(&l->rd);
	return 0;
}

/* ---- leaving the loader ---- */

int esp_loader_hard_reset(esp_loader *l)
{
	uint32_t hold = l->t->flags & ESP_TR_NATIVE_USB ? 200 : 100;
	int rc = lines(l, 0, 1); /* IO0 released, EN low */
	if (rc == 0) {
		esp_sleep_ms(l->t->clock, hold);
		rc = lines(l, 0, 0);
		if (rc == 0 && (l->t->flags & ESP_TR_NATIVE_USB))
			esp_sleep_ms(l->t->clock, 200);
	}
	if (rc == -ENOTTY || rc == -EINVAL) {
		esp__err(l, "port %s has no DTR/RTS lines to reset the chip", l->t->name);
		return -EOPNOTSUPP;
	}
	if (rc < 0) {
		esp__err(l, "reset failed: %s", strerror(-rc));
		return rc;
	}
	forget_session(l);
	return 0;
}

int esp_loader_watchdog_reset(esp_loader *l)
{
	int rc = need_chip(l);
	if (rc < 0)
		return rc;
	const struct esp_chip_info *c = l->chip;
	if (!c->wdt_config0) {
		esp__err(l, "%s has no usable RTC watchdog reset", c->name);
		return -EOPNOTSUPP;
	}
	/* A15: unlock, 2000 slow-clock cycles, system reset stage, lock */
	if ((rc = wreg(l, c->wdt_wprotect, ESP_WDT_WKEY)) < 0 ||
	    (rc = wreg(l, c->wdt_config1, 2000)) < 0 ||
	    (rc = wreg(l, c->wdt_config0, 1u << 31 | 5u << 28 | 1u << 8 | 2)) < 0 ||
	    (rc = wreg(l, c->wdt_wprotect, 0)) < 0) {
		esp__err_prefix(l, "watchdog reset");
		return rc;
	}
	esp_sleep_ms(l->t->clock, 500);
	forget_session(l);
	return 0;
}
