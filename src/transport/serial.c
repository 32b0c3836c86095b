/* A tty transport over termios: raw 8N1, no flow control, poll() with
 * deadlines.  Works on ptys (no modem lines: ESP_TR_NO_LINES) and real
 * USB serial ports; libserialport is left to enumeration (DESIGN.md 1). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include "espfs/sysfs.h"
#include "espfs/transport.h"
#include "serial_baud.h"

#define WRITE_TIMEOUT_MS 10000

struct serial {
	esp_transport base;
	int fd;
};

static struct serial *S(esp_transport *t) { return (struct serial *)t; }

/* EIO/ENXIO/EBADF/hang-up all mean the device went away. */
static int gone(int e)
{
	return e == EIO || e == ENXIO || e == ENODEV || e == EBADF || e == EPIPE;
}

static int ser_read(esp_transport *t, uint8_t *buf, size_t len, uint32_t timeout_ms)
{
	struct pollfd p = { .fd = S(t)->fd, .events = POLLIN };
	int to = timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;
	for (;;) {
		int r = poll(&p, 1, to);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		ssize_t n = read(S(t)->fd, buf, len);
		if (n > 0)
			return (int)n;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n == 0 || gone(errno) || (p.revents & (POLLHUP | POLLERR | POLLNVAL)))
			return -ENODEV;
		return -errno;
	}
}

static int ser_write(esp_transport *t, const uint8_t *buf, size_t len)
{
	size_t done = 0;
	/* one deadline for the whole write, not one per poll */
	uint32_t limit = t->write_timeout_ms ? t->write_timeout_ms : WRITE_TIMEOUT_MS;
	uint64_t deadline = esp_now_us(t->clock) + (uint64_t)limit * 1000u;
	while (done < len) {
		ssize_t n = write(S(t)->fd, buf + done, len - done);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = S(t)->fd, .events = POLLOUT };
			uint64_t now = esp_now_us(t->clock);
			if (now >= deadline)
				return -ETIMEDOUT;
			uint64_t left_ms = (deadline - now + 999) / 1000;
			int r = poll(&p, 1, left_ms > INT_MAX ? INT_MAX : (int)left_ms);
			if (r == 0)
				return -ETIMEDOUT;
			if (r < 0 && errno != EINTR)
				return -errno;
			if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
				return -ENODEV;
			continue;
		}
		return n < 0 && !gone(errno) ? -errno : -ENODEV;
	}
	return (int)done;
}

static int ser_flush_input(esp_transport *t)
{
	return tcflush(S(t)->fd, TCIFLUSH) < 0 ? -errno : 0;
}

static int ser_set_baud(esp_transport *t, uint32_t baud)
{
	int rc = esp_serial_set_baud_fd(S(t)->fd, baud);
	if (rc == 0)
		t->baud = baud;
	return rc;
}

static int ser_set_lines(esp_transport *t, int dtr, int rts)
{
	int fd = S(t)->fd, bits;
	if (t->flags & ESP_TR_NO_LINES)
		return -ENOTTY;
	if (ioctl(fd, TIOCMGET, &bits) < 0) {
		if (errno == ENOTTY || errno == EINVAL) {
			t->flags |= ESP_TR_NO_LINES;
			return -ENOTTY;
		}
		return gone(errno) ? -ENODEV : -errno;
	}
	if (dtr >= 0)
		bits = dtr ? bits | TIOCM_DTR : bits & ~TIOCM_DTR;
	if (rts >= 0)
		bits = rts ? bits | TIOCM_RTS : bits & ~TIOCM_RTS;
	/* one TIOCMSET changes both lines at once (esptool's UnixTightReset) */
	if (ioctl(fd, TIOCMSET, &bits) < 0) {
		if (errno == ENOTTY || errno == EINVAL) {
			t->flags |= ESP_TR_NO_LINES;
			return -ENOTTY;
		}
		return gone(errno) ? -ENODEV : -errno;
	}
	return 0;
}

static void ser_close(esp_transport *t)
{
	/* the next opener (espfs again after a re-enumeration, a monitor)
	 * must not find the port exclusive */
	ioctl(S(t)->fd, TIOCNXCL);
	close(S(t)->fd);
	free(t);
}

