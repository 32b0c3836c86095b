/* The loader client against the in-process simulator: per chip, detect,
 * MAC, flash size, write a real or synthetic image (ROM and stub), verify,
 * read back, erase; then faults: every call must come back with an error
 * within its deadline, never hang or crash. */
#include <errno.h>
#include <md5.h>
#include <stdio.h>
#include <unistd.h>
#include "t.h"
#include "espfs/loader.h"
#include "espfs/sim.h"

struct rig {
	esp_fake_clock fc;
	const esp_clock *clk;
	sim_device *d;
	esp_transport *t;
	esp_loader *l;
	char why[256];
};

static void rig_close(struct rig *r)
{
	if (r->l)
		esp_loader_free(r->l);
	esp_tr_close(r->t);
	if (r->d)
		sim_device_free(r->d);
	memset(r, 0, sizeof *r);
}

/* fake: run on a fake clock, so timeouts cost no real time */
static int rig_open_cfg(struct rig *r, const char *chip, bool native_usb, bool fake, bool app)
{
	memset(r, 0, sizeof *r);
	struct sim_config cfg = { 0 };
	if (fake) {
		esp_fake_clock_init(&r->fc, 1000000);
		cfg.clock = &r->fc.clock;
	}
	r->clk = fake ? &r->fc.clock : esp_clock_real();
	cfg.chip = chip;
	cfg.name = chip;
	cfg.native_usb = native_usb;
	cfg.app = app;
	r->d = sim_device_new(&cfg, r->why, sizeof r->why);
	if (!r->d)
		return -1;
	if (sim_transport_open(r->d, &r->t) < 0) {
		snprintf(r->why, sizeof r->why, "sim_transport_open failed");
		return -1;
	}
	r->l = esp_loader_new(r->t);
	return 0;
}

static int rig_open_clock(struct rig *r, const char *chip, bool native_usb, bool fake)
{
	return rig_open_cfg(r, chip, native_usb, fake, false);
}

static int rig_open(struct rig *r, const char *chip, bool native_usb)
{
	return rig_open_clock(r, chip, native_usb, false);
}

static const char *stub_dir(char *buf, size_t cap)
{
	const char *src = getenv("ESPFS_SOURCE");
	if (!src)
		return NULL;
	snprintf(buf, cap, "%s/tests/interop/node_modules/esptool-js/lib/targets/stub_flasher", src);
	return access(buf, R_OK) == 0 ? buf : NULL;
}

static int load_stub(struct rig *r)
{
	char dir[1024], path[1200], err[256];
	if (!stub_dir(dir, sizeof dir))
		return -ENOENT;
	const struct esp_chip_info *c = esp_loader_chip(r->l);
	if (esp_stub_find(c, dir, path, sizeof path) < 0)
		return -ENOENT;
	esp_stub s;
	int rc = esp_stub_load_file(path, &s, err, sizeof err);
	if (rc < 0) {
		printf("# %s\n", err);
		return rc;
	}
	rc = esp_loader_run_stub(r->l, &s);
	if (rc < 0)
		printf("# run_stub: %s\n", esp_loader_error(r->l));
	esp_stub_free(&s);
	return rc;
}

static void md5_of(const uint8_t *b, size_t n, uint8_t out[16])
{
	MD5_CTX c;
	MD5Init(&c);
	MD5Update(&c, b, n);
	MD5Final(out, &c);
}

static uint8_t *synthetic(size_t n, uint32_t seed)
{
	uint8_t *b = malloc(n);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		/* half compressible text-like runs, half noise */
		b[i] = (i / 4096) % 2 ? (uint8_t)(seed >> 24) : (uint8_t)("espfs loader "[i % 13]);
	}
	return b;
}

#define CHECK_RC(call) do { int _rc = (call); CHECK_MSG(_rc == 0, "%s = %d: %s", #call, _rc, esp_loader_error(r.l)); } while (0)

