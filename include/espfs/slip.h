/* SLIP framing as the Espressif loaders use it: 0xC0 delimits, 0xDB 0xDC /
 * 0xDB 0xDD escape.  The decoder is incremental and tolerant: bytes outside a
 * frame (boot log text) are skipped, empty frames are ignored, and a frame
 * with a bad escape or over capacity is dropped. */
#ifndef ESPFS_SLIP_H
#define ESPFS_SLIP_H
#include <stddef.h>
#include <stdint.h>
#include "espfs/transport.h"

#define SLIP_END     0xC0
#define SLIP_ESC     0xDB
#define SLIP_ESC_END 0xDC
#define SLIP_ESC_ESC 0xDD

/* Worst-case encoded size of n payload bytes. */
#define SLIP_MAX_ENCODED(n) (2 * (n) + 2)

/* Encode one frame (with both delimiters) into out; returns its length. */
size_t slip_encode(const uint8_t *in, size_t n, uint8_t *out);

typedef struct slip_decoder {
	uint8_t *buf;     /* frame payload under construction */
	size_t cap, len;
	int in_frame, esc, bad;
	size_t noise;     /* count of bytes seen outside frames */
	/* optional: last bytes of out-of-frame text, for boot-log diagnosis */
	char text[256];
	size_t text_len;
} slip_decoder;

void slip_decoder_init(slip_decoder *d, uint8_t *buf, size_t cap);
void slip_decoder_reset(slip_decoder *d);
/* Consume bytes from data until a frame completes or data runs out.
 * Returns 1 when a frame is complete (payload in d->buf, d->len; the next
 * feed starts a new frame), 0 when more bytes are needed.  *used tells how
 * many bytes were consumed. */
int slip_decoder_feed(slip_decoder *d, const uint8_t *data, size_t n, size_t *used);

/* A buffered frame reader over a transport: one read() fills a buffer, frames
 * are cut from it, so a frame costs no syscall per byte. */
typedef struct slip_reader {
	esp_transport *t;
	slip_decoder dec;
	uint8_t in[4096];
	size_t in_pos, in_len;
} slip_reader;

void slip_reader_init(slip_reader *r, esp_transport *t, uint8_t *frame_buf, size_t cap);
/* Read the next complete frame before deadline_us (on t->clock).  Returns the
 * payload length (>= 1) with the payload in r->dec.buf, -ETIMEDOUT, or the
 * transport's error. */
int slip_read_frame(slip_reader *r, uint64_t deadline_us);
/* Drop buffered input (both ours and the transport's). */
void slip_reader_flush(slip_reader *r);
/* Encode and write one frame. */
int slip_write_frame(esp_transport *t, const uint8_t *payload, size_t n);

#endif
