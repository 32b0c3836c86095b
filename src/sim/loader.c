/* The serial download protocol as the chip answers it: the ROM loader of
 * each chip profile and, after a stub upload, the stub flasher.  Facts from
 * PROTOCOL.md part A (A2 status bytes and error codes, A3 opcodes, A4
 * checksum, A5 SYNC, A8 SPI, A9 erase sizes, A10 deflate, A11 MD5, A12
 * READ_FLASH, A13 stub start).
 *
 * Where the sources leave a ROM error code open, the choice is marked
 * "sim choice".  Stub behaviour follows esp-flasher-stub (the stub of
 * esptool-js 0.7.0) where the two stubs differ; the legacy stub of
 * esp-web-flasher only uses the common subset. */
#include <stdlib.h>
#include <string.h>
#include "profile.h"
#include "sim_loader.h"

/* The ROM's value field is only written by SYNC and READ_REG; other
 * replies carry whatever it last held (esptool traces, e.g. issue #921:
 * CHANGE_BAUDRATE and SPI_ATTACH answered with the previous READ_REG
 * value; measured on the genuine ESP32 and C3 ROMs in QEMU, where
 * READ_FLASH_SLOW after a SYNC carries 0x20120707).  The stub sends 0
 * except for READ_REG. */
static uint32_t rom_value(sim_device *d, uint8_t op, uint32_t value)
{
	if (op == OP_SYNC || op == OP_READ_REG)
		d->ld.rom_value = value;
	return d->ld.rom_value;
}

/* ESP32-family ROM (4 status bytes), as measured by tests/conformance on
 * the genuine ESP32 and ESP32-C3 ROMs:
 * - a reply is built in one buffer: data, then status byte 0 (0 ok /
 *   1 fail), byte 1 (error code), and two "reserved" bytes that are
 *   simply what that buffer held there from an earlier, longer reply
 *   (after an SPI_FLASH_MD5 reply "1576a9..." a SYNC reply ends 37 36);
 * - byte 1 is a sticky error code: a failure sets it; SYNC, READ_REG,
 *   WRITE_REG, SPI_ATTACH, READ_FLASH_SLOW and SPI_FLASH_MD5 clear it
 *   when they succeed; the others (SPI_SET_PARAMS, FLASH_*, FLASH_DEFL_*,
 *   MEM_*, GET_SECURITY_INFO) leave it, so a success reads 00 05 after an
 *   earlier failure with code 05.  (CHANGE_BAUDRATE: unmeasured, QEMU
 *   stops answering after it; treated like the simple commands.) */
static bool rom_model(const sim_device *d)
{
	return !d->ld.stub && d->chip->rom_status_len == 4;
}

static bool rom_clears_err(uint8_t op)
{
	switch (op) {
	case OP_SYNC: case OP_READ_REG: case OP_WRITE_REG: case OP_SPI_ATTACH:
	case OP_READ_FLASH_SLOW: case OP_MD5: case OP_CHANGE_BAUD:
		return true;
	default:
		return false;
	}
}

/* code 0: success.  data NULL with n > 0: the buffer's old bytes are sent
 * (READ_FLASH_SLOW refusing a length still sends its 64 bytes). */
static void rom_reply(sim_device *d, uint8_t op, uint32_t value, const uint8_t *data, size_t n,
		      uint8_t code, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	if (n > SIM_ROM_BUF - 4)
		n = SIM_ROM_BUF - 4;
	if (data && n)
		memcpy(l->rom_buf, data, n);
	if (code)
		l->rom_err = code;
	else if (rom_clears_err(op))
		l->rom_err = 0;
	l->rom_buf[n] = code ? 1 : 0;
	l->rom_buf[n + 1] = l->rom_err;
	uint32_t v = code ? l->rom_value : rom_value(d, op, value);
	sim_reply(d, op, v, l->rom_buf, n, l->rom_buf + n, 4, t);
	l->rom_last_op = op;
	l->rom_last_copies = 1;
}