/* The whole client cycle on one chip.  img NULL: a synthetic image. */
static void cycle(const char *chip, esp_chip_id want, const char *rel, uint32_t offset, bool use_stub,
		  unsigned wflags)
{
	struct rig r;
	char pbuf[1024];
	uint8_t *img;
	size_t len;
	if (rel) {
		const char *p = t_shared_path(rel, pbuf, sizeof pbuf);
		if (!p)
			SKIP("firmware image not available (ESPFS_SHARED)");
		img = t_read_file(p, &len);
		if (!img)
			SKIP("cannot read firmware image");
	} else {
		len = 0x31234;
		img = synthetic(len, 7);
	}
	if (rig_open(&r, chip, false) < 0) {
		free(img);
		CHECK_MSG(0, "sim: %s", r.why);
		rig_close(&r);
		return;
	}
	CHECK_RC(esp_loader_connect(r.l, ESP_RESET_AUTO, 0));
	CHECK(!esp_loader_is_stub(r.l));
	const struct esp_chip_info *c = NULL;
	CHECK_RC(esp_loader_detect_chip(r.l, &c));
	CHECK(c && c->id == want);
	uint8_t mac[6], smac[6];
	CHECK_RC(esp_loader_read_mac(r.l, mac));
	sim_get_mac(r.d, smac);
	CHECK_MEM(mac, smac, 6);
	uint32_t jedec = 0, size = 0;
	CHECK_RC(esp_loader_flash_id(r.l, &jedec, &size));
	CHECK_EQ(size, sim_flash_size(r.d));
	if (use_stub) {
		int rc = load_stub(&r);
		if (rc == -ENOENT) {
			free(img);
			rig_close(&r);
			SKIP("stub JSON not installed (tests/interop/node_modules/esptool-js)");
		}
		CHECK_EQ(rc, 0);
		CHECK(esp_loader_is_stub(r.l));
		CHECK_EQ(sim_get_mode(r.d), SIM_MODE_STUB);
	}
	bool rom8266 = !use_stub && want == ESP_CHIP_ESP8266;

	/* mess up the target area first so a no-op write cannot pass */
	uint8_t *junk = synthetic(len, 99);
	sim_flash_load(r.d, offset, junk, len);
	free(junk);

	int rc = esp_loader_write_flash(r.l, offset, img, len, wflags, NULL, NULL);
	CHECK_MSG(rc == 0, "write: %d %s", rc, esp_loader_error(r.l));
	CHECK(esp_loader_last_write_verified(r.l) == !rom8266);
	uint8_t *fl = sim_flash_copy(r.d, offset, (uint32_t)len);
	CHECK(fl && memcmp(fl, img, len) == 0);
	free(fl);

	if (!rom8266) {
		uint8_t m[16], w[16];
		CHECK_RC(esp_loader_flash_md5(r.l, offset, (uint32_t)len, m));
		md5_of(img, len, w);
		CHECK_MEM(m, w, 16);
	}

	/* read back: all of it with the stub; a slice with the slow ROM read */
	size_t rlen = use_stub ? len : 0x800;
	uint8_t *rb = malloc(len);
	rc = esp_loader_read_flash(r.l, offset, rb, rlen, NULL, NULL);
	if (use_stub || c->rom_has_read_slow) {
		CHECK_MSG(rc == 0, "read: %d %s", rc, esp_loader_error(r.l));
		CHECK(memcmp(rb, img, rlen) == 0);
	} else {
		CHECK_EQ(rc, -EOPNOTSUPP);
	}

	/* erase two sectors inside the image; the neighbours must survive
	 * (a small image: the two sectors after its first one) */
	uint32_t erel = len >= 0xC000 ? 0x9000 : 0x1000, elen = 0x2000;
	uint32_t eoff = offset + erel;
	if (len < erel + elen + 0x1000) {
		uint8_t *big = malloc(erel + elen + 0x1000);
		memset(big, 0xFF, erel + elen + 0x1000);
		memcpy(big, img, len);
		free(img);
		img = big;   /* flash past the image was erased by the write's last sector only */
	}
	CHECK_RC(esp_loader_erase_region(r.l, eoff, elen));
	uint8_t *e = sim_flash_copy(r.d, eoff - 0x1000, elen + 0x2000);
	if (e) {
		bool ff = true;
		for (uint32_t i = 0; i < elen; i++)
			ff &= e[0x1000 + i] == 0xFF;
		CHECK(ff);
		CHECK(memcmp(e, img + erel - 0x1000, 0x1000) == 0);
		if (len >= erel + elen + 0x1000)
			CHECK(memcmp(e + 0x1000 + elen, img + erel + elen, 0x1000) == 0);
	}
	free(e);
	if (use_stub || c->rom_has_read_slow) {
		CHECK_RC(esp_loader_read_flash(r.l, eoff, rb, 0x100, NULL, NULL));
		bool ff = true;
		for (int i = 0; i < 0x100; i++)
			ff &= rb[i] == 0xFF;
		CHECK(ff);
	}
	free(rb);
	free(img);
	rig_close(&r);
}

