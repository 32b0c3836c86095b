/* Small synthetic firmware that a ROM (or the simulator) accepts: a
 * bootloader, an ESP-IDF partition table with one factory app, and an app
 * with an esp_app_desc_t, each with a correct XOR checksum and appended
 * SHA-256 (esptool docs, "Firmware Image Format").  Used by the demo mount
 * and by tests that must stand alone without real images. */
#include <errno.h>
#include <md5.h>
#include <sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/chip.h"
#include "espfs/device.h"

struct seg {
	uint32_t addr;
	const uint8_t *data;
	uint32_t len;
};

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* One image: header, extended header, segments, checksum, SHA-256. */
static uint8_t *build_image(const struct esp_chip_info *chip, uint32_t entry, const struct seg *s,
			    int ns, size_t *out_len)
{
	size_t len = 24;
	for (int i = 0; i < ns; i++)
		len += 8 + ((s[i].len + 3) & ~3u);
	size_t data_len = (len + 16) & ~(size_t)15;   /* checksum ends a 16-byte block */
	uint8_t *b = calloc(1, data_len + 32);
	if (!b)
		return NULL;
	b[0] = 0xE9;
	b[1] = (uint8_t)ns;
	b[2] = 2;        /* DIO */
	b[3] = 0x20;     /* 4 MB, lowest frequency code */
	put32(b + 4, entry);
	b[8] = 0xEE;     /* no WP pin */
	b[12] = (uint8_t)chip->image_chip_id;
	b[13] = (uint8_t)(chip->image_chip_id >> 8);
	b[17] = 0xFF;    /* max_chip_rev_full: any */
	b[18] = 0xFF;
	b[23] = 1;       /* SHA-256 appended */
	uint8_t sum = 0xEF;
	size_t o = 24;
	for (int i = 0; i < ns; i++) {
		uint32_t l = (s[i].len + 3) & ~3u;
		put32(b + o, s[i].addr);
		put32(b + o + 4, l);
		memcpy(b + o + 8, s[i].data, s[i].len);
		for (uint32_t k = 0; k < l; k++)
			sum ^= b[o + 8 + k];
		o += 8 + l;
	}
	b[data_len - 1] = sum;
	SHA2_CTX ctx;
	SHA256Init(&ctx);
	SHA256Update(&ctx, b, data_len);
	SHA256Final(b + data_len, &ctx);
	*out_len = data_len + 32;
	return b;
}

static uint32_t drom_base(const struct esp_chip_info *chip)
{
	switch (chip->id) {
	case ESP_CHIP_ESP32: return 0x3F400020;
	case ESP_CHIP_ESP32S2: return 0x3F000020;
	case ESP_CHIP_ESP32C6:
	case ESP_CHIP_ESP32H2: return 0x42800020;
	default: return 0x3C000020;
	}
}

static uint32_t iram_base(const struct esp_chip_info *chip)
{
	switch (chip->id) {
	case ESP_CHIP_ESP32: return 0x40080000;
	case ESP_CHIP_ESP32S2: return 0x40022000;
	case ESP_CHIP_ESP32S3: return 0x40370000;
	case ESP_CHIP_ESP32C6:
	case ESP_CHIP_ESP32H2: return 0x40800000;
	default: return 0x4037C000;
	}
}

static uint8_t *make_bootloader(const struct esp_chip_info *chip, size_t *len)
{
	uint8_t code[64];
	for (size_t i = 0; i < sizeof code; i++)
		code[i] = (uint8_t)(0x5A ^ i);
	struct seg s[1] = { { iram_base(chip) + 0x8000, code, sizeof code } };
	return build_image(chip, iram_base(chip) + 0x8000, s, 1, len);
}

