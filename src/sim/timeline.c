/* The device's output timeline: every byte the device sends is queued with
 * the time it is due on the host side (link timing model on) or at once
 * (off); faults (drop, corrupt, garbage, stall) and baud-rate mismatch act
 * here, on the way out. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "sim_priv.h"

uint64_t sim_rand(sim_device *d)
{
	/* xorshift64*: reproducible per seed */
	uint64_t x = d->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	d->rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

double sim_rand01(sim_device *d) { return (double)(sim_rand(d) >> 11) / 9007199254740992.0; }

uint64_t sim_byte_ns(const sim_device *d)
{
	if (!d->timing)
		return 0;
	if (d->native_usb)
		return 1000;                         /* ~1 MB/s over USB */
	return 10000000000ull / (d->dev_baud ? d->dev_baud : 115200); /* 10 bits a byte */
}

uint64_t sim_host_byte_ns(const sim_device *d)
{
	if (!d->timing)
		return 0;
	if (d->native_usb)
		return 1000;
	return 10000000000ull / (d->host_baud ? d->host_baud : 115200);
}

bool sim_link_marginal(const sim_device *d, uint32_t baud)
{
	return d->faults.max_baud && !d->native_usb && baud > d->faults.max_baud;
}

bool sim_baud_mismatch(const sim_device *d)
{
	return !d->native_usb && d->host_baud != d->dev_baud;
}

/* ---- output timeline ---- */

static int out_reserve(sim_device *d, size_t n)
{
	if (d->out_head > 0 && d->out_head + d->out_len + n > d->out_cap) {
		memmove(d->out, d->out + d->out_head, d->out_len);
		d->out_head = 0;
	}
	if (d->out_len + n > d->out_cap) {
		size_t cap = d->out_cap ? d->out_cap : 4096;
		while (cap < d->out_len + n)
			cap *= 2;
		uint8_t *b = realloc(d->out, cap);
		if (!b)
			return -ENOMEM;
		d->out = b;
		d->out_cap = cap;
	}
	if (d->ch_head > 0 && d->ch_head + d->ch_len == d->ch_cap) {
		memmove(d->chunks, d->chunks + d->ch_head, d->ch_len * sizeof *d->chunks);
		d->ch_head = 0;
	}
	if (d->ch_len == d->ch_cap) {
		size_t cap = d->ch_cap ? d->ch_cap * 2 : 64;
		struct out_chunk *c = realloc(d->chunks, cap * sizeof *c);
		if (!c)
			return -ENOMEM;
		d->chunks = c;
		d->ch_cap = cap;
	}
	return 0;
}

void sim_out_clear(sim_device *d)
{
	d->out_head = d->out_len = 0;
	d->ch_head = d->ch_len = 0;
}

void sim_emit_at(sim_device *d, const uint8_t *buf, size_t n, uint64_t t_ns)
{
	if (!d->plugged || d->en_low || n == 0 || d->faults.stall)
		return;
	if (out_reserve(d, n) < 0)
		return;
	uint8_t *dst = d->out + d->out_head + d->out_len;
	size_t k = 0;
	bool garble = sim_baud_mismatch(d);
	bool marginal = sim_link_marginal(d, d->dev_baud);
	for (size_t i = 0; i < n; i++) {
		uint8_t b = buf[i];
		if (d->faults.garbage || garble)
			b = (uint8_t)sim_rand(d);
		if (marginal && sim_rand(d) % 5 == 0)
			b ^= (uint8_t)(1u << (sim_rand(d) % 8));
		if (d->faults.drop_rate > 0 && sim_rand01(d) < d->faults.drop_rate)
			continue;
		if (d->faults.corrupt_rate > 0 && sim_rand01(d) < d->faults.corrupt_rate)
			b ^= (uint8_t)(1u << (sim_rand(d) % 8));
		dst[k++] = b;
	}
	if (k == 0)
		return;
	uint64_t bns = sim_byte_ns(d);
	uint64_t start = t_ns;
	if (bns && start < d->tx_free_ns)
		start = d->tx_free_ns;
	struct out_chunk *c = &d->chunks[d->ch_head + d->ch_len++];
	c->len = k;
	c->sent = 0;
	c->start_ns = start;
	c->byte_ns = bns;
	d->out_len += k;
	if (bns)
		d->tx_free_ns = start + k * bns;
	pthread_cond_broadcast(&d->cond);
}