#define FW "firmware/esphome-project-template/gh-pages-fd3bfd6/"
#define FW8266 "firmware/esphome-project-template/gh-pages-a9c729c/project-template-esp8266/project-template-esp8266.factory.bin"

static void esp32_factory_rom(void) { cycle("esp32", ESP_CHIP_ESP32, FW "project-template-esp32/project-template-esp32.factory.bin", 0, false, ESP_WRITE_COMPRESS); }
static void esp32_factory_stub(void) { cycle("esp32", ESP_CHIP_ESP32, FW "project-template-esp32/project-template-esp32.factory.bin", 0, true, ESP_WRITE_COMPRESS); }
static void esp8266_factory_rom(void) { cycle("esp8266", ESP_CHIP_ESP8266, FW8266, 0, false, ESP_WRITE_COMPRESS); }
static void esp8266_factory_stub(void) { cycle("esp8266", ESP_CHIP_ESP8266, FW8266, 0, true, ESP_WRITE_COMPRESS); }
static void esp32s2_app_rom(void) { cycle("esp32s2", ESP_CHIP_ESP32S2, "firmware/esptool/test/images/esp_idf_blink_esp32s2.bin", 0x10000, false, ESP_WRITE_COMPRESS); }
static void esp32s2_app_stub(void) { cycle("esp32s2", ESP_CHIP_ESP32S2, "firmware/esptool/test/images/esp_idf_blink_esp32s2.bin", 0x10000, true, ESP_WRITE_COMPRESS); }
static void esp32s2_bootloader_stub(void) { cycle("esp32s2", ESP_CHIP_ESP32S2, "firmware/esptool/test/images/bootloader_esp32s2.bin", 0x1000, true, ESP_WRITE_COMPRESS); }
static void esp32s2_bootloader_rom(void) { cycle("esp32s2", ESP_CHIP_ESP32S2, "firmware/esptool/test/images/bootloader_esp32s2.bin", 0x1000, false, 0); }
static void esp32s3_factory_rom(void) { cycle("esp32s3", ESP_CHIP_ESP32S3, FW "project-template-esp32s3/project-template-esp32s3.factory.bin", 0, false, ESP_WRITE_COMPRESS); }
static void esp32s3_factory_stub(void) { cycle("esp32s3", ESP_CHIP_ESP32S3, FW "project-template-esp32s3/project-template-esp32s3.factory.bin", 0, true, ESP_WRITE_COMPRESS); }
static void esp32c3_factory_rom(void) { cycle("esp32c3", ESP_CHIP_ESP32C3, FW "project-template-esp32c3/project-template-esp32c3.factory.bin", 0, false, ESP_WRITE_COMPRESS); }
static void esp32c3_factory_stub(void) { cycle("esp32c3", ESP_CHIP_ESP32C3, FW "project-template-esp32c3/project-template-esp32c3.factory.bin", 0, true, ESP_WRITE_COMPRESS); }
/* synthetic images need nothing from shared/ */
static void synthetic_esp32_rom_plain(void) { cycle("esp32", ESP_CHIP_ESP32, NULL, 0x20000, false, 0); }
static void synthetic_esp32c3_rom_deflate(void) { cycle("esp32c3", ESP_CHIP_ESP32C3, NULL, 0x10000, false, ESP_WRITE_COMPRESS); }
static void synthetic_esp8266_rom_unaligned_block(void) { cycle("esp8266", ESP_CHIP_ESP8266, NULL, 0x7000, false, 0); }
static void synthetic_esp32s3_stub_plain(void) { cycle("esp32s3", ESP_CHIP_ESP32S3, NULL, 0x30000, true, 0); }
static void synthetic_esp32c6_stub_deflate(void) { cycle("esp32c6", ESP_CHIP_ESP32C6, NULL, 0x10000, true, ESP_WRITE_COMPRESS); }


/* ---- resets, baud ---- */

/* A running app; AUTO reset must bring it into the ROM loader, and a hard
 * reset (or the watchdog) must leave it again. */
