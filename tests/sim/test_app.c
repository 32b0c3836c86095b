/* The simulated device booting what is in its flash: ROM/bootloader checks,
 * boot log, boot loops, console.  Synthetic images first (the suite stands
 * alone), then the real images from $ESPFS_SHARED/firmware. */
#include "test_app_util.h"
#include <sys/stat.h>

#define MB (1024u * 1024u)

static void test_sha256_matches_libmd(void)
{
	uint8_t buf[3000], a[32], b[32];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(i * 31 + (i >> 5));
	size_t sizes[] = { 0, 3, 55, 56, 63, 64, 65, 1000, 3000 };
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		struct appsha s;
		appsha_init(&s);
		/* feed in uneven pieces to exercise buffering */
		size_t o = 0, step = 1;
		while (o < sizes[k]) {
			size_t n = sizes[k] - o < step ? sizes[k] - o : step;
			appsha_update(&s, buf + o, n);
			o += n;
			step = step * 3 + 1;
		}
		appsha_final(&s, a);
		SHA2_CTX c;
		SHA256Init(&c);
		SHA256Update(&c, buf, sizes[k]);
		SHA256Final(b, &c);
		CHECK_MSG(memcmp(a, b, 32) == 0, "size %zu", sizes[k]);
	}
	/* FIPS 180-4 example "abc" */
	static const uint8_t abc[32] = { 0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde,
					 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
					 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad };
	struct appsha s;
	appsha_init(&s);
	appsha_update(&s, "abc", 3);
	appsha_final(&s, a);
	CHECK_MEM(a, abc, 32);
}

static void test_crcs(void)
{
	/* boot_app0.bin's first otadata entry: ota_seq 1, crc 0x4743989a */
	uint8_t e[32];
	totadata_entry(e, 1);
	uint32_t c;
	memcpy(&c, e + 28, 4);
	CHECK_EQ(c, 0x4743989au);
	CHECK_EQ(app_crc32_le(0xFFFFFFFFu, e, 4), 0x4743989au);
	/* CRC-32/MPEG-2 check value ("123456789") is the MSB-first variant */
	CHECK_EQ(app_crc32_msb(0xFFFFFFFFu, (const uint8_t *)"123456789", 9), 0x0376E6E7u);
}

static void test_blank_flash_esp32_boot_loops(void)
{
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32, 4 * MB);
	tdev_boot(&d);
	CHECK(!sim_app_running(d.app));
	tdev_run(&d, 500000);
	CHECK(tout_has(&d.out, "ets Jul 29 2019 12:21:46\r\n"));   /* v3 ROM */
	CHECK(tout_has(&d.out, "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"));
	CHECK(tout_has(&d.out, "invalid header: 0xffffffff\r\n"));
	int first = tout_count(&d.out, "invalid header");
	CHECK(!tout_has(&d.out, "RTCWDT"));
	tdev_run(&d, 3000000);
	/* the complaint keeps coming, and the watchdog resets the chip */
	CHECK(tout_count(&d.out, "invalid header") > first * 2);
	CHECK(tout_has(&d.out, "rst:0x10 (RTCWDT_RTC_RESET)"));
	CHECK(!sim_app_running(d.app));
	CHECK(strstr(sim_app_boot_error(d.app), "invalid header") != NULL);
	CHECK_EQ(d.out.bad_pieces, 0);
	CHECK(!sim_app_speaks_improv(d.app));
	tdev_free(&d);
}

static void test_blank_flash_other_chips(void)
{
	esp_chip_id chips[] = { ESP_CHIP_ESP32S2, ESP_CHIP_ESP32S3, ESP_CHIP_ESP32C3, ESP_CHIP_ESP32C6, ESP_CHIP_ESP8266 };
	for (size_t i = 0; i < sizeof chips / sizeof chips[0]; i++) {
		struct tdev d;
		tdev_init(&d, chips[i], 2 * MB);
		tdev_boot(&d);
		tdev_run(&d, 2500000);
		CHECK(!sim_app_running(d.app));
		if (chips[i] == ESP_CHIP_ESP8266) {
			CHECK(tout_has(&d.out, " ets Jan  8 2013,rst cause:1, boot mode:(3,6)"));
			CHECK(tout_has(&d.out, "ets_main.c"));
			CHECK(tout_has(&d.out, "rst cause:4"));
		} else {
			char banner[64];
			snprintf(banner, sizeof banner, "ESP-ROM:%s", d.env.chip->key);
			CHECK_MSG(tout_has(&d.out, banner), "%s", d.env.chip->key);
			CHECK(tout_has(&d.out, "invalid header: 0xffffffff"));
		}
		tdev_free(&d);
	}
}

