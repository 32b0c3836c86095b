/* ESP_WRITE_SKIP_SAME: ask the device for MD5s of what it already holds
 * and send only what differs (PROTOCOL.md A11 for SPI_FLASH_MD5).
 *
 * Cost model.  One MD5 command costs a round trip (~55 bytes on the wire
 * plus the port's latency) and the device reading and hashing the region
 * (~10 MB/s: src/sim/timing.c's assumption, near what stubs do: 6.5 ms a
 * 64 KiB block, 0.4 ms a sector) while the link idles; sending a region
 * costs its compressed bytes on the wire plus erase and program time.
 * A region that differs is known to differ as soon as one of its sectors
 * does, so questions start small:
 *  1. when asking per block would cost more in round trips than hashing
 *     the range a second time costs when it differs (slow links, big
 *     ranges): the MD5 of the first sector of the range and, when it
 *     matches (an image written again, most of the time), of the whole
 *     range, so that an identical image costs two round trips;
 *  2. per 64 KiB block (the unit a stub erases in one go, 150 ms against
 *     16 x 45 ms for sectors on a typical NOR chip): the MD5 of the whole
 *     block while blocks keep matching, but once one differed (or the
 *     range before this one did: a cp comes in several ranges) first the
 *     MD5 of its first sector, and of the whole block only when that
 *     matches.  A fresh flash (a blank chip, another image) thus costs
 *     one sector's hash a block instead of hashing everything before
 *     writing it;
 *  3. in a block that differs (and is not blank, where we know what it
 *     holds without asking), sectors are probed one by one only until
 *     a second one differs: a lone changed sector (a config record, a
 *     byte written through the mount) is sent alone, anything more sends
 *     the whole block; once most blocks turn out to differ (another
 *     image altogether), differing blocks are sent without probing.
 * When the whole range reads as blank, steps 2 and 3 are answered
 * locally.  A block that should hold only 0xFF is never sent: it is left
 * alone when its MD5 says it is blank already, else erased (stub
 * ERASE_REGION, ROM FLASH_BEGIN), which is cheaper than programming 0xFF
 * pages.  Neighbouring pieces of the same kind are merged into one write
 * (one compressed stream keeps the stub's programming overlapped with the
 * wire) or one erase. */
#include <errno.h>
#include <md5.h>
#include <stdlib.h>
#include <string.h>
#include "loader_priv.h"

#define SKIP_BLOCK 0x10000u
#define MD5_WIRE_BYTES 55u        /* command and reply, SLIP framed */
#define PORT_LATENCY_US 2000u     /* a USB-UART bridge, each way and back */
#define HASH_NS_PER_BYTE 100u     /* ~10 MB/s on the device */

/* Is one MD5 of the whole range worth it before the per-block ones? */
static bool whole_first(const esp_loader *l, uint32_t len)
{
	uint32_t blocks = (len + SKIP_BLOCK - 1) / SKIP_BLOCK;
	uint64_t wire_us = l->t->flags & ESP_TR_NATIVE_USB || !l->t->baud ? MD5_WIRE_BYTES
			   : (uint64_t)MD5_WIRE_BYTES * 10000000u / l->t->baud;
	uint64_t extra_rtts_us = (uint64_t)(blocks - 1) * (wire_us + PORT_LATENCY_US);
	uint64_t rehash_us = (uint64_t)len * HASH_NS_PER_BYTE / 1000u;
	return extra_rtts_us > rehash_us;
}

enum piece_kind { P_SAME, P_WRITE, P_ERASE };

struct piece {
	uint32_t off, len;         /* device address, bytes */
	enum piece_kind kind;
};

static bool all_ff(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0xFF)
			return false;
	return true;
}

/* Does the device hold exactly local[0..n) at off?  1 yes, 0 no, <0
 * error.  blank (may be NULL): whether it holds only 0xFF there. */