static void reset_into_loader_and_out(const char *chip, bool native_usb, bool watchdog)
{
	struct rig r;
	if (rig_open_cfg(&r, chip, native_usb, true, true) < 0) {
		CHECK_MSG(0, "sim: %s", r.why);
		rig_close(&r);
		return;
	}
	CHECK(sim_get_mode(r.d) != SIM_MODE_ROM);
	CHECK_RC(esp_loader_connect(r.l, ESP_RESET_AUTO, 0));
	CHECK_EQ(sim_get_mode(r.d), SIM_MODE_ROM);
	CHECK_RC(esp_loader_detect_chip(r.l, NULL));
	if (watchdog)
		CHECK_RC(esp_loader_watchdog_reset(r.l));
	else
		CHECK_RC(esp_loader_hard_reset(r.l));
	/* give the chip time to boot (fake clock: costs nothing) */
	uint8_t junk[256];
	for (int i = 0; i < 20; i++)
		esp_tr_read(r.t, junk, sizeof junk, 100);
	sim_mode m = sim_get_mode(r.d);
	CHECK_MSG(m == SIM_MODE_APP || m == SIM_MODE_BOOT_LOOP, "mode %d after reset", (int)m);
	rig_close(&r);
}

static void esp32_classic_reset(void) { reset_into_loader_and_out("esp32", false, false); }
static void esp32c3_usb_jtag_reset(void) { reset_into_loader_and_out("esp32c3", true, false); }
static void esp32c3_watchdog_reset(void) { reset_into_loader_and_out("esp32c3", true, true); }

static void stub_fast_baud_write(void)
{
	struct rig r;
	if (rig_open(&r, "esp32", false) < 0) {
		CHECK_MSG(0, "sim: %s", r.why);
		rig_close(&r);
		return;
	}
	CHECK_RC(esp_loader_connect(r.l, ESP_RESET_AUTO, 0));
	CHECK_RC(esp_loader_detect_chip(r.l, NULL));
	int rc = load_stub(&r);
	if (rc == -ENOENT) {
		rig_close(&r);
		SKIP("stub JSON not installed (tests/interop/node_modules/esptool-js)");
	}
	CHECK_EQ(rc, 0);
	CHECK_RC(esp_loader_change_baud(r.l, 921600));
	CHECK_EQ(r.t->baud, 921600);
	size_t len = 0x23456;
	uint8_t *img = synthetic(len, 21);
	CHECK_RC(esp_loader_write_flash(r.l, 0x40000, img, len, ESP_WRITE_COMPRESS, NULL, NULL));
	CHECK(esp_loader_last_write_verified(r.l));
	uint8_t *rb = malloc(len);
	CHECK_RC(esp_loader_read_flash(r.l, 0x40000, rb, len, NULL, NULL));
	CHECK(memcmp(rb, img, len) == 0);
	/* a ROM change of baud too (ESP32 ROM: second word 0) */
	free(rb);
	free(img);
	rig_close(&r);
}

static void rom_change_baud_then_md5_chip(const char *chip)
{
	struct rig r;
	if (rig_open(&r, chip, false) < 0) {
		CHECK_MSG(0, "sim: %s", r.why);
		rig_close(&r);
		return;
	}
	CHECK_RC(esp_loader_connect(r.l, ESP_RESET_AUTO, 0));
	CHECK_RC(esp_loader_change_baud(r.l, 460800));
	uint8_t m[16];
	CHECK_RC(esp_loader_flash_md5(r.l, 0, 0x1000, m));
	rig_close(&r);
}

static void rom_change_baud_then_md5(void)
{
	rom_change_baud_then_md5_chip("esp32s3");
	rom_change_baud_then_md5_chip("esp32");   /* with the ROM clock correction */
}

/* ---- faults ---- */

/* fault tests run on the fake clock: deadlines are checked in device time */
static uint64_t ms_since(const struct rig *r, uint64_t t0)
{
	return (esp_now_us(r->clk) - t0) / 1000;
}

static int connected_rig(struct rig *r, const char *chip)
{
	if (rig_open_clock(r, chip, false, true) < 0)
		return -1;
	if (esp_loader_connect(r->l, ESP_RESET_AUTO, 0) < 0 || esp_loader_flash_id(r->l, NULL, NULL) < 0) {
		snprintf(r->why, sizeof r->why, "%s", esp_loader_error(r->l));
		return -1;
	}
	return 0;
}