static void test_garbage_header_word(void)
{
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32C3, 4 * MB);
	static const uint8_t junk[4] = { 0x12, 0x34, 0x56, 0x78 };
	tflash_put(&d.fl, 0, junk, 4);
	tdev_boot(&d);
	tdev_run(&d, 300000);
	CHECK(tout_has(&d.out, "invalid header: 0x78563412\r\n"));
	tdev_free(&d);
}

static void test_synthetic_esphome_boots(void)
{
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32, 4 * MB);
	put_layout(&d, 0, "2024.6.6", true);
	tdev_boot(&d);
	CHECK(sim_app_running(d.app));
	CHECK_STR(sim_app_boot_error(d.app), "");
	tdev_run(&d, 1000000);
	CHECK(tout_has(&d.out, "load:0x3fff0030,len:64\r\n"));
	CHECK(tout_has(&d.out, "entry 0x40078010\r\n"));
	CHECK(tout_has(&d.out, "boot: Partition Table:"));
	CHECK(tout_has(&d.out, "boot:  2 app0             OTA app        00 10 00010000 001c0000"));
	CHECK(tout_has(&d.out, "boot: No factory image, trying OTA 0"));
	CHECK(tout_has(&d.out, "esp_image: segment 0: paddr=00010020 vaddr=3f400020 size=00140h (   320) map"));
	CHECK(tout_has(&d.out, "esp_image: segment 1: paddr="));
	CHECK(tout_has(&d.out, "I ("));
	CHECK(tout_has(&d.out, "boot: Loaded app from partition at offset 0x10000\r\n"));
	CHECK(tout_has(&d.out, "[I][app:100]: ESPHome version 2024.6.6 compiled on Jan  2 2025, 12:34:56\r\n"));
	CHECK(tout_has(&d.out, "[I][app:102]: Project acme.widget version 2.0\r\n"));
	CHECK(tout_has(&d.out, "Local MAC: 24:0A:C4:12:34:56"));
	CHECK_EQ(sim_app_boot_offset(d.app), 0x10000);
	CHECK(sim_app_is_esphome(d.app));
	CHECK(sim_app_speaks_improv(d.app));
	CHECK_STR(sim_app_version(d.app), "2024.6.6");
	CHECK_STR(sim_app_project_name(d.app), "my-widget");
	CHECK_EQ(sim_app_improv_state(d.app), IMPROV_STATE_AUTHORIZED);
	/* the log order is ROM -> bootloader -> app */
	const char *s = (const char *)d.out.b;
	CHECK(strstr(s, "entry 0x") < strstr(s, "boot: Partition Table"));
	CHECK(strstr(s, "Loaded app") < strstr(s, "ESPHome version"));
	CHECK_EQ(d.out.bad_pieces, 0);
	/* periodic console lines, always whole lines */
	size_t before = d.out.len;
	int lines_before = tout_count(&d.out, "\n");
	tdev_run(&d, 10000000);
	CHECK(d.out.len > before);
	int lines = tout_count(&d.out, "\n") - lines_before;
	CHECK_MSG(lines >= 5 && lines <= 10, "%d lines in 10 s", lines);
	CHECK_EQ(d.out.bad_pieces, 0);
	tdev_free(&d);
}

static void test_esphome_without_improv_serial_is_silent(void)
{
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32C3, 4 * MB);
	put_layout(&d, 5, "2024.6.6", false);
	tdev_boot(&d);
	CHECK(sim_app_running(d.app));
	CHECK(sim_app_is_esphome(d.app));
	CHECK(!sim_app_speaks_improv(d.app));
	tdev_free(&d);
}

