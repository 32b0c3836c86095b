/* Flash writes as the ROM and the stub do them: FLASH_BEGIN (ROM erases
 * up front, with the ESP8266 ROM's erase-size bug; the stub erases as it
 * writes), FLASH_DATA and FLASH_DEFL_DATA (zlib inflate), FLASH_END (ROM:
 * leaves the loader; stub: barrier), and the stub's erase commands.
 * Timing: the ROM answers a block after programming it, the stub on
 * receipt while it programs the previous one (PROTOCOL.md A9, A10). */
#include <stdlib.h>
#include <string.h>
#include "sim_loader.h"

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

void sim_ld_flash_begin(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	bool defl = op == OP_DEFL_BEGIN;
	if (defl && !l->stub && !d->chip->rom_has_defl) {
		sim_ld_unsupported(d, op, t);
		return;
	}
	if (n != 16 && n != 20) {
		sim_ld_fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, t);
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
			sim_ld_fail(d, op, ROM_FLASH_WRITE_ERR, s);
			return;
		}
		if (e_len && !range_ok(sim_ld_spi_limit(d), e_off, e_len)) {
			/* ROM: 2 MB until SPI_SET_PARAMS (sim choice of code) */
			sim_ld_fail(d, op, ROM_BAD_PARAM, s);
			return;
		}
		if (e_len) {
			sim_flash_erase(&d->flash, e_off, e_len);
			s += sim_t_erase(d, e_off, e_len);
		}
	} else {
		if (!range_ok(d->flash_size, off, size)) {
			sim_ld_fail(d, op, STUB_SPI_FAIL, s);
			return;
		}
		if (bsize > 0x4000) {
			sim_ld_fail(d, op, STUB_BAD_BLOCKSIZE, s);
			return;
		}
		/* the stub erases as it writes; wait for earlier programming */
		if (s < d->prog_done_ns)
			s = d->prog_done_ns;
	}
	if (defl) {
		memset(&l->zs, 0, sizeof l->zs);
		if (inflateInit(&l->zs) != Z_OK) {
			sim_ld_fail2(d, op, ROM_INFLATE_ERR, STUB_INFLATE, s);
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
	sim_ld_ok(d, op, 0, NULL, 0, s);
}

/* Program len bytes at the current write position.  Returns 0, or the
 * error to report; *work gets the flash time. */
static int program(sim_device *d, uint32_t addr, const uint8_t *data, uint32_t len, uint64_t *work)
{
	struct sim_loader *l = &d->ld;
	uint32_t limit = l->stub ? d->flash_size : sim_ld_spi_limit(d);
	if (!l->attached && len)
		return ROM_FLASH_WRITE_ERR;
	if (!range_ok(limit, addr, len))
		return l->stub ? STUB_SPI_FAIL : ROM_FLASH_WRITE_ERR;
	if (l->stub) {
		/* erase just in time: sector by sector up to the next 64 KiB
		 * boundary, then 64 KiB blocks while the declared size covers
		 * them (legacy stub start_next_erase; esp-flasher-stub alike) */
		uint64_t end = ((uint64_t)addr + len + SIM_SECTOR - 1) & ~(uint64_t)(SIM_SECTOR - 1);
		uint64_t declared_end = (uint64_t)l->op_offset + l->op_size;
		uint64_t a = l->op_erased_to > (addr & ~(SIM_SECTOR - 1)) ? l->op_erased_to : (addr & ~(SIM_SECTOR - 1));
		if (end > d->flash_size)
			end = d->flash_size;
		while (a < end) {
			uint32_t unit = SIM_SECTOR;
			if (a % SIM_BLOCK == 0 && a + SIM_BLOCK <= declared_end && a + SIM_BLOCK <= d->flash_size)
				unit = SIM_BLOCK;
			sim_flash_erase(&d->flash, (uint32_t)a, unit);
			*work += sim_t_erase(d, (uint32_t)a, unit);
			a += unit;
		}
		if (a > l->op_erased_to)
			l->op_erased_to = (uint32_t)a;
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

void sim_ld_flash_data(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint32_t csum, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	bool defl = op == OP_DEFL_DATA;
	if (defl && !l->stub && !d->chip->rom_has_defl) {
		sim_ld_unsupported(d, op, t);
		return;
	}
	uint64_t s = start_time(d, t);
	if (n < 16 || le32(p) != n - 16) {
		sim_ld_fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t len = le32(p), seq = le32(p + 4);
	const uint8_t *data = p + 16;
	if (sim_ld_rom_seq(d, l->op == (defl ? 2 : 1), &l->op_next_seq, seq, op, s))
		return;
	if (xor_sum(data, len) != (csum & 0xFF)) {
		sim_ld_fail2(d, op, ROM_BAD_CHECKSUM, STUB_BAD_CHECKSUM, s);
		return;
	}
	if (l->op != (defl ? 2 : 1)) {
		/* ROM: sim choice of code for "data without begin" */
		sim_ld_fail2(d, op, ROM_RESULT_WRONG, STUB_NOT_IN_FLASH, s);
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
				sim_ld_fail(d, op, STUB_TOO_MUCH, s);
				return;
			}
			if (wlen > l->op_size - l->op_written)
				wlen = l->op_size - l->op_written;
			addr = l->op_offset + l->op_written;
		} else {
			/* the ROM too writes at a running position, whatever
			 * the block's number (measured: after blocks 0 and 1
			 * were refused, block 1 landed at the start) */
			addr = l->op_offset + l->op_written;
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
	if (l->stub)
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
			sim_ld_fail(d, op, (uint8_t)err, ack);
		else
			sim_ld_ok(d, op, 0, NULL, 0, ack);
	} else {
		/* the ROM programs before it answers */
		s += work;
		d->busy_ns = s;
		if (err)
			sim_ld_fail(d, op, (uint8_t)err, s);
		else
			sim_ld_ok(d, op, 0, NULL, 0, s);
	}
}

void sim_ld_flash_end(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	bool defl = op == OP_DEFL_END;
	if (defl && !l->stub && !d->chip->rom_has_defl) {
		sim_ld_unsupported(d, op, t);
		return;
	}
	uint64_t s = start_time(d, t);
	if (n != 4) {
		sim_ld_fail2(d, op, ROM_INVALID_MSG, STUB_BAD_LEN, s);
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
		if (l->stub_legacy) {
			/* the legacy stub answers, then with word 0 resets the
			 * CPU: the ROM starts again without re-sampling the
			 * straps (esptool's way back to the ROM loader) */
			sim_ld_ok(d, op, 0, NULL, 0, s);
			if (run == 0)
				sim_chip_reset(d, false, 4, s / 1000 + 1);
			return;
		}
		if (short_write)
			sim_ld_fail(d, op, STUB_BAD_LEN, s);
		else
			sim_ld_ok(d, op, 0, NULL, 0, s);
		return;
	}
	/* ROM: leaves the loader.  1 = run user code, 0 = reboot, which does
	 * not re-sample the straps and so lands in download mode again. */
	sim_ld_ok(d, op, 0, NULL, 0, s);
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

void sim_ld_erase_cmd(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint64_t t)
{
	uint64_t s = start_time(d, t);
	if (s < d->prog_done_ns)
		s = d->prog_done_ns;
	if (op == OP_ERASE_FLASH) {
		sim_flash_erase_all(&d->flash);
		s += sim_t_chip_erase(d);
	} else {
		if (n != 8) {
			sim_ld_fail(d, op, STUB_BAD_LEN, s);
			return;
		}
		uint32_t off = le32(p), size = le32(p + 4);
		if (off % SIM_SECTOR || size % SIM_SECTOR) {
			sim_ld_fail(d, op, STUB_BAD_LEN, s);
			return;
		}
		if (!range_ok(d->flash_size, off, size)) {
			sim_ld_fail(d, op, STUB_SPI_FAIL, s);
			return;
		}
		sim_flash_erase(&d->flash, off, size);
		s += sim_t_erase(d, off, size);
	}
	d->busy_ns = s;
	sim_ld_ok(d, op, 0, NULL, 0, s);
}
