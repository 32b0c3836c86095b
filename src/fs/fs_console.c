/* The `console` file: an endless stream served by FUSE.
 *
 * Its size is the number of bytes the device has printed so far and a read
 * at offset OFF returns the bytes from OFF on, so `tail -f` (which seeks
 * near the end, then polls the size) and `less +F` work as on a growing
 * log.  A reader that reads on from where it was (cat) keeps its own
 * position: it starts at the oldest byte kept (the last 64 KiB) and, when
 * there is nothing new, its read waits (direct_io, no page cache) until
 * the device prints more, the device goes away (ENODEV), or the reader is
 * interrupted (EINTR through FUSE's interrupt).  O_NONBLOCK readers get
 * EAGAIN; poll()/select() report POLLIN when there is more
 * (fuse_lowlevel_notify_poll from the notifier thread).  Writes go to the
 * application's input.
 *
 * Locking: con_lock guards the waiting reads and the readers' poll
 * handles; it is never held while calling into libfuse, whose request
 * lock is taken before ours when an interrupt arrives. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/log.h"
#include "vfs.h"

struct con_reader {
	uint64_t pos;           /* next byte of the stream for this reader */
	uint64_t next_off;      /* file offset its next sequential read has */
	struct fuse_pollhandle *ph;
	struct handle *h;
	struct con_reader *next;
};

enum { W_NEW, W_LISTED, W_INTERRUPTED, W_TAKEN };

struct con_wait {
	fuse_req_t req;
	struct handle *h;
	size_t size;
	int state;              /* W_* under con_lock */
	struct con_wait *next;
};

static pthread_mutex_t con_lock = PTHREAD_MUTEX_INITIALIZER;
static struct con_wait *waits;
static struct con_reader *readers;

int console_open(struct handle *h)
{
	struct con_reader *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	r->h = h;
	/* a reader that comes late gets what is kept: its offset 0 maps to
	 * the oldest byte (device_console_read moves pos up to it) */
	r->pos = 0;
	r->next_off = 0;
	pthread_mutex_lock(&con_lock);
	r->next = readers;
	readers = r;
	pthread_mutex_unlock(&con_lock);
	h->con = r;
	return 0;
}

void console_release(struct handle *h)
{
	struct con_reader *r = h->con;
	if (!r)
		return;
	pthread_mutex_lock(&con_lock);
	for (struct con_reader **pp = &readers; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	pthread_mutex_unlock(&con_lock);
	if (r->ph)
		fuse_pollhandle_destroy(r->ph);
	free(r);
	h->con = NULL;
}

/* Copy what there is for this reader (con_lock held); 0 if nothing. */
static size_t take(struct con_reader *r, esp_device *d, uint8_t *buf, size_t size)
{
	size_t n = device_console_read(d, &r->pos, buf, size);
	r->next_off += n;
	return n;
}

static void reply_data(fuse_req_t req, const uint8_t *buf, size_t n)
{
	fuse_reply_buf(req, (const char *)buf, n);
}

static void wait_interrupted(fuse_req_t req, void *data)
{
	struct con_wait *w = data;
	pthread_mutex_lock(&con_lock);
	int st = w->state;
	if (st == W_LISTED) {
		for (struct con_wait **pp = &waits; *pp; pp = &(*pp)->next)
			if (*pp == w) {
				*pp = w->next;
				break;
			}
		w->state = W_TAKEN;
	} else if (st == W_NEW) {
		w->state = W_INTERRUPTED;  /* console_read sees it and answers */
	}
	pthread_mutex_unlock(&con_lock);
	if (st == W_LISTED) {
		/* libfuse holds a reference on req while this runs */
		fuse_reply_err(req, EINTR);
		free(w);
	}
}

void console_read(fuse_req_t req, struct handle *h, size_t size, off_t off, int flags)
{
	struct con_reader *r = h->con;
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf || !r) {
		free(buf);
		fuse_reply_err(req, r ? ENOMEM : EBADF);
		return;
	}
	pthread_mutex_lock(&con_lock);
	if ((uint64_t)off != r->next_off) {
		/* a seek (tail -f reads near the end): offsets are stream
		 * positions from here on */
		r->pos = (uint64_t)off;
		r->next_off = (uint64_t)off;
	}
	size_t n = take(r, h->dev, buf, size);
	pthread_mutex_unlock(&con_lock);
	if (n || device_gone(h->dev)) {
		if (n)
			reply_data(req, buf, n);
		else
			fuse_reply_err(req, ENODEV);
		free(buf);
		return;
	}
	free(buf);
	if (flags & O_NONBLOCK) {
		fuse_reply_err(req, EAGAIN);
		return;
	}
	struct con_wait *w = calloc(1, sizeof *w);
	if (!w) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	w->req = req;
	w->h = h;
	w->size = size;
	w->state = W_NEW;
	fuse_req_interrupt_func(req, wait_interrupted, w);
	pthread_mutex_lock(&con_lock);
	bool intr = w->state == W_INTERRUPTED;
	if (!intr) {
		w->state = W_LISTED;
		w->next = waits;
		waits = w;
	}
	pthread_mutex_unlock(&con_lock);
	if (intr) {
		fuse_req_interrupt_func(req, NULL, NULL);
		fuse_reply_err(req, EINTR);
		free(w);
		return;
	}
	/* bytes that came between the look above and the listing */
	console_wake(h->dev);
}