static void test_non_esphome_app(void)
{
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32S3, 4 * MB);
	put_layout(&d, 9, NULL, false);
	tdev_boot(&d);
	tdev_run(&d, 5000000);
	CHECK(sim_app_running(d.app));
	CHECK(!sim_app_is_esphome(d.app));
	CHECK(!sim_app_speaks_improv(d.app));
	CHECK_STR(sim_app_project_name(d.app), "widget");
	CHECK_STR(sim_app_version(d.app), "1.2.3");
	CHECK(tout_has(&d.out, "cpu_start: Project name:     widget"));
	CHECK(tout_has(&d.out, "ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\nrst:0x1 (POWERON),boot:0x8"));
	CHECK(tout_has(&d.out, "boot.esp32s3: SPI Mode       : DIO"));
	CHECK(tout_count(&d.out, "widget: running") >= 2);
	tdev_free(&d);
}

static void test_app_checksum_and_hash_failures(void)
{
	for (int which = 0; which < 2; which++) {
		struct tdev d;
		tdev_init(&d, ESP_CHIP_ESP32, 4 * MB);
		put_layout(&d, 0, "2024.6.6", true);
		size_t app_len;
		uint8_t *app = tapp_build(0, "widget", "2024.6.6", "my-widget", true, &app_len);
		if (which == 0)
			d.fl.d[0x10000 + 0x40] ^= 0x01;          /* payload byte: XOR checksum fails */
		else
			d.fl.d[0x10000 + app_len - 1] ^= 0x80;  /* last digest byte: hash fails */
		free(app);
		tdev_boot(&d);
		tdev_run(&d, 2500000);
		CHECK(!sim_app_running(d.app));
		if (which == 0)
			CHECK(tout_has(&d.out, "esp_image: Checksum failed. Calculated 0x"));
		else
			CHECK(tout_has(&d.out, "esp_image: Image hash failed - image is corrupt"));
		CHECK(tout_has(&d.out, "boot: OTA app partition slot 0 is not bootable"));
		CHECK(tout_has(&d.out, "boot: No bootable app partitions in the partition table"));
		CHECK(tout_has(&d.out, "rst:0x3 (SW_RESET)"));   /* it reboots and tries again */
		CHECK(!tout_has(&d.out, "Loaded app"));
		tdev_free(&d);
	}
}

static void test_wrong_chip_app_and_bootloader(void)
{
	/* app built for the C3 behind an ESP32 bootloader */
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32, 4 * MB);
	put_layout(&d, 0, "2024.6.6", true);
	size_t len;
	uint8_t *app = tapp_build(5, "widget", "2024.6.6", "x", true, &len);
	tflash_put(&d.fl, 0x10000, app, len);
	free(app);
	tdev_boot(&d);
	tdev_run(&d, 300000);
	CHECK(!sim_app_running(d.app));
	CHECK(tout_has(&d.out, "esp_image: mismatch chip ID, expected 0, found 5"));
	tdev_free(&d);

	/* a whole S3 layout on a C3 (both boot from 0x0) */
	tdev_init(&d, ESP_CHIP_ESP32C3, 4 * MB);
	put_layout(&d, 9, "2024.6.6", true);
	tdev_boot(&d);
	tdev_run(&d, 300000);
	CHECK(!sim_app_running(d.app));
	CHECK(tout_has(&d.out, "ets_loader.c"));
	CHECK(strstr(sim_app_boot_error(d.app), "chip id 9") != NULL);
	tdev_free(&d);
}

static void test_partition_table_problems(void)
{
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32, 4 * MB);
	put_layout(&d, 0, "2024.6.6", true);
	d.fl.d[0x8000 + 32 + 4] ^= 0x10;     /* otadata offset changed: MD5 row no longer matches */
	tdev_boot(&d);
	tdev_run(&d, 200000);
	CHECK(!sim_app_running(d.app));
	CHECK(tout_has(&d.out, "flash_parts: Partition table MD5 mismatch"));
	CHECK(tout_has(&d.out, "boot: load partition table error!"));
	tdev_free(&d);

	tdev_init(&d, ESP_CHIP_ESP32, 4 * MB);
	put_layout(&d, 0, "2024.6.6", true);
	memset(d.fl.d + 0x8000, 0xFF, 0x1000);
	tdev_boot(&d);
	tdev_run(&d, 200000);
	CHECK(!sim_app_running(d.app));
	CHECK(tout_has(&d.out, "partition 0 invalid magic number 0xffff"));
	tdev_free(&d);
}

