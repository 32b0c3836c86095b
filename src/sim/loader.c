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
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sim_priv.h"

enum {
	OP_FLASH_BEGIN = 0x02, OP_FLASH_DATA, OP_FLASH_END, OP_MEM_BEGIN, OP_MEM_END, OP_MEM_DATA,
	OP_SYNC, OP_WRITE_REG, OP_READ_REG, OP_SPI_SET_PARAMS, OP_SPI_ATTACH = 0x0D,
	OP_READ_FLASH_SLOW, OP_CHANGE_BAUD, OP_DEFL_BEGIN, OP_DEFL_DATA, OP_DEFL_END,
	OP_MD5, OP_SECURITY_INFO,
	OP_ERASE_FLASH = 0xD0, OP_ERASE_REGION, OP_READ_FLASH, OP_RUN_USER_CODE,
};

/* ROM error codes (byte 1 after 0x01) */
enum {
	ROM_BAD_PARAM = 0x01, ROM_INVALID_MSG = 0x05, ROM_RESULT_WRONG = 0x06, ROM_BAD_CHECKSUM = 0x07,
	ROM_FLASH_WRITE_ERR = 0x08, ROM_FLASH_READ_ERR = 0x09, ROM_READ_LEN_ERR = 0x0A,
	ROM_INFLATE_ERR = 0x0B, ROM_ADLER_ERR = 0x0C, ROM_RAM_SIZE = 0x0E, ROM_RAM_ADDR = 0x0F,
};
/* Stub error codes (byte 0) */
enum {
	STUB_BAD_LEN = 0xC0, STUB_BAD_CHECKSUM = 0xC1, STUB_BAD_BLOCKSIZE = 0xC2, STUB_INVALID_CMD = 0xC3,
	STUB_SPI_FAIL = 0xC4, STUB_NOT_IN_FLASH = 0xC6, STUB_INFLATE = 0xC7, STUB_NOT_ENOUGH = 0xC8,
	STUB_TOO_MUCH = 0xC9, STUB_NOT_IMPL = 0xFF,
};

#define ROM_DEFAULT_SPI_SIZE (2u << 20)
#define ZBUF_SIZE 65536

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static void put32(uint8_t *p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }

static void ok(sim_device *d, uint8_t op, uint32_t value, const uint8_t *data, size_t n, uint64_t t)
{
	static const uint8_t zero[4];
	size_t sl = d->ld.stub ? 2 : (size_t)d->chip->rom_status_len;
	sim_reply(d, op, value, data, n, zero, sl, t);
}

/* code: ROM error code for the ROM, stub error code for the stub */
static void fail(sim_device *d, uint8_t op, uint8_t code, uint64_t t)
{
	uint8_t st[4] = { 0 };
	size_t sl;
	if (d->ld.stub) {
		st[0] = code;
		sl = 2;
	} else {
		st[0] = 1;
		st[1] = code;
		sl = (size_t)d->chip->rom_status_len;
	}
	sim_reply(d, op, 0, NULL, 0, st, sl, t);
}

static void fail2(sim_device *d, uint8_t op, uint8_t rom, uint8_t stub, uint64_t t)
{
	fail(d, op, d->ld.stub ? stub : rom, t);
}

/* An opcode this responder does not know.  ROM: error 0x05 sent with an
 * opcode field of 0 (esptool and esptool-js recognise "unsupported" by a
 * reply whose opcode differs from the request, PROTOCOL.md A2; which
 * opcode the ROM puts there is not documented: sim choice). */
static void unsupported(sim_device *d, uint8_t op, uint64_t t)
{
	if (d->ld.stub) {
		fail(d, op, op == OP_SECURITY_INFO ? STUB_NOT_IMPL : STUB_INVALID_CMD, t);
		return;
	}
	uint8_t st[4] = { 1, ROM_INVALID_MSG, 0, 0 };
	sim_reply(d, 0x00, 0, NULL, 0, st, (size_t)d->chip->rom_status_len, t);
}