void sim_reply(sim_device *d, uint8_t op, uint32_t value, const uint8_t *data, size_t n,
	       const uint8_t *status, size_t status_len, uint64_t t_ns)
{
	size_t plen = 8 + n + status_len;
	uint8_t stackbuf[128];
	uint8_t *pl = plen <= sizeof stackbuf ? stackbuf : malloc(plen);
	if (!pl)
		return;
	pl[0] = 0x01;
	pl[1] = op;
	pl[2] = (uint8_t)((n + status_len) & 0xFF);
	pl[3] = (uint8_t)((n + status_len) >> 8);
	pl[4] = (uint8_t)value;
	pl[5] = (uint8_t)(value >> 8);
	pl[6] = (uint8_t)(value >> 16);
	pl[7] = (uint8_t)(value >> 24);
	if (n)
		memcpy(pl + 8, data, n);
	memcpy(pl + 8 + n, status, status_len);
	sim_raw_frame(d, pl, plen, t_ns);
	if (pl != stackbuf)
		free(pl);
}

void sim_raw_frame(sim_device *d, const uint8_t *buf, size_t n, uint64_t t_ns)
{
	uint8_t *enc = malloc(SLIP_MAX_ENCODED(n));
	if (!enc)
		return;
	size_t m = slip_encode(buf, n, enc);
	sim_emit_at(d, enc, m, t_ns);
	free(enc);
}

void sim_emit_text(sim_device *d, const char *s, uint64_t t_ns)
{
	sim_emit_at(d, (const uint8_t *)s, strlen(s), t_ns);
}

/* Drop output not yet on the wire (the UART stops on reset). */
void sim_out_cut_undue(sim_device *d)
{
	uint64_t now = d->now_ns;
	size_t total = 0, i, kept = 0;
	for (i = 0; i < d->ch_len; i++) {
		struct out_chunk *c = &d->chunks[d->ch_head + i];
		size_t due;
		if (c->byte_ns == 0)
			due = c->start_ns <= now ? c->len : 0;
		else if (now < c->start_ns)
			due = 0;
		else {
			uint64_t k = (now - c->start_ns) / c->byte_ns;
			due = k < c->len ? (size_t)k : c->len;
		}
		if (due < c->sent)
			due = c->sent;
		bool cut = due < c->len;
		c->len = due;
		if (c->len > c->sent) {
			total += c->len - c->sent;
			kept = i + 1;
		}
		if (cut)
			break;
	}
	d->ch_len = kept;
	d->out_len = total;
	if (d->ch_len == 0)
		d->ch_head = 0;
	d->tx_free_ns = now;
}

size_t sim_out_take(sim_device *d, uint8_t *buf, size_t cap, uint64_t now)
{
	size_t got = 0;
	while (d->ch_len && got < cap) {
		struct out_chunk *c = &d->chunks[d->ch_head];
		size_t avail;
		if (c->byte_ns == 0)
			avail = c->start_ns <= now ? c->len - c->sent : 0;
		else if (now < c->start_ns + c->byte_ns)
			avail = 0;
		else {
			uint64_t k = (now - c->start_ns) / c->byte_ns;
			if (k > c->len)
				k = c->len;
			avail = (size_t)k - c->sent;
		}
		if (avail == 0)
			break;
		if (avail > cap - got)
			avail = cap - got;
		memcpy(buf + got, d->out + d->out_head, avail);
		d->out_head += avail;
		d->out_len -= avail;
		got += avail;
		c->sent += avail;
		if (c->sent == c->len) {
			d->ch_head++;
			d->ch_len--;
			if (d->ch_len == 0)
				d->ch_head = 0;
		}
	}
	if (d->out_len == 0)
		d->out_head = 0;
	return got;
}

uint64_t sim_out_next_ns(sim_device *d)
{
	if (!d->ch_len)
		return UINT64_MAX;
	struct out_chunk *c = &d->chunks[d->ch_head];
	return c->start_ns + (c->sent + 1) * c->byte_ns;
}