static void test_otadata_selects_slot(void)
{
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32, 4 * MB);
	put_layout(&d, 0, "2024.6.6", true);
	size_t len;
	uint8_t *app = tapp_build(0, "other", "2024.7.1", "second", true, &len);
	tflash_put(&d.fl, 0x1D0000, app, len);
	free(app);
	uint8_t e[32];
	totadata_entry(e, 2);                      /* seq 2 -> slot (2-1)%2 = ota_1 */
	tflash_put(&d.fl, 0x9000, e, 32);
	totadata_entry(e, 1);
	tflash_put(&d.fl, 0xA000, e, 32);
	tdev_boot(&d);
	CHECK(sim_app_running(d.app));
	CHECK_EQ(sim_app_boot_offset(d.app), 0x1D0000);
	CHECK_STR(sim_app_version(d.app), "2024.7.1");
	sim_app_free(d.app);

	/* a broken CRC makes that entry invalid: seq 1 wins, ota_0 */
	d.fl.d[0x9000 + 28] ^= 1;
	d.out.len = 0;
	tdev_boot(&d);
	CHECK_EQ(sim_app_boot_offset(d.app), 0x10000);
	sim_app_free(d.app);

	/* selected slot unbootable: the bootloader falls back to another */
	d.fl.d[0x9000 + 28] ^= 1;
	d.fl.d[0x1D0000] = 0xFF;
	d.out.len = 0;
	tdev_boot(&d);
	tdev_run(&d, 100000);
	CHECK(sim_app_running(d.app));
	CHECK_EQ(sim_app_boot_offset(d.app), 0x10000);
	CHECK(tout_has(&d.out, "image at 0x1d0000 has invalid magic byte"));
	CHECK(tout_has(&d.out, "OTA app partition slot 1 is not bootable"));
	tdev_free(&d);
}

static void test_bootloader_digest_mismatch(void)
{
	/* Header bytes 2-3 rewritten without a new digest (what esptool-js
	 * does): the ESP32 ROM never looks; later ROMs complain and go on. */
	esp_chip_id chips[2] = { ESP_CHIP_ESP32, ESP_CHIP_ESP32C3 };
	int ids[2] = { 0, 5 };
	for (int i = 0; i < 2; i++) {
		struct tdev d;
		tdev_init(&d, chips[i], 4 * MB);
		put_layout(&d, ids[i], "2024.6.6", true);
		d.fl.d[d.env.chip->bootloader_offset + 3] = 0x2F;
		tdev_boot(&d);
		tdev_run(&d, 100000);
		CHECK(sim_app_running(d.app));
		CHECK_EQ(tout_has(&d.out, "SHA-256 comparison failed:"), i == 1);
		CHECK_EQ(tout_has(&d.out, "Attempting to boot anyway..."), i == 1);
		CHECK(tout_has(&d.out, "SPI Speed      : 80MHz"));
		/* a bootloader checksum error is fatal for every ROM */
		sim_app_free(d.app);
		d.fl.d[d.env.chip->bootloader_offset + 24 + 8] ^= 0xFF;
		tdev_boot(&d);
		tdev_run(&d, 100000);
		CHECK(!sim_app_running(d.app));
		CHECK(tout_has(&d.out, i == 0 ? "csum err:0x" : "Checksum failure. Calculated 0x"));
		tdev_free(&d);
	}
}

/* ESP8266 in the Arduino/ESPHome layout: eboot at 0, app at 0x1000 with
 * the (length, CRC) pair patched into 0x1010 after the checksum. */