void sim_ld_ok(sim_device *d, uint8_t op, uint32_t value, const uint8_t *data, size_t n, uint64_t t)
{
	static const uint8_t zero[4];
	if (rom_model(d)) {
		rom_reply(d, op, value, data, n, 0, t);
		return;
	}
	size_t sl = d->ld.stub ? 2 : (size_t)d->chip->rom_status_len;
	if (!d->ld.stub)
		value = rom_value(d, op, value);
	sim_reply(d, op, value, data, n, zero, sl, t);
}

void sim_ld_rom_fail_data(sim_device *d, uint8_t op, size_t n, uint8_t code, uint64_t t)
{
	rom_reply(d, op, 0, NULL, n, code, t);
}

/* code: ROM error code for the ROM, stub error code for the stub */
void sim_ld_fail(sim_device *d, uint8_t op, uint8_t code, uint64_t t)
{
	uint8_t st[4] = { 0 };
	size_t sl;
	if (rom_model(d)) {
		rom_reply(d, op, 0, NULL, 0, code, t);
		return;
	}
	if (d->ld.stub) {
		st[0] = code;
		sl = 2;
	} else {
		st[0] = 1;
		st[1] = code;
		sl = (size_t)d->chip->rom_status_len;
	}
	sim_reply(d, op, d->ld.stub ? 0 : d->ld.rom_value, NULL, 0, st, sl, t);
}

/* ESP32-family ROM, FLASH_DATA / FLASH_DEFL_DATA / MEM_DATA (measured
 * on the ESP32 and C3 ROMs): a block whose sequence number is not the
 * expected one fails with 0x05 before its checksum is looked at and does
 * not move the expectation; a block with the expected number moves it
 * on even when its checksum then fails (0x07), so resending that block
 * fails with 0x05 and only the next number is taken.  Blocks past the
 * count FLASH_BEGIN announced are taken too.  Returns true when it
 * answered. */
bool sim_ld_rom_seq(sim_device *d, bool active, uint32_t *next, uint32_t seq, uint8_t op, uint64_t t)
{
	if (!rom_model(d) || !active)
		return false;
	if (seq != *next) {
		sim_ld_fail(d, op, ROM_INVALID_MSG, t);
		return true;
	}
	(*next)++;
	return false;
}

void sim_ld_fail2(sim_device *d, uint8_t op, uint8_t rom, uint8_t stub, uint64_t t)
{
	sim_ld_fail(d, op, d->ld.stub ? stub : rom, t);
}

/* An opcode this responder does not know.
 * ESP32-family ROM (measured on the genuine ESP32 and C3 ROMs): it sends
 * its previous reply again, as many copies as that reply had (8 after a
 * SYNC, 1 after a READ_REG), with status 01 05 written at the start of
 * the reply buffer and the data dropped: opcode and value field of the
 * previous reply, size 4 (after an MD5 reply: 01 13 04 00 <value> 01 05
 * and two stale bytes).  esptool drains these (200 ms of quiet); a client
 * that does not reads a stale copy as the answer to its next command.
 * ESP8266 ROM (unmeasured): error 0x05 with an opcode field of 0, which
 * esptool also takes for "unsupported" (opcode differs, PROTOCOL.md A2). */
void sim_ld_unsupported(sim_device *d, uint8_t op, uint64_t t)
{
	if (d->ld.stub) {
		sim_ld_fail(d, op, op == OP_SECURITY_INFO ? STUB_NOT_IMPL : STUB_INVALID_CMD, t);
		return;
	}
	if (rom_model(d)) {
		struct sim_loader *l = &d->ld;
		uint8_t last = l->rom_last_op, copies = l->rom_last_copies ? l->rom_last_copies : 1;
		for (int i = 0; i < copies; i++)
			rom_reply(d, last, 0, NULL, 0, ROM_INVALID_MSG, t);
		l->rom_last_copies = copies;
		return;
	}
	uint8_t st[4] = { 1, ROM_INVALID_MSG, 0, 0 };
	sim_reply(d, 0x00, 0, NULL, 0, st, (size_t)d->chip->rom_status_len, t);
}

void sim_loader_free(sim_device *d)
{
	struct sim_loader *l = &d->ld;
	if (l->zs_live)
		inflateEnd(&l->zs);
	l->zs_live = false;
	free(l->zbuf);
	l->zbuf = NULL;
	for (int i = 0; i < l->n_segs; i++)
		free(l->segs[i].data);
	l->n_segs = 0;
}

