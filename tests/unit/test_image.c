/* Firmware images, partition tables, otadata: parse, classify, check
 * writes.  Synthetic images built here (with an independent checksum and
 * CRC implementation) make the suite stand alone; the real images in
 * $ESPFS_SHARED/firmware (MANIFEST.md) are checked when present. */
#include <errno.h>
#include "t.h"
#include "espfs/image.h"
#include "image_synth.h"

/* ---------- synthetic builders ---------- */

static uint8_t appdesc[512];
static const uint8_t *make_appdesc(const char *ver, const char *proj, const char *idf)
{
	memset(appdesc, 0, sizeof appdesc);
	put32(appdesc, ESP_APP_DESC_MAGIC);
	strcpy((char *)appdesc + 16, ver);
	strcpy((char *)appdesc + 48, proj);
	strcpy((char *)appdesc + 80, "12:34:56");
	strcpy((char *)appdesc + 96, "Nov 25 2026");
	strcpy((char *)appdesc + 112, idf);
	for (int i = 256; i < 512; i++)
		appdesc[i] = (uint8_t)i;
	return appdesc;
}

/* ESP32-family app: DROM segment with app desc, IRAM, IROM. */
static size_t synth_app(uint8_t *out, esp_chip_id chip, bool hash)
{
	uint32_t drom = 0x3F400020, iram = 0x40080000, irom = 0x400D0020;
	if (chip == ESP_CHIP_ESP32C3 || chip == ESP_CHIP_ESP32S3) {
		drom = 0x3C000020; iram = 0x40380000; irom = 0x42000020;
	} else if (chip == ESP_CHIP_ESP32S2) {
		drom = 0x3F000020; iram = 0x40022000; irom = 0x40080020;
	}
	struct tseg s[3] = {
		{ drom, 512, 0, make_appdesc("2026.11.0", "synthetic-app", "v5.3") },
		{ iram, 301, 0x11, NULL },
		{ irom, 1000, 0x22, NULL },
	};
	return build_image(out, esp_chip_get(chip)->image_chip_id, 2, 0x20, iram + 4, s, 3, hash);
}

static size_t synth_boot(uint8_t *out, esp_chip_id chip)
{
	struct tseg s[3] = { { 0x3FFF0030, 200, 0x33, NULL }, { 0x40078000, 700, 0x44, NULL },
	                     { 0x40080400, 123, 0x55, NULL } };
	if (chip == ESP_CHIP_ESP32S2) {
		s[0].addr = 0x3FFE6108; s[1].addr = 0x4004C000; s[2].addr = 0x40050000;
	} else if (chip != ESP_CHIP_ESP32) {
		s[0].addr = 0x3FCD5810; s[1].addr = 0x403CC710; s[2].addr = 0x403CE710;
	}
	return build_image(out, esp_chip_get(chip)->image_chip_id, 2, 0x20, s[1].addr, s, 3, true);
}

static const struct tent std_pt[] = {
	{ 0x01, 0x02, 0x9000, 0x5000, "nvs", 0 },
	{ 0x01, 0x00, 0xE000, 0x2000, "otadata", 0 },
	{ 0x00, 0x10, 0x10000, 0x1C0000, "app0", 0 },
	{ 0x00, 0x11, 0x1D0000, 0x1C0000, "app1", 0 },
	{ 0x01, 0x82, 0x391000, 0xF000, "spiffs", ESP_PT_FLAG_READONLY },
};

/* Merged image: bootloader at the chip's offset, table at 0x8000, app at 0x10000. */
static uint8_t *synth_factory(esp_chip_id chip, size_t *len)
{
	static uint8_t img[8192];
	uint8_t *f = malloc(0x10000 + 8192);
	memset(f, 0xFF, 0x10000 + 8192);
	size_t bl = synth_boot(img, chip);
	memcpy(f + esp_chip_get(chip)->bootloader_offset, img, bl);
	synth_pt(f + 0x8000, std_pt, 5, true);
	size_t al = synth_app(img, chip, true);
	memcpy(f + 0x10000, img, al);
	*len = 0x10000 + al;
	return f;
}

/* MSB-first CRC-32 (poly 0x04C11DB7), written independently of the code
 * under test: the Arduino ESP8266 image CRC. */
static uint32_t crc_msb(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFF;
	for (size_t i = 0; i < n; i++)
		for (int b = 7; b >= 0; b--) {
			unsigned bit = ((c >> 31) ^ (p[i] >> b)) & 1;
			c <<= 1;
			if (bit)
				c ^= 0x04C11DB7;
		}
	return c;
}

/* eboot at 0 (RAM only), padding 0xAA, app at 0x1000 with IROM, then
 * length + CRC stored at 0x1010 after the XOR checksum, like elf2bin. */
static uint8_t *synth_esp8266(size_t *len)
{
	uint8_t *f = malloc(0x3000);
	memset(f, 0xAA, 0x3000);
	struct tseg eb[2] = { { 0x4010F000, 0x300, 0x66, NULL }, { 0x3FFF20B8, 0x28, 0x77, NULL } };
	build_image(f, -1, 3, 0x40, 0x4010F480, eb, 2, false);
	uint8_t irom[0x400];
	memset(irom, 0x5A, sizeof irom);
	memset(irom, 0, 8);  /* placeholder the CRC goes into */
	struct tseg ap[3] = { { 0x40201010, sizeof irom, 0, irom }, { 0x40100000, 0x224, 0x12, NULL },
	                      { 0x3FFE8000, 0x5D8, 0x34, NULL } };
	size_t al = build_image(f + 0x1000, -1, 3, 0x40, 0x401000C0, ap, 3, false);
	size_t total = 0x1000 + al;
	uint32_t crc = crc_msb(f, total);      /* computed with the 8 bytes still zero */
	put32(f + 0x1010, (uint32_t)total);
	put32(f + 0x1014, crc);
	*len = total;
	return f;
}

/* ---------- synthetic tests ---------- */

static void app_header_fields_and_descriptor(void)
{
	uint8_t img[4096];
	size_t n = synth_app(img, ESP_CHIP_ESP32C3, true);
	struct esp_image_info in;
	char msg[200];
	CHECK_EQ(esp_image_parse(img, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), 0);
	CHECK_STR(msg, "");
	CHECK_EQ(in.chip, ESP_CHIP_ESP32C3);
	CHECK_EQ(in.ext_chip_id, 5);
	CHECK(in.has_ext_header);
	CHECK_EQ(in.n_segments, 3);
	CHECK_EQ(in.seg[1].load_addr, 0x40380000);
	CHECK_EQ(in.seg[1].len, 301);
	CHECK_EQ(in.seg[0].data_off, 32);
	CHECK_EQ(in.flash_mode, ESP_FLASH_DIO);
	CHECK_EQ(in.flash_size, 4u << 20);
	CHECK_EQ(in.flash_freq_khz, 40000);
	CHECK_EQ(in.entry, 0x40380004);
	CHECK_EQ(in.max_rev_full, 0xFFFF);
	CHECK(in.hash_appended && in.sha_ok && in.checksum_ok && in.complete);
	CHECK_EQ(in.image_len, n);
	CHECK_EQ(in.data_len % 16, 0);
	CHECK(in.app.present);
	CHECK_STR(in.app.version, "2026.11.0");
	CHECK_STR(in.app.project_name, "synthetic-app");
	CHECK_STR(in.app.idf_ver, "v5.3");
	CHECK_STR(in.app.date, "Nov 25 2026");
	CHECK_STR(in.app.time, "12:34:56");
	CHECK(in.flash_mapped);
}

