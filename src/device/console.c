/* The device's console: what the application prints, kept in a 64 KiB ring
 * as it arrives, and what the user types, queued for the port.
 *
 * Bytes reach the ring two ways, both on the worker thread: the worker
 * reads the port itself while it has nothing else to do and the chip runs
 * its application (dev_console_pump), and every read another part of the
 * worker makes through the device's transport while the console is live
 * (the Improv client's exchange right after a reset reads the boot log)
 * is copied here by the counting transport.  While a job owns the port
 * the console is paused: one line says so, and the next reset into the
 * application resumes it, so the new firmware's boot log follows.
 *
 * Improv packets ("IMPROV" + version + type + length + data + checksum,
 * DESIGN.md Improv section) are the protocol, not the console: they are
 * kept out of the ring. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "device_i.h"
#include "espfs/clock.h"
#include "espfs/log.h"

#define RING (64u * 1024u)
#define TX_CAP (16u * 1024u)
/* How long an idle worker waits on the port before it looks at its queue
 * again: the latency a job or console input sees at most, not a poll of
 * the device (the wait ends at the first byte). */
#define PUMP_WAIT_MS 20

struct dev_console {
	pthread_mutex_t lock;
	uint8_t ring[RING];
	uint64_t total;        /* bytes ever kept: the file's size */
	uint8_t tx[TX_CAP];
	size_t tx_len;
	bool live;             /* capturing (the application has the port) */
	bool paused_said;      /* the pause line is in the ring */
	/* Improv filter: bytes of a possible packet at a line start */
	uint8_t pk[6 + 3 + 256 + 1];
	size_t pk_len;
	bool at_line_start;
	bool after_packet;     /* the '\n' a device sends after a packet is its */
	uint32_t baud;         /* this device's rate (state "console-baud N"), 0: default */
	bool baud_changed;     /* the worker applies it at its next pump */
};

static const char MAGIC[] = "IMPROV";

int dev_console_init(esp_device *d)
{
	d->con = calloc(1, sizeof *d->con);
	if (!d->con)
		return -ENOMEM;
	pthread_mutex_init(&d->con->lock, NULL);
	d->con->at_line_start = true;
	return 0;
}

void dev_console_free(esp_device *d)
{
	if (!d->con)
		return;
	pthread_mutex_destroy(&d->con->lock);
	free(d->con);
	d->con = NULL;
}

static void ring_put(struct dev_console *c, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		c->ring[(c->total + i) % RING] = b[i];
	c->total += n;
}

/* One byte through the Improv filter into the ring (c->lock held). */
static void filter_byte(struct dev_console *c, uint8_t b)
{
	if (c->after_packet) {
		c->after_packet = false;
		if (b == '\n')
			return;
	}
	if (c->pk_len == 0 && !c->at_line_start) {
		ring_put(c, &b, 1);
		c->at_line_start = b == '\n';
		return;
	}
	c->pk[c->pk_len++] = b;
	size_t k = c->pk_len;
	if (k <= 6) {
		if (b == (uint8_t)MAGIC[k - 1])
			return;  /* still a possible packet */
		ring_put(c, c->pk, k);  /* not one: console text after all */
		c->pk_len = 0;
		c->at_line_start = b == '\n';
		return;
	}
	/* header complete: version, type, length, data, checksum */
	if (k >= 9 && k == 9u + c->pk[8] + 1u) {
		c->pk_len = 0;
		c->at_line_start = true;  /* a packet starts a line of its own */
		c->after_packet = true;
	}
}

static void emit(esp_device *d)
{
	dev_event(d, DEV_EV_CONSOLE);
}

void dev_console_feed(esp_device *d, const uint8_t *b, size_t n)
{
	struct dev_console *c = d->con;
	if (!c || !n)
		return;
	pthread_mutex_lock(&c->lock);
	if (!c->live) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	uint64_t before = c->total;
	for (size_t i = 0; i < n; i++)
		filter_byte(c, b[i]);
	bool grew = c->total != before;
	pthread_mutex_unlock(&c->lock);
	if (grew)
		emit(d);
}

/* A line of espfs's own in the stream (on a line of its own). */
static void say(esp_device *d, const char *fmt, const char *what)
{
	struct dev_console *c = d->con;
	char line[200];
	int n = snprintf(line, sizeof line, fmt, what);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line)
		n = sizeof line - 1;
	pthread_mutex_lock(&c->lock);
	if (c->total && c->ring[(c->total - 1) % RING] != '\n')
		ring_put(c, (const uint8_t *)"\n", 1);
	c->pk_len = 0;
	ring_put(c, (const uint8_t *)line, (size_t)n);
	c->at_line_start = true;
	pthread_mutex_unlock(&c->lock);
	emit(d);
}

void dev_console_pause(esp_device *d, const char *what)
{
	struct dev_console *c = d->con;
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	bool was = c->live, said = c->paused_said;
	c->live = false;
	c->paused_said = true;
	pthread_mutex_unlock(&c->lock);
	/* the ROM loader answers at 115200 whatever the application uses */
	if (d->tr && !d->in_loader && !(d->tr->flags & ESP_TR_NATIVE_USB) && d->tr->baud != 115200)
		esp_tr_set_baud(d->tr, 115200);
	if (was || !said)
		say(d, "[espfs] %s has the port; the console resumes when the application runs again\n",
		    what && *what ? what : "a job");
}

