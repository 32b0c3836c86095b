#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/slip.h"

size_t slip_encode(const uint8_t *in, size_t n, uint8_t *out)
{
	size_t o = 0;
	out[o++] = SLIP_END;
	for (size_t i = 0; i < n; i++) {
		if (in[i] == SLIP_END) {
			out[o++] = SLIP_ESC;
			out[o++] = SLIP_ESC_END;
		} else if (in[i] == SLIP_ESC) {
			out[o++] = SLIP_ESC;
			out[o++] = SLIP_ESC_ESC;
		} else {
			out[o++] = in[i];
		}
	}
	out[o++] = SLIP_END;
	return o;
}

void slip_decoder_init(slip_decoder *d, uint8_t *buf, size_t cap)
{
	memset(d, 0, sizeof *d);
	d->buf = buf;
	d->cap = cap;
}

void slip_decoder_reset(slip_decoder *d)
{
	d->len = 0;
	d->in_frame = d->esc = d->bad = 0;
}

static void keep_text(slip_decoder *d, uint8_t c)
{
	d->noise++;
	if (d->text_len + 1 >= sizeof d->text) {
		memmove(d->text, d->text + sizeof d->text / 2, sizeof d->text / 2);
		d->text_len -= sizeof d->text / 2;
	}
	d->text[d->text_len++] = (char)c;
	d->text[d->text_len] = 0;
}

int slip_decoder_feed(slip_decoder *d, const uint8_t *data, size_t n, size_t *used)
{
	size_t i;
	for (i = 0; i < n; i++) {
		uint8_t c = data[i];
		if (!d->in_frame) {
			if (c == SLIP_END) {
				d->in_frame = 1;
				d->len = 0;
				d->esc = d->bad = 0;
			} else {
				keep_text(d, c);
			}
			continue;
		}
		if (c == SLIP_END) {
			/* An empty frame is two delimiters in a row: treat the second
			 * as the start of the next frame (also resynchronises when we
			 * joined the stream in the middle of a frame). */
			if (d->len == 0 && !d->bad && !d->esc)
				continue;
			int ok = !d->bad && !d->esc;
			d->in_frame = 0;
			if (ok) {
				*used = i + 1;
				return 1;
			}
			d->len = 0;
			d->bad = d->esc = 0;
			/* a broken frame's end may really be the next one's start */
			d->in_frame = 1;
			continue;
		}
		if (d->bad)
			continue;
		if (d->esc) {
			d->esc = 0;
			if (c == SLIP_ESC_END)
				c = SLIP_END;
			else if (c == SLIP_ESC_ESC)
				c = SLIP_ESC;
			else {
				d->bad = 1;
				continue;
			}
		} else if (c == SLIP_ESC) {
			d->esc = 1;
			continue;
		}
		if (d->len >= d->cap) {
			d->bad = 1;
			continue;
		}
		d->buf[d->len++] = c;
	}
	*used = i;
	return 0;
}

void slip_reader_init(slip_reader *r, esp_transport *t, uint8_t *frame_buf, size_t cap)
{
	r->t = t;
	slip_decoder_init(&r->dec, frame_buf, cap);
	r->in_pos = r->in_len = 0;
}

int slip_read_frame(slip_reader *r, uint64_t deadline_us)
{
	const esp_clock *clk = r->t->clock;
	for (;;) {
		if (r->in_pos < r->in_len) {
			size_t used = 0;
			int done = slip_decoder_feed(&r->dec, r->in + r->in_pos, r->in_len - r->in_pos, &used);
			r->in_pos += used;
			if (done) {
				size_t len = r->dec.len;
				r->dec.in_frame = 0;
				return (int)len;
			}
			continue;
		}
		uint64_t now = esp_now_us(clk);
		if (now >= deadline_us)
			return -ETIMEDOUT;
		uint64_t wait_ms = (deadline_us - now + 999) / 1000;
		if (wait_ms > 0x7fffffff)
			wait_ms = 0x7fffffff;
		int n = esp_tr_read(r->t, r->in, sizeof r->in, (uint32_t)wait_ms);
		if (n == -ETIMEDOUT)
			continue; /* re-check the deadline on our clock */
		if (n < 0)
			return n;
		r->in_pos = 0;
		r->in_len = (size_t)n;
	}
}

void slip_reader_flush(slip_reader *r)
{
	r->in_pos = r->in_len = 0;
	slip_decoder_reset(&r->dec);
	esp_tr_flush_input(r->t);
}

int slip_write_frame(esp_transport *t, const uint8_t *payload, size_t n)
{
	uint8_t stackbuf[1024];
	uint8_t *out = stackbuf;
	size_t need = SLIP_MAX_ENCODED(n);
	if (need > sizeof stackbuf) {
		out = malloc(need);
		if (!out)
			return -ENOMEM;
	}
	size_t len = slip_encode(payload, n, out);
	int rc = esp_tr_write(t, out, len);
	if (out != stackbuf)
		free(out);
	return rc < 0 ? rc : 0;
}
