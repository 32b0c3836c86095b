/* The best time any client can flash an image in on the simulator's
 * timing model, given how a flasher stub takes data: one block being
 * received while the one before it is programmed (two buffers), so block
 * i+1's ACK comes max(its wire time, block i's flash work) after block
 * i's, the first block's wire time and the last block's work overlap
 * nothing, and blocks carry at most 16 KiB.  bench.mjs's "bound" column,
 * max(wire, flash), assumes perfect overlap, which this rule rules out
 * where data compresses well (a block expands into more flash work than
 * the next block's transfer covers).  A dynamic programme over the cut
 * points (every 256 bytes of the stream) gives the best block sizes for
 * one compressed stream of the whole image (libdeflate level 12), plus
 * the final MD5 check every client makes.  Written apart from
 * src/proto/loader_blocks.c (espfs's own planner) so that the bound does
 * not inherit its mistakes.
 *
 *   schedbound IMAGE OFFSET BAUD      -> {"sched_s":..,"wire_s":..,"flash_s":..,"verify_s":..}
 *
 * Model figures: src/sim/timing.c (W25Q32JV typical: 64 KiB erase 150 ms,
 * 4 KiB erase 45 ms, 256-byte page 0.7 ms, reads 10 MB/s) and the sim's
 * stub (erases just in time, a 64 KiB block where aligned and inside the
 * declared size). */
#include <libdeflate.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#define STEP 256
#define MAXBLK 16384
#define K (MAXBLK / STEP)
#define S_BLOCK_ERASE 0.150
#define S_SECTOR_ERASE 0.045
#define S_PAGE 0.0007
#define S_READ_BYTE 1e-7
#define FRAME 26      /* command + data headers, SLIP ends */
#define REPLY 12      /* a stub's reply frame */

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: schedbound IMAGE OFFSET BAUD\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "rb");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	size_t cap = 16u << 20, n = 0;
	uint8_t *img = malloc(cap);
	if (!img)
		return 1;
	n = fread(img, 1, cap, f);
	fclose(f);
	uint64_t off = strtoull(argv[2], NULL, 0);
	double baud = atof(argv[3]), byte_s = 10.0 / baud;

	struct libdeflate_compressor *c = libdeflate_alloc_compressor(12);
	size_t zcap = libdeflate_zlib_compress_bound(c, n);
	uint8_t *z = malloc(zcap);
	size_t zl = libdeflate_zlib_compress(c, img, n, z, zcap);
	libdeflate_free_compressor(c);
	if (!zl)
		return 1;

	/* raw[k]: bytes inflated from the first k*STEP stream bytes; esc[k]:
	 * SLIP escapes among them; erase[k]: erase time spent to write raw[k] */
	size_t N = (zl + STEP - 1) / STEP;
	size_t *raw = calloc(N + 1, sizeof *raw), *esc = calloc(N + 1, sizeof *esc);
	double *erase = calloc(N + 1, sizeof *erase);
	uint8_t *out = malloc(1 << 16);
	z_stream s = { 0 };
	inflateInit(&s);
	int r = Z_OK;
	for (size_t k = 1; k <= N; k++) {
		size_t pos = (k - 1) * STEP, len = zl - pos < STEP ? zl - pos : STEP, e = 0;
		for (size_t i = 0; i < len; i++)
			e += z[pos + i] == 0xC0 || z[pos + i] == 0xDB;
		esc[k] = esc[k - 1] + e;
		s.next_in = z + pos;
		s.avail_in = (uInt)len;
		while (r == Z_OK && s.avail_in) {
			s.next_out = out;
			s.avail_out = 1 << 16;
			r = inflate(&s, Z_NO_FLUSH);
		}
		raw[k] = s.total_out < n ? s.total_out : n;
	}
	raw[N] = n;
	inflateEnd(&s);
	uint64_t end = off + n, at = off & ~4095ull;
	double et = 0;
	for (size_t k = 0; k <= N; k++) {
		while (at < off + raw[k]) {
			int blk = at % 65536 == 0 && at + 65536 <= end;
			et += blk ? S_BLOCK_ERASE : S_SECTOR_ERASE;
			at += blk ? 65536 : 4096;
		}
		erase[k] = et;
	}
#define CUT(j) ((j) * STEP < zl ? (j) * STEP : zl)
#define WIRE(i, j) ((double)(CUT(j) - CUT(i) + esc[j] - esc[i] + FRAME) * byte_s)
#define WORK(i, j) ((double)((raw[j] - raw[i] + 255) / 256) * S_PAGE + erase[j] - erase[i])
	/* best[j][L]: when the ACK of a block ending at cut j, L steps long,
	 * reaches the host (its programming starts as it is sent) */
	double *best = malloc((N + 1) * K * sizeof *best);
	for (size_t i = 0; i < (N + 1) * K; i++)
		best[i] = 1e30;
	double ack = REPLY * byte_s;
	for (size_t L = 1; L <= K && L <= N; L++)
		best[L * K + L - 1] = WIRE(0, L) + ack;
	for (size_t j = 1; j < N; j++)
		for (size_t L = 1; L <= K && L <= j; L++) {
			double t = best[j * K + L - 1];
			if (t >= 1e30)
				continue;
			double w = WORK(j - L, j);
			for (size_t L2 = 1; L2 <= K && j + L2 <= N; L2++) {
				double x = WIRE(j, j + L2), v = t + (x > w ? x : w) + ack;
				if (v < best[(j + L2) * K + L2 - 1])
					best[(j + L2) * K + L2 - 1] = v;
			}
		}
	double fin = 1e30;
	for (size_t L = 1; L <= K && L <= N; L++)
		if (best[N * K + L - 1] + WORK(N - L, N) < fin)
			fin = best[N * K + L - 1] + WORK(N - L, N);
	double verify = n * S_READ_BYTE;
	printf("{\"sched_s\":%.4f,\"wire_s\":%.4f,\"flash_s\":%.4f,\"verify_s\":%.4f,\"stream_bytes\":%zu}\n",
	       fin + verify, (double)(zl + esc[N]) * byte_s, WORK(0, N), verify, zl);
	return 0;
}