static void checksum_sits_at_15_mod_16(void)
{
	/* every data length: the checksum byte is the last of a 16-byte row */
	uint8_t img[512];
	for (uint32_t l = 0; l < 48; l++) {
		struct tseg s = { 0x3FFF0000, l, (uint8_t)l, NULL };
		size_t n = build_image(img, 0, 2, 0x20, 0x40080000, &s, 1, false);
		struct esp_image_info in;
		char msg[200];
		int r = esp_image_parse(img, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg);
		CHECK_MSG(r == 0, "len %u: %s", l, msg);
		CHECK_EQ(in.image_len, n);
		CHECK_EQ(n % 16, 0);
	}
}

static void flipped_bytes_are_detected(void)
{
	uint8_t img[4096];
	size_t n = synth_app(img, ESP_CHIP_ESP32, true);
	struct esp_image_info in;
	char msg[200];
	/* one flipped data byte: the XOR checksum catches it */
	img[40] ^= 0x01;
	CHECK_EQ(esp_image_parse(img, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), -EINVAL);
	CHECK(!in.checksum_ok);
	CHECK(strstr(msg, "checksum") != NULL);
	/* two flips of the same bit cancel in the XOR; only SHA-256 sees them */
	img[41] ^= 0x01;
	CHECK_EQ(esp_image_parse(img, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), -EINVAL);
	CHECK(in.checksum_ok);
	CHECK(!in.sha_ok);
	CHECK(strstr(msg, "SHA-256") != NULL);
	img[40] ^= 0x01; img[41] ^= 0x01;
	CHECK_EQ(esp_image_parse(img, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), 0);
	/* the digest itself damaged */
	img[n - 1] ^= 0x80;
	CHECK_EQ(esp_image_parse(img, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), -EINVAL);
	CHECK(!in.sha_ok);
}

static void every_truncation_is_reported(void)
{
	uint8_t img[4096];
	size_t n = synth_app(img, ESP_CHIP_ESP32S3, true);
	for (size_t l = 0; l < n; l++) {
		uint8_t *cp = malloc(l ? l : 1);   /* exact size: ASan sees overreads */
		memcpy(cp, img, l);
		struct esp_image_info in;
		char msg[200];
		int r = esp_image_parse(cp, l, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg);
		CHECK_MSG(r == -EINVAL && !in.complete, "prefix %zu accepted", l);
		if (l >= 24)
			CHECK_MSG(in.needed > l, "prefix %zu: needed %zu", l, in.needed);
		if (l >= 16 && l < n && strstr(msg, "truncated") == NULL)
			CHECK_MSG(0, "prefix %zu: message '%s'", l, msg);
		free(cp);
	}
}

static void header_sanity_limits(void)
{
	uint8_t img[4096];
	size_t n = synth_app(img, ESP_CHIP_ESP32, false);
	struct esp_image_info in;
	char msg[200];
	img[1] = 17;
	CHECK_EQ(esp_image_parse(img, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "17 segments") != NULL);
	img[1] = 0;
	CHECK_EQ(esp_image_parse(img, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), -EINVAL);
	img[1] = 3;
	/* a segment claiming 0xFFFFFFF0 bytes must not wrap or crash */
	put32(img + 24 + 4, 0xFFFFFFF0u);
	CHECK_EQ(esp_image_parse(img, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), -EINVAL);
	CHECK(!in.complete);
	put32(img + 24 + 4, 0x00FFFFF0u);  /* large but legal: truncated */
	CHECK_EQ(esp_image_parse(img, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "truncated") != NULL);
	CHECK(in.needed > 0x00FFFFF0u);
	uint8_t ff[64];
	memset(ff, 0xFF, sizeof ff);
	CHECK_EQ(esp_image_parse(ff, sizeof ff, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "0xff") != NULL);
}

static void flash_size_and_freq_tables(void)
{
	CHECK_EQ(esp_image_flash_size(ESP_CHIP_ESP8266, 0x40), 4u << 20);
	CHECK_EQ(esp_image_flash_size(ESP_CHIP_ESP8266, 0x20), 1u << 20);
	CHECK_EQ(esp_image_flash_size(ESP_CHIP_ESP8266, 0x00), 512u << 10);
	CHECK_EQ(esp_image_flash_size(ESP_CHIP_ESP8266, 0x90), 16u << 20);
	CHECK_EQ(esp_image_flash_size(ESP_CHIP_ESP32, 0x20), 4u << 20);
	CHECK_EQ(esp_image_flash_size(ESP_CHIP_ESP32S2, 0x1F), 2u << 20);
	CHECK_EQ(esp_image_flash_size(ESP_CHIP_ESP32S3, 0x70), 128u << 20);
	CHECK_EQ(esp_image_flash_size(ESP_CHIP_ESP32, 0x80), 0);
	CHECK_EQ(esp_image_flash_freq_khz(ESP_CHIP_ESP32, 0x2F), 80000);
	CHECK_EQ(esp_image_flash_freq_khz(ESP_CHIP_ESP32C3, 0x21), 26000);
	CHECK_EQ(esp_image_flash_freq_khz(ESP_CHIP_ESP8266, 0x4F), 80000);
	CHECK_EQ(esp_image_flash_freq_khz(ESP_CHIP_ESP32C2, 0x2F), 60000);
	CHECK_EQ(esp_image_flash_freq_khz(ESP_CHIP_ESP32H2, 0x20), 24000);
	CHECK_EQ(esp_image_flash_freq_khz(ESP_CHIP_ESP32C6, 0x2F), 0);
	CHECK_STR(esp_flash_mode_name(0), "QIO");
	CHECK_STR(esp_flash_mode_name(3), "DOUT");
}

static void partition_table_parse_and_lookup(void)
{
	uint8_t pt[ESP_PT_MAX_LEN];
	synth_pt(pt, std_pt, 5, true);
	struct esp_partition_table t;
	char msg[200];
	CHECK_EQ(esp_pt_parse(pt, sizeof pt, &t, msg, sizeof msg), 0);
	CHECK_EQ(t.n, 5);
	CHECK(t.has_md5 && t.md5_ok && t.has_end);
	CHECK_EQ(t.len, 7 * 32);
	CHECK_STR(t.p[2].label, "app0");
	CHECK_EQ(t.p[2].offset, 0x10000);
	CHECK_EQ(t.p[4].flags, ESP_PT_FLAG_READONLY);
	CHECK_EQ(esp_pt_boot_app(&t)->offset, 0x10000);
	CHECK_EQ(esp_pt_first_app(&t)->offset, 0x10000);
	CHECK_EQ(esp_pt_find(&t, ESP_PT_TYPE_DATA, ESP_PT_DATA_OTA)->offset, 0xE000);
	CHECK_STR(esp_pt_find(&t, ESP_PT_TYPE_APP, 0x11)->label, "app1");
	CHECK(esp_pt_find(&t, ESP_PT_TYPE_APP, ESP_PT_APP_FACTORY) == NULL);
	CHECK_EQ(esp_pt_find_label(&t, "spiffs")->size, 0xF000);
	CHECK_STR(esp_pt_subtype_name(0x00, 0x11), "ota_1");
	CHECK_STR(esp_pt_subtype_name(0x01, 0x82), "spiffs");
	CHECK_STR(esp_pt_type_name(0x01), "data");
	CHECK(esp_pt_subtype_name(0x01, 0x99) == NULL);

	/* a factory partition wins over ota_0 for "where apps go" */
	struct tent with_factory[] = { { 0x00, 0x10, 0x110000, 0x100000, "ota_0", 0 },
	                               { 0x00, 0x00, 0x20000, 0xF0000, "factory", 0 } };
	synth_pt(pt, with_factory, 2, false);
	CHECK_EQ(esp_pt_parse(pt, sizeof pt, &t, msg, sizeof msg), 0);
	CHECK(!t.has_md5);
	CHECK_EQ(esp_pt_boot_app(&t)->offset, 0x20000);

	/* damaged MD5 */
	synth_pt(pt, std_pt, 5, true);
	pt[5 * 32 + 20] ^= 1;
	CHECK_EQ(esp_pt_parse(pt, sizeof pt, &t, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "MD5") != NULL);
	/* a changed entry also breaks the MD5 */
	synth_pt(pt, std_pt, 5, true);
	pt[2 * 32 + 8] ^= 1;
	CHECK_EQ(esp_pt_parse(pt, sizeof pt, &t, msg, sizeof msg), -EINVAL);
	/* garbage row */
	synth_pt(pt, std_pt, 5, false);
	pt[5 * 32] = 0x12;
	CHECK_EQ(esp_pt_parse(pt, sizeof pt, &t, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "garbage") != NULL);
	/* overlapping entries */
	struct tent ov[] = { { 0x01, 0x02, 0x9000, 0x6000, "nvs", 0 }, { 0x01, 0x00, 0xE000, 0x2000, "otadata", 0 } };
	synth_pt(pt, ov, 2, true);
	CHECK_EQ(esp_pt_parse(pt, sizeof pt, &t, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "overlap") != NULL);
	/* no end marker within a short buffer */
	synth_pt(pt, std_pt, 5, true);
	CHECK_EQ(esp_pt_parse(pt, 6 * 32, &t, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "truncated") != NULL);
	/* not a table */
	memset(pt, 0xFF, sizeof pt);
	CHECK_EQ(esp_pt_parse(pt, sizeof pt, &t, msg, sizeof msg), -EINVAL);
}