static uint8_t *make_app(const struct esp_chip_info *chip, const char *project, size_t *len)
{
	uint8_t desc[256];
	memset(desc, 0, sizeof desc);
	put32(desc, 0xABCD5432);
	snprintf((char *)desc + 16, 32, "1.0.0");
	snprintf((char *)desc + 48, 32, "%s", project ? project : "espfs-synthetic");
	snprintf((char *)desc + 80, 16, "00:00:00");
	snprintf((char *)desc + 96, 16, "Jan  1 2025");
	snprintf((char *)desc + 112, 32, "v5.1-synthetic");
	uint8_t code[512];
	for (size_t i = 0; i < sizeof code; i++)
		code[i] = (uint8_t)(i * 7 + 3);
	struct seg s[2] = {
		{ drom_base(chip), desc, sizeof desc },
		{ iram_base(chip), code, sizeof code },
	};
	return build_image(chip, iram_base(chip), s, 2, len);
}

static void pt_entry(uint8_t *e, uint8_t type, uint8_t sub, uint32_t off, uint32_t size,
		     const char *label)
{
	e[0] = 0xAA;
	e[1] = 0x50;
	e[2] = type;
	e[3] = sub;
	put32(e + 4, off);
	put32(e + 8, size);
	memset(e + 12, 0, 16);
	memcpy(e + 12, label, strlen(label) < 16 ? strlen(label) : 16);
	put32(e + 28, 0);
}

/* ota: the two-slot layout of Arduino and older ESPHome builds (nvs,
 * otadata, app0/app1, spiffs; 4 MB), else one factory app. */
static uint8_t *make_ptable(bool ota, size_t *len)
{
	uint8_t *t = malloc(0xC00);
	if (!t)
		return NULL;
	memset(t, 0xFF, 0xC00);
	int n = 0;
	if (ota) {
		pt_entry(t + 32 * n++, 1, 2, 0x9000, 0x5000, "nvs");
		pt_entry(t + 32 * n++, 1, 0, 0xE000, 0x2000, "otadata");
		pt_entry(t + 32 * n++, 0, 0x10, 0x10000, 0x140000, "app0");
		pt_entry(t + 32 * n++, 0, 0x11, 0x150000, 0x140000, "app1");
		pt_entry(t + 32 * n++, 1, 0x82, 0x290000, 0x160000, "spiffs");
	} else {
		pt_entry(t + 32 * n++, 1, 2, 0x9000, 0x5000, "nvs");
		pt_entry(t + 32 * n++, 1, 1, 0xE000, 0x1000, "phy_init");
		pt_entry(t + 32 * n++, 0, 0, 0x10000, 0x200000, "factory");
	}
	uint8_t *m = t + 32 * n;
	m[0] = 0xEB;
	m[1] = 0xEB;
	MD5_CTX c;
	MD5Init(&c);
	MD5Update(&c, t, (size_t)32 * n);
	MD5Final(m + 16, &c);
	*len = 0xC00;
	return t;
}

int device_synth_image(const char *chip_key, const char *kind, const char *project,
		       uint8_t **out, size_t *len)
{
	const struct esp_chip_info *chip = esp_chip_by_name(chip_key);
	if (!chip || chip->id == ESP_CHIP_ESP8266 || chip->image_chip_id < 0)
		return -EOPNOTSUPP;
	if (!strcmp(kind, "bootloader")) {
		*out = make_bootloader(chip, len);
	} else if (!strcmp(kind, "app")) {
		*out = make_app(chip, project, len);
	} else if (!strcmp(kind, "ptable") || !strcmp(kind, "ota-ptable")) {
		*out = make_ptable(kind[0] == 'o', len);
	} else if (!strcmp(kind, "factory") || !strcmp(kind, "ota-factory")) {
		size_t bl, al, pl;
		uint8_t *b = make_bootloader(chip, &bl);
		uint8_t *a = make_app(chip, project, &al);
		uint8_t *p = make_ptable(kind[0] == 'o', &pl);
		uint8_t *f = NULL;
		if (b && a && p) {
			*len = 0x10000 + al;
			f = malloc(*len);
			if (f) {
				memset(f, 0xFF, 0x10000);
				memcpy(f + chip->bootloader_offset, b, bl);
				memcpy(f + 0x8000, p, pl);
				memcpy(f + 0x10000, a, al);
			}
		}
		free(b);
		free(a);
		free(p);
		*out = f;
	} else {
		return -EINVAL;
	}
	return *out ? 0 : -ENOMEM;
}