static void put_esp8266(struct tdev *d, bool patch_crc)
{
	static uint8_t eb_code[600], eb_data[40], irom[2048], iram[700], ro[256];
	for (size_t i = 0; i < sizeof eb_code; i++)
		eb_code[i] = (uint8_t)(i * 13);
	memset(eb_data, 0x11, sizeof eb_data);
	struct tseg es[2] = { { 0x4010F000, eb_code, sizeof eb_code }, { 0x3FFF20B8, eb_data, sizeof eb_data } };
	size_t elen, alen;
	uint8_t *eb = timg_build(-1, 3, 0x40, 0x4010F000, es, 2, false, &elen);
	memset(irom, 0, 8);
	for (size_t i = 8; i < sizeof irom; i++)
		irom[i] = (uint8_t)(i * 5 + 3);
	for (size_t i = 0; i < sizeof iram; i++)
		iram[i] = (uint8_t)(i ^ 0xA5);
	memset(ro, 0, sizeof ro);
	size_t o = 1;
	o += (size_t)sprintf((char *)ro + o, "ESPHome version 2024.6.4 compiled on %%s") + 1;
	o += (size_t)sprintf((char *)ro + o, "Jun 29 2024, 22:04:02") + 1;
	o += (size_t)sprintf((char *)ro + o, "plug-kitchen.local") + 1;
	sprintf((char *)ro + o, "improv_serial");
	struct tseg as[3] = { { 0x40201010, irom, sizeof irom }, { 0x40100000, iram, sizeof iram },
			      { 0x3FFE8000, ro, sizeof ro } };
	uint8_t *app = timg_build(-1, 3, 0x40, 0x40100004, as, 3, false, &alen);
	tflash_put(&d->fl, 0, eb, elen);
	tflash_put(&d->fl, 0x1000, app, alen);
	if (patch_crc) {
		uint32_t total = 0x1000 + (uint32_t)alen, crc = 0xFFFFFFFFu;
		memset(d->fl.d + 0x1010, 0, 8);
		for (uint32_t i = 0; i < total; i++) {
			crc ^= (uint32_t)d->fl.d[i] << 24;
			for (int k = 0; k < 8; k++)
				crc = (crc & 0x80000000u) ? (crc << 1) ^ 0x04C11DB7u : crc << 1;
		}
		memcpy(d->fl.d + 0x1010, &total, 4);
		memcpy(d->fl.d + 0x1014, &crc, 4);
	}
	free(eb);
	free(app);
}

static void test_esp8266_eboot_layout(void)
{
	for (int patch = 0; patch < 2; patch++) {
		struct tdev d;
		tdev_init(&d, ESP_CHIP_ESP8266, 4 * MB);
		put_esp8266(&d, patch);
		tdev_boot(&d);
		tdev_run(&d, 1000000);
		CHECK_MSG(sim_app_running(d.app), "patch=%d: %s", patch, sim_app_boot_error(d.app));
		CHECK_EQ(sim_app_boot_offset(d.app), 0x1000);
		CHECK(tout_has(&d.out, "load 0x4010f000, len 600, room 16 \r\ntail 8\r\nchksum 0x"));
		CHECK(tout_has(&d.out, "load 0x3fff20b8, len 40, room 16 \r\ntail 8\r\n"));
		CHECK(tout_has(&d.out, "~ld\r\n"));
		if (patch) {
			char v[16];
			uint32_t len;
			memcpy(&len, d.fl.d + 0x1010, 4);
			snprintf(v, sizeof v, "v%08x\r\n", len);
			CHECK(tout_has(&d.out, v));
		}
		CHECK(sim_app_is_esphome(d.app));
		CHECK_STR(sim_app_project_name(d.app), "plug-kitchen");
		CHECK(sim_app_speaks_improv(d.app));
		tdev_free(&d);
	}
	/* a flipped app byte outside the CRC slot still fails */
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP8266, 4 * MB);
	put_esp8266(&d, true);
	d.fl.d[0x1020] ^= 0x40;
	tdev_boot(&d);
	tdev_run(&d, 1500000);
	CHECK(!sim_app_running(d.app));
	CHECK(tout_has(&d.out, "Fatal exception"));
	CHECK(tout_count(&d.out, "ets Jan  8 2013") >= 2);
	tdev_free(&d);
}

