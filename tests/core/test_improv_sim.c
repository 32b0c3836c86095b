/* The Improv client against the in-process simulator running an ESPHome
 * image (synthetic, and the real ESP32-C3 build when $ESPFS_SHARED has
 * it): detection after boot, device info, scan, provisioning with a wrong
 * and a right password, unsupported RPCs.  Fake clock: the 30 s the
 * device spends failing to connect cost no real time. */
#include <errno.h>
#include <stdio.h>
#include "t.h"
#include "image_synth.h"
#include "espfs/image.h"
#include "espfs/improv.h"
#include "espfs/log.h"
#include "espfs/sim.h"

#define ESPHOME_VERSION "2026.1.0"

/* ESPHome markers the simulator (like a human reading strings(1)) looks
 * for: the setup banner with the version folded in, the improv_serial log
 * tag, the mDNS host name, the compile stamp. */
static const char esphome_strings[] =
	"\0ESPHome version " ESPHOME_VERSION " compiled on %s\0improv_serial\0"
	"kitchen-sim.local\0Nov 25 2026, 12:34:56\0";

static uint8_t *synth_esphome_c3(size_t *len)
{
	static uint8_t drom[1024], img[8192];
	memset(drom, 0, sizeof drom);
	put32(drom, ESP_APP_DESC_MAGIC);
	strcpy((char *)drom + 16, ESPHOME_VERSION);
	strcpy((char *)drom + 48, "kitchen-sim");
	strcpy((char *)drom + 112, "v5.1.4");
	memcpy(drom + 256, esphome_strings, sizeof esphome_strings);
	size_t total = 0x10000 + sizeof img;
	uint8_t *f = malloc(total);
	memset(f, 0xFF, total);
	/* bootloader at 0 (RAM only), partition table, app at 0x10000 */
	struct tseg bs[2] = { { 0x3FCD5810, 400, 0x21, NULL }, { 0x403CC710, 900, 0x42, NULL } };
	size_t n = build_image(img, 5, 0, 0x2F, 0x403CC710, bs, 2, true);
	memcpy(f, img, n);
	const struct tent pt[] = {
		{ 0x01, 0x02, 0x9000, 0x5000, "nvs", 0 }, { 0x01, 0x00, 0xE000, 0x2000, "otadata", 0 },
		{ 0x00, 0x10, 0x10000, 0x1C0000, "app0", 0 }, { 0x00, 0x11, 0x1D0000, 0x1C0000, "app1", 0 } };
	synth_pt(f + 0x8000, pt, 4, true);
	struct tseg as[3] = { { 0x3C000020, sizeof drom, 0, drom }, { 0x40380000, 600, 0x17, NULL },
	                      { 0x42000020, 2000, 0x29, NULL } };
	n = build_image(img, 5, 0, 0x2F, 0x40380004, as, 3, true);
	memcpy(f + 0x10000, img, n);
	*len = 0x10000 + n;
	return f;
}

struct rig {
	esp_fake_clock fc;
	sim_device *d;
	esp_transport *t;
	struct improv_client c;
	char why[256];
};

static void rig_close(struct rig *r)
{
	esp_tr_close(r->t);
	if (r->d)
		sim_device_free(r->d);
	memset(r, 0, sizeof *r);
}

/* A C3 in download mode gets the image, then RESET boots it. */
static int rig_open(struct rig *r, const uint8_t *img, size_t len, bool boot)
{
	memset(r, 0, sizeof *r);
	esp_fake_clock_init(&r->fc, 1000000);
	struct sim_config cfg = { 0 };
	cfg.chip = "esp32c3";
	cfg.name = "improv-sim";
	cfg.clock = &r->fc.clock;
	strcpy(cfg.wifi[0].ssid, "HomeNet");
	strcpy(cfg.wifi[0].pass, "correct horse");
	strcpy(cfg.wifi[1].ssid, "CafeOpen");
	cfg.n_wifi = 2;
	r->d = sim_device_new(&cfg, r->why, sizeof r->why);
	if (!r->d)
		return -1;
	if (img && sim_flash_load(r->d, 0, img, len) < 0) {
		snprintf(r->why, sizeof r->why, "sim_flash_load failed");
		return -1;
	}
	if (boot)
		sim_button_reset(r->d);
	if (sim_transport_open(r->d, &r->t) < 0) {
		snprintf(r->why, sizeof r->why, "sim_transport_open failed");
		return -1;
	}
	improv_client_init(&r->c, r->t);
	return 0;
}

