/* Loader speed on the simulator's timing model, in simulated time (fake
 * clock: a run takes seconds of real time whatever the baud).  Not a test:
 * it prints numbers.  For each baud: a fresh flash of the image onto a blank
 * ESP32, the same with ESP_WRITE_SKIP_SAME, a re-flash of the identical
 * image (with and without skipping), and a full dump of the 4 MB flash; each
 * next to the lower bound the model implies.
 *
 *   loader_speed [image.bin] [baud...]      (baud 0: ESP32-S3 on native USB)
 *
 * Image: argument, else the ESP32 factory image under $ESPFS_SHARED, else a
 * synthetic 1.3 MB one.  The stub JSON comes from $ESPFS_STUB_DIR or the
 * esptool-js copy under $ESPFS_SOURCE/tests/interop/node_modules. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "espfs/loader.h"
#include "espfs/sim.h"

#define FACTORY "firmware/esphome-project-template/gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.factory.bin"

/* Model figures (src/sim/timing.c), for the lower bounds. */
#define T_BLOCK_ERASE_S 0.150
#define T_PAGE_S 0.0007

/* A transport that counts the bytes each way, around the sim's. */
struct counting {
	esp_transport t;
	esp_transport *in;
	uint64_t tx, rx;
};

static int c_read(esp_transport *t, uint8_t *b, size_t n, uint32_t ms)
{
	struct counting *c = (struct counting *)t;
	int rc = esp_tr_read(c->in, b, n, ms);
	if (rc > 0)
		c->rx += (uint64_t)rc;
	return rc;
}
static int c_write(esp_transport *t, const uint8_t *b, size_t n)
{
	struct counting *c = (struct counting *)t;
	int rc = esp_tr_write(c->in, b, n);
	if (rc > 0)
		c->tx += (uint64_t)rc;
	return rc;
}
static int c_flush(esp_transport *t) { return esp_tr_flush_input(((struct counting *)t)->in); }
static int c_baud(esp_transport *t, uint32_t baud)
{
	struct counting *c = (struct counting *)t;
	int rc = esp_tr_set_baud(c->in, baud);
	if (rc == 0)
		t->baud = baud;
	return rc;
}
static int c_lines(esp_transport *t, int d, int r) { return esp_tr_set_lines(((struct counting *)t)->in, d, r); }
static void c_close(esp_transport *t) { (void)t; }
static const struct esp_transport_ops c_ops = { c_read, c_write, c_flush, c_baud, c_lines, c_close };

struct rig {
	esp_fake_clock fc;
	sim_device *d;
	esp_transport *st;
	struct counting ct;
	esp_loader *l;
};

static const char *stub_path(const char *chip, char *path, size_t cap)
{
	char dir[1024];
	const char *src = getenv("ESPFS_SOURCE");
	const char *env = getenv("ESPFS_STUB_DIR");
	if (env)
		snprintf(dir, sizeof dir, "%s", env);
	else
		snprintf(dir, sizeof dir, "%s/tests/interop/node_modules/esptool-js/lib/targets/stub_flasher",
			 src ? src : ".");
	if (esp_stub_find(esp_chip_by_name(chip), dir, path, cap) < 0)
		return NULL;
	return path;
}

static void rig_close(struct rig *r)
{
	if (r->l)
		esp_loader_free(r->l);
	esp_tr_close(r->st);
	if (r->d)
		sim_device_free(r->d);
	memset(r, 0, sizeof *r);
}