static uint8_t xor_sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0xEF;
	for (size_t i = 0; i < n; i++)
		s ^= p[i];
	return s;
}

static uint64_t start_time(sim_device *d, uint64_t t)
{
	return t > d->busy_ns ? t : d->busy_ns;
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

static uint32_t spi_limit(sim_device *d)
{
	return d->ld.spi_size < d->flash_size ? d->ld.spi_size : d->flash_size;
}

static bool range_ok(uint32_t limit, uint32_t off, uint64_t len)
{
	return off <= limit && len <= limit - off;
}

/* ESP8266 ROM erase (esptool issue #33 as summarised in PROTOCOL.md A9):
 * asked for n sectors from sector s, it erases n + head sectors when the
 * area crosses a 64 KiB block boundary, else 2n. */
static void esp8266_rom_erase_area(uint32_t off, uint32_t size, uint32_t *e_off, uint32_t *e_len)
{
	uint32_t n = (size + SIM_SECTOR - 1) / SIM_SECTOR;
	uint32_t start = off / SIM_SECTOR;
	uint32_t head = 16 - start % 16;
	uint32_t count = n > head ? n + head : 2 * n;
	*e_off = start * SIM_SECTOR;
	*e_len = count * SIM_SECTOR;
}

/* ---- flash writes ---- */

static void flash_begin(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	bool defl = op == OP_DEFL_BEGIN;
	if (defl && !l->stub && !d->chip->rom_has_defl) {
		unsupported(d, op, t);
		return;
	}
	if (n != 16 && n != 20) {
		fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, t);
		return;
	}
	uint32_t size = le32(p), blocks = le32(p + 4), bsize = le32(p + 8), off = le32(p + 12);
	uint64_t s = start_time(d, t);
	if (l->zs_live) {
		inflateEnd(&l->zs);
		l->zs_live = false;
	}
	l->op = 0;
	if (!l->stub) {
		uint32_t e_off = off, e_len = size;
		if (d->chip->id == ESP_CHIP_ESP8266) {
			l->attached = true;        /* FLASH_BEGIN attaches the flash there */
			if (size)
				esp8266_rom_erase_area(off, size, &e_off, &e_len);
		}
		if (e_len && !l->attached) {
			/* the ROM attaches the flash only on SPI_ATTACH (esptool
			 * commit afaa7d2, esp-flasher-stub PR #66): the erase
			 * never sees a ready chip (sim choice of code) */
			fail(d, op, ROM_FLASH_WRITE_ERR, s);
			return;
		}
		if (e_len && !range_ok(spi_limit(d), e_off, e_len)) {
			/* ROM: 2 MB until SPI_SET_PARAMS (sim choice of code) */
			fail(d, op, ROM_BAD_PARAM, s);
			return;
		}
		if (e_len) {
			sim_flash_erase(&d->flash, e_off, e_len);
			s += sim_t_erase(d, e_off, e_len);
		}
	} else {
		if (!range_ok(d->flash_size, off, size)) {
			fail(d, op, STUB_SPI_FAIL, s);
			return;
		}
		if (bsize > 0x4000) {
			fail(d, op, STUB_BAD_BLOCKSIZE, s);
			return;
		}
		/* the stub erases as it writes; wait for earlier programming */
		if (s < d->prog_done_ns)
			s = d->prog_done_ns;
	}
	if (defl) {
		memset(&l->zs, 0, sizeof l->zs);
		if (inflateInit(&l->zs) != Z_OK) {
			fail2(d, op, ROM_INFLATE_ERR, STUB_INFLATE, s);
			return;
		}
		l->zs_live = true;
		if (!l->zbuf)
			l->zbuf = malloc(ZBUF_SIZE);
	}
	l->op = defl ? 2 : 1;
	l->op_offset = off;
	l->op_size = size;
	l->op_blocks = blocks;
	l->op_block_size = bsize;
	l->op_written = 0;
	l->op_erased_to = off & ~(SIM_SECTOR - 1);
	l->op_next_seq = 0;
	l->op_total_bytes = size;
	d->busy_ns = s;
	ok(d, op, 0, NULL, 0, s);
}