static void fault_garbage_device(void)
{
	struct rig r;
	if (rig_open_clock(&r, "esp32", false, true) < 0) {
		CHECK_MSG(0, "%s", r.why);
		return;
	}
	struct sim_faults f = { .garbage = true, .seed = 1 };
	sim_set_faults(r.d, &f);
	uint64_t t0 = esp_now_us(r.clk);
	int rc = esp_loader_connect(r.l, ESP_RESET_NONE, 1);
	printf("# garbage: rc %d after %llu ms: %s\n", rc, (unsigned long long)ms_since(&r, t0), esp_loader_error(r.l));
	CHECK(rc == -ETIMEDOUT || rc == -EPROTO);
	CHECK_MSG(ms_since(&r, t0) < 5000, "connect took %llu ms", (unsigned long long)ms_since(&r, t0));
	rig_close(&r);
}

static void fault_stalled_device(void)
{
	struct rig r;
	if (connected_rig(&r, "esp32") < 0) {
		CHECK_MSG(0, "%s", r.why);
		rig_close(&r);
		return;
	}
	struct sim_faults f = { .stall = true };
	sim_set_faults(r.d, &f);
	uint8_t *img = synthetic(0x8000, 3);
	uint64_t t0 = esp_now_us(r.clk);
	CHECK_EQ(esp_loader_write_flash(r.l, 0, img, 0x8000, ESP_WRITE_COMPRESS, NULL, NULL), -ETIMEDOUT);
	printf("# stall: after %llu ms: %s\n", (unsigned long long)ms_since(&r, t0), esp_loader_error(r.l));
	CHECK(ms_since(&r, t0) < 8000);
	uint32_t v;
	CHECK_EQ(esp_loader_read_reg(r.l, 0x40001000, &v), -ETIMEDOUT);
	free(img);
	rig_close(&r);
}

static void fault_corrupt_and_dropped_bytes(void)
{
	for (int run = 0; run < 6; run++) {
		int kind = run % 2;
		struct rig r;
		if (connected_rig(&r, "esp32") < 0) {
			CHECK_MSG(0, "%s", r.why);
			rig_close(&r);
			return;
		}
		struct sim_faults f = { .seed = 42 + (uint32_t)run };
		if (kind)
			f.drop_rate = 0.005;
		else
			f.corrupt_rate = 0.005;
		sim_set_faults(r.d, &f);
		uint8_t *img = synthetic(0x20000, 5);
		uint64_t t0 = esp_now_us(r.clk);
		int rc = esp_loader_write_flash(r.l, 0x10000, img, 0x20000, 0, NULL, NULL);
		printf("# %s: rc %d after %llu ms: %s\n", kind ? "drop" : "corrupt", rc,
		       (unsigned long long)ms_since(&r, t0), rc ? esp_loader_error(r.l) : "ok");
		/* a block refused as damaged goes again (3 attempts, as
		 * esptool); each attempt ends within the block's deadline */
		CHECK(ms_since(&r, t0) < 3 * 3000 + 100);
		/* an error, or a success that is really true */
		if (rc == 0) {
			uint8_t *fl = sim_flash_copy(r.d, 0x10000, 0x20000);
			CHECK(fl && memcmp(fl, img, 0x20000) == 0);
			free(fl);
		} else {
			CHECK(rc == -ETIMEDOUT || rc == -EPROTO || rc == -EIO);
			CHECK(strlen(esp_loader_error(r.l)) > 0);
		}
		free(img);
		rig_close(&r);
	}
}

/* READ_FLASH_SLOW replies have no checksum: a flipped bit in the data
 * must never come back as the flash's content with success.  Each run
 * reads 64 KiB through the ESP32 ROM with a few bytes damaged on the way
 * back; the read either returns exactly the flash (damaged pieces read
 * again after the ROM's MD5 disagreed) or fails. */