static void otadata_entries(void)
{
	uint8_t od[ESP_OTADATA_LEN];
	memset(od, 0xFF, sizeof od);
	struct esp_otadata o;
	CHECK_EQ(esp_otadata_parse(od, sizeof od, &o), 0);
	CHECK_EQ(o.active, -1);
	CHECK(o.blank[0] && o.blank[1]);
	/* seq 3 with the CRC the bootloader checks (zlib CRC-32 of ota_seq,
	 * 0xFFFFFFFF seed): 0x4743989a is the value for seq 1 (boot_app0.bin) */
	put32(od, 1);
	put32(od + 28, 0x4743989a);
	CHECK_EQ(esp_otadata_parse(od, sizeof od, &o), 0);
	CHECK(o.valid[0]);
	CHECK_EQ(o.seq[0], 1);
	CHECK_EQ(o.active, 0);
	put32(od + 28, 0x4743989b);
	CHECK_EQ(esp_otadata_parse(od, sizeof od, &o), -EINVAL);
	CHECK(!o.valid[0]);
}

/* What the bootloader follows and what a switch writes (boot.c). */
static void otadata_select_and_switch(void)
{
	uint8_t od[ESP_OTADATA_LEN];
	uint32_t seq = 99;
	memset(od, 0xFF, sizeof od);
	CHECK_EQ(esp_otadata_active(od, sizeof od, &seq), -1);
	CHECK_EQ(seq, 0);
	/* the entry a switch writes is what the bootloader accepts: seq 1
	 * has boot_app0.bin's CRC */
	esp_otadata_entry(od, 1);
	CHECK_EQ(od[28] | od[29] << 8 | od[30] << 16 | (uint32_t)od[31] << 24, 0x4743989au);
	CHECK(od[24] == 0xFF && od[25] == 0xFF && od[26] == 0xFF && od[27] == 0xFF); /* ota_state undefined */
	CHECK_EQ(esp_otadata_active(od, sizeof od, &seq), 0);
	CHECK_EQ(seq, 1);
	esp_otadata_entry(od + 0x1000, 4);
	CHECK_EQ(esp_otadata_active(od, sizeof od, &seq), 1);
	CHECK_EQ(seq, 4);
	/* an entry marked INVALID (3) or ABORTED (4) does not count */
	put32(od + 0x1000 + 24, 3);
	CHECK_EQ(esp_otadata_active(od, sizeof od, &seq), 0);
	put32(od + 0x1000 + 24, 4);
	CHECK_EQ(esp_otadata_active(od, sizeof od, &seq), 0);
	put32(od + 0x1000 + 24, 2);               /* VALID */
	CHECK_EQ(esp_otadata_active(od, sizeof od, &seq), 1);
	/* a bad CRC, seq 0 (boot_app0.bin's second entry) and a short
	 * buffer do not count either; a tie goes to entry 0 */
	od[0x1000 + 28] ^= 1;
	CHECK_EQ(esp_otadata_active(od, sizeof od, &seq), 0);
	esp_otadata_entry(od + 0x1000, 0);
	CHECK_EQ(esp_otadata_active(od, sizeof od, &seq), 0);
	CHECK_EQ(esp_otadata_active(od, 0x1000, &seq), 0);
	CHECK_EQ(esp_otadata_active(od, 16, &seq), -1);
	esp_otadata_entry(od + 0x1000, 1);
	CHECK_EQ(esp_otadata_active(od, sizeof od, &seq), 0);
	/* next seq: (seq - 1) % n == slot, the smallest >= the active one */
	CHECK_EQ(esp_otadata_next_seq(0, 0, 2), 1);
	CHECK_EQ(esp_otadata_next_seq(0, 1, 2), 2);
	CHECK_EQ(esp_otadata_next_seq(1, 1, 2), 2);
	CHECK_EQ(esp_otadata_next_seq(2, 0, 2), 3);
	CHECK_EQ(esp_otadata_next_seq(3, 0, 2), 3);   /* already selected: same */
	CHECK_EQ(esp_otadata_next_seq(7, 2, 3), 9);
	CHECK_EQ(esp_otadata_next_seq(7, 0, 3), 7);
	for (uint32_t cur = 1; cur < 40; cur++)
		for (int n = 1; n <= 4; n++)
			for (int s = 0; s < n; s++) {
				uint32_t v = esp_otadata_next_seq(cur, s, n);
				CHECK(v >= cur && (v - 1) % (uint32_t)n == (uint32_t)s && v < cur + (uint32_t)n);
			}
	CHECK_EQ(esp_otadata_next_seq(0xFFFFFFF0u, 1, 16), 0xFFFFFFF2u);
	CHECK_EQ(esp_otadata_next_seq(0xFFFFFFF1u, 15, 16), 0);  /* past 32 bits */
	CHECK_EQ(esp_otadata_next_seq(0xFFFFFFFEu, 14, 16), 0);  /* never 0xFFFFFFFF (blank) */
	CHECK_EQ(esp_otadata_next_seq(5, 2, 2), 0);             /* no such slot */
	CHECK_EQ(esp_otadata_next_seq(5, 0, 0), 0);
}

