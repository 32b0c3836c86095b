/* Injectable time source: every timeout in espfs is measured through one of
 * these so tests can drive deadlines without sleeping. */
#ifndef ESPFS_CLOCK_H
#define ESPFS_CLOCK_H
#include <stdint.h>

typedef struct esp_clock esp_clock;
struct esp_clock {
	uint64_t (*now_us)(const esp_clock *c);           /* monotonic */
	void (*sleep_us)(const esp_clock *c, uint64_t us);
	void *ctx;
};

/* The process-wide real clock (CLOCK_MONOTONIC, nanosleep). */
const esp_clock *esp_clock_real(void);

/* A fake clock for tests: time moves only when sleep_us() is called or the
 * test advances it.  Thread-safe. */
typedef struct esp_fake_clock {
	esp_clock clock;
	uint64_t now;        /* microseconds */
} esp_fake_clock;
void esp_fake_clock_init(esp_fake_clock *fc, uint64_t start_us);
void esp_fake_clock_advance(esp_fake_clock *fc, uint64_t us);

static inline uint64_t esp_now_us(const esp_clock *c) { return c->now_us(c); }
static inline uint64_t esp_now_ms(const esp_clock *c) { return c->now_us(c) / 1000; }
static inline void esp_sleep_ms(const esp_clock *c, uint32_t ms) { c->sleep_us(c, (uint64_t)ms * 1000); }

#endif
