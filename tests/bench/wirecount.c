/* Bench only: counts the bytes espfs exchanges with each simulated device,
 * split by the baud rate they crossed the link at, so the bench can turn
 * them into wire time with the sim's link model.
 *
 * run.sh links a copy of espfs (same objects and libraries as the real
 * one) with this file and -Wl,--wrap=sim_transport_open: every in-process
 * sim transport gets counting ops that call the original ones.  Nothing in
 * src/ changes.  The counters live in a file named by $ESPFS_BENCH_WIRE,
 * mapped shared, so the bench reads them while espfs runs (bench.mjs:
 * readWire).  Layout: WIRE_SLOTS slots of struct wire_slot. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "espfs/sim.h"

#define WIRE_SLOTS 64
#define WIRE_BUCKETS 4
#define MAX_OPEN 256

struct wire_bucket {
	uint32_t baud;           /* 0: native USB (no baud) */
	uint32_t used;
	uint64_t up;             /* host -> device */
	uint64_t down;           /* device -> host */
};

struct wire_slot {
	char name[64];           /* the transport's name, e.g. sim-esp32-sim0 */
	struct wire_bucket b[WIRE_BUCKETS];
};

struct open_tr {
	esp_transport *t;
	const struct esp_transport_ops *orig;
	struct wire_slot *slot;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct wire_slot *slots;     /* NULL: counting off (no env var) */
static struct open_tr open_trs[MAX_OPEN];

int __real_sim_transport_open(sim_device *d, esp_transport **out);

static void map_slots(void)
{
	const char *path = getenv("ESPFS_BENCH_WIRE");
	if (slots || !path)
		return;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return;
	size_t len = sizeof(struct wire_slot) * WIRE_SLOTS;
	if (ftruncate(fd, (off_t)len) == 0) {
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED)
			slots = p;
	}
	close(fd);
}

static struct open_tr *find(esp_transport *t)
{
	for (int i = 0; i < MAX_OPEN; i++)
		if (open_trs[i].t == t)
			return &open_trs[i];
	return NULL;
}

/* Count n bytes in the bucket of the current rate.  Lock-free on the
 * way (one transport per device worker; a global lock here made eight
 * workers queue on it at every read and write); the lock only claims a
 * bucket for a new rate. */
static void count(struct wire_slot *s, const esp_transport *t, size_t n, bool up)
{
	uint32_t baud = (t->flags & ESP_TR_NATIVE_USB) ? 0 : t->baud;
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < WIRE_BUCKETS; i++) {
			struct wire_bucket *b = &s->b[i];
			if (!__atomic_load_n(&b->used, __ATOMIC_ACQUIRE) || b->baud != baud)
				continue;
			__atomic_fetch_add(up ? &b->up : &b->down, (uint64_t)n, __ATOMIC_RELAXED);
			return;
		}
		pthread_mutex_lock(&lock);
		for (int i = 0; i < WIRE_BUCKETS; i++) {
			struct wire_bucket *b = &s->b[i];
			if (b->used && b->baud == baud)
				break;
			if (!b->used) {
				b->baud = baud;
				__atomic_store_n(&b->used, 1, __ATOMIC_RELEASE);
				break;
			}
		}
		pthread_mutex_unlock(&lock);
	}
}

static const struct esp_transport_ops *orig_of(esp_transport *t, struct wire_slot **slot)
{
	for (int i = 0; i < MAX_OPEN; i++)
		if (__atomic_load_n(&open_trs[i].t, __ATOMIC_ACQUIRE) == t) {
			*slot = open_trs[i].slot;
			return open_trs[i].orig;
		}
	*slot = NULL;
	return NULL;
}

static int w_read(esp_transport *t, uint8_t *buf, size_t len, uint32_t timeout_ms)
{
	struct wire_slot *s;
	int n = orig_of(t, &s)->read(t, buf, len, timeout_ms);
	if (n > 0)
		count(s, t, (size_t)n, false);
	return n;
}

static int w_write(esp_transport *t, const uint8_t *buf, size_t len)
{
	struct wire_slot *s;
	int n = orig_of(t, &s)->write(t, buf, len);
	if (n > 0)
		count(s, t, (size_t)n, true);
	return n;
}

static int w_flush_input(esp_transport *t)
{
	struct wire_slot *s;
	return orig_of(t, &s)->flush_input(t);
}

static int w_set_baud(esp_transport *t, uint32_t baud)
{
	struct wire_slot *s;
	return orig_of(t, &s)->set_baud(t, baud);
}

static int w_set_lines(esp_transport *t, int dtr, int rts)
{
	struct wire_slot *s;
	return orig_of(t, &s)->set_lines(t, dtr, rts);
}

static void w_close(esp_transport *t)
{
	pthread_mutex_lock(&lock);
	struct open_tr *o = find(t);
	const struct esp_transport_ops *ops = o ? o->orig : NULL;
	if (o)
		__atomic_store_n(&o->t, NULL, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&lock);
	if (ops)
		ops->close(t);
}

static const struct esp_transport_ops counting_ops = {
	.read = w_read, .write = w_write, .flush_input = w_flush_input,
	.set_baud = w_set_baud, .set_lines = w_set_lines, .close = w_close,
};

int __wrap_sim_transport_open(sim_device *d, esp_transport **out);
int __wrap_sim_transport_open(sim_device *d, esp_transport **out)
{
	int rc = __real_sim_transport_open(d, out);
	if (rc < 0)
		return rc;
	esp_transport *t = *out;
	pthread_mutex_lock(&lock);
	map_slots();
	struct wire_slot *slot = NULL;
	for (int i = 0; slots && i < WIRE_SLOTS && !slot; i++) {
		if (!strncmp(slots[i].name, t->name, sizeof slots[i].name - 1))
			slot = &slots[i];
		else if (!slots[i].name[0]) {
			memcpy(slots[i].name, t->name, sizeof slots[i].name);
			slots[i].name[sizeof slots[i].name - 1] = 0;
			slot = &slots[i];
		}
	}
	struct open_tr *o = slot ? find(NULL) : NULL;
	if (o) {
		o->orig = t->ops;
		o->slot = slot;
		__atomic_store_n(&o->t, t, __ATOMIC_RELEASE);
		t->ops = &counting_ops;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}