/* Program len bytes at the current write position.  Returns 0, or the
 * error to report; *work gets the flash time. */
static int program(sim_device *d, uint32_t addr, const uint8_t *data, uint32_t len, uint64_t *work)
{
	struct sim_loader *l = &d->ld;
	uint32_t limit = l->stub ? d->flash_size : spi_limit(d);
	if (!l->attached && len)
		return ROM_FLASH_WRITE_ERR;
	if (!range_ok(limit, addr, len))
		return l->stub ? STUB_SPI_FAIL : ROM_FLASH_WRITE_ERR;
	if (l->stub) {
		/* erase just in time, 64 KiB blocks where aligned */
		uint64_t end = ((uint64_t)addr + len + SIM_SECTOR - 1) & ~(uint64_t)(SIM_SECTOR - 1);
		if (end > d->flash_size)
			end = d->flash_size;
		if (l->op_erased_to < end) {
			uint32_t from = l->op_erased_to > (addr & ~(SIM_SECTOR - 1)) ? l->op_erased_to : (addr & ~(SIM_SECTOR - 1));
			uint64_t to = end;
			uint64_t declared_end = (uint64_t)l->op_offset + l->op_size;
			if (from % SIM_BLOCK == 0 && declared_end >= (uint64_t)from + SIM_BLOCK && from + SIM_BLOCK <= d->flash_size)
				to = to > from + SIM_BLOCK ? to : from + SIM_BLOCK;
			sim_flash_erase(&d->flash, from, (uint32_t)(to - from));
			*work += sim_t_erase(d, from, (uint32_t)(to - from));
			l->op_erased_to = (uint32_t)to;
		}
	}
	if (d->faults.flash_program_fail)
		return l->stub ? STUB_SPI_FAIL : ROM_FLASH_WRITE_ERR;
	sim_flash_program(&d->flash, addr, data, len);
	*work += sim_t_program(d, len);
	return 0;
}

/* Unplug-at-percent: true when the device went away. */
static bool maybe_unplug(sim_device *d)
{
	struct sim_loader *l = &d->ld;
	int pct = d->faults.unplug_at_percent;
	if (pct <= 0 || l->op_total_bytes == 0)
		return false;
	if ((uint64_t)l->op_written * 100 >= (uint64_t)pct * l->op_total_bytes) {
		sim_do_unplug(d);
		return true;
	}
	return false;
}

