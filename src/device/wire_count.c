/* A transport that counts what crosses it, wrapped around the real one, so
 * info.json can tell how many bytes a job cost on the wire (a re-flash of
 * an identical image should cost almost nothing).  Counts are kept by the
 * device and survive port reopens.
 *
 * It also makes every wait for the device cancellable: a read waits in
 * slices of CANCEL_POLL_MS and gives up with -EINTR once the running job
 * is cancelled (Ctrl-C), so a stalled device or a slow command (ROM
 * FLASH_BEGIN erasing, a long MD5) never holds a Ctrl-C for the length of
 * its timeout.  The loader is then out of step with the chip: the worker
 * re-enters it for the next job (dev_run_job). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "device_i.h"

struct counting_tr {
	esp_transport base;
	esp_transport *inner;
	esp_device *d;
	int fpos;               /* position in the current SLIP frame, -1 outside */
};

/* Count loader FLASH_DATA / FLASH_DEFL_DATA requests as they leave: a
 * request frame is C0 00 <op> ...; ops never need SLIP escaping. */
static void scan_ops(struct counting_tr *c, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (b[i] == 0xC0) {
			c->fpos = c->fpos > 0 ? -1 : 0;  /* end of a frame, or a start */
			continue;
		}
		if (c->fpos < 0)
			continue;
		if (c->fpos == 0 && b[i] != 0x00) {
			c->fpos = -1;  /* not a request */
			continue;
		}
		if (c->fpos == 1 && (b[i] == ESP_FLASH_DATA || b[i] == ESP_FLASH_DEFL_DATA))
			atomic_fetch_add(&c->d->flash_data_packets, 1);
		c->fpos++;
	}
}

static void sync_fields(struct counting_tr *c)
{
	c->base.baud = c->inner->baud;
	c->base.flags = c->inner->flags;
	c->base.usb_vid = c->inner->usb_vid;
	c->base.usb_pid = c->inner->usb_pid;
}

#define CANCEL_POLL_MS 100

/* Called on the worker thread, which alone sets d->current. */
static bool job_cancelled(esp_device *d)
{
	struct dev_job *j = d->current;
	return j && !d->no_cancel_wait &&
	       (atomic_load(&j->cancel) || (j->group_cancel && atomic_load(j->group_cancel)));
}

static int ct_read(esp_transport *t, uint8_t *b, size_t n, uint32_t ms)
{
	struct counting_tr *c = (struct counting_tr *)t;
	int rc;
	if (ms && job_cancelled(c->d)) {
		c->d->wait_cancelled = true;
		return -EINTR;
	}
	for (;;) {
		uint32_t slice = ms > CANCEL_POLL_MS ? CANCEL_POLL_MS : ms;
		rc = esp_tr_read(c->inner, b, n, slice);
		if (rc != -ETIMEDOUT || slice == ms)
			break;
		ms -= slice;
		if (job_cancelled(c->d)) {
			c->d->wait_cancelled = true;
			return -EINTR;
		}
	}
	if (rc > 0) {
		atomic_fetch_add(&c->d->rx_bytes, (uint64_t)rc);
		dev_console_feed(c->d, b, (size_t)rc);  /* kept only while the app has the port */
	}
	return rc;
}

static int ct_write(esp_transport *t, const uint8_t *b, size_t n)
{
	struct counting_tr *c = (struct counting_tr *)t;
	int rc = esp_tr_write(c->inner, b, n);
	if (rc >= 0) {
		atomic_fetch_add(&c->d->tx_bytes, (uint64_t)n);
		scan_ops(c, b, n);
	}
	return rc;
}

static int ct_flush(esp_transport *t)
{
	return esp_tr_flush_input(((struct counting_tr *)t)->inner);
}

static int ct_baud(esp_transport *t, uint32_t baud)
{
	struct counting_tr *c = (struct counting_tr *)t;
	int rc = esp_tr_set_baud(c->inner, baud);
	sync_fields(c);
	return rc;
}

static int ct_lines(esp_transport *t, int dtr, int rts)
{
	return esp_tr_set_lines(((struct counting_tr *)t)->inner, dtr, rts);
}

static void ct_close(esp_transport *t)
{
	struct counting_tr *c = (struct counting_tr *)t;
	esp_tr_close(c->inner);
	free(c);
}

static const struct esp_transport_ops ct_ops = {
	.read = ct_read, .write = ct_write, .flush_input = ct_flush,
	.set_baud = ct_baud, .set_lines = ct_lines, .close = ct_close,
};

esp_transport *dev_counting_transport(esp_device *d, esp_transport *inner)
{
	struct counting_tr *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->inner = inner;
	c->d = d;
	c->fpos = -1;
	c->base.ops = &ct_ops;
	c->base.clock = inner->clock;
	snprintf(c->base.name, sizeof c->base.name, "%s", inner->name);
	sync_fields(c);
	return &c->base;
}