static void classify_synthetic_kinds(void)
{
	static uint8_t img[8192];
	struct esp_image_class *c = malloc(sizeof *c);
	size_t n = synth_app(img, ESP_CHIP_ESP32, true);
	CHECK_EQ(esp_image_classify(img, n, NULL, c), 0);
	CHECK_EQ(c->kind, ESP_KIND_APP);
	CHECK_EQ(c->chip, ESP_CHIP_ESP32);
	CHECK_EQ(c->flash_offset, ESP_APP_OFFSET);
	CHECK(c->valid && c->has_app && !c->has_boot);
	char line[300];
	esp_image_describe(c, line, sizeof line);
	CHECK_STR(line, "app image for ESP32 (synthetic-app 2026.11.0, IDF v5.3), goes to 0x10000");
	CHECK_STR(c->app.app.project_name, "synthetic-app");

	/* with a device table whose app partition is elsewhere */
	uint8_t pt[ESP_PT_MAX_LEN];
	struct tent fac[] = { { 0x00, 0x00, 0x20000, 0xF0000, "factory", 0 } };
	synth_pt(pt, fac, 1, true);
	struct esp_partition_table t;
	char msg[200];
	CHECK_EQ(esp_pt_parse(pt, sizeof pt, &t, msg, sizeof msg), 0);
	CHECK_EQ(esp_image_classify(img, n, &t, c), 0);
	CHECK_EQ(c->flash_offset, 0x20000);

	for (int chip = ESP_CHIP_ESP32; chip < ESP_CHIP_COUNT; chip++) {
		n = synth_boot(img, (esp_chip_id)chip);
		CHECK_EQ(esp_image_classify(img, n, NULL, c), 0);
		CHECK_EQ(c->kind, ESP_KIND_BOOTLOADER);
		CHECK_EQ(c->chip, chip);
		CHECK_EQ(c->flash_offset, esp_chip_get((esp_chip_id)chip)->bootloader_offset);
	}

	synth_pt(pt, std_pt, 5, true);
	CHECK_EQ(esp_image_classify(pt, sizeof pt, NULL, c), 0);
	CHECK_EQ(c->kind, ESP_KIND_PARTITION_TABLE);
	CHECK_EQ(c->flash_offset, 0x8000);
	CHECK_EQ(c->pt.n, 5);
	pt[10] ^= 1;
	CHECK_EQ(esp_image_classify(pt, sizeof pt, NULL, c), -EINVAL);
	CHECK_EQ(c->kind, ESP_KIND_PARTITION_TABLE);
	CHECK(!c->valid && strstr(c->reason, "MD5"));

	uint8_t od[ESP_OTADATA_LEN];
	memset(od, 0xFF, sizeof od);
	put32(od, 1);
	put32(od + 28, 0x4743989a);
	CHECK_EQ(esp_image_classify(od, sizeof od, NULL, c), 0);
	CHECK_EQ(c->kind, ESP_KIND_OTADATA);
	CHECK_EQ(c->flash_offset, ESP_OTADATA_OFFSET);

	memset(img, 0xFF, sizeof img);
	CHECK_EQ(esp_image_classify(img, sizeof img, NULL, c), -EINVAL);
	CHECK_EQ(c->kind, ESP_KIND_UNKNOWN);
	CHECK(c->reason[0] != 0);
	memset(img, 0x00, sizeof img);
	CHECK_EQ(esp_image_classify(img, sizeof img, NULL, c), -EINVAL);
	CHECK_EQ(c->kind, ESP_KIND_UNKNOWN);
	CHECK_EQ(esp_image_classify(img, 0, NULL, c), -EINVAL);
	free(c);
}

static void classify_synthetic_factories(void)
{
	struct esp_image_class *c = malloc(sizeof *c);
	const esp_chip_id chips[] = { ESP_CHIP_ESP32, ESP_CHIP_ESP32S2, ESP_CHIP_ESP32C3, ESP_CHIP_ESP32S3 };
	for (size_t i = 0; i < 4; i++) {
		size_t n;
		uint8_t *f = synth_factory(chips[i], &n);
		CHECK_MSG(esp_image_classify(f, n, NULL, c) == 0, "%s: %s", esp_chip_get(chips[i])->name, c->reason);
		CHECK_EQ(c->kind, ESP_KIND_FACTORY);
		CHECK_EQ(c->chip, chips[i]);
		CHECK_EQ(c->flash_offset, 0);
		CHECK_EQ(c->boot_off, esp_chip_get(chips[i])->bootloader_offset);
		CHECK_EQ(c->app_off, 0x10000);
		CHECK(c->has_pt && c->pt.n == 5);
		/* truncated inside the app */
		CHECK_EQ(esp_image_classify(f, n - 100, NULL, c), -EINVAL);
		CHECK(strstr(c->reason, "app at 0x10000") && strstr(c->reason, "truncated"));
		/* app for another chip inside the merged image */
		uint8_t app[4096];
		size_t al = synth_app(app, chips[i] == ESP_CHIP_ESP32 ? ESP_CHIP_ESP32C3 : ESP_CHIP_ESP32, true);
		memcpy(f + 0x10000, app, al);
		CHECK_EQ(esp_image_classify(f, 0x10000 + al, NULL, c), -EINVAL);
		CHECK(strstr(c->reason, "built for") != NULL);
		/* bootloader + table only (merge_bin of two parts), an erased
		 * app partition: fine; something else where the app goes: not */
		CHECK_EQ(esp_image_classify(f, 0x9000, NULL, c), 0);
		CHECK(c->kind == ESP_KIND_FACTORY && c->has_pt && !c->has_app);
		memset(f + 0x10000, 0xFF, 0x100);
		CHECK_EQ(esp_image_classify(f, 0x10000 + al, NULL, c), 0);
		CHECK(!c->has_app);
		f[0x10000] = 0x42;
		CHECK_EQ(esp_image_classify(f, 0x10000 + al, NULL, c), -EINVAL);
		CHECK(strstr(c->reason, "first byte 0x42") != NULL);
		/* no table at 0x8000 either: just a bootloader, which goes to the
		 * same place whether called merged (ESP32/S2) or not (C3/S3) */
		memset(f + 0x8000, 0xFF, 0xC00);
		CHECK_EQ(esp_image_classify(f, 0x9000, NULL, c), 0);
		CHECK(!c->has_pt && c->has_boot);
		CHECK_EQ(c->kind, esp_chip_get(chips[i])->bootloader_offset ? ESP_KIND_FACTORY : ESP_KIND_BOOTLOADER);
		CHECK_EQ(c->flash_offset, 0);
		/* a damaged table is not fine */
		synth_pt(f + 0x8000, std_pt, 5, true);
		f[0x8000 + 40] ^= 1;
		CHECK_EQ(esp_image_classify(f, 0x9000, NULL, c), -EINVAL);
		CHECK(strstr(c->reason, "partition table at 0x8000") != NULL);
		free(f);
	}
	free(c);
}

static void esp8266_arduino_layout(void)
{
	size_t n;
	uint8_t *f = synth_esp8266(&n);
	struct esp_image_class *c = malloc(sizeof *c);
	CHECK_MSG(esp_image_classify(f, n, NULL, c) == 0, "%s", c->reason);
	CHECK_EQ(c->kind, ESP_KIND_FACTORY);
	CHECK_EQ(c->chip, ESP_CHIP_ESP8266);
	CHECK_EQ(c->flash_offset, 0);
	CHECK_EQ(c->app_off, 0x1000);
	CHECK(c->app.esp8266_crc_present && c->app.esp8266_crc_ok && c->app.checksum_ok);
	CHECK(!c->boot.has_ext_header);
	CHECK_EQ(c->boot.flash_mode, ESP_FLASH_DOUT);
	CHECK_EQ(c->boot.flash_size, 4u << 20);
	/* the app's own checksum only holds with the 8 CRC bytes zeroed */
	struct esp_image_info in;
	char msg[200];
	CHECK_EQ(esp_image_parse(f + 0x1000, n - 0x1000, ESP_CHIP_ESP8266, &in, msg, sizeof msg), 0);
	CHECK(in.checksum_ok);
	/* padding between eboot and the app is covered by the CRC only */
	f[0xF00] ^= 0xFF;
	CHECK_EQ(esp_image_classify(f, n, NULL, c), -EINVAL);
	CHECK(strstr(c->reason, "CRC") != NULL);
	f[0xF00] ^= 0xFF;
	/* an app byte: XOR checksum */
	f[0x1100] ^= 0x04;
	CHECK_EQ(esp_image_classify(f, n, NULL, c), -EINVAL);
	CHECK(strstr(c->reason, "checksum") != NULL);
	f[0x1100] ^= 0x04;
	/* ESP8266 images go to 0 on an ESP8266, never to an ESP32 */
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP8266, 0, f, n, true, NULL, msg, sizeof msg), 0);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0, f, n, true, NULL, msg, sizeof msg), -EINVAL);
	CHECK_STR(msg, "not an ESP32 image: built for ESP8266");
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32C3, 0, f, 64, false, NULL, msg, sizeof msg), -EINVAL);
	/* eboot alone is a bootloader */
	CHECK_EQ(esp_image_classify(f, 0xD00, NULL, c), 0);
	CHECK_EQ(c->kind, ESP_KIND_BOOTLOADER);
	CHECK_EQ(c->flash_offset, 0);
	free(c);
	free(f);
}