static void fault_corrupt_rom_read(void)
{
	int wrong = 0, right = 0, failed = 0;
	for (int run = 0; run < 8; run++) {
		struct rig r;
		if (connected_rig(&r, "esp32") < 0) {
			CHECK_MSG(0, "%s", r.why);
			rig_close(&r);
			return;
		}
		uint8_t *want = synthetic(0x10000, 21 + (uint32_t)run);
		sim_flash_load(r.d, 0x20000, want, 0x10000);
		struct sim_faults f = { .seed = 7 + (uint32_t)run, .corrupt_rate = 0.00003 };
		sim_set_faults(r.d, &f);
		uint8_t *got = malloc(0x10000);
		int rc = esp_loader_read_flash(r.l, 0x20000, got, 0x10000, NULL, NULL);
		if (rc == 0 && memcmp(got, want, 0x10000) != 0) {
			wrong++;
		} else if (rc == 0) {
			right++;
		} else {
			failed++;
			CHECK_MSG(rc == -EIO || rc == -EPROTO || rc == -ETIMEDOUT, "rc %d: %s", rc,
				  esp_loader_error(r.l));
		}
		free(want);
		free(got);
		rig_close(&r);
	}
	printf("# ROM reads with damaged replies: %d exact, %d failed, %d wrong data with success\n",
	       right, failed, wrong);
	CHECK_MSG(wrong == 0, "%d reads returned damaged data as the flash's", wrong);
	CHECK_MSG(right > 0, "no read got through (re-reads should mend a few flipped bits)");
}

static void fault_unplug_mid_write(void)
{
	struct rig r;
	if (connected_rig(&r, "esp32") < 0) {
		CHECK_MSG(0, "%s", r.why);
		rig_close(&r);
		return;
	}
	struct sim_faults f = { .unplug_at_percent = 50 };
	sim_set_faults(r.d, &f);
	uint8_t *img = synthetic(0x40000, 9);
	uint64_t t0 = esp_now_us(r.clk);
	int rc = esp_loader_write_flash(r.l, 0x10000, img, 0x40000, 0, NULL, NULL);
	CHECK_MSG(rc == -ENODEV || rc == -ETIMEDOUT, "rc %d: %s", rc, esp_loader_error(r.l));
	printf("# unplug: rc %d after %llu ms: %s\n", rc, (unsigned long long)ms_since(&r, t0), esp_loader_error(r.l));
	CHECK(ms_since(&r, t0) < 8000);
	uint32_t v;
	rc = esp_loader_read_reg(r.l, 0x40001000, &v);
	CHECK(rc == -ENODEV || rc == -ETIMEDOUT);
	free(img);
	rig_close(&r);
}

static void fault_flash_program_failure(void)
{
	struct rig r;
	if (connected_rig(&r, "esp32") < 0) {
		CHECK_MSG(0, "%s", r.why);
		rig_close(&r);
		return;
	}
	struct sim_faults f = { .flash_program_fail = true };
	sim_set_faults(r.d, &f);
	uint8_t *img = synthetic(0x4000, 11);
	int rc = esp_loader_write_flash(r.l, 0x10000, img, 0x4000, 0, NULL, NULL);
	CHECK_MSG(rc == -EIO, "rc %d: %s", rc, esp_loader_error(r.l));
	printf("# program failure: %s\n", esp_loader_error(r.l));
	free(img);
	rig_close(&r);
}

int main(void)
{
	RUN(esp32_factory_rom);
	RUN(esp32_factory_stub);
	RUN(esp8266_factory_rom);
	RUN(esp8266_factory_stub);
	RUN(esp32s2_app_rom);
	RUN(esp32s2_app_stub);
	RUN(esp32s2_bootloader_rom);
	RUN(esp32s2_bootloader_stub);
	RUN(esp32s3_factory_rom);
	RUN(esp32s3_factory_stub);
	RUN(esp32c3_factory_rom);
	RUN(esp32c3_factory_stub);
	RUN(synthetic_esp32_rom_plain);
	RUN(synthetic_esp32c3_rom_deflate);
	RUN(synthetic_esp8266_rom_unaligned_block);
	RUN(synthetic_esp32s3_stub_plain);
	RUN(synthetic_esp32c6_stub_deflate);
	RUN(esp32_classic_reset);
	RUN(esp32c3_usb_jtag_reset);
	RUN(esp32c3_watchdog_reset);
	RUN(stub_fast_baud_write);
	RUN(rom_change_baud_then_md5);
	RUN(fault_garbage_device);
	RUN(fault_stalled_device);
	RUN(fault_corrupt_and_dropped_bytes);
	RUN(fault_corrupt_rom_read);
	RUN(fault_unplug_mid_write);
	RUN(fault_flash_program_failure);
	return t_done();
}
