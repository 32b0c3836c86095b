/* The loader over the real termios transport: a pty whose far end is
 * pumped into an in-process simulated device (what espsim does), so the
 * serial code, SLIP and the loader are exercised together through the
 * kernel's tty layer. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <termios.h>
#include <unistd.h>
#include "t.h"
#include "espfs/loader.h"
#include "espfs/sim.h"

struct pump {
	int master, slave;   /* slave: only to read the host's baud back */
	sim_device *d;
	atomic_int stop;
	pthread_t th;
};

static void *pump_main(void *arg)
{
	struct pump *p = arg;
	uint8_t buf[4096];
	const esp_clock *c = esp_clock_real();
	speed_t seen = B115200;
	while (!atomic_load(&p->stop)) {
		/* the device hears the host's baud, like a UART would */
		struct termios tio;
		if (tcgetattr(p->slave, &tio) == 0 && cfgetospeed(&tio) != seen) {
			seen = cfgetospeed(&tio);
			sim_set_baud(p->d, seen == B921600 ? 921600 : seen == B460800 ? 460800 : 115200);
		}
		struct pollfd pf = { .fd = p->master, .events = POLLIN };
		if (poll(&pf, 1, 1) > 0 && (pf.revents & POLLIN)) {
			ssize_t n = read(p->master, buf, sizeof buf);
			if (n > 0)
				sim_host_write(p->d, buf, (size_t)n, esp_now_us(c));
		}
		size_t k;
		while ((k = sim_host_read(p->d, buf, sizeof buf, esp_now_us(c))) > 0) {
			size_t off = 0;
			while (off < k) {
				ssize_t w = write(p->master, buf + off, k - off);
				if (w > 0)
					off += (size_t)w;
				else if (w < 0 && errno != EAGAIN && errno != EINTR)
					return NULL;
				else
					usleep(100);
			}
		}
	}
	return NULL;
}

static uint8_t *synthetic(size_t n, uint32_t seed)
{
	uint8_t *b = malloc(n);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		b[i] = (i / 2048) % 3 ? (uint8_t)(seed >> 24) : (uint8_t)(i & 0x3F);
	}
	return b;
}

static void stub_write_read_over_pty(void)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK);
	char slave[128];
	if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, slave, sizeof slave) != 0)
		SKIP("no ptys here");
	char err[256];
	struct sim_config cfg = { .chip = "esp32c3", .name = "pty" };
	sim_device *d = sim_device_new(&cfg, err, sizeof err);
	CHECK_MSG(d != NULL, "%s", err);
	if (!d) {
		close(m);
		return;
	}
	struct pump p = { .master = m, .slave = open(slave, O_RDWR | O_NOCTTY), .d = d };
	pthread_create(&p.th, NULL, pump_main, &p);

	esp_transport *t = NULL;
	CHECK_EQ(esp_serial_open(slave, 115200, NULL, &t), 0);
	esp_loader *l = t ? esp_loader_new(t) : NULL;
	if (l) {
		/* a pty has no DTR/RTS: AUTO must fall back to a plain SYNC */
		CHECK_EQ(esp_loader_connect(l, ESP_RESET_AUTO, 2), 0);
		const struct esp_chip_info *c = NULL;
		CHECK_EQ(esp_loader_detect_chip(l, &c), 0);
		CHECK(c && c->id == ESP_CHIP_ESP32C3);
		uint8_t mac[6], smac[6];
		CHECK_EQ(esp_loader_read_mac(l, mac), 0);
		sim_get_mac(d, smac);
		CHECK_MEM(mac, smac, 6);

		const char *src = getenv("ESPFS_SOURCE");
		char path[1200];
		esp_stub s;
		bool stub = false;
		if (src) {
			char dir[1024];
			snprintf(dir, sizeof dir, "%s/tests/interop/node_modules/esptool-js/lib/targets/stub_flasher", src);
			if (esp_stub_find(c, dir, path, sizeof path) == 0 &&
			    esp_stub_load_file(path, &s, err, sizeof err) == 0) {
				CHECK_EQ(esp_loader_run_stub(l, &s), 0);
				esp_stub_free(&s);
				stub = true;
				CHECK_EQ(esp_loader_change_baud(l, 921600), 0);
			}
		}
		if (!stub)
			printf("# stub JSON not installed: ROM only\n");
		size_t len = 0x18000;
		uint8_t *img = synthetic(len, 3);
		int rc = esp_loader_write_flash(l, 0x10000, img, len, ESP_WRITE_COMPRESS, NULL, NULL);
		CHECK_MSG(rc == 0, "write: %s", esp_loader_error(l));
		CHECK(esp_loader_last_write_verified(l));
		uint8_t *fl = sim_flash_copy(d, 0x10000, (uint32_t)len);
		CHECK(fl && memcmp(fl, img, len) == 0);
		free(fl);
		if (stub) {
			uint8_t *rb = malloc(len);
			rc = esp_loader_read_flash(l, 0x10000, rb, len, NULL, NULL);
			CHECK_MSG(rc == 0, "read: %s", esp_loader_error(l));
			CHECK(memcmp(rb, img, len) == 0);
			free(rb);
		}
		free(img);
		esp_loader_free(l);
	}
	esp_tr_close(t);
	atomic_store(&p.stop, 1);
	pthread_join(p.th, NULL);
	close(p.slave);
	close(m);
	sim_device_free(d);
}

int main(void)
{
	RUN(stub_write_read_over_pty);
	return t_done();
}