static void check_write_rules(void)
{
	static uint8_t app[4096], boot[4096];
	char msg[200];
	size_t an = synth_app(app, ESP_CHIP_ESP32C3, true);
	size_t bn = synth_boot(boot, ESP_CHIP_ESP32C3);
	/* right chip, right place */
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32C3, 0x10000, app, an, true, NULL, msg, sizeof msg), 0);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32C3, 0x0, boot, bn, true, NULL, msg, sizeof msg), 0);
	/* wrong chip */
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x10000, app, an, true, NULL, msg, sizeof msg), -EINVAL);
	CHECK_STR(msg, "not an ESP32 image: built for ESP32-C3 (chip id 5)");
	/* an app where the bootloader belongs */
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32C3, 0x0, app, an, true, NULL, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "app image") && strstr(msg, "synthetic-app") && strstr(msg, "bootloader offset 0x0"));
	/* a bootloader in the app partition */
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32C3, 0x10000, boot, bn, true, NULL, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "bootloader image") != NULL);
	/* truncated: fine as a prefix, refused as a whole */
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32C3, 0x10000, app, an - 1, false, NULL, msg, sizeof msg), 0);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32C3, 0x10000, app, an - 1, true, NULL, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "truncated") != NULL);
	/* corrupt whole image */
	app[100] ^= 1;
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32C3, 0x10000, app, an, true, NULL, msg, sizeof msg), -EINVAL);
	app[100] ^= 1;
	/* too short a prefix to decide, then enough */
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x10000, app, 20, false, NULL, msg, sizeof msg), -EAGAIN);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x10000, app, 36, false, NULL, msg, sizeof msg), -EINVAL);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32C3, 0x0, app, 36, false, NULL, msg, sizeof msg), -EINVAL);
	/* raw data anywhere is fine */
	uint8_t raw[8192];
	for (size_t i = 0; i < sizeof raw; i++)
		raw[i] = (uint8_t)(i * 13 + 1);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x0, raw, sizeof raw, true, NULL, msg, sizeof msg), 0);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x9000, raw, 16, false, NULL, msg, sizeof msg), 0);
	/* erased data: needs the whole first 4 KiB + header on ESP32 */
	memset(raw, 0xFF, sizeof raw);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x0, raw, 0x800, false, NULL, msg, sizeof msg), -EAGAIN);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x0, raw, ESP_IMAGE_CHECK_PREFIX, false, NULL, msg, sizeof msg), 0);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x0, raw, 0x800, true, NULL, msg, sizeof msg), 0);
	/* an image at 0x0 on the ESP32 never boots */
	size_t en = synth_boot(boot, ESP_CHIP_ESP32);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x0, boot, en, true, NULL, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "0x1000") != NULL);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x1000, boot, en, true, NULL, msg, sizeof msg), 0);
	/* a whole-flash dump whose app partition is erased restores fine */
	size_t dn;
	uint8_t *dump = synth_factory(ESP_CHIP_ESP32, &dn);
	memset(dump + 0x10000, 0xFF, dn - 0x10000);
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x0, dump, dn, true, NULL, msg, sizeof msg), 0);
	dump[0x1000 + 100] ^= 1;   /* but not with a damaged bootloader */
	CHECK_EQ(esp_image_check_write(ESP_CHIP_ESP32, 0x0, dump, dn, true, NULL, msg, sizeof msg), -EINVAL);
	CHECK(strstr(msg, "bootloader at 0x1000") != NULL);
	free(dump);
	/* -EAGAIN stops once ESP_IMAGE_CHECK_PREFIX bytes are there, for all kinds */
	const esp_chip_id chips[] = { ESP_CHIP_ESP32, ESP_CHIP_ESP32S2, ESP_CHIP_ESP32C3, ESP_CHIP_ESP32S3 };
	for (size_t i = 0; i < 4; i++) {
		size_t n;
		uint8_t *f = synth_factory(chips[i], &n);
		for (size_t k = 0; k < 4; k++) {
			int want = chips[i] == chips[k] ? 0 : -EINVAL;
			int r = esp_image_check_write(chips[k], 0, f, ESP_IMAGE_CHECK_PREFIX, false, NULL, msg, sizeof msg);
			CHECK_MSG(r == want, "%s factory on %s (prefix): %d %s", esp_chip_get(chips[i])->name,
			          esp_chip_get(chips[k])->name, r, msg);
			r = esp_image_check_write(chips[k], 0, f, n, true, NULL, msg, sizeof msg);
			CHECK_MSG(r == want, "%s factory on %s (whole): %d %s", esp_chip_get(chips[i])->name,
			          esp_chip_get(chips[k])->name, r, msg);
		}
		free(f);
	}
}

static void set_flash_params_recomputes_sha(void)
{
	uint8_t b[4096];
	size_t n = synth_boot(b, ESP_CHIP_ESP32);
	struct esp_image_info in;
	char msg[200];
	CHECK_EQ(esp_image_set_flash_params(b, n, ESP_FLASH_QIO, 0x3F), 0);
	CHECK_EQ(b[2], 0);
	CHECK_EQ(b[3], 0x3F);
	CHECK_EQ(esp_image_parse(b, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), 0);
	CHECK_EQ(in.flash_size, 8u << 20);
	CHECK(in.sha_ok);
	/* a header edited without the fix-up: the digest no longer matches */
	b[3] = 0x2F;
	CHECK_EQ(esp_image_parse(b, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), -EINVAL);
	CHECK(!in.sha_ok);
	CHECK_EQ(esp_image_set_flash_params(b, n - 1, ESP_FLASH_QIO, 0x2F), -EINVAL);
}

/* Deterministic PRNG so failures reproduce. */
static uint32_t rng = 12345;
static uint32_t rnd(void)
{
	rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5;
	return rng;
}

static void exercise(const uint8_t *b, size_t n)
{
	struct esp_image_info in;
	struct esp_partition_table t;
	struct esp_otadata od;
	static struct esp_image_class c;
	char msg[200];
	esp_image_parse(b, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg);
	esp_pt_parse(b, n, &t, msg, sizeof msg);
	esp_otadata_parse(b, n, &od);
	esp_image_classify(b, n, NULL, &c);
	for (int chip = ESP_CHIP_ESP8266; chip < ESP_CHIP_COUNT; chip += 3) {
		int r = esp_image_check_write((esp_chip_id)chip, 0, b, n, n & 1, NULL, msg, sizeof msg);
		CHECK(r == 0 || r == -EINVAL || r == -EAGAIN);
		esp_image_check_write((esp_chip_id)chip, 0x10000, b, n, true, &t, msg, sizeof msg);
	}
}