static const struct esp_transport_ops serial_ops = {
	.read = ser_read, .write = ser_write, .flush_input = ser_flush_input,
	.set_baud = ser_set_baud, .set_lines = ser_set_lines, .close = ser_close,
};

/* USB VID:PID from sysfs: walk up from the tty's device to the USB device. */
static void usb_ids(const char *name, esp_transport *t)
{
	char link[PATH_MAX + 32], dev[PATH_MAX];
	if (snprintf(link, sizeof link, "/sys/class/tty/%s/device", name) >= (int)sizeof link)
		return;
	if (!realpath(link, dev))
		return;
	for (int up = 0; up < 5; up++) {
		char f[PATH_MAX + 16];
		if (snprintf(f, sizeof f, "%s/idVendor", dev) >= (int)sizeof f)
			return;
		if (access(f, R_OK) == 0) {
			t->usb_vid = (uint16_t)esp_sysfs_hex(f);
			snprintf(f, sizeof f, "%s/idProduct", dev);
			t->usb_pid = (uint16_t)esp_sysfs_hex(f);
			return;
		}
		char *slash = strrchr(dev, '/');
		if (!slash || slash == dev)
			return;
		*slash = 0;
	}
}

int esp_serial_open(const char *path, uint32_t baud, const esp_clock *clock, esp_transport **out)
{
	char real[PATH_MAX];
	*out = NULL;
	if (!realpath(path, real))
		return -errno;
	int fd = open(real, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;  /* EBUSY: another process set TIOCEXCL on it */
	/* The port is ours alone, as pyserial's exclusive=True does it: an
	 * flock that cooperating programs (esptool, pyserial, another espfs,
	 * minicom with lock files aside) respect, and TIOCEXCL so a plain
	 * open() by anyone but root fails.  Root passes TIOCEXCL, which is
	 * why the flock matters.  A second reader would steal loader replies
	 * mid-flash. */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	if (ioctl(fd, TIOCEXCL) < 0 && errno != ENOTTY && errno != EINVAL) {
		int e = errno;
		close(fd);
		return -e;
	}
	struct termios tio;
	if (tcgetattr(fd, &tio) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	cfmakeraw(&tio);
	tio.c_cflag &= ~(CSTOPB | PARENB | CRTSCTS | CSIZE);
	tio.c_cflag |= CS8 | CLOCAL | CREAD;
	tio.c_iflag &= ~(IXON | IXOFF | IXANY);
	tio.c_cc[VMIN] = 0;
	tio.c_cc[VTIME] = 0;
	if (tcsetattr(fd, TCSANOW, &tio) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	struct serial *s = calloc(1, sizeof *s);
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	s->fd = fd;
	s->base.ops = &serial_ops;
	s->base.clock = clock ? clock : esp_clock_real();
	const char *base = strrchr(real, '/');
	base = base ? base + 1 : real;
	const char *sysname = base;
	/* ptys are /dev/pts/N: call them "ptsN" so two never look alike;
	 * a long name is cut, which is fine for messages */
	char *nm = s->base.name;
	size_t cap = sizeof s->base.name - 1, k = 0;
	if (strncmp(real, "/dev/pts/", 9) == 0) {
		memcpy(nm, "pts", 3);
		k = 3;
		base = real + 9;
	}
	for (; *base && k < cap; base++)
		nm[k++] = *base;
	nm[k] = 0;
	int rc = ser_set_baud(&s->base, baud ? baud : 115200);
	if (rc < 0) {
		ser_close(&s->base);
		return rc;
	}
	int bits;
	if (ioctl(fd, TIOCMGET, &bits) < 0 && (errno == ENOTTY || errno == EINVAL))
		s->base.flags |= ESP_TR_NO_LINES;
	usb_ids(sysname, &s->base);
	if (s->base.usb_vid == 0x303A)
		s->base.flags |= ESP_TR_NATIVE_USB;
	tcflush(fd, TCIOFLUSH);
	*out = &s->base;
	return 0;
}
