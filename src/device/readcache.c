/* What espfs read from (or wrote to) a device's flash, kept so that the
 * next backup, cmp or verify of the same flash does not cross the wire
 * again: 4 MB take ~46 s to read at 921600 baud, an MD5 of them ~0.4 s.
 *
 * Per 64 KiB block: unknown; stored (read or written earlier, but the
 * chip has run its application since, which may have written it: NVS,
 * OTA, a filesystem); or current (read, written or checked during this
 * loader session: only our commands reach the flash meanwhile).  A stored
 * block is used only after the chip's MD5 of it matches; runs of stored
 * blocks are checked with one MD5.  The bytes live in an unlinked file
 * under $TMPDIR (/var/tmp otherwise): page cache, not espfs's memory.
 * Worker thread only, so no lock. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "device_i.h"
#include "espfs/log.h"

#define BLK 0x10000u
#define CHECK_RUN (16u * BLK)   /* most blocks one MD5 vouches for */

enum { B_UNKNOWN, B_STORED, B_CURRENT };

struct dev_rcache {
	int fd;
	uint32_t size;
	uint8_t *state;
};

static int open_tmp(void)
{
	const char *dirs[] = { getenv("TMPDIR"), "/var/tmp", "/tmp" };
	for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
		if (!dirs[i] || !*dirs[i])
			continue;
		int fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
	}
	return -1;
}

static struct dev_rcache *get(esp_device *d)
{
	uint32_t size = device_flash_size(d);
	if (d->rcache || !size || d->rcache_failed)
		return d->rcache;
	struct dev_rcache *c = calloc(1, sizeof *c);
	if (c) {
		c->size = size;
		c->state = calloc(size / BLK + 1, 1);
		c->fd = c->state ? open_tmp() : -1;
		if (c->fd >= 0 && ftruncate(c->fd, size) == 0) {
			d->rcache = c;
			return c;
		}
		if (c->fd >= 0)
			close(c->fd);
		free(c->state);
		free(c);
	}
	LOGD("%s: no read cache (no room for a temporary file)", d->name);
	d->rcache_failed = true;
	return NULL;
}

void dev_rcache_free(esp_device *d)
{
	struct dev_rcache *c = d->rcache;
	if (!c)
		return;
	close(c->fd);
	free(c->state);
	free(c);
	d->rcache = NULL;
}

/* All of n bytes at the cache file's offset at, or false. */
static bool file_io(int fd, uint8_t *p, size_t n, off_t at, bool write)
{
	while (n) {
		ssize_t k = write ? pwrite(fd, p, n, at) : pread(fd, p, n, at);
		if (k <= 0)
			return false;
		p += k;
		n -= (size_t)k;
		at += k;
	}
	return true;
}

void dev_rcache_put(esp_device *d, uint32_t off, const uint8_t *buf, uint32_t len, bool erased)
{
	struct dev_rcache *c = get(d);
	if (!c || off >= c->size)
		return;
	if (len > c->size - off)
		len = c->size - off;
	static const uint8_t ff[4096] = { [0 ... 4095] = 0xFF };
	for (uint32_t a = off; a < off + len;) {
		uint32_t b = (a / BLK + 1) * BLK;
		if (b > off + len)
			b = off + len;
		uint8_t *st = &c->state[a / BLK];
		/* a part of a block is only as good as the rest of it */
		bool whole = a % BLK == 0 && b - a == BLK;
		if (!whole && *st != B_CURRENT) {
			*st = B_UNKNOWN;
			a = b;
			continue;
		}
		bool ok = true;
		if (!erased)
			ok = file_io(c->fd, (uint8_t *)buf + (a - off), b - a, a, true);
		for (uint32_t p = a; erased && ok && p < b; p += sizeof ff)
			ok = file_io(c->fd, (uint8_t *)ff, b - p < sizeof ff ? b - p : sizeof ff, p, true);
		*st = ok ? B_CURRENT : B_UNKNOWN;
		a = b;
	}
}

void dev_rcache_forget(esp_device *d, uint32_t off, uint32_t len)
{
	struct dev_rcache *c = d->rcache;
	if (!c || off >= c->size || !len)
		return;
	uint64_t end = (uint64_t)off + len > c->size ? c->size : (uint64_t)off + len;
	for (uint64_t k = off / BLK; k <= (end - 1) / BLK; k++)
		c->state[k] = B_UNKNOWN;
}

void dev_rcache_demote(esp_device *d)
{
	struct dev_rcache *c = d->rcache;
	if (!c)
		return;
	for (uint32_t k = 0; k <= (c->size - 1) / BLK; k++)
		if (c->state[k] == B_CURRENT)
			c->state[k] = B_STORED;
}

/* Does the chip still hold the cached [a, a+n)?  1 yes, 0 no, <0 error. */
static int chip_agrees(esp_device *d, struct dev_rcache *c, uint32_t a, uint32_t n)
{
	uint8_t *tmp = malloc(n);
	if (!tmp)
		return -ENOMEM;
	int rc = file_io(c->fd, tmp, n, a, false) ? esp_loader_flash_holds(d->ld, a, tmp, n) : 0;
	free(tmp);
	return rc;
}

int dev_rcache_get(esp_device *d, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct dev_rcache *c = d->rcache;
	if (!c || !len || off % BLK || len != BLK || off >= c->size)
		return 0;
	uint8_t *st = &c->state[off / BLK];
	if (*st == B_STORED) {
		if (!d->ld || !esp_loader_can_md5(d->ld))
			return 0;
		/* this block and the stored ones after it, in one question */
		uint32_t n = BLK;
		while (n < CHECK_RUN && off + n < c->size && st[n / BLK] == B_STORED)
			n += BLK;
		int rc = chip_agrees(d, c, off, n);
		if (rc < 0)
			return rc;
		if (rc == 0 && n > BLK)
			rc = chip_agrees(d, c, off, n = BLK);
		if (rc < 0)
			return rc;
		for (uint32_t k = 0; k < n / BLK; k++)
			st[k] = rc ? B_CURRENT : B_UNKNOWN;
	}
	if (*st != B_CURRENT)
		return 0;
	if (!file_io(c->fd, buf, len, off, false)) {
		*st = B_UNKNOWN;
		return 0;
	}
	return 1;
}
