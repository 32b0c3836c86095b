/* In-process transport to a simulated device: what a serial port would be,
 * without the kernel.  Reads wait on the configured clock until device
 * output is due; after an unplug or a USB re-enumeration the transport is
 * dead (-ENODEV) and the client must open a new one, as with a real port. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sim_priv.h"

struct sim_tr {
	esp_transport t;
	sim_device *d;
	unsigned gen;
};

static bool alive(struct sim_tr *s)
{
	return s->d->plugged && s->d->generation == s->gen;
}

/* alive(), taking the device lock for the check */
static bool alive_now(struct sim_tr *s)
{
	pthread_mutex_lock(&s->d->lock);
	bool ok = alive(s);
	pthread_mutex_unlock(&s->d->lock);
	return ok;
}

static int tr_write(esp_transport *t, const uint8_t *b, size_t n)
{
	struct sim_tr *s = (struct sim_tr *)t;
	if (!alive_now(s))
		return -ENODEV;
	sim_host_write(s->d, b, n, esp_now_us(t->clock));
	return (int)n;
}

static int tr_read(esp_transport *t, uint8_t *b, size_t n, uint32_t timeout_ms)
{
	struct sim_tr *s = (struct sim_tr *)t;
	sim_device *d = s->d;
	const esp_clock *clk = t->clock;
	bool real = clk == esp_clock_real();
	uint64_t now = esp_now_us(clk);
	uint64_t deadline = now + (uint64_t)timeout_ms * 1000;
	for (;;) {
		pthread_mutex_lock(&d->lock);
		if (!alive(s)) {
			pthread_mutex_unlock(&d->lock);
			return -ENODEV;
		}
		pthread_mutex_unlock(&d->lock);
		size_t got = sim_host_read(d, b, n, now);
		if (got)
			return (int)got;
		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t next = sim_next_event_us(d);
		uint64_t wake = next < deadline ? next : deadline;
		if (wake <= now)
			wake = now + 1;
		if (real) {
			/* sleep on the device's condition so output produced by
			 * another thread (or an unplug) wakes us at once */
			struct timespec ts;
			uint64_t lim = wake - now > 20000 ? 20000 : wake - now;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t ns = (uint64_t)ts.tv_nsec + lim * 1000;
			ts.tv_sec += (time_t)(ns / 1000000000u);
			ts.tv_nsec = (long)(ns % 1000000000u);
			/* queued output not due yet is no reason to spin: real
			 * hardware's bytes arrive when they arrive, and a spinning
			 * reader ate both cores with 8 devices flashing */
			pthread_mutex_lock(&d->lock);
			if (alive(s) && (d->out_len == 0 || sim_out_next_ns(d) > now * 1000))
				pthread_cond_timedwait(&d->cond, &d->lock, &ts);
			pthread_mutex_unlock(&d->lock);
		} else {
			/* fake clock: time moves by our sleeping; a device with an
			 * app is polled at least every millisecond */
			uint64_t step = wake - now;
			if (next == UINT64_MAX && d->app && step > 1000)
				step = 1000;
			clk->sleep_us(clk, step);
		}
		now = esp_now_us(clk);
	}
}

static int tr_flush_input(esp_transport *t)
{
	struct sim_tr *s = (struct sim_tr *)t;
	uint8_t buf[4096];
	uint64_t now = esp_now_us(t->clock);
	if (!alive_now(s))
		return -ENODEV;
	while (sim_host_read(s->d, buf, sizeof buf, now) > 0)
		;
	return 0;
}

static int tr_set_baud(esp_transport *t, uint32_t baud)
{
	struct sim_tr *s = (struct sim_tr *)t;
	if (!alive_now(s))
		return -ENODEV;
	sim_set_baud(s->d, baud);
	t->baud = baud;
	return 0;
}

static int tr_set_lines(esp_transport *t, int dtr, int rts)
{
	struct sim_tr *s = (struct sim_tr *)t;
	if (!alive_now(s))
		return -ENODEV;
	sim_set_lines(s->d, dtr, rts);
	return 0;
}

static void tr_close(esp_transport *t)
{
	free(t);
}

static const struct esp_transport_ops sim_tr_ops = {
	.read = tr_read,
	.write = tr_write,
	.flush_input = tr_flush_input,
	.set_baud = tr_set_baud,
	.set_lines = tr_set_lines,
	.close = tr_close,
};

int sim_transport_open(sim_device *d, esp_transport **out)
{
	*out = NULL;
	pthread_mutex_lock(&d->lock);
	bool plugged = d->plugged;
	unsigned gen = d->generation;
	uint16_t pid = d->usb_pid_now;
	pthread_mutex_unlock(&d->lock);
	if (!plugged)
		return -ENODEV;
	struct sim_tr *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->d = d;
	s->gen = gen;
	s->t.ops = &sim_tr_ops;
	s->t.clock = d->clock;
	s->t.flags = d->native_usb ? ESP_TR_NATIVE_USB : 0;
	s->t.baud = 115200;
	s->t.usb_vid = sim_usb_vid(d);
	s->t.usb_pid = pid;
	snprintf(s->t.name, sizeof s->t.name, "sim-%s%s%s", d->chip->key, d->name ? "-" : "", d->name ? d->name : "");
	/* a freshly opened port starts at 115200 on the host side */
	sim_set_baud(d, 115200);
	*out = &s->t;
	return 0;
}
