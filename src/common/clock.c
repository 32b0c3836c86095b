#include <errno.h>
#include <time.h>
#include "espfs/clock.h"

static uint64_t real_now(const esp_clock *c)
{
	struct timespec ts;
	(void)c;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void real_sleep(const esp_clock *c, uint64_t us)
{
	struct timespec ts = { (time_t)(us / 1000000u), (long)(us % 1000000u) * 1000 };
	(void)c;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static const esp_clock real_clock = { real_now, real_sleep, 0 };

const esp_clock *esp_clock_real(void) { return &real_clock; }

static uint64_t fake_now(const esp_clock *c)
{
	const esp_fake_clock *fc = (const esp_fake_clock *)c;
	return __atomic_load_n(&fc->now, __ATOMIC_SEQ_CST);
}

static void fake_sleep(const esp_clock *c, uint64_t us)
{
	esp_fake_clock *fc = (esp_fake_clock *)c->ctx;
	__atomic_add_fetch(&fc->now, us, __ATOMIC_SEQ_CST);
}

void esp_fake_clock_init(esp_fake_clock *fc, uint64_t start_us)
{
	fc->clock.now_us = fake_now;
	fc->clock.sleep_us = fake_sleep;
	fc->clock.ctx = fc;
	fc->now = start_us;
}

void esp_fake_clock_advance(esp_fake_clock *fc, uint64_t us)
{
	__atomic_add_fetch(&fc->now, us, __ATOMIC_SEQ_CST);
}