void console_wake(esp_device *d)
{
	bool gone = device_gone(d);
	for (;;) {
		/* one waiting read at a time: its reply happens unlocked */
		pthread_mutex_lock(&con_lock);
		struct con_wait *w = NULL, **pp;
		uint8_t *buf = NULL;
		size_t n = 0;
		for (pp = &waits; *pp; pp = &(*pp)->next) {
			struct con_wait *c = *pp;
			if (c->h->dev != d)
				continue;
			if (!gone && device_console_size(d) <= c->h->con->pos)
				continue;
			buf = malloc(c->size ? c->size : 1);
			if (!buf)
				break;
			n = take(c->h->con, d, buf, c->size);
			if (!n && !gone) {
				free(buf);
				buf = NULL;
				continue;
			}
			w = c;
			*pp = c->next;
			w->state = W_TAKEN;
			break;
		}
		struct fuse_pollhandle *phs[16];
		int nph = 0;
		if (!w) {
			for (struct con_reader *r = readers; r && nph < 16; r = r->next)
				if (r->h->dev == d && r->ph &&
				    (gone || device_console_size(d) > r->pos)) {
					phs[nph++] = r->ph;
					r->ph = NULL;
				}
		}
		pthread_mutex_unlock(&con_lock);
		if (!w) {
			for (int i = 0; i < nph; i++)
				notify_poll(phs[i]);
			free(buf);
			return;
		}
		fuse_req_interrupt_func(w->req, NULL, NULL);
		if (n)
			reply_data(w->req, buf, n);
		else
			fuse_reply_err(w->req, ENODEV);
		free(buf);
		free(w);
	}
}

void console_write(fuse_req_t req, struct handle *h, const char *buf, size_t size)
{
	int rc = device_console_write(h->dev, (const uint8_t *)buf, size);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

unsigned console_poll(struct handle *h, struct fuse_pollhandle *ph)
{
	struct con_reader *r = h->con;
	unsigned ev = POLLOUT | POLLWRNORM;
	if (!r) {
		if (ph)
			fuse_pollhandle_destroy(ph);
		return ev;
	}
	pthread_mutex_lock(&con_lock);
	bool more = device_gone(h->dev) || device_console_size(h->dev) > r->pos;
	struct fuse_pollhandle *old = NULL;
	if (more) {
		ev |= POLLIN | POLLRDNORM;
	} else if (ph) {
		old = r->ph;
		r->ph = ph;
		ph = NULL;
	}
	pthread_mutex_unlock(&con_lock);
	if (old)
		fuse_pollhandle_destroy(old);
	if (ph)
		fuse_pollhandle_destroy(ph);
	/* a byte may have come between the look and the handle's keeping */
	if (!more)
		console_wake(h->dev);
	return ev;
}

/* Unmount: waiting reads are answered (the kernel would otherwise keep
 * their callers blocked until the connection is torn down). */
void console_shutdown(void)
{
	for (;;) {
		pthread_mutex_lock(&con_lock);
		struct con_wait *w = waits;
		if (w) {
			waits = w->next;
			w->state = W_TAKEN;
		}
		pthread_mutex_unlock(&con_lock);
		if (!w)
			return;
		fuse_req_interrupt_func(w->req, NULL, NULL);
		fuse_reply_err(w->req, ENODEV);
		free(w);
	}
}
