/* Byte-stream transport to one serial port: a real tty (termios or
 * libserialport), or the in-process simulator.  All calls return 0 / a byte
 * count on success and a negative errno on failure. */
#ifndef ESPFS_TRANSPORT_H
#define ESPFS_TRANSPORT_H
#include <stddef.h>
#include <stdint.h>
#include "espfs/clock.h"

typedef struct esp_transport esp_transport;

enum {
	ESP_TR_NATIVE_USB = 1u << 0,  /* USB CDC: baud is meaningless, never slowed */
	ESP_TR_NO_LINES   = 1u << 1,  /* no DTR/RTS (pty, socket) */
};

struct esp_transport_ops {
	/* Wait at most timeout_ms for the first byte, then return what is
	 * buffered (1..len bytes).  -ETIMEDOUT if nothing arrived, -ENODEV if
	 * the port went away. */
	int (*read)(esp_transport *t, uint8_t *buf, size_t len, uint32_t timeout_ms);
	/* Write all of buf (blocking, at most write_timeout_ms in all:
	 * -ETIMEDOUT when the port does not take the bytes by then). */
	int (*write)(esp_transport *t, const uint8_t *buf, size_t len);
	/* Discard bytes received but not yet read. */
	int (*flush_input)(esp_transport *t);
	int (*set_baud)(esp_transport *t, uint32_t baud);
	/* dtr/rts: 1 assert, 0 release, -1 leave as is; both change together
	 * when both are given.  -ENOTTY when the port has no modem lines:
	 * callers treat that as "cannot reset", not as a failure. */
	int (*set_lines)(esp_transport *t, int dtr, int rts);
	void (*close)(esp_transport *t);
};

struct esp_transport {
	const struct esp_transport_ops *ops;
	const esp_clock *clock;
	unsigned flags;            /* ESP_TR_* */
	uint32_t baud;
	uint16_t usb_vid, usb_pid; /* 0 when unknown */
	/* How long one write may block when nothing reads the port (a chip
	 * that stopped reading its UART); 0: the transport's default (10 s).
	 * The loader sets it from each command's deadline. */
	uint32_t write_timeout_ms;
	char name[64];             /* e.g. "ttyACM0" or "sim0" */
};

static inline int esp_tr_read(esp_transport *t, uint8_t *b, size_t n, uint32_t ms) { return t->ops->read(t, b, n, ms); }
static inline int esp_tr_write(esp_transport *t, const uint8_t *b, size_t n) { return t->ops->write(t, b, n); }
static inline int esp_tr_flush_input(esp_transport *t) { return t->ops->flush_input(t); }
static inline int esp_tr_set_baud(esp_transport *t, uint32_t baud) { return t->ops->set_baud(t, baud); }
static inline int esp_tr_set_lines(esp_transport *t, int dtr, int rts) { return t->ops->set_lines(t, dtr, rts); }
static inline void esp_tr_close(esp_transport *t) { if (t) t->ops->close(t); }

/* A tty by path (a pty, /dev/ttyUSB0, a symlink to either): termios, raw
 * 8N1, no flow control.  Modem-line ioctls failing with ENOTTY/EINVAL set
 * ESP_TR_NO_LINES. */
int esp_serial_open(const char *path, uint32_t baud, const esp_clock *clock, esp_transport **out);

/* Who holds PATH (esp_serial_open said -EBUSY): "pid 1234 (minicom)",
 * comma-separated, from the flock owner in /proc/locks or else the
 * processes with it open in /proc/PID/fd.  Returns how many were found
 * (0: none visible) or -errno.  _in: with another /proc (tests). */
int esp_port_holders(const char *path, char *out, size_t cap);
int esp_port_holders_in(const char *proc, const char *path, char *out, size_t cap);
/* The pid of a running process whose command is comm (0: none). */
long esp_process_running(const char *proc, const char *comm);

#endif
