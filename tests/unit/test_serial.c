/* The termios transport on a pty: raw bytes both ways, deadlines, no
 * modem lines (ENOTTY), odd baud rates, symlinks, hang-up. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include "t.h"
#include "espfs/transport.h"
#include "espfs/loader.h"

static int open_master(char *slave, size_t cap)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, slave, cap) != 0)
		return -1;
	return m;
}

/* A pty's master, and the serial transport open on its slave in *t
 * (NULL, said as a failed check, if it did not open); -1: no ptys. */
static int serial_on_pty(esp_transport **t)
{
	char slave[128];
	int m = open_master(slave, sizeof slave);
	if (m >= 0)
		CHECK_EQ(esp_serial_open(slave, 115200, NULL, t), 0);
	return m;
}

static void pty_bytes_lines_and_baud(void)
{
	esp_transport *t = NULL;
	int m = serial_on_pty(&t);
	if (m < 0)
		SKIP("no ptys here");
	if (!t) {
		close(m);
		return;
	}
	CHECK(t->flags & ESP_TR_NO_LINES);
	CHECK_EQ(esp_tr_set_lines(t, 1, 0), -ENOTTY);
	CHECK(strncmp(t->name, "pts", 3) == 0);
	CHECK_EQ(t->baud, 115200);

	/* raw: 0xC0, CR, LF, ^C and ^S must pass untouched both ways */
	const uint8_t out[] = { 0xc0, 0x0d, 0x0a, 0x03, 0x13, 0x11, 0x00, 0xff, 0xc0 };
	CHECK_EQ(esp_tr_write(t, out, sizeof out), (int)sizeof out);
	uint8_t got[64];
	ssize_t n = 0;
	for (int i = 0; i < 100 && n < (ssize_t)sizeof out; i++) {
		ssize_t k = read(m, got + n, sizeof got - (size_t)n);
		if (k > 0)
			n += k;
		else
			usleep(1000);
	}
	CHECK_EQ(n, sizeof out);
	CHECK_MEM(got, out, sizeof out);

	CHECK_EQ(write(m, out, sizeof out), (ssize_t)sizeof out);
	uint8_t in[64];
	size_t have = 0;
	while (have < sizeof out) {
		int k = esp_tr_read(t, in + have, sizeof in - have, 500);
		CHECK(k > 0);
		if (k <= 0)
			break;
		have += (size_t)k;
	}
	CHECK_MEM(in, out, sizeof out);

	uint64_t t0 = esp_now_us(esp_clock_real());
	CHECK_EQ(esp_tr_read(t, in, sizeof in, 50), -ETIMEDOUT);
	uint64_t took = esp_now_us(esp_clock_real()) - t0;
	CHECK(took >= 40000 && took < 1000000);

	CHECK_EQ(write(m, "stale", 5), 5);
	usleep(20000);
	CHECK_EQ(esp_tr_flush_input(t), 0);
	CHECK_EQ(esp_tr_read(t, in, sizeof in, 20), -ETIMEDOUT);

	CHECK_EQ(esp_tr_set_baud(t, 921600), 0);
	CHECK_EQ(t->baud, 921600);
	CHECK_EQ(esp_tr_set_baud(t, 74880), 0); /* not a termios constant */
	CHECK_EQ(t->baud, 74880);

	/* the other end goes away: ENODEV, not a timeout */
	close(m);
	int rc = esp_tr_read(t, in, sizeof in, 200);
	CHECK_MSG(rc == -ENODEV, "read after hang-up: %d", rc);
	esp_tr_close(t);
}

static void symlink_is_resolved(void)
{
	char slave[128];
	int m = open_master(slave, sizeof slave);
	if (m < 0)
		SKIP("no ptys here");
	char link[] = "/tmp/espfs-serial-link-XXXXXX";
	int fd = mkstemp(link);
	CHECK(fd >= 0);
	close(fd);
	unlink(link);
	CHECK_EQ(symlink(slave, link), 0);
	esp_transport *t = NULL;
	CHECK_EQ(esp_serial_open(link, 115200, NULL, &t), 0);
	if (t) {
		char want[160];
		snprintf(want, sizeof want, "pts%s", slave + strlen("/dev/pts/"));
		CHECK_STR(t->name, want);
		esp_tr_close(t);
	}
	unlink(link);
	close(m);
	CHECK_EQ(esp_serial_open("/nonexistent/tty", 115200, NULL, &t), -ENOENT);
	CHECK_EQ(esp_serial_open("/dev/null", 115200, NULL, &t), -ENOTTY);
}

/* Issue 10: a chip that stops reading its UART made every write block
 * for the port's 10 s, so one connect (5 SYNCs of 100 ms) took 50 s and
 * a 60 s download wait ~300 s, and state blamed "no download mode".  Each
 * send must keep to its command's deadline and the error say what failed. */
static void stalled_port_keeps_deadlines(void)
{
	esp_transport *t = NULL;
	int m = serial_on_pty(&t);
	if (m < 0)
		SKIP("no ptys here");
	if (!t) {
		close(m);
		return;
	}
	/* nothing reads the master: fill the pty until writes block */
	static uint8_t junk[4096];
	t->write_timeout_ms = 200;
	int rc = 0;
	for (int i = 0; i < 1000 && rc >= 0; i++)
		rc = esp_tr_write(t, junk, sizeof junk);
	CHECK_EQ(rc, -ETIMEDOUT);
	t->write_timeout_ms = 0;
	esp_loader *l = esp_loader_new(t);
	uint64_t t0 = esp_now_us(esp_clock_real());
	rc = esp_loader_connect(l, ESP_RESET_NONE, 1);
	uint64_t took_ms = (esp_now_us(esp_clock_real()) - t0) / 1000;
	CHECK_EQ(rc, -ETIMEDOUT);
	/* 5 SYNCs, each ~100 ms + its bytes' time + 50 ms pause: ~1.3 s;
	 * 8 s leaves room for a loaded machine and is far below 50 s */
	CHECK_MSG(took_ms < 8000, "connect took %llu ms", (unsigned long long)took_ms);
	CHECK(esp_loader_send_stalled(l));
	CHECK_MSG(strstr(esp_loader_error(l), "does not take data") != NULL, "%s", esp_loader_error(l));
	esp_loader_free(l);
	esp_tr_close(t);
	close(m);
}

int main(void)
{
	RUN(stalled_port_keeps_deadlines);
	RUN(pty_bytes_lines_and_baud);
	RUN(symlink_is_resolved);
	return t_done();
}