static int device_same(esp_loader *l, uint32_t off, const uint8_t *local, uint32_t n, bool *blank)
{
	uint8_t want[16], got[16];
	esp__md5(local, n, want);
	int rc = esp_loader_flash_md5(l, off, n, got);
	if (rc < 0)
		return rc;
	if (blank) {
		uint8_t ff[256], dig[16];
		MD5_CTX c;
		memset(ff, 0xFF, sizeof ff);
		MD5Init(&c);
		for (uint32_t k = 0; k < n; k += sizeof ff)
			MD5Update(&c, ff, n - k < sizeof ff ? n - k : sizeof ff);
		MD5Final(dig, &c);
		*blank = memcmp(dig, got, 16) == 0;
	}
	return memcmp(want, got, 16) == 0;
}

/* Progress of one piece reported as part of the whole range. */
struct sub_progress {
	esp_progress_fn fn;
	void *ctx;
	uint64_t base, total;
};

static int sub_report(void *ctx, uint64_t done, uint64_t total)
{
	struct sub_progress *s = ctx;
	(void)total;
	return s->fn ? s->fn(s->ctx, s->base + done, s->total) : 0;
}

static int add_piece(struct piece **v, size_t *n, size_t *cap, uint32_t off, uint32_t len, enum piece_kind k)
{
	if (*n && (*v)[*n - 1].kind == k && (*v)[*n - 1].off + (*v)[*n - 1].len == off) {
		(*v)[*n - 1].len += len;
		return 0;
	}
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		struct piece *p = realloc(*v, c * sizeof *p);
		if (!p)
			return -ENOMEM;
		*v = p;
		*cap = c;
	}
	(*v)[(*n)++] = (struct piece){ off, len, k };
	return 0;
}

/* Plan one 64 KiB block (or the partial one at either end) that differs.
 * first: what is known of its first sector (1 same, 0 differs, -1 not
 * asked). */
static int plan_block(esp_loader *l, uint32_t off, const uint8_t *local, uint32_t n, bool blank,
		      bool probe, int first, struct piece **v, size_t *nv, size_t *cap)
{
	if (all_ff(local, n))
		return add_piece(v, nv, cap, off, n, P_ERASE);
	/* Blank: nothing to learn by probing sectors.  Its leading 0xFF
	 * sectors are not trimmed off: a write that starts on a 64 KiB
	 * boundary lets the stub erase whole blocks (150 ms) instead of
	 * sectors (45 ms each). */
	if (blank)
		return add_piece(v, nv, cap, off, n, P_WRITE);
	if (n <= ESP_SECTOR || !probe)
		return add_piece(v, nv, cap, off, n, P_WRITE);
	uint32_t lone = UINT32_MAX;
	int diffs = 0;
	for (uint32_t s = 0; s < n && diffs < 2; s += ESP_SECTOR) {
		uint32_t k = n - s < ESP_SECTOR ? n - s : ESP_SECTOR;
		int same = s == 0 && first >= 0 ? first : device_same(l, off + s, local + s, k, NULL);
		if (same < 0)
			return same;
		if (!same) {
			diffs++;
			lone = s;
		}
	}
	if (diffs >= 2 || diffs == 0)
		/* 0: the block changed under us between the MD5s; send it */
		return add_piece(v, nv, cap, off, n, P_WRITE);
	uint32_t k = n - lone < ESP_SECTOR ? n - lone : ESP_SECTOR;
	int rc = add_piece(v, nv, cap, off, lone, P_SAME);
	if (rc == 0)
		rc = add_piece(v, nv, cap, off + lone, k, all_ff(local + lone, k) ? P_ERASE : P_WRITE);
	if (rc == 0 && lone + k < n)
		rc = add_piece(v, nv, cap, off + lone + k, n - lone - k, P_SAME);
	return rc;
}

