/* Loader replies (src/proto/loader*.c): a fake serial port that answers
 * each request with the next segment of the fuzz input (a 2-byte
 * little-endian length, then that many bytes, delivered in pieces), and
 * is quiet until the next request.  Time is a fake clock, so each timeout
 * costs nothing.  The sequence is what
 * espfs does at attach and for a read: SYNC, chip detection, MAC, flash
 * id, MD5, READ_FLASH, a register read, a small write. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/clock.h"
#include "espfs/loader.h"
#include "espfs/transport.h"

struct fuzz_port {
	esp_transport t;
	esp_fake_clock clk;
	const uint8_t *data;
	size_t len, pos, piece;
	size_t avail;   /* end of the bytes released so far */
};

static int f_read(esp_transport *t, uint8_t *buf, size_t len, uint32_t timeout_ms)
{
	struct fuzz_port *f = (struct fuzz_port *)t;
	if (f->pos >= f->avail) {
		esp_fake_clock_advance(&f->clk, (uint64_t)timeout_ms * 1000 + 1);
		return -ETIMEDOUT;
	}
	size_t n = f->avail - f->pos;
	if (n > len)
		n = len;
	if (n > f->piece)
		n = f->piece;
	memcpy(buf, f->data + f->pos, n);
	f->pos += n;
	return (int)n;
}

/* A request: the chip's answer (the next segment) becomes readable. */
static int f_write(esp_transport *t, const uint8_t *buf, size_t len)
{
	struct fuzz_port *f = (struct fuzz_port *)t;
	(void)buf;
	if (f->pos >= f->avail && f->pos + 2 <= f->len) {
		size_t seg = f->data[f->pos] | (size_t)f->data[f->pos + 1] << 8;
		f->pos += 2;
		f->avail = f->pos + seg < f->len ? f->pos + seg : f->len;
	}
	return (int)len;
}

static int f_flush(esp_transport *t)
{
	struct fuzz_port *f = (struct fuzz_port *)t;
	f->pos = f->avail;  /* what was received and not read is gone */
	return 0;
}

static int f_baud(esp_transport *t, uint32_t baud)
{
	t->baud = baud;
	return 0;
}

static int f_lines(esp_transport *t, int dtr, int rts)
{
	(void)t;
	(void)dtr;
	(void)rts;
	return -ENOTTY;
}

static void f_close(esp_transport *t)
{
	(void)t;
}

static const struct esp_transport_ops ops = { f_read, f_write, f_flush, f_baud, f_lines, f_close };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	static struct fuzz_port f;
	memset(&f, 0, sizeof f);
	esp_fake_clock_init(&f.clk, 1000000);
	f.t.ops = &ops;
	f.t.clock = &f.clk.clock;
	f.t.flags = ESP_TR_NO_LINES;
	f.t.baud = 115200;
	snprintf(f.t.name, sizeof f.t.name, "fuzz");
	f.piece = 1 + data[0] % 200;
	f.data = data + 1;
	f.len = size - 1;
	esp_loader *l = esp_loader_new(&f.t);
	if (!l)
		return 0;
	const struct esp_chip_info *chip = NULL;
	int crc = esp_loader_connect(l, ESP_RESET_NONE, 1);
	int drc = crc == 0 ? esp_loader_detect_chip(l, &chip) : -1;
	if (getenv("FUZZ_DEBUG"))  /* how far a seed gets */
		fprintf(stderr, "connect %d detect %d chip %s at byte %zu of %zu: %s\n", crc, drc,
			chip ? chip->name : "-", f.pos, f.len, esp_loader_error(l));
	if (crc == 0 && drc == 0 && chip) {
		uint8_t mac[6], md5[16];
		uint32_t jedec = 0, fsize = 0, v = 0;
		static uint8_t buf[0x3000];
		esp_loader_read_mac(l, mac);
		esp_loader_flash_id(l, &jedec, &fsize);
		esp_loader_flash_md5(l, 0x1000, 0x2000, md5);
		esp_loader_read_flash(l, 0x1000, buf, sizeof buf, NULL, NULL);
		esp_loader_read_reg(l, 0x3ff5a004, &v);
		memset(buf, 0x5a, 0x1000);
		esp_loader_write_flash(l, 0x10000, buf, 0x1000, 0, NULL, NULL);
		esp_loader_erase_region(l, 0x20000, 0x1000);
	}
	esp_loader_error(l);
	esp_loader_free(l);
	return 0;
}
