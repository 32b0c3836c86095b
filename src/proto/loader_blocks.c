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
 * idling.
 *
 * So the block sizes are planned, exactly, for the whole stream: with one
 * block in flight, block i+1's ACK comes max(wire(i+1), work(i)) after
 * block i's, the first block's wire time and the last block's work are
 * never overlapped, and each block costs a turnaround.  A dynamic
 * programme over the cut points (every STEP compressed bytes, blocks of
 * 1..bs/STEP steps) minimises that sum: where data compresses well it
 * sends short blocks so that a block erase overlaps a full next block,
 * and it keeps the first block short (the flash idles while it travels)
 * and the last one light (nothing overlaps its programming).  Greedy
 * cutting, the previous plan, left C3 factory images ~5% slower.  The
 * flash figures are typical NOR timings (W25Q32JV datasheet, typ.: 64 KiB
 * block erase 150 ms, 4 KiB sector erase 45 ms, 256-byte page program
 * 0.7 ms); wrong figures only cost some overlap, never correctness.  Both
 * stubs take blocks shorter than the declared size (the last one always
 * is), within num_blocks x block_size in total.
 *
 * Not done on native USB (~1 MB/s: the flash, not the link, is the
 * bottleneck and short blocks would only add round trips). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "loader_priv.h"

#define STEP 256u                 /* cut points: every STEP compressed bytes */
#define US_BLOCK_ERASE 150000u
#define US_SECTOR_ERASE 45000u
#define US_PAGE 700u
#define US_TURNAROUND 1000u       /* per block, when not measured (loader_baud.c) */
#define US_TURNAROUND_MIN 300u
#define FRAME_BYTES 26u           /* command header, data header, SLIP ends, reply */
#define FLASH_BLOCK 0x10000u

/* raw[k]: inflated bytes available after k*STEP compressed bytes;
 * esc[k]: SLIP escapes (0xC0, 0xDB double) in those bytes. */
static int inflate_map(const uint8_t *z, size_t zlen, size_t raw_len, size_t n, uint32_t *raw, uint32_t *esc)
{
	uint8_t *out = malloc(0x10000);
	z_stream s;
	memset(&s, 0, sizeof s);
	if (!out || inflateInit(&s) != Z_OK) {
		free(out);
		return -ENOMEM;
	}
	raw[0] = esc[0] = 0;
	int r = Z_OK;
	for (size_t k = 1; k <= n; k++) {
		size_t pos = (k - 1) * STEP, len = zlen - pos < STEP ? zlen - pos : STEP;
		uint32_t e = 0;
		for (size_t i = 0; i < len; i++)
			e += z[pos + i] == 0xC0 || z[pos + i] == 0xDB;
		esc[k] = esc[k - 1] + e;
		s.next_in = (uint8_t *)z + pos;
		s.avail_in = (uInt)len;
		while (r == Z_OK && s.avail_in) {
			s.next_out = out;
			s.avail_out = 0x10000;
			r = inflate(&s, Z_NO_FLUSH);
		}
		raw[k] = (uint32_t)(s.total_out < raw_len ? s.total_out : raw_len);
	}
	raw[n] = (uint32_t)raw_len;
	inflateEnd(&s);
	free(out);
	return 0;
}

/* Erase time (µs) spent by the stub before it has written raw bytes
 * [0, r): it erases just in time, a 64 KiB block where aligned and inside
 * the declared size, else a 4 KiB sector.  erase_us[k] for r = raw[k],
 * computed in one walk since raw[] never decreases. */
static void erase_map(uint32_t offset, size_t raw_len, size_t n, const uint32_t *raw, uint64_t *erase_us)
{
	uint64_t end = (uint64_t)offset + raw_len, at = offset & ~(uint64_t)(ESP_SECTOR - 1), us = 0;
	for (size_t k = 0; k <= n; k++) {
		uint64_t want = (uint64_t)offset + raw[k];
		while (at < want) {
			if (at % FLASH_BLOCK == 0 && at + FLASH_BLOCK <= end) {
				us += US_BLOCK_ERASE;
				at += FLASH_BLOCK;
			} else {
				us += US_SECTOR_ERASE;
				at += ESP_SECTOR;
			}
		}
		erase_us[k] = us;
	}
}

