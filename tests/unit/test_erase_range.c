/* The device layer refuses a bad erase range itself (issue 11 item 1,
 * defence in depth): whatever the caller parsed, a region that wraps, runs
 * past the flash or is not whole sectors erases nothing.  Before the check
 * in job_erase, offset 0x1000 length 0xFFFFF000 erased 0x1000..0x3c1000
 * in 256 KiB chunks and only then failed with EFBIG. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "espfs/device.h"
#include "t.h"

#define FSIZE (4u << 20)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int finished;
static esp_device *dev;
static char path[64];
static uint8_t *orig;

static void on_done(struct dev_job *j)
{
	(void)j;
	pthread_mutex_lock(&mu);
	finished = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static int run_erase(uint32_t off, uint32_t len, char *err, size_t errlen)
{
	struct dev_job *j = calloc(1, sizeof *j);
	j->kind = DEV_JOB_ERASE;
	j->offset = off;
	j->len = len;
	j->done = on_done;
	atomic_init(&j->cancel, 0);
	finished = 0;
	if (device_submit(dev, j) < 0) {
		free(j);
		return -ENODEV;
	}
	pthread_mutex_lock(&mu);
	while (!finished)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	int rc = j->rc;
	snprintf(err, errlen, "%s", j->err);
	free(j);
	return rc;
}

static uint8_t *flash_now(void)
{
	uint8_t *b = malloc(FSIZE);
	FILE *f = fopen(path, "rb");
	size_t n = f ? fread(b, 1, FSIZE, f) : 0;
	if (f)
		fclose(f);
	if (n != FSIZE) {
		free(b);
		return NULL;
	}
	return b;
}

static void check_bad(uint32_t off, uint32_t len, int want)
{
	char err[600];
	int rc = run_erase(off, len, err, sizeof err);
	CHECK_MSG(rc == want, "erase 0x%x+0x%x: %d (want %d): %s", off, len, rc, want, err);
	CHECK_MSG(strstr(err, "nothing erased") != NULL, "reason: %s", err);
	uint8_t *now = flash_now();
	CHECK(now != NULL);
	if (now)
		CHECK_MSG(!memcmp(now, orig, FSIZE), "erase 0x%x+0x%x changed the flash", off, len);
	free(now);
}

static void bad_ranges(void)
{
	check_bad(0x1000, 0xFFFFF000u, -EFBIG);   /* "0x1000 -0x1000" after a 32-bit cast */
	check_bad(0x10000, 0xFFFF0000u, -EFBIG);
	check_bad(0x3ff000, 0x2000, -EFBIG);
	check_bad(0x400000, 0x1000, -EFBIG);
	check_bad(0x1800, 0x1000, -EINVAL);
	check_bad(0x1000, 0x800, -EINVAL);
}

static void good_range(void)
{
	char err[600];
	CHECK_EQ(run_erase(0x2000, 0x1000, err, sizeof err), 0);
	uint8_t *now = flash_now();
	CHECK(now != NULL);
	if (!now)
		return;
	CHECK(!memcmp(now, orig, 0x2000));
	for (uint32_t i = 0x2000; i < 0x3000; i++)
		if (now[i] != 0xFF) {
			CHECK_MSG(0, "byte 0x%x not erased", i);
			break;
		}
	CHECK(!memcmp(now + 0x3000, orig + 0x3000, FSIZE - 0x3000));
	free(now);
}

int main(void)
{
	snprintf(path, sizeof path, "/tmp/espfs-erase-range.XXXXXX");
	int fd = mkstemp(path);
	orig = malloc(FSIZE);
	for (uint32_t i = 0; i < FSIZE; i++)
		orig[i] = (uint8_t)((i * 7 + (i >> 12)) & 0x7f);
	if (fd < 0 || write(fd, orig, FSIZE) != (ssize_t)FSIZE) {
		printf("Bail out! cannot write %s\n", path);
		return 1;
	}
	close(fd);
	struct dev_options o;
	memset(&o, 0, sizeof o);
	o.reset = ESP_RESET_AUTO;
	o.no_stub = true;  /* the ROM path: region erases through FLASH_BEGIN */
	esp_devmgr *m = devmgr_new(&o, NULL, NULL);
	char spec[128], err[200];
	snprintf(spec, sizeof spec, "esp32,name=d,flash=%s", path);
	if (!m || devmgr_add_sim(m, spec, err, sizeof err) < 0) {
		printf("Bail out! %s\n", err);
		return 1;
	}
	devmgr_start(m, false);
	devmgr_wait_attached(m, 30000);
	esp_device **v;
	size_t n = devmgr_list(m, &v);
	if (n != 1) {
		printf("Bail out! %zu devices attached\n", n);
		return 1;
	}
	dev = v[0];
	if (device_flash_size(dev) != FSIZE) {
		printf("Bail out! flash size %u\n", device_flash_size(dev));
		return 1;
	}
	RUN(bad_ranges);
	RUN(good_range);
	devmgr_list_free(v, n);
	devmgr_free(m);
	unlink(path);
	free(orig);
	return t_done();
}
