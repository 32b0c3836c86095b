/* Sizes of the compressed blocks sent to a stub.
 *
 * A stub ACKs a block on receipt and programs it while the next one
 * arrives; it has room for one block being received and one being
 * written (the legacy stub's two UART buffers), so the host may not run
 * further ahead.  When a block's flash work (erase + program) takes longer
 * than the next block's time on the wire, the link idles for the
 * difference.  With fixed 16 KiB blocks that happens where the inflated
 * data enters a new 64 KiB flash block (a 150 ms block erase on top of
 * the programming) and where data compresses very well (one block expands
 * to many pages): at 921600 baud ~14% of a factory-image flash is such
 * idling.  So a block is cut short when its estimated flash work would
 * exceed the wire time of a full block: the erase then overlaps the next
 * full block's transfer.  Estimates use typical NOR timings (W25Q32JV
 * datasheet, typ.: 64 KiB block erase 150 ms, 4 KiB sector erase 45 ms,
 * 256-byte page program 0.7 ms); wrong figures only cost a few extra
 * small blocks.  Both stubs take blocks shorter than the declared size
 * (the last one always is), within num_blocks x block_size in total.
 *
 * Not done on native USB (~1 MB/s: the flash, not the link, is the
 * bottleneck and short blocks would only add round trips). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "loader_priv.h"

#define STEP 256u                 /* compressed bytes per map entry */
#define MIN_BLOCK 2048u
#define CUT_STEP 512u
#define US_BLOCK_ERASE 150000u
#define US_SECTOR_ERASE 45000u
#define US_PAGE 700u
#define FLASH_BLOCK 0x10000u

struct est {
	uint32_t offset, end;         /* flash range of the write */
	uint64_t erased_to;           /* what the stub has erased so far */
};

/* Flash work (µs) for the stub to program raw bytes [r0, r1) of the write. */
static uint64_t work_us(struct est *e, size_t r0, size_t r1)
{
	uint64_t us = (uint64_t)(r1 - r0 + 255) / 256 * US_PAGE;
	uint64_t want = (uint64_t)e->offset + r1;
	while (e->erased_to < want) {
		/* a stub erases a 64 KiB block where aligned and covered */
		if (e->erased_to % FLASH_BLOCK == 0 && e->erased_to + FLASH_BLOCK <= e->end) {
			us += US_BLOCK_ERASE;
			e->erased_to += FLASH_BLOCK;
		} else {
			us += US_SECTOR_ERASE;
			e->erased_to += ESP_SECTOR;
		}
	}
	return us;
}

/* raw[k]: inflated bytes available after k*STEP compressed bytes. */
static uint32_t *inflate_map(const uint8_t *z, size_t zlen, size_t raw_len, size_t *count)
{
	size_t n = zlen / STEP + 2;
	uint32_t *raw = malloc(n * sizeof *raw);
	uint8_t *out = malloc(0x10000);
	z_stream s;
	memset(&s, 0, sizeof s);
	if (!raw || !out || inflateInit(&s) != Z_OK) {
		free(raw);
		free(out);
		return NULL;
	}
	size_t k = 0;
	raw[k++] = 0;
	for (size_t pos = 0; pos < zlen; pos += STEP) {
		s.next_in = (uint8_t *)z + pos;
		s.avail_in = (uInt)(zlen - pos < STEP ? zlen - pos : STEP);
		int r = Z_OK;
		do {
			s.next_out = out;
			s.avail_out = 0x10000;
			r = inflate(&s, Z_NO_FLUSH);
		} while (r == Z_OK && s.avail_out == 0);
		raw[k++] = (uint32_t)(s.total_out < raw_len ? s.total_out : raw_len);
		if (r != Z_OK && r != Z_BUF_ERROR)
			break;
	}
	while (k < n)
		raw[k++] = (uint32_t)raw_len;
	inflateEnd(&s);
	free(out);
	*count = n;
	return raw;
}

static size_t raw_after(const uint32_t *raw, size_t count, size_t zlen, size_t raw_len, size_t c)
{
	if (c >= zlen)
		return raw_len;
	size_t k = c / STEP;
	return raw[k < count ? k : count - 1];
}

uint32_t *esp__plan_defl_blocks(const esp_loader *l, uint32_t offset, const uint8_t *z, size_t zlen,
				size_t raw_len, uint32_t bs, size_t *nblocks)
{
	*nblocks = 0;
	if (!l->stub || (l->t->flags & ESP_TR_NATIVE_USB) || !l->t->baud || bs <= MIN_BLOCK)
		return NULL;
	size_t count;
	uint32_t *raw = inflate_map(z, zlen, raw_len, &count);
	if (!raw)
		return NULL;
	size_t cap = zlen / MIN_BLOCK + 2;
	uint32_t *sizes = malloc(cap * sizeof *sizes);
	if (!sizes) {
		free(raw);
		return NULL;
	}
	/* wire time of a full block, 10 bits a byte */
	uint64_t full_us = (uint64_t)(bs + 26) * 10000000u / l->t->baud;
	struct est e = { offset, offset + (uint32_t)raw_len, offset };
	size_t c = 0, r = 0, nb = 0;
	while (c < zlen && nb < cap) {
		size_t n = zlen - c < bs ? zlen - c : bs;
		for (;;) {
			struct est t = e;
			size_t r1 = raw_after(raw, count, zlen, raw_len, c + n);
			if (n <= MIN_BLOCK || work_us(&t, r, r1) <= full_us)
				break;
			n = n > MIN_BLOCK + CUT_STEP ? n - CUT_STEP : MIN_BLOCK;
		}
		size_t r1 = raw_after(raw, count, zlen, raw_len, c + n);
		work_us(&e, r, r1);
		r = r1;
		c += n;
		sizes[nb++] = (uint32_t)n;
	}
	free(raw);
	if (c < zlen) {
		free(sizes);
		return NULL;
	}
	*nblocks = nb;
	return sizes;
}