static uint64_t now(struct rig *r) { return esp_now_us(&r->fc.clock); }

static bool console_has(struct improv_client *c, const char *needle)
{
	for (unsigned i = 0; i < improv_console_count(&c->ps); i++)
		if (strstr(improv_console_line(&c->ps, i), needle))
			return true;
	return false;
}

static void detect_info_scan_synthetic(void)
{
	size_t len;
	uint8_t *img = synth_esphome_c3(&len);
	struct rig r;
	if (rig_open(&r, img, len, true) < 0) {
		printf("# %s\n", r.why);
		CHECK(0);
		free(img);
		rig_close(&r);
		return;
	}
	CHECK_EQ(sim_get_mode(r.d), SIM_MODE_APP);
	uint64_t t0 = now(&r);
	int st = improv_get_state(&r.c, IMPROV_AFTER_FLASH_TIMEOUT_MS);
	CHECK_MSG(st == IMPROV_STATE_AUTHORIZED, "state %d: %s", st, r.c.msg);
	CHECK(now(&r) - t0 < (uint64_t)IMPROV_AFTER_FLASH_TIMEOUT_MS * 1000);
	CHECK(console_has(&r.c, "ESPHome version " ESPHOME_VERSION));
	struct improv_info info;
	int rc = improv_device_info(&r.c, &info, 5000);
	CHECK_MSG(rc == 0, "%d: %s", rc, r.c.msg);
	CHECK_STR(info.firmware, "ESPHome");
	CHECK_STR(info.version, ESPHOME_VERSION);
	CHECK_STR(info.chip, "ESP32-C3");
	CHECK_STR(info.name, "kitchen-sim");
	struct improv_network nets[8];
	int n = improv_scan(&r.c, nets, 8, 0);
	CHECK_MSG(n == 2, "%d networks: %s", n, r.c.msg);
	bool home = false, cafe = false;
	for (int i = 0; i < n && i < 8; i++) {
		if (nets[i].ssid_len == 7 && !memcmp(nets[i].ssid, "HomeNet", 7))
			home = nets[i].auth;
		if (nets[i].ssid_len == 8 && !memcmp(nets[i].ssid, "CafeOpen", 8))
			cafe = !nets[i].auth;
		CHECK(nets[i].rssi < 0 && nets[i].rssi > -100);
	}
	CHECK(home && cafe);
	/* ESPHome (2024) knows RPCs 1-4 only */
	char host[64];
	CHECK_EQ(improv_hostname(&r.c, NULL, host, sizeof host, 5000), -EOPNOTSUPP);
	rig_close(&r);
	free(img);
}

static char logbuf[16384];
static size_t loglen;
static void log_capture(int level, const char *line, void *ctx)
{
	(void)level; (void)ctx;
	size_t n = strlen(line);
	if (loglen + n + 1 < sizeof logbuf) {
		memcpy(logbuf + loglen, line, n);
		loglen += n;
		logbuf[loglen++] = '\n';
	}
}