int esp__write_skip_same(esp_loader *l, uint32_t offset, const uint8_t *buf, size_t plen, unsigned flags,
			 esp_progress_fn progress, void *ctx, bool *same)
{
	*same = false;
	/* compare whole sectors: a write would erase the rest of the last
	 * one, so "same" must include that tail being blank */
	uint32_t cmp_len = (uint32_t)((plen + ESP_SECTOR - 1) & ~(size_t)(ESP_SECTOR - 1));
	if ((uint64_t)offset + cmp_len > esp_loader_flash_size(l))
		cmp_len = (uint32_t)plen;
	uint32_t end = offset + cmp_len;
	bool one_block = offset / SKIP_BLOCK == (end - 1) / SKIP_BLOCK;
	int rc = 0;
	bool all_blank = false;
	/* step 1: the first sector, then maybe the whole range */
	uint32_t s0 = cmp_len < ESP_SECTOR ? cmp_len : ESP_SECTOR;
	bool s0_blank = false;
	int s0_same = -1;
	if (!one_block && whole_first(l, cmp_len)) {
		s0_same = device_same(l, offset, buf, s0, &s0_blank);
		if (s0_same < 0)
			return s0_same;
		if (s0_same == 1) {
			rc = device_same(l, offset, buf, cmp_len, &all_blank);
			if (rc < 0)
				return rc;
			if (rc == 1) {
				*same = true;
				l->probe_differed = false;
				return progress && progress(ctx, plen, plen) ? -EINTR : 0;
			}
		}
	}
	bool sample = s0_same == 0 || (s0_same < 0 && l->probe_differed);
	struct piece *v = NULL;
	size_t nv = 0, cap = 0;
	unsigned seen = 0, differ = 0;
	for (uint32_t a = offset; a < end && rc >= 0;) {
		uint32_t b = (a / SKIP_BLOCK + 1) * SKIP_BLOCK;
		if (b > end || b < a)
			b = end;
		const uint8_t *local = buf + (a - offset);
		bool blank = all_blank;
		int first = -1;
		if (all_blank) {
			/* a blank range (an erased chip) needs no more questions:
			 * a block is right exactly when it should be all 0xFF */
			rc = all_ff(local, b - a);
		} else if (!sample || all_ff(local, b - a)) {
			/* blocks keep matching; or one to leave alone or erase,
			 * which takes the whole block's answer */
			rc = device_same(l, a, local, b - a, &blank);
		} else {
			/* step 2 once blocks differ: its first sector, the whole
			 * block only if that matches */
			uint32_t k = b - a < ESP_SECTOR ? b - a : ESP_SECTOR;
			bool kb = false;
			if (a == offset && k == s0 && s0_same >= 0) {
				first = s0_same;    /* asked in step 1 */
				kb = s0_blank;
			} else {
				first = device_same(l, a, local, k, &kb);
			}
			if (first == 0) {
				rc = 0;
				blank = kb;      /* an erased block, or one to write whole anyway */
			} else if (first == 1 && k < b - a) {
				rc = device_same(l, a, local, b - a, &blank);
			} else {
				rc = first;
			}
		}
		if (rc >= 0)
			sample = rc == 0;
		seen++;
		if (rc == 1) {
			rc = add_piece(&v, &nv, &cap, a, b - a, P_SAME);
		} else if (rc == 0) {
			/* probing sectors pays for sparse edits; once most blocks
			 * differ (a different image) it is only round trips */
			bool probe = !(differ >= 4 && differ * 2 > seen);
			differ++;
			rc = plan_block(l, a, local, b - a, blank, probe, first, &v, &nv, &cap);
		}
		a = b;
	}
	if (rc >= 0 && nv == 1 && v[0].kind == P_SAME)
		*same = true;
	if (rc >= 0)
		l->probe_differed = differ > 0;
	for (size_t i = 0; i < nv && rc >= 0; i++) {
		struct piece *p = &v[i];
		uint64_t at = p->off - offset;
		/* never past the caller's padded length: the device erases the
		 * rest of the sector itself */
		uint32_t len = at + p->len > plen ? (uint32_t)(plen - at) : p->len;
		struct sub_progress sp = { progress, ctx, at, plen };
		if (p->kind == P_WRITE)
			rc = esp__write_range(l, p->off, buf + at, len, flags, progress ? sub_report : NULL, &sp);
		else if (p->kind == P_ERASE)
			rc = esp_loader_erase_region(l, p->off, p->len);
		if (rc >= 0 && progress && progress(ctx, at + len, plen)) {
			esp__err(l, "flash write cancelled at 0x%llx", (unsigned long long)(p->off + len));
			rc = -EINTR;
		}
	}
	free(v);
	return rc < 0 ? rc : 0;
}