static void test_esp8266_single_image_and_reset_causes(void)
{
	/* a plain single image at 0 (no eboot): the ROM runs it directly */
	static uint8_t iram[300], ro[128];
	for (size_t i = 0; i < sizeof iram; i++)
		iram[i] = (uint8_t)(i * 3);
	memset(ro, 0, sizeof ro);
	sprintf((char *)ro + 1, "ESPHome version 2023.1.0 compiled on %%s");
	struct tseg s[2] = { { 0x40100000, iram, sizeof iram }, { 0x3FFE8000, ro, sizeof ro } };
	size_t len;
	uint8_t *img = timg_build(-1, 2, 0x20, 0x40100004, s, 2, false, &len);
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP8266, 1 * MB);
	tflash_put(&d.fl, 0, img, len);
	free(img);
	d.env.reset_cause = 1;                      /* EN pin */
	tdev_boot(&d);
	tdev_run(&d, 100000);
	CHECK(sim_app_running(d.app));
	CHECK_EQ(sim_app_boot_offset(d.app), 0);
	CHECK_STR(sim_app_version(d.app), "2023.1.0");
	CHECK(tout_has(&d.out, "rst cause:2, boot mode:(3,6)"));
	CHECK(!tout_has(&d.out, "~ld"));
	tdev_free(&d);

	struct { esp_chip_id chip; int cause; const char *want; } c[] = {
		{ ESP_CHIP_ESP32, 2, "rst:0xc (SW_CPU_RESET),boot:0x13" },
		{ ESP_CHIP_ESP32C3, 2, "rst:0xc (RTC_SW_CPU_RST),boot:0xc" },
		{ ESP_CHIP_ESP32C3, 0, "rst:0x1 (POWERON),boot:0xc" },
	};
	for (size_t i = 0; i < 3; i++) {
		tdev_init(&d, c[i].chip, 1 * MB);
		d.env.reset_cause = c[i].cause;
		tdev_boot(&d);
		tdev_run(&d, 10000);
		CHECK_MSG(tout_has(&d.out, c[i].want), "%s", c[i].want);
		tdev_free(&d);
	}
}

static void test_poll_timing(void)
{
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32, 4 * MB);
	put_layout(&d, 0, "2024.6.6", true);
	tdev_boot(&d);
	/* nothing after t0 is emitted early */
	size_t at_boot = d.out.len;
	uint64_t nx = sim_app_next_event_us(d.app);
	CHECK(nx > d.now && nx != UINT64_MAX);
	sim_app_poll(d.app, nx - 1);
	CHECK_EQ(d.out.len, at_boot);
	sim_app_poll(d.app, nx);
	CHECK(d.out.len > at_boot);
	/* a long silence does not flood: catch-up is bounded */
	tdev_run(&d, 2000000);
	size_t before = d.out.len;
	d.now += 3600ull * 1000000;
	sim_app_poll(d.app, d.now);
	CHECK(d.out.len - before < 4000);
	CHECK(sim_app_next_event_us(d.app) > d.now);
	tdev_free(&d);
}

static const uint8_t *find_mem(const uint8_t *h, size_t hn, const void *n, size_t nn)
{
	return memmem(h, hn, n, nn);
}

/* ---- real images ---- */

#define EPT "firmware/esphome-project-template/"

static void check_real(esp_chip_id chip, const char *const *files, const uint32_t *offs, int n,
		       const char *want_ver, uint32_t want_off)
{
	struct tdev d;
	tdev_init(&d, chip, 4 * MB);
	for (int i = 0; i < n; i++) {
		size_t len;
		uint8_t *b = t_shared(files[i], &len);
		CHECK_MSG(b != NULL, "%s", files[i]);
		if (!b) {
			tdev_free(&d);
			return;
		}
		tflash_put(&d.fl, offs[i], b, len);
		free(b);
	}
	tdev_boot(&d);
	tdev_run(&d, 1500000);
	CHECK_MSG(sim_app_running(d.app), "%s: %s", files[0], sim_app_boot_error(d.app));
	CHECK_EQ(sim_app_boot_offset(d.app), want_off);
	CHECK(sim_app_is_esphome(d.app));
	CHECK(sim_app_speaks_improv(d.app));
	CHECK_STR(sim_app_version(d.app), want_ver);
	CHECK_STR(sim_app_project_name(d.app), "project-template");
	/* device info over Improv */
	uint8_t req[16];
	size_t rn = timprov_req(3, NULL, 0, req);
	req[rn++] = '\n';
	tdev_send(&d, req, rn);
	tdev_run(&d, 20000);
	struct tpkt p[4];
	int np = tout_improv(&d.out, p, 4);
	CHECK_EQ(np, 1);
	if (np == 1) {
		char s[4][64];
		CHECK(p[0].csum_ok);
		CHECK_EQ(p[0].type, 4);
		CHECK_EQ(p[0].data[0], 3);
		CHECK_EQ(tpkt_nstr(&p[0]), 4);
		for (int i = 0; i < 4; i++)
			CHECK(tpkt_str(&p[0], i, s[i], sizeof s[i]));
		CHECK_STR(s[0], "ESPHome");
		CHECK_STR(s[1], want_ver);
		CHECK_STR(s[2], d.env.chip->name);
		CHECK_STR(s[3], "project-template");
	}
	CHECK_EQ(d.out.bad_pieces, 0);
	tdev_free(&d);
}

