/* What espfs read from (or wrote to) a device's flash, kept so that the
 * next backup, cmp or verify of the same flash does not cross the wire
 * again: 4 MB take ~46 s to read at 921600 baud, an MD5 of them ~0.4 s.
 *
 * Per 4 KiB sector (the unit the chip erases and espfs writes): unknown;
 * stored (read or written earlier, but the chip has run its application
 * since, which may have written it: NVS, OTA, a filesystem); or current
 * (read, written or checked during this loader session: only our
 * commands reach the flash meanwhile).  Any range is served from what
 * the cache holds, however it is cut: head, cat, cmp and file managers
 * read in 4-128 KiB pieces, and a chip whose ROM cannot read flash gets
 * back what espfs wrote to it.  A stored sector is used only after the
 * chip's MD5 of it matches; runs of stored sectors are checked with one
 * MD5, halved on a mismatch until the changed part is found.  The bytes
 * live in an unlinked file under $TMPDIR (/var/tmp otherwise): page
 * cache, not espfs's memory.  Worker thread only, so no lock. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "device_i.h"
#include "espfs/log.h"

#define SEC ESP_SECTOR
#define CHECK_RUN (0x100000u / SEC)   /* most sectors one MD5 vouches for */

enum { S_UNKNOWN, S_STORED, S_CURRENT };

struct dev_rcache {
	int fd;
	uint32_t size;
	uint8_t *state;   /* one per sector */
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

static uint32_t n_sectors(const struct dev_rcache *c)
{
	return (uint32_t)(((uint64_t)c->size + SEC - 1) / SEC);
}

static struct dev_rcache *get(esp_device *d)
{
	uint32_t size = device_flash_size(d);
	if (d->rcache || !size || d->rcache_failed)
		return d->rcache;
	struct dev_rcache *c = calloc(1, sizeof *c);
	if (c) {
		c->size = size;
		c->state = calloc(n_sectors(c), 1);
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

/* [a, b) of the cache file := data, or 0xFF for an erase. */
static bool file_fill(int fd, const uint8_t *data, uint32_t a, uint32_t b)
{
	static const uint8_t ff[SEC] = { [0 ... SEC - 1] = 0xFF };
	if (data)
		return file_io(fd, (uint8_t *)data, b - a, a, true);
	for (uint32_t p = a; p < b; p += SEC)
		if (!file_io(fd, (uint8_t *)ff, b - p < SEC ? b - p : SEC, p, true))
			return false;
	return true;
}

void dev_rcache_put(esp_device *d, uint32_t off, const uint8_t *buf, uint32_t len, bool erased)
{
	struct dev_rcache *c = get(d);
	if (!c || off >= c->size)
		return;
	if (len > c->size - off)
		len = c->size - off;
	uint32_t end = off + len;
	for (uint32_t a = off; a < end;) {
		uint32_t b = (a / SEC + 1) * SEC;
		if (b > end)
			b = end;
		uint8_t *st = &c->state[a / SEC];
		/* a part of a sector is only as good as the rest of it */
		bool whole = a % SEC == 0 && (b - a == SEC || b == c->size);
		if (whole || *st == S_CURRENT)
			*st = file_fill(c->fd, erased ? NULL : buf + (a - off), a, b) ? S_CURRENT : S_UNKNOWN;
		else
			*st = S_UNKNOWN;
		a = b;
	}
}

void dev_rcache_forget(esp_device *d, uint32_t off, uint32_t len)
{
	struct dev_rcache *c = d->rcache;
	if (!c || off >= c->size || !len)
		return;
	uint64_t end = (uint64_t)off + len > c->size ? c->size : (uint64_t)off + len;
	for (uint64_t k = off / SEC; k <= (end - 1) / SEC; k++)
		c->state[k] = S_UNKNOWN;
}

void dev_rcache_demote(esp_device *d)
{
	struct dev_rcache *c = d->rcache;
	if (!c)
		return;
	for (uint32_t k = 0; k < n_sectors(c); k++)
		if (c->state[k] == S_CURRENT)
			c->state[k] = S_STORED;
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

/* Can stored sectors be checked now (a loader that hashes)? */
static bool can_check(esp_device *d)
{
	return d->ld && d->in_loader && esp_loader_can_md5(d->ld);
}

/* Settle stored sector s: it and the stored ones after it in one
 * question; on a mismatch half as many, down to s alone, which is then
 * unknown.  The sectors after a matching run stay stored for later. */
static int check_stored(esp_device *d, struct dev_rcache *c, uint32_t s)
{
	uint32_t n = 1;
	while (n < CHECK_RUN && s + n < n_sectors(c) && c->state[s + n] == S_STORED)
		n++;
	for (;;) {
		uint32_t a = s * SEC;
		uint32_t len = n * SEC > c->size - a ? c->size - a : n * SEC;
		int rc = chip_agrees(d, c, a, len);
		if (rc < 0)
			return rc;
		if (rc || n == 1) {
			for (uint32_t k = 0; k < n; k++)
				c->state[s + k] = rc ? S_CURRENT : S_UNKNOWN;
			return 0;
		}
		n /= 2;
	}
}

int dev_rcache_get(esp_device *d, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct dev_rcache *c = d->rcache;
	if (!c || !len || off >= c->size)
		return 0;
	if (len > c->size - off)
		len = c->size - off;
	uint32_t got = 0;
	while (got < len) {
		uint32_t a = off + got, s = a / SEC;
		if (c->state[s] == S_STORED && can_check(d)) {
			int rc = check_stored(d, c, s);
			if (rc < 0)
				return got ? (int)got : rc;
		}
		/* the run of current sectors from a, in one read of the file */
		uint32_t e = s;
		while (e < n_sectors(c) && c->state[e] == S_CURRENT && (uint64_t)e * SEC < (uint64_t)a + (len - got))
			e++;
		if (e == s)
			break;
		uint64_t run = (uint64_t)e * SEC - a;
		uint32_t n = run < len - got ? (uint32_t)run : len - got;
		if (!file_io(c->fd, buf + got, n, a, false)) {
			dev_rcache_forget(d, a, n);
			break;
		}
		got += n;
	}
	return (int)got;
}

uint32_t dev_rcache_missing(esp_device *d, uint32_t off, uint32_t len)
{
	struct dev_rcache *c = d->rcache;
	if (!c || off >= c->size)
		return len;
	bool checkable = can_check(d);
	uint32_t s = off / SEC, e = s;
	while (e < n_sectors(c) && (uint64_t)e * SEC < (uint64_t)off + len &&
	       (c->state[e] == S_UNKNOWN || (c->state[e] == S_STORED && !checkable)))
		e++;
	uint64_t n = (uint64_t)e * SEC - off;
	return n < len ? (uint32_t)n : len;
}