void sim_loader_init(sim_device *d, bool stub)
{
	sim_loader_free(d);
	memset(&d->ld, 0, sizeof d->ld);
	d->ld.stub = stub;
	/* ESP8266 ROM has no SPI_SET_PARAMS; the stubs know the real size */
	if (stub || d->chip->id == ESP_CHIP_ESP8266)
		d->ld.spi_size = d->flash_size;
	else
		d->ld.spi_size = ROM_DEFAULT_SPI_SIZE;
	d->ld.attached = stub;
	d->prog_done_ns = 0;
}

uint32_t sim_ld_spi_limit(sim_device *d)
{
	return d->ld.spi_size < d->flash_size ? d->ld.spi_size : d->flash_size;
}

static void sync_cmd(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	if (n != 36 || p[0] != 0x07 || p[1] != 0x07 || p[2] != 0x12 || p[3] != 0x20)
		return;   /* not a SYNC pattern: nothing to lock on to */
	for (int i = 4; i < 36; i++)
		if (p[i] != 0x55)
			return;
	uint64_t s = start_time(d, t);
	uint32_t v = d->ld.stub ? 0 : 0x20120707u;
	for (int i = 0; i < 8; i++)
		sim_ld_ok(d, OP_SYNC, v, NULL, 0, s);
	d->ld.rom_last_copies = 8;
}

static void security_info(sim_device *d, uint64_t t)
{
	int len = d->chip->security_info_len;
	if (len == 0) {
		sim_ld_unsupported(d, OP_SECURITY_INFO, t);
		return;
	}
	uint8_t b[20] = { 0 };
	/* flags 0 (no secure boot/download), crypt count 0, key purposes 0 */
	if (len >= 20) {
		put32(b + 12, (uint32_t)d->chip->image_chip_id);
		/* eco version: the revision's minor (C3 v0.3 answers 3) */
		put32(b + 16, sim_chip_rev(d->chip).minor);
		/* the C3 ROM has 6 key blocks but sends 7 purpose bytes, the
		 * 7th 0x0C (measured; unmeasured chips send 0) */
		if (d->chip->id == ESP_CHIP_ESP32C3)
			b[11] = 0x0C;
	}
	sim_ld_ok(d, OP_SECURITY_INFO, 0, b, (size_t)len, start_time(d, t));
}