/* meson always sets ESPFS_SHARED (to ../shared): the directory must exist */
static bool have_shared_firmware(void)
{
	const char *sh = getenv("ESPFS_SHARED");
	char p[4096];
	struct stat st;
	if (!sh || !*sh)
		return false;
	snprintf(p, sizeof p, "%s/firmware", sh);
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_real_factory_images(void)
{
	if (!have_shared_firmware())
		SKIP("no $ESPFS_SHARED/firmware (../shared absent): real firmware images not available");
	static const struct { esp_chip_id chip; const char *f; } fx[] = {
		{ ESP_CHIP_ESP32, EPT "gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.factory.bin" },
		{ ESP_CHIP_ESP32C3, EPT "gh-pages-fd3bfd6/project-template-esp32c3/project-template-esp32c3.factory.bin" },
		{ ESP_CHIP_ESP32S3, EPT "gh-pages-fd3bfd6/project-template-esp32s3/project-template-esp32s3.factory.bin" },
	};
	for (size_t i = 0; i < 3; i++) {
		uint32_t off = 0;
		check_real(fx[i].chip, &fx[i].f, &off, 1, "2024.6.6", 0x10000);
	}
	const char *e8 = EPT "gh-pages-a9c729c/project-template-esp8266/project-template-esp8266.factory.bin";
	uint32_t off = 0;
	check_real(ESP_CHIP_ESP8266, &e8, &off, 1, "2024.6.4", 0x1000);
}

static void test_real_2022_parts(void)
{
	if (!have_shared_firmware())
		SKIP("no $ESPFS_SHARED/firmware (../shared absent): real firmware images not available");
	const char *f[4] = { EPT "gh-pages-800bdaa/project-template-esp32/bootloader_dio_40m.bin",
			     EPT "gh-pages-800bdaa/project-template-esp32/partitions.bin",
			     EPT "gh-pages-800bdaa/project-template-esp32/boot_app0.bin",
			     EPT "gh-pages-800bdaa/project-template-esp32/firmware.bin" };
	const uint32_t o[4] = { 0x1000, 0x8000, 0xE000, 0x10000 };
	check_real(ESP_CHIP_ESP32, f, o, 4, "2021.12.3", 0x10000);
}

static void test_real_esp32s2_blink(void)
{
	if (!have_shared_firmware())
		SKIP("no $ESPFS_SHARED/firmware (../shared absent): real firmware images not available");
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32S2, 2 * MB);
	size_t bl = 0, ap = 0;
	uint8_t *b = t_shared("firmware/esptool/test/images/bootloader_esp32s2.bin", &bl);
	uint8_t *a = t_shared("firmware/esptool/test/images/esp_idf_blink_esp32s2.bin", &ap);
	CHECK(b && a);
	if (b && a) {
		static const struct tpart parts[] = { { "nvs", 1, 2, 0x9000, 0x6000 }, { "phy_init", 1, 1, 0xF000, 0x1000 },
						      { "factory", 0, 0, 0x10000, 0x100000 } };
		uint8_t pt[0xC00];
		tpt_build(pt, parts, 3, true);
		tflash_put(&d.fl, 0x1000, b, bl);
		tflash_put(&d.fl, 0x8000, pt, sizeof pt);
		tflash_put(&d.fl, 0x10000, a, ap);
		tdev_boot(&d);
		tdev_run(&d, 3000000);
		CHECK_MSG(sim_app_running(d.app), "%s", sim_app_boot_error(d.app));
		CHECK(!sim_app_is_esphome(d.app));
		CHECK(!sim_app_speaks_improv(d.app));
		CHECK_STR(sim_app_project_name(d.app), "blink");
		CHECK(tout_has(&d.out, "ESP-ROM:esp32s2-rc4-20191025"));
		CHECK(tout_has(&d.out, "I (") && tout_has(&d.out, " boot: Loaded app from partition at offset 0x10000"));
		CHECK(tout_has(&d.out, "ESP-IDF:          v5.0-beta1"));
		CHECK(tout_has(&d.out, "example: Turning the LED ON!"));
		CHECK(tout_has(&d.out, "example: Turning the LED OFF!"));
		sim_app_free(d.app);
		/* Improv forced on a non-ESPHome app: it still answers */
		d.env.improv_forced = true;
		tdev_boot(&d);
		CHECK(sim_app_speaks_improv(d.app));
	}
	free(b);
	free(a);
	tdev_free(&d);
}