void dev_console_resume(esp_device *d)
{
	struct dev_console *c = d->con;
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->live = true;
	c->paused_said = false;
	c->pk_len = 0;
	c->at_line_start = true;
	c->after_packet = false;
	pthread_mutex_unlock(&c->lock);
	/* the application's UART rate (USB CDC has none) */
	uint32_t baud = dev_console_baud(d);
	if (d->tr && !(d->tr->flags & ESP_TR_NATIVE_USB) && d->tr->baud != baud &&
	    esp_tr_set_baud(d->tr, baud) < 0)
		LOGW("%s: console: the port cannot use %u baud", d->name, baud);
}

bool dev_console_live(esp_device *d)
{
	struct dev_console *c = d->con;
	if (!c)
		return false;
	pthread_mutex_lock(&c->lock);
	bool l = c->live;
	pthread_mutex_unlock(&c->lock);
	return l;
}

uint32_t dev_console_baud(esp_device *d)
{
	uint32_t b = 0;
	if (d->con) {
		pthread_mutex_lock(&d->con->lock);
		b = d->con->baud;
		pthread_mutex_unlock(&d->con->lock);
	}
	return b ? b : d->opt.console_baud ? d->opt.console_baud : 115200;
}

uint32_t device_console_baud(esp_device *d)
{
	return dev_console_baud(d);
}

int device_console_set_baud(esp_device *d, uint32_t baud)
{
	if (!d->con)
		return -ENODEV;
	if (baud < 300 || baud > 5000000)
		return -EINVAL;
	pthread_mutex_lock(&d->con->lock);
	d->con->baud = baud;
	d->con->baud_changed = true;
	pthread_mutex_unlock(&d->con->lock);
	return 0;
}

void dev_console_pump(esp_device *d)
{
	struct dev_console *c = d->con;
	uint8_t buf[1024];
	if (!c || !d->tr)
		return;
	pthread_mutex_lock(&c->lock);
	bool rebaud = c->baud_changed;
	c->baud_changed = false;
	pthread_mutex_unlock(&c->lock);
	uint32_t baud = dev_console_baud(d);
	if (rebaud && !(d->tr->flags & ESP_TR_NATIVE_USB) && d->tr->baud != baud &&
	    esp_tr_set_baud(d->tr, baud) < 0)
		LOGW("%s: console: the port cannot use %u baud", d->name, baud);
	pthread_mutex_lock(&c->lock);
	size_t n = c->tx_len;
	if (n > sizeof buf)
		n = sizeof buf;
	memcpy(buf, c->tx, n);
	pthread_mutex_unlock(&c->lock);
	if (n) {
		int rc = esp_tr_write(d->tr, buf, n);
		if (rc < 0) {
			LOGD("%s: console input not sent: %s", d->name, strerror(-rc));
		} else {
			pthread_mutex_lock(&c->lock);
			memmove(c->tx, c->tx + n, c->tx_len - n);
			c->tx_len -= n;
			pthread_mutex_unlock(&c->lock);
		}
	}
	/* what arrives is copied into the ring by the counting transport */
	int rc = esp_tr_read(d->tr, buf, sizeof buf, PUMP_WAIT_MS);
	if (rc == -ENODEV) {
		LOGD("%s: console: port gone", d->name);
		pthread_mutex_lock(&c->lock);
		c->live = false;
		pthread_mutex_unlock(&c->lock);
	}
}

/* ---- the reader's side (any thread) ---- */

uint64_t device_console_size(esp_device *d)
{
	struct dev_console *c = d->con;
	if (!c)
		return 0;
	pthread_mutex_lock(&c->lock);
	uint64_t t = c->total;
	pthread_mutex_unlock(&c->lock);
	return t;
}

size_t device_console_read(esp_device *d, uint64_t *pos, uint8_t *buf, size_t cap)
{
	struct dev_console *c = d->con;
	if (!c)
		return 0;
	pthread_mutex_lock(&c->lock);
	uint64_t oldest = c->total > RING ? c->total - RING : 0;
	if (*pos < oldest)
		*pos = oldest;  /* the part before is gone: the reader starts at what is kept */
	if (*pos > c->total)
		*pos = c->total;
	size_t n = 0;
	while (n < cap && *pos + n < c->total) {
		buf[n] = c->ring[(*pos + n) % RING];
		n++;
	}
	*pos += n;
	pthread_mutex_unlock(&c->lock);
	return n;
}

int device_console_write(esp_device *d, const uint8_t *buf, size_t n)
{
	struct dev_console *c = d->con;
	if (!c)
		return -ENODEV;
	if (device_gone(d))
		return -ENODEV;
	pthread_mutex_lock(&c->lock);
	if (c->tx_len + n > TX_CAP) {
		pthread_mutex_unlock(&c->lock);
		return -EBUSY;  /* a job holds the port and input piled up */
	}
	memcpy(c->tx + c->tx_len, buf, n);
	c->tx_len += n;
	pthread_mutex_unlock(&c->lock);
	return 0;
}
