/* Reading flash back: SPI_FLASH_MD5 (ROM: 32 hex digits, stub: 16 raw
 * bytes), the ESP32 ROM's READ_FLASH_SLOW, and the stub's streamed
 * READ_FLASH with acknowledgements and a final MD5 frame (PROTOCOL.md
 * A11, A12). */
#include <stdio.h>
#include <string.h>
#include "profile.h"
#include "sim_loader.h"

void sim_ld_md5_cmd(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	if (!l->stub && !d->chip->rom_has_md5) {
		sim_ld_unsupported(d, OP_MD5, t);
		return;
	}
	uint64_t s = start_time(d, t);
	if (l->stub && s < d->prog_done_ns)
		s = d->prog_done_ns;
	if (n != 16) {
		sim_ld_fail2(d, OP_MD5, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t off = le32(p), size = le32(p + 4);
	if (!range_ok(l->stub ? d->flash_size : sim_ld_spi_limit(d), off, size)) {
		sim_ld_fail2(d, OP_MD5, ROM_READ_LEN_ERR, STUB_SPI_FAIL, s);
		return;
	}
	MD5_CTX c;
	uint8_t dig[16];
	MD5Init(&c);
	if (l->attached) {
		MD5Update(&c, d->flash.mem + off, size);
	} else {
		/* no flash attached: the data lines read high */
		static const uint8_t ff[4096] = { [0 ... 4095] = 0xFF };
		for (uint32_t k = 0; k < size; k += sizeof ff)
			MD5Update(&c, ff, size - k < sizeof ff ? size - k : sizeof ff);
	}
	MD5Final(dig, &c);
	s += sim_t_md5(d, size);
	d->busy_ns = s;
	if (l->stub) {
		sim_ld_ok(d, OP_MD5, 0, dig, 16, s);
	} else {
		char hex[33];
		for (int i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", dig[i]);
		sim_ld_ok(d, OP_MD5, 0, (const uint8_t *)hex, 32, s);
	}
}

void sim_ld_read_flash_slow(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	if (d->ld.stub || !sim_rom_read_slow(d->chip)) {
		sim_ld_unsupported(d, OP_READ_FLASH_SLOW, t);
		return;
	}
	uint64_t s = start_time(d, t);
	if (n != 8) {
		sim_ld_fail(d, OP_READ_FLASH_SLOW, ROM_INVALID_MSG, s);
		return;
	}
	uint32_t off = le32(p), len = le32(p + 4);
	uint32_t limit = sim_ld_spi_limit(d);
	/* The reply always carries 64 bytes: the ROM reads `len` bytes into
	 * its reply buffer and sends the whole buffer, so bytes past `len`
	 * are those of an earlier reply; a length over 64 is refused with
	 * code 0x0A and the buffer as it was (measured, ESP32 and C3). */
	if (len > 64 || off >= limit) {
		sim_ld_rom_fail_data(d, OP_READ_FLASH_SLOW, 64, ROM_READ_LEN_ERR, s);
		return;
	}
	uint8_t *buf = d->ld.rom_buf;
	uint32_t avail = limit - off < len ? limit - off : len;
	if (d->ld.attached)
		memcpy(buf, d->flash.mem + off, avail);
	else
		memset(buf, 0xFF, avail);     /* no flash on the bus: lines read high */
	sim_ld_ok(d, OP_READ_FLASH_SLOW, 0, NULL, 64, s + sim_t_md5(d, 64));
}

/* Stub READ_FLASH: send packets while fewer than max_in_flight bytes are
 * unacknowledged (legacy stub rule; with packet >= max_in_flight that is
 * one packet at a time, as in esp-flasher-stub), then the MD5. */
void sim_ld_read_flash_pump(sim_device *d, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	uint32_t window = l->rf_max_inflight ? l->rf_max_inflight : 1;
	while (l->rf_sent < l->rf_len && l->rf_sent - l->rf_acked < window) {
		uint32_t k = l->rf_len - l->rf_sent < l->rf_pkt ? l->rf_len - l->rf_sent : l->rf_pkt;
		const uint8_t *src = d->flash.mem + l->rf_off + l->rf_sent;
		MD5Update(&l->rf_md5, src, k);
		t += sim_t_md5(d, k);
		sim_raw_frame(d, src, k, t);
		l->rf_sent += k;
	}
	if (l->rf_acked >= l->rf_len) {
		uint8_t dig[16];
		MD5Final(dig, &l->rf_md5);
		sim_raw_frame(d, dig, 16, t);
		l->rf_active = false;
	}
}

void sim_ld_read_flash(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	uint64_t s = start_time(d, t);
	if (s < d->prog_done_ns)
		s = d->prog_done_ns;
	if (n != 16) {
		sim_ld_fail(d, OP_READ_FLASH, STUB_BAD_LEN, s);
		return;
	}
	uint32_t off = le32(p), len = le32(p + 4), pkt = le32(p + 8), inflight = le32(p + 12);
	if (!range_ok(d->flash_size, off, len)) {
		sim_ld_fail(d, OP_READ_FLASH, STUB_SPI_FAIL, s);
		return;
	}
	sim_ld_ok(d, OP_READ_FLASH, 0, NULL, 0, s);
	if (pkt == 0 || pkt > 4096) {
		/* esp-flasher-stub: OK now, error on the next command, no data */
		l->deferred_err = STUB_BAD_LEN;
		return;
	}
	l->rf_active = true;
	l->rf_off = off;
	l->rf_len = len;
	l->rf_pkt = pkt;
	l->rf_max_inflight = inflight;
	l->rf_sent = l->rf_acked = 0;
	MD5Init(&l->rf_md5);
	sim_ld_read_flash_pump(d, s);
}