static void flash_data(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint32_t csum, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	bool defl = op == OP_DEFL_DATA;
	if (defl && !l->stub && !d->chip->rom_has_defl) {
		unsupported(d, op, t);
		return;
	}
	uint64_t s = start_time(d, t);
	if (n < 16 || le32(p) != n - 16) {
		fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t len = le32(p), seq = le32(p + 4);
	const uint8_t *data = p + 16;
	if (xor_sum(data, len) != (csum & 0xFF)) {
		fail2(d, op, ROM_BAD_CHECKSUM, STUB_BAD_CHECKSUM, s);
		return;
	}
	if (l->op != (defl ? 2 : 1)) {
		/* ROM: sim choice of code for "data without begin" */
		fail2(d, op, ROM_RESULT_WRONG, STUB_NOT_IN_FLASH, s);
		return;
	}
	uint64_t work = 0;
	int err = 0;
	if (!defl) {
		uint32_t addr, wlen = len;
		if (l->stub) {
			/* the stub writes sequentially and drops padding past the
			 * declared size */
			if (l->op_written >= l->op_size && len) {
				fail(d, op, STUB_TOO_MUCH, s);
				return;
			}
			if (wlen > l->op_size - l->op_written)
				wlen = l->op_size - l->op_written;
			addr = l->op_offset + l->op_written;
		} else {
			addr = l->op_offset + seq * l->op_block_size;
		}
		err = program(d, addr, data, wlen, &work);
		if (!err)
			l->op_written += wlen;
	} else {
		z_stream *z = &l->zs;
		z->next_in = (uint8_t *)data;
		z->avail_in = len;
		while (!err) {
			if (z->avail_in == 0)
				break;
			z->next_out = l->zbuf;
			z->avail_out = ZBUF_SIZE;
			int r = inflate(z, Z_NO_FLUSH);
			uint32_t got = ZBUF_SIZE - z->avail_out;
			if (got) {
				if (l->stub && (uint64_t)l->op_written + got > l->op_size) {
					err = STUB_TOO_MUCH;
					break;
				}
				err = program(d, l->op_offset + l->op_written, l->zbuf, got, &work);
				if (!err)
					l->op_written += got;
			}
			if (r == Z_STREAM_END) {
				if (z->avail_in)   /* trailing bytes after the stream */
					err = l->stub ? STUB_INFLATE : ROM_INFLATE_ERR;
				break;
			}
			if (r == Z_BUF_ERROR && got == 0)
				break;
			if (r != Z_OK) {
				bool adler = z->msg && strstr(z->msg, "check");
				err = l->stub ? STUB_INFLATE : (adler ? ROM_ADLER_ERR : ROM_INFLATE_ERR);
			}
		}
	}
	l->op_next_seq = seq + 1;
	if (maybe_unplug(d))
		return;
	if (l->stub) {
		/* ACK on receipt once the previous block is on flash; this block
		 * is programmed while the next one arrives */
		uint64_t ack = s > d->prog_done_ns ? s : d->prog_done_ns;
		if (err == STUB_SPI_FAIL) {
			/* found while programming, after the ACK: reported with the
			 * next command (esp-flasher-stub) */
			l->deferred_err = STUB_SPI_FAIL;
			err = 0;
		}
		d->prog_done_ns = ack + work;
		d->busy_ns = ack;
		if (err)
			fail(d, op, (uint8_t)err, ack);
		else
			ok(d, op, 0, NULL, 0, ack);
	} else {
		/* the ROM programs before it answers */
		s += work;
		d->busy_ns = s;
		if (err)
			fail(d, op, (uint8_t)err, s);
		else
			ok(d, op, 0, NULL, 0, s);
	}
}

static void flash_end(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	bool defl = op == OP_DEFL_END;
	if (defl && !l->stub && !d->chip->rom_has_defl) {
		unsupported(d, op, t);
		return;
	}
	uint64_t s = start_time(d, t);
	if (n != 4) {
		fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t run = le32(p);
	if (l->stub) {
		/* a barrier: answers once everything is on flash */
		if (s < d->prog_done_ns)
			s = d->prog_done_ns;
		d->busy_ns = s;
		bool short_write = l->op && l->op_written < l->op_size;
		if (l->op == 2 && l->zs_live) {
			inflateEnd(&l->zs);
			l->zs_live = false;
		}
		l->op = 0;
		if (short_write)
			fail(d, op, STUB_BAD_LEN, s);
		else
			ok(d, op, 0, NULL, 0, s);
		return;
	}
	/* ROM: leaves the loader.  1 = run user code, 0 = reboot, which does
	 * not re-sample the straps and so lands in download mode again. */
	ok(d, op, 0, NULL, 0, s);
	if (l->zs_live) {
		inflateEnd(&l->zs);
		l->zs_live = false;
	}
	l->op = 0;
	uint64_t when = s / 1000 + 1;
	if (run)
		sim_boot_app(d, when, 4);
	else
		sim_chip_reset(d, false, 4, when);
}

/* ---- RAM download and the stub ---- */

static void mem_begin(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	uint64_t s = start_time(d, t);
	if (n != 16) {
		fail2(d, OP_MEM_BEGIN, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t size = le32(p), blocks = le32(p + 4), bsize = le32(p + 8), addr = le32(p + 12);
	if (size > 512 * 1024) {
		fail2(d, OP_MEM_BEGIN, ROM_RAM_SIZE, 0x01, s);
		return;
	}
	int i;
	for (i = 0; i < l->n_segs; i++)
		if (l->segs[i].addr == addr)
			break;
	if (i == l->n_segs) {
		if (l->n_segs == SIM_MAX_SEGS) {
			fail2(d, OP_MEM_BEGIN, ROM_RAM_ADDR, 0x01, s);
			return;
		}
		l->n_segs++;
		l->segs[i].data = NULL;
	}
	struct sim_seg *g = &l->segs[i];
	free(g->data);
	g->data = calloc(1, size ? size : 1);
	g->addr = addr;
	g->size = size;
	g->filled = 0;
	l->mem_active = true;
	l->mem_seg = i;
	l->mem_blocks = blocks;
	l->mem_block_size = bsize;
	l->mem_next_seq = 0;
	ok(d, OP_MEM_BEGIN, 0, NULL, 0, s);
}

static void mem_data(sim_device *d, const uint8_t *p, size_t n, uint32_t csum, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	uint64_t s = start_time(d, t);
	if (n < 16 || le32(p) != n - 16) {
		fail2(d, OP_MEM_DATA, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t len = le32(p), seq = le32(p + 4);
	if (xor_sum(p + 16, len) != (csum & 0xFF)) {
		fail2(d, OP_MEM_DATA, ROM_BAD_CHECKSUM, STUB_BAD_CHECKSUM, s);
		return;
	}
	if (!l->mem_active) {
		fail2(d, OP_MEM_DATA, ROM_RESULT_WRONG, STUB_NOT_IN_FLASH, s);
		return;
	}
	struct sim_seg *g = &l->segs[l->mem_seg];
	uint64_t at = (uint64_t)seq * l->mem_block_size;
	if (at + len > g->size) {
		fail2(d, OP_MEM_DATA, ROM_RAM_SIZE, STUB_TOO_MUCH, s);
		return;
	}
	memcpy(g->data + at, p + 16, len);
	if (at + len > g->filled)
		g->filled = (uint32_t)(at + len);
	l->mem_next_seq = seq + 1;
	ok(d, OP_MEM_DATA, 0, NULL, 0, s);
}

static void mem_end(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	uint64_t s = start_time(d, t);
	if (n != 8) {
		fail2(d, OP_MEM_END, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t no_exec = le32(p), entry = le32(p + 4);
	l->mem_active = false;
	ok(d, OP_MEM_END, 0, NULL, 0, s);
	if (no_exec || l->stub)
		return;
	bool in_image = false;
	for (int i = 0; i < l->n_segs; i++)
		if (entry >= l->segs[i].addr && entry < l->segs[i].addr + l->segs[i].filled)
			in_image = true;
	if (!in_image)
		return;   /* nothing uploaded there: the ROM keeps running */
	/* the uploaded code runs: it is a flasher stub; keep its segments */
	struct sim_seg keep[SIM_MAX_SEGS];
	int nk = l->n_segs;
	memcpy(keep, l->segs, sizeof keep);
	l->n_segs = 0;
	sim_loader_init(d, true);
	memcpy(d->ld.segs, keep, sizeof keep);
	d->ld.n_segs = nk;
	d->mode = SIM_MODE_STUB;
	/* a stub needs a moment to start, then greets */
	sim_raw_frame(d, (const uint8_t *)"OHAI", 4, s + (d->timing ? 2000000ull : 0));
}

/* ---- the rest ---- */

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
		ok(d, OP_SYNC, v, NULL, 0, s);
}

static void security_info(sim_device *d, uint64_t t)
{
	int len = d->chip->security_info_len;
	if (len == 0) {
		unsupported(d, OP_SECURITY_INFO, t);
		return;
	}
	uint8_t b[20] = { 0 };
	/* flags 0 (no secure boot/download), crypt count 0, key purposes 0 */
	if (len >= 20) {
		put32(b + 12, (uint32_t)d->chip->image_chip_id);
		put32(b + 16, 0);
	}
	ok(d, OP_SECURITY_INFO, 0, b, (size_t)len, start_time(d, t));
}

static void md5_cmd(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	if (!l->stub && !d->chip->rom_has_md5) {
		unsupported(d, OP_MD5, t);
		return;
	}
	uint64_t s = start_time(d, t);
	if (l->stub && s < d->prog_done_ns)
		s = d->prog_done_ns;
	if (n != 16) {
		fail2(d, OP_MD5, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t off = le32(p), size = le32(p + 4);
	if (!range_ok(l->stub ? d->flash_size : spi_limit(d), off, size)) {
		fail2(d, OP_MD5, ROM_READ_LEN_ERR, STUB_SPI_FAIL, s);
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
		ok(d, OP_MD5, 0, dig, 16, s);
	} else {
		char hex[33];
		for (int i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", dig[i]);
		ok(d, OP_MD5, 0, (const uint8_t *)hex, 32, s);
	}
}

static void read_flash_slow(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	if (d->ld.stub || !d->chip->rom_has_read_slow) {
		unsupported(d, OP_READ_FLASH_SLOW, t);
		return;
	}
	uint64_t s = start_time(d, t);
	if (n != 8) {
		fail(d, OP_READ_FLASH_SLOW, ROM_INVALID_MSG, s);
		return;
	}
	uint32_t off = le32(p), len = le32(p + 4);
	uint32_t limit = spi_limit(d);
	if (len > 64 || off >= limit) {
		fail(d, OP_READ_FLASH_SLOW, ROM_READ_LEN_ERR, s);
		return;
	}
	uint8_t buf[64];
	memset(buf, 0xFF, sizeof buf);
	uint32_t avail = limit - off < 64 ? limit - off : 64;
	if (d->ld.attached)
		memcpy(buf, d->flash.mem + off, avail);
	ok(d, OP_READ_FLASH_SLOW, 0, buf, 64, s + sim_t_md5(d, 64));
}

/* Stub READ_FLASH: send packets while fewer than max_in_flight bytes are
 * unacknowledged (legacy stub rule; with packet >= max_in_flight that is
 * one packet at a time, as in esp-flasher-stub), then the MD5. */
static void read_flash_pump(sim_device *d, uint64_t t)
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

static void read_flash(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	uint64_t s = start_time(d, t);
	if (s < d->prog_done_ns)
		s = d->prog_done_ns;
	if (n != 16) {
		fail(d, OP_READ_FLASH, STUB_BAD_LEN, s);
		return;
	}
	uint32_t off = le32(p), len = le32(p + 4), pkt = le32(p + 8), inflight = le32(p + 12);
	if (!range_ok(d->flash_size, off, len)) {
		fail(d, OP_READ_FLASH, STUB_SPI_FAIL, s);
		return;
	}
	ok(d, OP_READ_FLASH, 0, NULL, 0, s);
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
	read_flash_pump(d, s);
}

static void erase_cmd(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint64_t t)
{
	uint64_t s = start_time(d, t);
	if (s < d->prog_done_ns)
		s = d->prog_done_ns;
	if (op == OP_ERASE_FLASH) {
		sim_flash_erase_all(&d->flash);
		s += sim_t_chip_erase(d);
	} else {
		if (n != 8) {
			fail(d, op, STUB_BAD_LEN, s);
			return;
		}
		uint32_t off = le32(p), size = le32(p + 4);
		if (off % SIM_SECTOR || size % SIM_SECTOR) {
			fail(d, op, STUB_BAD_LEN, s);
			return;
		}
		if (!range_ok(d->flash_size, off, size)) {
			fail(d, op, STUB_SPI_FAIL, s);
			return;
		}
		sim_flash_erase(&d->flash, off, size);
		s += sim_t_erase(d, off, size);
	}
	d->busy_ns = s;
	ok(d, op, 0, NULL, 0, s);
}

static void write_reg(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	uint64_t s = start_time(d, t);
	if (n == 0 || n % 16 || (!d->ld.stub && n > 32)) {
		fail2(d, OP_WRITE_REG, ROM_INVALID_MSG, STUB_BAD_LEN, s);
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
	ok(d, OP_WRITE_REG, 0, NULL, 0, s);
}

static void change_baud(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	if (!d->ld.stub && !d->chip->rom_has_change_baud) {
		unsupported(d, OP_CHANGE_BAUD, t);
		return;
	}
	uint64_t s = start_time(d, t);
	if (n != 8) {
		fail2(d, OP_CHANGE_BAUD, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t nb = le32(p);
	if (nb < 300 || nb > 5000000) {
		fail2(d, OP_CHANGE_BAUD, ROM_BAD_PARAM, STUB_BAD_LEN, s);
		return;
	}
	ok(d, OP_CHANGE_BAUD, 0, NULL, 0, s);
	/* after the reply: everything queued so far went out at the old rate */
	if (!d->native_usb)
		d->dev_baud = nb;
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
			read_flash_pump(d, start_time(d, t));
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
		fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, start_time(d, t));
		return;
	}
	if (l->stub && l->deferred_err) {
		uint8_t e = l->deferred_err;
		l->deferred_err = 0;
		fail(d, op, e, start_time(d, t));
		return;
	}
	switch (op) {
	case OP_SYNC: sync_cmd(d, p, pn, t); return;
	case OP_READ_REG:
		if (pn != 4)
			fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, start_time(d, t));
		else
			ok(d, op, sim_reg_read(d, le32(p)), NULL, 0, start_time(d, t));
		return;
	case OP_WRITE_REG: write_reg(d, p, pn, t); return;
	case OP_FLASH_BEGIN: case OP_DEFL_BEGIN: flash_begin(d, op, p, pn, t); return;
	case OP_FLASH_DATA: case OP_DEFL_DATA: flash_data(d, op, p, pn, csum, t); return;
	case OP_FLASH_END: case OP_DEFL_END: flash_end(d, op, p, pn, t); return;
	case OP_MEM_BEGIN: mem_begin(d, p, pn, t); return;
	case OP_MEM_DATA: mem_data(d, p, pn, csum, t); return;
	case OP_MEM_END: mem_end(d, p, pn, t); return;
	case OP_SPI_SET_PARAMS:
		if (!l->stub && d->chip->id == ESP_CHIP_ESP8266) {
			unsupported(d, op, t);
		} else if (pn != 24) {
			fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, start_time(d, t));
		} else {
			l->spi_size = le32(p + 4);
			ok(d, op, 0, NULL, 0, start_time(d, t));
		}
		return;
	case OP_SPI_ATTACH:
		if (!l->stub && !d->chip->rom_has_spi_attach) {
			unsupported(d, op, t);
		} else if (pn != (l->stub ? 4u : 8u)) {
			fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, start_time(d, t));
		} else {
			l->attached = true;
			ok(d, op, 0, NULL, 0, start_time(d, t));
		}
		return;
	case OP_READ_FLASH_SLOW: read_flash_slow(d, p, pn, t); return;
	case OP_CHANGE_BAUD: change_baud(d, p, pn, t); return;
	case OP_MD5: md5_cmd(d, p, pn, t); return;
	case OP_SECURITY_INFO: security_info(d, t); return;
	default: break;
	}
	if (!l->stub) {
		unsupported(d, op, t);
		return;
	}
	switch (op) {
	case OP_ERASE_FLASH: case OP_ERASE_REGION: erase_cmd(d, op, p, pn, t); return;
	case OP_READ_FLASH: read_flash(d, p, pn, t); return;
	case OP_RUN_USER_CODE: /* no reply */
		sim_boot_app(d, start_time(d, t) / 1000 + 1, 4);
		return;
	default: unsupported(d, op, t); return;
	}
}