static void fuzz_never_crashes(void)
{
	/* random buffers, 0xE9-led random headers, and mutations of valid
	 * images; each buffer is malloc'd at its exact size so ASan catches
	 * any overread */
	size_t fn;
	uint8_t *fac = synth_factory(ESP_CHIP_ESP32, &fn);
	size_t en;
	uint8_t *e8 = synth_esp8266(&en);
	for (int iter = 0; iter < 3000; iter++) {
		size_t n = rnd() % 600;
		int mode = iter % 5;
		if (mode == 3)
			n = fn;
		if (mode == 4)
			n = en;
		uint8_t *b = malloc(n ? n : 1);
		for (size_t i = 0; i < n; i++)
			b[i] = (uint8_t)rnd();
		if (mode == 1 && n) {
			b[0] = 0xE9;
			if (n > 1) b[1] = (uint8_t)(rnd() % 18);
			if (n > 2) b[2] = (uint8_t)(rnd() % 4);
			if (n > 23) b[23] = (uint8_t)(rnd() % 2);
		}
		if (mode == 2 && n >= 2) {
			b[0] = 0xAA; b[1] = 0x50;
		}
		if (mode >= 3) {
			memcpy(b, mode == 3 ? fac : e8, n);
			for (int k = 0; k < 4; k++)
				b[rnd() % n] = (uint8_t)rnd();
			if (rnd() % 2)  /* huge segment length */
				put32(b + (mode == 3 ? 0x1000 + 24 + 4 : 12), rnd());
		}
		exercise(b, n);
		free(b);
	}
	uint8_t *ff = malloc(0x20000);
	memset(ff, 0xFF, 0x20000);
	exercise(ff, 0x20000);
	memset(ff, 0x00, 0x20000);
	exercise(ff, 0x20000);
	free(ff);
	free(fac);
	free(e8);
}

/* ---------- the real images (MANIFEST.md) ---------- */

#define EPT "firmware/esphome-project-template/"
struct real {
	const char *path;
	enum esp_image_kind kind;
	esp_chip_id chip;
	uint32_t offset;
	int boot_segs, app_segs;   /* 0 = not present */
	uint8_t mode, size_freq;
	const char *version, *project, *idf_prefix;
	const char *esphome;       /* ESPHome version in the banner, NULL none */
};
static const struct real reals[] = {
	{ EPT "gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.factory.bin",
	  ESP_KIND_FACTORY, ESP_CHIP_ESP32, 0, 3, 5, ESP_FLASH_DIO, 0x20, "2024.6.6", "project-template", "4.4.7", "2024.6.6" },
	{ EPT "gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.ota.bin",
	  ESP_KIND_APP, ESP_CHIP_ESP32, 0x10000, 0, 5, ESP_FLASH_DIO, 0x20, "2024.6.6", "project-template", "4.4.7", "2024.6.6" },
	{ EPT "gh-pages-fd3bfd6/project-template-esp32c3/project-template-esp32c3.factory.bin",
	  ESP_KIND_FACTORY, ESP_CHIP_ESP32C3, 0, 3, 5, ESP_FLASH_QIO, 0x2F, "2024.6.6", "project-template", "4.4.7", "2024.6.6" },
	{ EPT "gh-pages-fd3bfd6/project-template-esp32c3/project-template-esp32c3.ota.bin",
	  ESP_KIND_APP, ESP_CHIP_ESP32C3, 0x10000, 0, 5, ESP_FLASH_QIO, 0x2F, "2024.6.6", "project-template", "4.4.7", "2024.6.6" },
	{ EPT "gh-pages-fd3bfd6/project-template-esp32s3/project-template-esp32s3.factory.bin",
	  ESP_KIND_FACTORY, ESP_CHIP_ESP32S3, 0, 3, 5, ESP_FLASH_QIO, 0x2F, "2024.6.6", "project-template", "4.4.7", "2024.6.6" },
	{ EPT "gh-pages-fd3bfd6/project-template-esp32s3/project-template-esp32s3.ota.bin",
	  ESP_KIND_APP, ESP_CHIP_ESP32S3, 0x10000, 0, 5, ESP_FLASH_QIO, 0x2F, "2024.6.6", "project-template", "4.4.7", "2024.6.6" },
	{ EPT "gh-pages-a9c729c/project-template-esp8266/project-template-esp8266.factory.bin",
	  ESP_KIND_FACTORY, ESP_CHIP_ESP8266, 0, 2, 5, ESP_FLASH_DOUT, 0x40, NULL, NULL, NULL, "2024.6.4" },
	{ EPT "gh-pages-a9c729c/project-template-esp8266/project-template-esp8266.ota.bin",
	  ESP_KIND_FACTORY, ESP_CHIP_ESP8266, 0, 2, 5, ESP_FLASH_DOUT, 0x40, NULL, NULL, NULL, "2024.6.4" },
	{ EPT "gh-pages-800bdaa/project-template-esp32/bootloader_dio_40m.bin",
	  ESP_KIND_BOOTLOADER, ESP_CHIP_ESP32, 0x1000, 4, 0, ESP_FLASH_DIO, 0x20, NULL, NULL, NULL, NULL },
	{ EPT "gh-pages-800bdaa/project-template-esp32/partitions.bin",
	  ESP_KIND_PARTITION_TABLE, ESP_CHIP_UNKNOWN, 0x8000, 0, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ EPT "gh-pages-800bdaa/project-template-esp32/boot_app0.bin",
	  ESP_KIND_OTADATA, ESP_CHIP_UNKNOWN, 0xE000, 0, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ EPT "gh-pages-800bdaa/project-template-esp32/firmware.bin",
	  ESP_KIND_APP, ESP_CHIP_ESP32, 0x10000, 0, 5, ESP_FLASH_DIO, 0x20, "9036908-dirty",
	  "esp32-arduino-lib-builder", "v3.3.5", "2021.12.3" },
	{ "firmware/esptool/test/images/esp_idf_blink_esp32s2.bin",
	  ESP_KIND_APP, ESP_CHIP_ESP32S2, 0x10000, 0, 6, ESP_FLASH_DIO, 0x1F, NULL, "blink", "v5.0-beta1", NULL },
	{ "firmware/esptool/test/images/bootloader_esp32s2.bin",
	  ESP_KIND_BOOTLOADER, ESP_CHIP_ESP32S2, 0x1000, 3, 0, ESP_FLASH_DIO, 0x1F, NULL, NULL, NULL, NULL },
};
#define N_REAL (sizeof reals / sizeof reals[0])

static uint8_t *load_real(const struct real *r, size_t *len)
{
	char path[1024];
	if (!t_shared_path(r->path, path, sizeof path))
		return NULL;
	return t_read_file(path, len);
}

static const char *shared_reason(void)
{
	return getenv("ESPFS_SHARED") ? "a firmware file from MANIFEST.md is missing under $ESPFS_SHARED"
	                              : "ESPFS_SHARED is not set (../shared/firmware absent)";
}