static void provision_wrong_then_right(void)
{
	size_t len;
	uint8_t *img = synth_esphome_c3(&len);
	struct rig r;
	if (rig_open(&r, img, len, true) < 0) {
		printf("# %s\n", r.why);
		CHECK(0);
		free(img);
		rig_close(&r);
		return;
	}
	CHECK_EQ(improv_get_state(&r.c, IMPROV_AFTER_FLASH_TIMEOUT_MS), IMPROV_STATE_AUTHORIZED);
	loglen = 0;
	int old = esp_log_get_level();
	esp_log_set_level(-1);
	esp_log_set_sink(log_capture, NULL);
	const char *wrong = "battery staple";
	uint64_t t0 = now(&r);
	int rc = improv_provision(&r.c, (const uint8_t *)"HomeNet", 7, (const uint8_t *)wrong, strlen(wrong), 0);
	CHECK_MSG(rc == -ECONNREFUSED, "%d: %s", rc, r.c.msg);
	/* the device gives up by itself (ESPHome: 30 s; the sim: sooner),
	 * inside our 45 s */
	CHECK(now(&r) - t0 >= 1000000 && now(&r) - t0 < (uint64_t)IMPROV_PROVISION_TIMEOUT_MS * 1000);
	CHECK(strstr(r.c.msg, "staple") == NULL);
	CHECK_EQ(improv_get_state(&r.c, 0), IMPROV_STATE_AUTHORIZED);
	rc = improv_provision(&r.c, (const uint8_t *)"HomeNet", 7, (const uint8_t *)"correct horse", 13, 0);
	esp_log_set_sink(NULL, NULL);
	esp_log_set_level(old);
	CHECK_MSG(rc == 0, "%d: %s", rc, r.c.msg);
	CHECK(memmem(logbuf, loglen, "staple", 6) == NULL);
	CHECK(memmem(logbuf, loglen, "horse", 5) == NULL);
	CHECK_EQ(improv_get_state(&r.c, 0), IMPROV_STATE_PROVISIONED);
	rig_close(&r);
	free(img);
}

static void download_mode_has_no_improv(void)
{
	size_t len;
	uint8_t *img = synth_esphome_c3(&len);
	struct rig r;
	if (rig_open(&r, img, len, false) < 0) {   /* stays in the ROM loader */
		printf("# %s\n", r.why);
		CHECK(0);
		free(img);
		rig_close(&r);
		return;
	}
	uint64_t t0 = now(&r);
	CHECK_EQ(improv_get_state(&r.c, 3000), -ETIMEDOUT);
	CHECK_EQ(now(&r) - t0, 3000000);
	CHECK(r.c.packets_out >= 3);   /* re-asked every second */
	rig_close(&r);
	free(img);
}

static void real_esphome_c3_image(void)
{
	char path[1024];
	if (!t_shared_path("firmware/esphome-project-template/gh-pages-fd3bfd6/project-template-esp32c3/"
	                   "project-template-esp32c3.factory.bin", path, sizeof path))
		SKIP(getenv("ESPFS_SHARED") ? "the ESP32-C3 factory image is missing under $ESPFS_SHARED"
		                            : "ESPFS_SHARED is not set");
	size_t len;
	uint8_t *img = t_read_file(path, &len);
	struct rig r;
	if (!img || rig_open(&r, img, len, true) < 0) {
		CHECK(0);
		free(img);
		return;
	}
	int st = improv_get_state(&r.c, IMPROV_AFTER_FLASH_TIMEOUT_MS);
	CHECK_MSG(st == IMPROV_STATE_AUTHORIZED, "state %d: %s", st, r.c.msg);
	struct improv_info info;
	CHECK_EQ(improv_device_info(&r.c, &info, 5000), 0);
	CHECK_STR(info.chip, "ESP32-C3");
	/* the project template sets esphome: project:, which ESPHome >= 2024.9
	 * reports instead of "ESPHome"; this build is 2024.6.6 */
	CHECK_STR(info.firmware, "ESPHome");
	CHECK_STR(info.version, "2024.6.6");
	rig_close(&r);
	free(img);
}

int main(void)
{
	RUN(detect_info_scan_synthetic);
	RUN(provision_wrong_then_right);
	RUN(download_mode_has_no_improv);
	RUN(real_esphome_c3_image);
	return t_done();
}