/* baud 0: an ESP32-S3 on its USB-Serial/JTAG port instead */
static int rig_open(struct rig *r, uint32_t baud)
{
	char why[256], path[1200];
	memset(r, 0, sizeof *r);
	esp_fake_clock_init(&r->fc, 1000000);
	const char *chip = baud ? "esp32" : "esp32s3";
	struct sim_config cfg = { .chip = chip, .name = "bench", .timing = true, .clock = &r->fc.clock,
				  .native_usb = baud == 0 };
	esp_stub stub;
	if (!stub_path(chip, path, sizeof path) || esp_stub_load_file(path, &stub, why, sizeof why) < 0) {
		fprintf(stderr, "no stub for %s\n", chip);
		return -1;
	}
	r->d = sim_device_new(&cfg, why, sizeof why);
	if (!r->d || sim_transport_open(r->d, &r->st) < 0) {
		fprintf(stderr, "sim: %s\n", why);
		return -1;
	}
	r->ct.t = *r->st;
	r->ct.t.ops = &c_ops;
	r->ct.in = r->st;
	r->l = esp_loader_new(&r->ct.t);
	int rc = esp_loader_connect(r->l, ESP_RESET_AUTO, 0);
	if (rc == 0)
		rc = esp_loader_detect_chip(r->l, NULL);
	if (rc == 0)
		rc = esp_loader_run_stub(r->l, &stub);
	esp_stub_free(&stub);
	if (rc == 0 && baud && baud != 115200)
		rc = esp_loader_change_baud(r->l, baud);
	if (rc == 0)
		rc = esp_loader_flash_id(r->l, NULL, NULL);
	if (rc < 0)
		fprintf(stderr, "setup: %s\n", esp_loader_error(r->l));
	return rc;
}

static double now_s(struct rig *r) { return (double)esp_now_us(&r->fc.clock) / 1e6; }

/* Time one write; *tx gets the host->device bytes it took. */
static double timed_write(struct rig *r, const uint8_t *img, size_t len, unsigned flags, uint64_t *tx)
{
	double t0 = now_s(r);
	uint64_t b0 = r->ct.tx;
	uint32_t at = getenv("LS_OFFSET") ? (uint32_t)strtoul(getenv("LS_OFFSET"), NULL, 0) : 0;
	int rc = esp_loader_write_flash(r->l, at, img, len, flags, NULL, NULL);
	if (rc < 0) {
		fprintf(stderr, "write: %s\n", esp_loader_error(r->l));
		return -1;
	}
	if (tx)
		*tx = r->ct.tx - b0;
	return now_s(r) - t0;
}

/* Flash work the model charges for len bytes from 0: block erases and
 * page programs (the last partial 64 KiB is erased by sectors, ignored). */
static double flash_work_s(size_t len)
{
	return (double)((len + 0xFFFF) / 0x10000) * T_BLOCK_ERASE_S + (double)((len + 255) / 256) * T_PAGE_S;
}