static void real_images_classified(void)
{
	int found = 0;
	struct esp_image_class *c = malloc(sizeof *c);
	for (size_t i = 0; i < N_REAL; i++) {
		const struct real *r = &reals[i];
		size_t n;
		uint8_t *b = load_real(r, &n);
		if (!b)
			continue;
		found++;
		int rc = esp_image_classify(b, n, NULL, c);
		CHECK_MSG(rc == 0 && c->valid, "%s: %s", r->path, c->reason);
		CHECK_MSG(c->kind == r->kind, "%s: kind %s", r->path, esp_image_kind_name(c->kind));
		CHECK_MSG(c->chip == r->chip, "%s: chip %d", r->path, c->chip);
		CHECK_MSG(c->flash_offset == r->offset, "%s: offset 0x%x", r->path, c->flash_offset);
		char line[300];
		esp_image_describe(c, line, sizeof line);
		printf("# %s\n", line);
		const struct esp_image_info *hdr = c->has_boot ? &c->boot : &c->app;
		if (r->boot_segs) {
			CHECK(c->has_boot);
			CHECK_MSG(c->boot.n_segments == r->boot_segs, "%s: %d boot segments", r->path, c->boot.n_segments);
			CHECK(c->boot.checksum_ok);
			CHECK(c->boot.has_ext_header ? c->boot.sha_ok : true);
		}
		if (r->app_segs) {
			CHECK(c->has_app);
			CHECK_MSG(c->app.n_segments == r->app_segs, "%s: %d app segments", r->path, c->app.n_segments);
			CHECK(c->app.checksum_ok);
			CHECK(c->app.has_ext_header ? (c->app.hash_appended && c->app.sha_ok) : true);
		}
		if (r->boot_segs || r->app_segs) {
			CHECK_EQ(hdr->flash_mode, r->mode);
			CHECK_EQ(hdr->flash_size_freq, r->size_freq);
		}
		const struct esp_image_info *ai = c->has_app ? &c->app : &c->boot;
		if (r->esphome) {
			CHECK_STR(ai->esphome_version, r->esphome);
			CHECK(ai->improv_serial);
		} else {
			CHECK_STR(ai->esphome_version, "");
			CHECK(!ai->improv_serial);
		}
		if (r->project) {
			CHECK(c->app.app.present);
			CHECK_STR(c->app.app.project_name, r->project);
			CHECK_MSG(strncmp(c->app.app.idf_ver, r->idf_prefix, strlen(r->idf_prefix)) == 0,
			          "%s: idf %s", r->path, c->app.app.idf_ver);
			if (r->version)
				CHECK_STR(c->app.app.version, r->version);
		}
		free(b);
	}
	free(c);
	if (!found)
		SKIP(shared_reason());
	CHECK_EQ(found, N_REAL);
}

static void real_header_details(void)
{
	size_t n;
	uint8_t *b = load_real(&reals[8], &n);   /* bootloader_dio_40m.bin */
	if (!b)
		SKIP(shared_reason());
	struct esp_image_info in;
	char msg[200];
	CHECK_EQ(esp_image_parse(b, n, ESP_CHIP_UNKNOWN, &in, msg, sizeof msg), 0);
	CHECK_EQ(in.entry, 0x400806a8);
	CHECK_EQ(in.ext_chip_id, 0);
	CHECK_EQ(in.flash_size, 4u << 20);
	CHECK_EQ(in.flash_freq_khz, 40000);
	CHECK_EQ(in.image_len, n);
	free(b);

	b = load_real(&reals[0], &n);  /* ESP32 factory; app must equal the ota file */
	size_t on;
	uint8_t *ota = load_real(&reals[1], &on);
	struct esp_image_class *c = malloc(sizeof *c);
	if (b && ota) {
		CHECK_EQ(esp_image_classify(b, n, NULL, c), 0);
		CHECK_EQ(c->boot.max_rev_full, 65535);
		CHECK_EQ(c->app.image_len, on);
		CHECK_EQ(n - c->app_off, on);
		CHECK(memcmp(b + c->app_off, ota, on) == 0);
		/* MANIFEST: otadata 0x9000, phy_init, app0 ota_0 0x10000+0x1C0000, app1, nvs */
		CHECK_EQ(esp_pt_find(&c->pt, ESP_PT_TYPE_DATA, ESP_PT_DATA_OTA)->offset, 0x9000);
		CHECK(esp_pt_find(&c->pt, ESP_PT_TYPE_DATA, ESP_PT_DATA_PHY) != NULL);
		const struct esp_partition *a0 = esp_pt_find_label(&c->pt, "app0");
		CHECK(a0 && a0->subtype == ESP_PT_APP_OTA0 && a0->offset == 0x10000 && a0->size == 0x1C0000);
		CHECK(esp_pt_find_label(&c->pt, "app1") != NULL);
		CHECK(esp_pt_find(&c->pt, ESP_PT_TYPE_DATA, ESP_PT_DATA_NVS) != NULL);
		CHECK(c->pt.has_md5 && c->pt.md5_ok);
		/* MANIFEST: esptool-style header patch at 0x1002/3 breaks the
		 * bootloader digest unless it is recomputed */
		b[0x1003] = 0x3F;
		CHECK_EQ(esp_image_classify(b, n, NULL, c), -EINVAL);
		CHECK(strstr(c->reason, "SHA-256") != NULL);
		CHECK_EQ(esp_image_set_flash_params(b + 0x1000, 0x7000, ESP_FLASH_DIO, 0x3F), 0);
		CHECK_EQ(esp_image_classify(b, n, NULL, c), 0);
		CHECK_EQ(c->boot.flash_size, 8u << 20);
	}
	free(b);
	free(ota);
	free(c);
}

static void real_partition_table_and_otadata(void)
{
	size_t n, on;
	uint8_t *b = load_real(&reals[9], &n);
	uint8_t *od = load_real(&reals[10], &on);
	if (!b || !od) {
		free(b); free(od);
		SKIP(shared_reason());
	}
	struct esp_partition_table t;
	char msg[200];
	CHECK_EQ(esp_pt_parse(b, n, &t, msg, sizeof msg), 0);
	/* MANIFEST: nvs 0x9000+0x5000, otadata 0xE000+0x2000, app0 ota_0
	 * 0x10000+0x1C0000, app1 ota_1 0x1D0000+0x1C0000, eeprom (data 0x99)
	 * 0x390000, spiffs 0x391000+0xF000; MD5 entry OK */
	struct { const char *label; uint8_t type, sub; uint32_t off, size; } want[] = {
		{ "nvs", 1, 0x02, 0x9000, 0x5000 }, { "otadata", 1, 0x00, 0xE000, 0x2000 },
		{ "app0", 0, 0x10, 0x10000, 0x1C0000 }, { "app1", 0, 0x11, 0x1D0000, 0x1C0000 },
		{ "eeprom", 1, 0x99, 0x390000, 0 }, { "spiffs", 1, 0x82, 0x391000, 0xF000 } };
	CHECK_EQ(t.n, 6);
	for (int i = 0; i < 6 && i < t.n; i++) {
		CHECK_STR(t.p[i].label, want[i].label);
		CHECK_EQ(t.p[i].type, want[i].type);
		CHECK_EQ(t.p[i].subtype, want[i].sub);
		CHECK_EQ(t.p[i].offset, want[i].off);
		if (want[i].size)
			CHECK_EQ(t.p[i].size, want[i].size);
	}
	CHECK(t.has_md5 && t.md5_ok);
	CHECK_EQ(esp_pt_boot_app(&t)->offset, 0x10000);
	struct esp_otadata o;
	CHECK_EQ(esp_otadata_parse(od, on, &o), 0);
	CHECK(o.valid[0] && o.seq[0] == 1);
	/* seq 0 with CRC 0xFFFFFFFF: the CRC of four zero bytes from that seed
	 * is 0xFFFFFFFF, so the bootloader counts it valid; seq 1 wins */
	CHECK(o.valid[1] && o.seq[1] == 0);
	CHECK_EQ(o.active, 0);
	struct esp_image_class *c = malloc(sizeof *c);
	CHECK_EQ(esp_image_classify(od, on, &t, c), 0);
	CHECK_EQ(c->flash_offset, 0xE000);
	/* flip a byte of the table: MD5 catches it */
	b[40] ^= 1;
	CHECK_EQ(esp_pt_parse(b, n, &t, msg, sizeof msg), -EINVAL);
	free(c);
	free(b);
	free(od);
}

