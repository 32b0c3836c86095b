#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "flash.h"

static int fill_ff(int fd, off_t from, off_t to)
{
	uint8_t buf[65536];
	memset(buf, 0xFF, sizeof buf);
	while (from < to) {
		size_t n = (size_t)(to - from) < sizeof buf ? (size_t)(to - from) : sizeof buf;
		ssize_t w = pwrite(fd, buf, n, from);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		from += w;
	}
	return 0;
}

int sim_flash_open(struct sim_flash *f, const char *path, uint32_t size, char *err, size_t errlen)
{
	memset(f, 0, sizeof *f);
	f->fd = -1;
	f->size = size;
	if (!path) {
		f->mem = malloc(size);
		if (!f->mem) {
			snprintf(err, errlen, "out of memory for %u bytes of flash", size);
			return -ENOMEM;
		}
		memset(f->mem, 0xFF, size);
		return 0;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	int r = 0;
	if (st.st_size < (off_t)size)
		r = fill_ff(fd, st.st_size, (off_t)size);
	else if (st.st_size > (off_t)size && ftruncate(fd, (off_t)size) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		int e = errno;
		close(fd);
		snprintf(err, errlen, "%s: mmap: %s", path, strerror(e));
		return -e;
	}
	f->mem = m;
	f->fd = fd;
	f->mapped = 1;
	return 0;
}

void sim_flash_sync(struct sim_flash *f)
{
	if (f->mapped)
		msync(f->mem, f->size, MS_SYNC);
}

void sim_flash_close(struct sim_flash *f)
{
	if (!f->mem)
		return;
	if (f->mapped) {
		msync(f->mem, f->size, MS_SYNC);
		munmap(f->mem, f->size);
		close(f->fd);
	} else {
		free(f->mem);
	}
	f->mem = NULL;
}

static int in_range(const struct sim_flash *f, uint32_t off, uint32_t len)
{
	return off <= f->size && len <= f->size - off;
}

int sim_flash_read(const struct sim_flash *f, uint32_t off, uint8_t *buf, uint32_t len)
{
	if (!in_range(f, off, len))
		return -EINVAL;
	memcpy(buf, f->mem + off, len);
	return 0;
}

int sim_flash_erase(struct sim_flash *f, uint32_t off, uint32_t len)
{
	if (len == 0)
		return 0;
	uint32_t start = off & ~(SIM_SECTOR - 1);
	uint64_t end = ((uint64_t)off + len + SIM_SECTOR - 1) & ~(uint64_t)(SIM_SECTOR - 1);
	if (end > f->size)
		return -EINVAL;
	memset(f->mem + start, 0xFF, (size_t)(end - start));
	return 0;
}

int sim_flash_erase_all(struct sim_flash *f)
{
	memset(f->mem, 0xFF, f->size);
	return 0;
}

int sim_flash_program(struct sim_flash *f, uint32_t off, const uint8_t *data, uint32_t len)
{
	if (!in_range(f, off, len))
		return -EINVAL;
	uint8_t *p = f->mem + off;
	for (uint32_t i = 0; i < len; i++)
		p[i] &= data[i];
	return 0;
}

int sim_flash_poke(struct sim_flash *f, uint32_t off, const uint8_t *data, uint32_t len)
{
	if (!in_range(f, off, len))
		return -EINVAL;
	memcpy(f->mem + off, data, len);
	return 0;
}