static void write_reg(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	uint64_t s = start_time(d, t);
	if (n == 0 || n % 16 || (!d->ld.stub && n > 32)) {
		sim_ld_fail2(d, OP_WRITE_REG, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	for (size_t i = 0; i < n; i += 16) {
		uint32_t addr = le32(p + i), val = le32(p + i + 4), mask = le32(p + i + 8), delay = le32(p + i + 12);
		if (d->timing)
			s += (uint64_t)delay * 1000;
		if (mask != 0xFFFFFFFFu)
			val = (sim_reg_read(d, addr) & ~mask) | (val & mask);
		sim_reg_write(d, addr, val, s);
	}
	d->busy_ns = s;
	sim_ld_ok(d, OP_WRITE_REG, 0, NULL, 0, s);
}

static void change_baud(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	if (!d->ld.stub && !d->chip->rom_has_change_baud) {
		sim_ld_unsupported(d, OP_CHANGE_BAUD, t);
		return;
	}
	uint64_t s = start_time(d, t);
	if (n != 8) {
		sim_ld_fail2(d, OP_CHANGE_BAUD, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t nb = le32(p);
	if (nb < 300 || nb > 5000000) {
		sim_ld_fail2(d, OP_CHANGE_BAUD, ROM_BAD_PARAM, STUB_BAD_LEN, s);
		return;
	}
	sim_ld_ok(d, OP_CHANGE_BAUD, 0, NULL, 0, s);
	/* after the reply: everything queued so far went out at the old rate */
	if (!d->native_usb) {
		d->dev_baud = nb;
		/* the ROM then sends two dummy 0xC0 at the new rate
		 * (esp-serial-flasher slip.c); a host still at the old rate
		 * sees noise, which is why clients drain after switching */
		if (!d->ld.stub) {
			static const uint8_t dummy[2] = { 0xC0, 0xC0 };
			sim_emit_at(d, dummy, sizeof dummy, s + 1000000);
		}
	}
	d->rom_autobaud = false;
}

void sim_loader_frame(sim_device *d, const uint8_t *f, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	if (l->stub && l->rf_active) {
		if (n == 4) {              /* READ_FLASH acknowledgement */
			uint32_t v = le32(f);
			if (v > l->rf_acked && v <= l->rf_sent)
				l->rf_acked = v;
			sim_ld_read_flash_pump(d, start_time(d, t));
			return;
		}
		l->rf_active = false;      /* the host gave up: back to commands */
	}
	if (n < 8 || f[0] != 0x00)
		return;                    /* not a command: ignored */
	uint8_t op = f[1];
	uint32_t size = f[2] | f[3] << 8, csum = le32(f + 4);
	const uint8_t *p = f + 8;
	size_t pn = n - 8;
	if (size != pn) {
		sim_ld_fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, start_time(d, t));
		return;
	}
	if (l->stub && l->deferred_err) {
		uint8_t e = l->deferred_err;
		l->deferred_err = 0;
		sim_ld_fail(d, op, e, start_time(d, t));
		return;
	}
	switch (op) {
	case OP_SYNC: sync_cmd(d, p, pn, t); return;
	case OP_READ_REG:
		if (pn != 4)
			sim_ld_fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, start_time(d, t));
		else
			sim_ld_ok(d, op, sim_reg_read(d, le32(p)), NULL, 0, start_time(d, t));
		return;
	case OP_WRITE_REG: write_reg(d, p, pn, t); return;
	case OP_FLASH_BEGIN: case OP_DEFL_BEGIN: sim_ld_flash_begin(d, op, p, pn, t); return;
	case OP_FLASH_DATA: case OP_DEFL_DATA: sim_ld_flash_data(d, op, p, pn, csum, t); return;
	case OP_FLASH_END: case OP_DEFL_END: sim_ld_flash_end(d, op, p, pn, t); return;
	case OP_MEM_BEGIN: sim_ld_mem_begin(d, p, pn, t); return;
	case OP_MEM_DATA: sim_ld_mem_data(d, p, pn, csum, t); return;
	case OP_MEM_END: sim_ld_mem_end(d, p, pn, t); return;
	case OP_SPI_SET_PARAMS:
		if (!l->stub && d->chip->id == ESP_CHIP_ESP8266) {
			sim_ld_unsupported(d, op, t);
		} else if (pn != 24) {
			sim_ld_fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, start_time(d, t));
		} else {
			l->spi_size = le32(p + 4);
			sim_ld_ok(d, op, 0, NULL, 0, start_time(d, t));
		}
		return;
	case OP_SPI_ATTACH:
		if (!l->stub && !d->chip->rom_has_spi_attach) {
			sim_ld_unsupported(d, op, t);
		} else if (pn != (l->stub ? 4u : 8u)) {
			sim_ld_fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, start_time(d, t));
		} else {
			l->attached = true;
			sim_ld_ok(d, op, 0, NULL, 0, start_time(d, t));
		}
		return;
	case OP_READ_FLASH_SLOW: sim_ld_read_flash_slow(d, p, pn, t); return;
	case OP_CHANGE_BAUD: change_baud(d, p, pn, t); return;
	case OP_MD5: sim_ld_md5_cmd(d, p, pn, t); return;
	case OP_SECURITY_INFO: security_info(d, t); return;
	default: break;
	}
	if (!l->stub) {
		sim_ld_unsupported(d, op, t);
		return;
	}
	switch (op) {
	case OP_ERASE_FLASH: case OP_ERASE_REGION: sim_ld_erase_cmd(d, op, p, pn, t); return;
	case OP_READ_FLASH: sim_ld_read_flash(d, p, pn, t); return;
	case OP_RUN_USER_CODE:
		/* no reply.  The legacy stub resets into the firmware;
		 * esp-flasher-stub accepts it and does nothing (a TODO there) */
		if (l->stub_legacy)
			sim_boot_app(d, start_time(d, t) / 1000 + 1, 4);
		return;
	default: sim_ld_unsupported(d, op, t); return;
	}
}