static void test_real_images_refused(void)
{
	if (!have_shared_firmware())
		SKIP("no $ESPFS_SHARED/firmware (../shared absent): real firmware images not available");
	struct { esp_chip_id chip; const char *f; uint32_t off; } cases[] = {
		/* C3 factory on an ESP32: 0x1000 holds the middle of the C3 bootloader */
		{ ESP_CHIP_ESP32, EPT "gh-pages-fd3bfd6/project-template-esp32c3/project-template-esp32c3.factory.bin", 0 },
		/* S3 factory on a C3: right offset, wrong chip id */
		{ ESP_CHIP_ESP32C3, EPT "gh-pages-fd3bfd6/project-template-esp32s3/project-template-esp32s3.factory.bin", 0 },
		/* an app-only (ota) image written at 0 */
		{ ESP_CHIP_ESP32C3, EPT "gh-pages-fd3bfd6/project-template-esp32c3/project-template-esp32c3.ota.bin", 0 },
		/* ESP32 factory on an S2 (same bootloader offset, chip id 0 != 2) */
		{ ESP_CHIP_ESP32S2, EPT "gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.factory.bin", 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct tdev d;
		tdev_init(&d, cases[i].chip, 4 * MB);
		size_t len;
		uint8_t *b = t_shared(cases[i].f, &len);
		CHECK(b != NULL);
		if (b) {
			tflash_put(&d.fl, cases[i].off, b, len);
			free(b);
		}
		tdev_boot(&d);
		tdev_run(&d, 2500000);
		CHECK_MSG(!sim_app_running(d.app), "case %zu booted", i);
		CHECK_MSG(sim_app_boot_error(d.app)[0] != 0, "case %zu", i);
		CHECK(!find_mem(d.out.b, d.out.len, "IMPROV", 6));
		tdev_free(&d);
	}
}

int main(void)
{
	RUN(test_sha256_matches_libmd);
	RUN(test_crcs);
	RUN(test_blank_flash_esp32_boot_loops);
	RUN(test_blank_flash_other_chips);
	RUN(test_garbage_header_word);
	RUN(test_synthetic_esphome_boots);
	RUN(test_esphome_without_improv_serial_is_silent);
	RUN(test_non_esphome_app);
	RUN(test_app_checksum_and_hash_failures);
	RUN(test_wrong_chip_app_and_bootloader);
	RUN(test_partition_table_problems);
	RUN(test_otadata_selects_slot);
	RUN(test_bootloader_digest_mismatch);
	RUN(test_esp8266_eboot_layout);
	RUN(test_esp8266_single_image_and_reset_causes);
	RUN(test_poll_timing);
	RUN(test_real_factory_images);
	RUN(test_real_2022_parts);
	RUN(test_real_esp32s2_blink);
	RUN(test_real_images_refused);
	return t_done();
}