static void real_wrong_chip_and_offsets(void)
{
	int found = 0;
	const esp_chip_id targets[] = { ESP_CHIP_ESP8266, ESP_CHIP_ESP32, ESP_CHIP_ESP32S2,
	                                ESP_CHIP_ESP32S3, ESP_CHIP_ESP32C3, ESP_CHIP_ESP32C6 };
	char msg[200], want[200];
	for (size_t i = 0; i < N_REAL; i++) {
		const struct real *r = &reals[i];
		if (r->chip == ESP_CHIP_UNKNOWN)
			continue;
		size_t n;
		uint8_t *b = load_real(r, &n);
		if (!b)
			continue;
		found++;
		for (size_t k = 0; k < sizeof targets / sizeof targets[0]; k++) {
			esp_chip_id t = targets[k];
			int expect = t == r->chip ? 0 : -EINVAL;
			for (int whole = 0; whole < 2; whole++) {
				size_t len = whole ? n : ESP_IMAGE_CHECK_PREFIX;
				int rc = esp_image_check_write(t, r->offset, b, len, whole, NULL, msg, sizeof msg);
				CHECK_MSG(rc == expect, "%s on %s at 0x%x (%s): %d %s", r->path, esp_chip_get(t)->name,
				          r->offset, whole ? "whole" : "prefix", rc, msg);
				if (expect && rc == expect) {
					if (r->chip == ESP_CHIP_ESP8266)
						snprintf(want, sizeof want, "not an %s image: built for ESP8266", esp_chip_get(t)->name);
					else
						snprintf(want, sizeof want, "not an %s image: built for %s (chip id %d)",
						         esp_chip_get(t)->name, esp_chip_get(r->chip)->name,
						         esp_chip_get(r->chip)->image_chip_id);
					CHECK_STR(msg, want);
				}
			}
		}
		/* apps refused at the bootloader offset, bootloaders at 0x10000 */
		const struct esp_chip_info *ci = esp_chip_get(r->chip);
		if (r->kind == ESP_KIND_APP && r->chip != ESP_CHIP_ESP8266) {
			CHECK_EQ(esp_image_check_write(r->chip, ci->bootloader_offset, b, ESP_IMAGE_CHECK_PREFIX,
			                               false, NULL, msg, sizeof msg), -EINVAL);
			CHECK(strstr(msg, "app image") != NULL);
		}
		if (r->kind == ESP_KIND_BOOTLOADER) {
			CHECK_EQ(esp_image_check_write(r->chip, 0x10000, b, n, true, NULL, msg, sizeof msg), -EINVAL);
			CHECK(strstr(msg, "bootloader image") != NULL);
		}
		/* truncated by one byte: refused as a whole */
		if (r->kind != ESP_KIND_FACTORY || r->chip == ESP_CHIP_ESP8266) {
			int rc = esp_image_check_write(r->chip, r->offset, b, n - 1, true, NULL, msg, sizeof msg);
			CHECK_MSG(rc == -EINVAL, "%s truncated accepted", r->path);
		}
		free(b);
	}
	if (!found)
		SKIP(shared_reason());
}

static void real_corruptions_detected(void)
{
	int found = 0;
	struct esp_image_class *c = malloc(sizeof *c);
	for (size_t i = 0; i < N_REAL; i++) {
		const struct real *r = &reals[i];
		if (!r->app_segs && !r->boot_segs)
			continue;
		size_t n;
		uint8_t *b = load_real(r, &n);
		if (!b)
			continue;
		found++;
		/* one byte in the middle of the last image's data */
		size_t base = r->kind == ESP_KIND_FACTORY ? (r->chip == ESP_CHIP_ESP8266 ? 0x1000 : 0x10000) : 0;
		size_t at = base + (n - base) / 2;
		b[at] ^= 0x10;
		CHECK_MSG(esp_image_classify(b, n, NULL, c) == -EINVAL, "%s: flip at 0x%zx unnoticed", r->path, at);
		CHECK_MSG(strstr(c->reason, "checksum") || strstr(c->reason, "SHA") || strstr(c->reason, "CRC"),
		          "%s: %s", r->path, c->reason);
		/* the same bit flipped at a second place: XOR cancels; SHA-256
		 * (ESP32 family) or the Arduino CRC (ESP8266) still notices */
		b[at + 1] ^= 0x10;
		CHECK_MSG(esp_image_classify(b, n, NULL, c) == -EINVAL, "%s: double flip unnoticed", r->path);
		b[at] ^= 0x10; b[at + 1] ^= 0x10;
		CHECK_EQ(esp_image_classify(b, n, NULL, c), 0);
		free(b);
	}
	free(c);
	if (!found)
		SKIP(shared_reason());
}

/* Header bytes 6 (legacy min), 7-8 (min full), 9-10 (max full) against
 * the chip's revision, as esptool decides (PROTOCOL.md A17). */
static void revision_rules(void)
{
	uint8_t img[4096];
	char msg[200];
	size_t n = synth_app(img, ESP_CHIP_ESP32C3, false);
	/* synth: min 0, max 0xFFFF: any revision */
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32C3, 0, 0x10000, img, n, msg, sizeof msg), 0);
	img[8 + 7] = 4; img[8 + 8] = 0;   /* min v0.4 */
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32C3, 3, 0x10000, img, n, msg, sizeof msg), -EINVAL);
	CHECK_MSG(strstr(msg, "v0.4") && strstr(msg, "v0.3"), "%s", msg);
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32C3, 4, 0x10000, img, n, msg, sizeof msg), 0);
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32C3, 101, 0x10000, img, n, msg, sizeof msg), 0);
	img[8 + 9] = 99; img[8 + 10] = 0; /* max v0.99 */
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32C3, 101, 0x10000, img, n, msg, sizeof msg), -EINVAL);
	/* legacy header (max 0): the one byte is the C3's minor revision */
	img[8 + 6] = 3; img[8 + 7] = 0; img[8 + 9] = 0;
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32C3, 2, 0x10000, img, n, msg, sizeof msg), -EINVAL);
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32C3, 3, 0x10000, img, n, msg, sizeof msg), 0);
	/* ESP32: legacy byte is the major revision; min full v3.0 */
	n = synth_app(img, ESP_CHIP_ESP32, false);
	img[8 + 6] = 3;
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32, 100, 0x10000, img, n, msg, sizeof msg), -EINVAL);
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32, 300, 0x10000, img, n, msg, sizeof msg), 0);
	img[8 + 6] = 0; img[8 + 7] = 300 & 0xFF; img[8 + 8] = 300 >> 8;
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32, 201, 0x10000, img, n, msg, sizeof msg), -EINVAL);
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32, 300, 0x10000, img, n, msg, sizeof msg), 0);
	/* the app inside a write that starts below 0x10000 is found too */
	uint8_t *big = malloc(0x10000 + n);
	memset(big, 0xFF, 0x10000);
	memcpy(big + 0x10000, img, n);
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32, 201, 0, big, 0x10000 + n, msg, sizeof msg), -EINVAL);
	free(big);
	/* not an image: no opinion */
	memset(img, 0x5A, 64);
	CHECK_EQ(esp_image_check_revision(ESP_CHIP_ESP32, 0, 0, img, 64, msg, sizeof msg), 0);
}

int main(void)
{
	RUN(revision_rules);
	RUN(app_header_fields_and_descriptor);
	RUN(checksum_sits_at_15_mod_16);
	RUN(flipped_bytes_are_detected);
	RUN(every_truncation_is_reported);
	RUN(header_sanity_limits);
	RUN(flash_size_and_freq_tables);
	RUN(partition_table_parse_and_lookup);
	RUN(otadata_entries);
	RUN(otadata_select_and_switch);
	RUN(classify_synthetic_kinds);
	RUN(classify_synthetic_factories);
	RUN(esp8266_arduino_layout);
	RUN(check_write_rules);
	RUN(set_flash_params_recomputes_sha);
	RUN(fuzz_never_crashes);
	RUN(real_images_classified);
	RUN(real_header_details);
	RUN(real_partition_table_and_otadata);
	RUN(real_wrong_chip_and_offsets);
	RUN(real_corruptions_detected);
	return t_done();
}