static void bench_baud(uint32_t baud, const uint8_t *img, size_t len)
{
	struct rig r;
	/* bytes per second: 10 bits a byte on a UART, ~1 MB/s native USB */
	double rate = baud ? baud / 10.0 : 1e6;
	uint64_t tx = 0;
	if (baud)
		printf("== %u baud (%.0f B/s)\n", baud, rate);
	else
		printf("== ESP32-S3 native USB (%.0f B/s)\n", rate);

	if (rig_open(&r, baud) == 0) {
		double t = timed_write(&r, img, len, ESP_WRITE_COMPRESS, &tx);
		double wire = (double)tx / rate, fw = flash_work_s(len);
		double lb = wire > fw ? wire : fw;
		printf("fresh flash           %8.2f s  (%llu B sent; wire %.2f s, flash work %.2f s, bound %.2f s, x%.3f)\n",
		       t, (unsigned long long)tx, wire, fw, lb, t / lb);
		double t2 = timed_write(&r, img, len, ESP_WRITE_COMPRESS, NULL);
		printf("re-flash, no skip     %8.2f s\n", t2);
		double t3 = timed_write(&r, img, len, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME, &tx);
		printf("re-flash, skip-same   %8.2f s  (%llu B sent; %.1f%% of the fresh flash)\n", t3,
		       (unsigned long long)tx, 100.0 * t3 / t);
	}
	rig_close(&r);

	/* over other firmware (random bytes where the image goes) */
	for (int skip = 0; skip < 2; skip++) {
		if (rig_open(&r, baud) == 0) {
			uint8_t *junk = malloc(len);
			uint32_t s = 99;
			for (size_t i = 0; i < len; i++) {
				s = s * 1664525u + 1013904223u;
				junk[i] = (uint8_t)(s >> 24);
			}
			sim_flash_load(r.d, 0, junk, len);
			free(junk);
			double t = timed_write(&r, img, len, ESP_WRITE_COMPRESS | (skip ? ESP_WRITE_SKIP_SAME : 0), &tx);
			printf("over other data%s %8.2f s  (%llu B sent)\n", skip ? ", skip" : "      ", t,
			       (unsigned long long)tx);
		}
		rig_close(&r);
	}

	/* as the mount streams it: one write per job (256 KiB there); with
	 * skip-same, the second pass is a re-flash of the identical image */
	for (int mode = 0; mode < 3; mode++) {
		size_t job = mode == 0 ? 0x10000 : 0x40000;
		unsigned flags = ESP_WRITE_COMPRESS | (mode == 2 ? ESP_WRITE_SKIP_SAME : 0);
		if (rig_open(&r, baud) == 0) {
			for (int pass = 0; pass < (mode == 2 ? 2 : 1); pass++) {
				double t0 = now_s(&r);
				uint64_t b0 = r.ct.tx;
				int rc = 0;
				for (size_t at = 0; at < len && rc == 0; at += job) {
					size_t n = len - at < job ? len - at : job;
					rc = esp_loader_write_flash(r.l, (uint32_t)at, img + at, n, flags, NULL, NULL);
				}
				if (rc < 0)
					fprintf(stderr, "chunked write: %s\n", esp_loader_error(r.l));
				else
					printf("in %3zu KiB writes%s %8.2f s  (%llu B sent)\n", job >> 10,
					       mode < 2 ? "     " : pass ? ", again" : ", skip ", now_s(&r) - t0,
					       (unsigned long long)(r.ct.tx - b0));
			}
		}
		rig_close(&r);
	}

	if (rig_open(&r, baud) == 0) {
		double t = timed_write(&r, img, len, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME, &tx);
		printf("fresh flash skip-same %8.2f s  (%llu B sent)\n", t, (unsigned long long)tx);
		uint32_t fsz = esp_loader_flash_size(r.l);
		uint8_t *buf = malloc(fsz);
		double t0 = now_s(&r);
		uint64_t rx0 = r.ct.rx;
		int rc = esp_loader_read_flash(r.l, 0, buf, fsz, NULL, NULL);
		double tr = now_s(&r) - t0;
		if (rc < 0)
			fprintf(stderr, "read: %s\n", esp_loader_error(r.l));
		else
			printf("read %u B          %8.2f s  (%llu B received; wire limit %.2f s, x%.3f)\n", fsz, tr,
			       (unsigned long long)(r.ct.rx - rx0), fsz / rate, tr / (fsz / rate));
		free(buf);
	}
	rig_close(&r);
}

int main(int argc, char **argv)
{
	char path[1200];
	const char *img_path = NULL;
	int argi = 1;
	if (argc > 1 && strspn(argv[1], "0123456789") != strlen(argv[1])) {
		img_path = argv[1];
		argi = 2;
	} else {
		const char *sh = getenv("ESPFS_SHARED");
		snprintf(path, sizeof path, "%s/%s", sh ? sh : "/work/shared", FACTORY);
		if (access(path, R_OK) == 0)
			img_path = path;
	}
	uint8_t *img = NULL;
	size_t len = 0;
	if (img_path) {
		FILE *f = fopen(img_path, "rb");
		if (f) {
			fseek(f, 0, SEEK_END);
			len = (size_t)ftell(f);
			fseek(f, 0, SEEK_SET);
			img = malloc(len);
			if (fread(img, 1, len, f) != len)
				len = 0;
			fclose(f);
		}
	}
	if (!img || !len) {
		/* synthetic: compressible code-like runs and noise, FF gaps */
		free(img);
		len = 1315200;
		img = malloc(len);
		uint32_t s = 1;
		for (size_t i = 0; i < len; i++) {
			s = s * 1664525u + 1013904223u;
			img[i] = (i >> 12) % 5 == 0 ? 0xFF : (i >> 12) % 2 ? (uint8_t)(s >> 24) : (uint8_t)(i * 7 >> 3);
		}
		img_path = "(synthetic)";
	}
	printf("image %s, %zu B\n", img_path, len);
	uint32_t bauds[8] = { 115200, 921600, 2000000, 0 };
	int nb = 4;
	if (argi < argc) {
		nb = 0;
		for (; argi < argc && nb < 8; argi++)
			bauds[nb++] = (uint32_t)strtoul(argv[argi], NULL, 10);
	}
	for (int i = 0; i < nb; i++)
		bench_baud(bauds[i], img, len);
	free(img);
	return 0;
}