uint32_t *esp__plan_defl_blocks(const esp_loader *l, uint32_t offset, const uint8_t *z, size_t zlen,
				size_t raw_len, uint32_t bs, size_t *nblocks)
{
	*nblocks = 0;
	if (!l->stub || (l->t->flags & ESP_TR_NATIVE_USB) || !l->t->baud || bs < 2 * STEP || !zlen)
		return NULL;
	size_t n = (zlen + STEP - 1) / STEP;      /* cut points 1..n */
	size_t K = bs / STEP;                     /* longest block, in steps */
	uint32_t *raw = malloc((n + 1) * sizeof *raw);
	uint32_t *esc = malloc((n + 1) * sizeof *esc);
	uint64_t *erase = malloc((n + 1) * sizeof *erase);
	/* best[j*K + L-1]: time (µs) of the ACK of a block that ends at cut j
	 * and is L steps long, i.e. when its flash work starts; from[]: the
	 * length of the block before it (0: it is the first). */
	uint32_t *best = malloc((n + 1) * K * sizeof *best);
	uint8_t *from = malloc((n + 1) * K);
	uint32_t *sizes = NULL;
	if (!raw || !esc || !erase || !best || !from || K > 255 ||
	    inflate_map(z, zlen, raw_len, n, raw, esc) < 0)
		goto out;
	erase_map(offset, raw_len, n, raw, erase);
	uint64_t ns_per_byte = 10000000000ull / l->t->baud;   /* 10 bits a byte */
	uint64_t turn = !l->turnaround_us ? US_TURNAROUND
			: l->turnaround_us < US_TURNAROUND_MIN ? US_TURNAROUND_MIN : l->turnaround_us;
#define CUT_BYTES(j) ((j) * STEP < zlen ? (j) * STEP : zlen)
#define WIRE(i, j) ((CUT_BYTES(j) - CUT_BYTES(i) + esc[j] - esc[i] + FRAME_BYTES) * ns_per_byte / 1000u)
#define WORK(i, j) ((uint64_t)(raw[j] - raw[i] + 255) / 256 * US_PAGE + erase[j] - erase[i])
	for (size_t i = 0; i < (n + 1) * K; i++)
		best[i] = UINT32_MAX;
	for (size_t L = 1; L <= K && L <= n; L++) {
		best[L * K + L - 1] = (uint32_t)WIRE(0, L);
		from[L * K + L - 1] = 0;
	}
	for (size_t j = 1; j < n; j++) {
		for (size_t L = 1; L <= K && L <= j; L++) {
			uint32_t at = best[j * K + L - 1];
			if (at == UINT32_MAX)
				continue;
			uint64_t work = WORK(j - L, j);
			for (size_t L2 = 1; L2 <= K && j + L2 <= n; L2++) {
				uint64_t wire = WIRE(j, j + L2);
				uint64_t t = at + (wire > work ? wire : work) + turn;
				uint32_t *b = &best[(j + L2) * K + L2 - 1];
				if (t < *b) {
					*b = t > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)t;
					from[(j + L2) * K + L2 - 1] = (uint8_t)L;
				}
			}
		}
	}
	uint64_t fin = UINT64_MAX;
	size_t lastL = 0;
	for (size_t L = 1; L <= K && L <= n; L++) {
		uint32_t at = best[n * K + L - 1];
		if (at == UINT32_MAX)
			continue;
		uint64_t t = at + WORK(n - L, n);
		if (t < fin) {
			fin = t;
			lastL = L;
		}
	}
#undef CUT_BYTES
#undef WIRE
#undef WORK
	if (!lastL)
		goto out;
	size_t count = 0;
	for (size_t j = n, L = lastL; L; count++) {
		size_t pl = from[j * K + L - 1];
		j -= L;
		L = pl;
	}
	sizes = malloc(count * sizeof *sizes);
	if (!sizes)
		goto out;
	size_t idx = count;
	for (size_t j = n, L = lastL; L;) {
		size_t pl = from[j * K + L - 1];
		size_t hi = j * STEP < zlen ? j * STEP : zlen;
		sizes[--idx] = (uint32_t)(hi - (j - L) * STEP);
		j -= L;
		L = pl;
	}
	*nblocks = count;
out:
	free(raw);
	free(esc);
	free(erase);
	free(best);
	free(from);
	return sizes;
}
