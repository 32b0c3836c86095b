/* Parsing and validation of one ESP firmware image (PROTOCOL.md A17;
 * esptool docs "Firmware Image Format"). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sha2.h>
#include "espfs/image.h"
#include "image_priv.h"

void espimg_msg(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;
	if (!msg || !msglen)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
}

uint32_t espimg_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

const char *esp_flash_mode_name(uint8_t mode)
{
	static const char *const names[] = { "QIO", "QOUT", "DIO", "DOUT", "FAST_READ", "SLOW_READ" };
	return mode < sizeof names / sizeof names[0] ? names[mode] : "unknown";
}

uint32_t esp_image_flash_size(esp_chip_id chip, uint8_t size_freq)
{
	unsigned code = size_freq >> 4;
	if (chip == ESP_CHIP_ESP8266) {
		/* ESP8266 has its own table (esptool targets/esp8266.py) */
		static const uint32_t kb[16] = { 512, 256, 1024, 2048, 4096, 2048, 4096, 0,
		                                 8192, 16384 };
		return kb[code] * 1024u;
	}
	return code <= 7 ? (1u << 20) << code : 0;
}

uint32_t esp_image_flash_freq_khz(esp_chip_id chip, uint8_t size_freq)
{
	unsigned code = size_freq & 0xF;
	switch (chip) {
	case ESP_CHIP_ESP32C2:
		return code == 0 ? 30000 : code == 1 ? 20000 : code == 2 ? 15000 : code == 0xF ? 60000 : 0;
	case ESP_CHIP_ESP32H2:
		return code == 0 ? 24000 : code == 1 ? 16000 : code == 2 ? 12000 : code == 0xF ? 48000 : 0;
	case ESP_CHIP_ESP32C6:
		/* 80 MHz is written as 0 (ROM workaround), so 0 reads as 40/80 */
		return code == 0 ? 40000 : code == 2 ? 20000 : 0;
	default:
		return code == 0 ? 40000 : code == 1 ? 26000 : code == 2 ? 20000 : code == 0xF ? 80000 : 0;
	}
}

/* Address ranges the cache maps from flash (IROM/DROM), per chip, from
 * esptool's per-target IROM_MAP and DROM_MAP constants: a segment loaded there
 * means the image runs from flash, i.e. it is an application. */
struct map_range { esp_chip_id chip; uint32_t start, end; };
static const struct map_range flash_maps[] = {
	{ ESP_CHIP_ESP8266, 0x40200000, 0x40300000 },
	{ ESP_CHIP_ESP32,   0x400D0000, 0x40400000 }, { ESP_CHIP_ESP32,   0x3F400000, 0x3F800000 },
	{ ESP_CHIP_ESP32S2, 0x40080000, 0x40B80000 }, { ESP_CHIP_ESP32S2, 0x3F000000, 0x3FF80000 },
	{ ESP_CHIP_ESP32S3, 0x42000000, 0x44000000 }, { ESP_CHIP_ESP32S3, 0x3C000000, 0x3E000000 },
	{ ESP_CHIP_ESP32C3, 0x42000000, 0x42800000 }, { ESP_CHIP_ESP32C3, 0x3C000000, 0x3C800000 },
	{ ESP_CHIP_ESP32C2, 0x42000000, 0x42400000 }, { ESP_CHIP_ESP32C2, 0x3C000000, 0x3C400000 },
	{ ESP_CHIP_ESP32C6, 0x42000000, 0x43000000 },
	{ ESP_CHIP_ESP32H2, 0x42000000, 0x43000000 },
};

bool espimg_addr_flash_mapped(esp_chip_id chip, uint32_t addr)
{
	for (size_t i = 0; i < sizeof flash_maps / sizeof flash_maps[0]; i++)
		if ((chip == ESP_CHIP_UNKNOWN || flash_maps[i].chip == chip) &&
		    addr >= flash_maps[i].start && addr < flash_maps[i].end)
			return true;
	return false;
}

/* ESP8266 memory an image can load into: DRAM, IRAM, IROM. */
static bool esp8266_addr(uint32_t a)
{
	return (a >= 0x3FFE8000 && a < 0x40000000) || (a >= 0x40100000 && a < 0x40110000) ||
	       (a >= 0x40200000 && a < 0x40300000);
}

int espimg_layout(const uint8_t *buf, size_t len)
{
	if (len < ESP_IMAGE_HDR_LEN + 8 || buf[0] != ESP_IMAGE_MAGIC)
		return IMG_NONE;
	if (buf[1] == 0 || buf[1] > ESP_IMAGE_MAX_SEGMENTS || buf[2] > 5)
		return IMG_NONE;
	/* ESP8266 images put the first segment header where ESP32-family
	 * images have the extended header, whose first word (WP pin, drive
	 * strengths) is never a plausible ESP8266 load address. */
	if (esp8266_addr(espimg_le32(buf + 8)) && espimg_le32(buf + 12) < 0x1000000)
		return IMG_ESP8266;
	if (len < ESP_IMAGE_HDR_LEN + ESP_IMAGE_EXT_HDR_LEN)
		return IMG_NONE;
	if (buf[23] > 1)   /* hash_appended is 0 or 1 */
		return IMG_NONE;
	return IMG_EXT;
}

static void copy_str(char *dst, size_t cap, const uint8_t *src, size_t n)
{
	size_t i;
	for (i = 0; i < n && i + 1 < cap && src[i]; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7F) ? (char)src[i] : '?';
	dst[i] = 0;
}

static void parse_app_desc(const uint8_t *d, struct esp_app_desc *a)
{
	a->present = true;
	a->secure_version = espimg_le32(d + 4);
	copy_str(a->version, sizeof a->version, d + 16, 32);
	copy_str(a->project_name, sizeof a->project_name, d + 48, 32);
	copy_str(a->time, sizeof a->time, d + 80, 16);
	copy_str(a->date, sizeof a->date, d + 96, 16);
	copy_str(a->idf_ver, sizeof a->idf_ver, d + 112, 32);
	memcpy(a->elf_sha256, d + 144, 32);
}

uint32_t esp8266_crc32(uint32_t crc, const uint8_t *buf, size_t len)
{
	/* MSB-first CRC-32, polynomial 0x04C11DB7, no reflection, no final
	 * xor: what eboot and the Arduino core check (start with ~0). */
	while (len--) {
		crc ^= (uint32_t)*buf++ << 24;
		for (int i = 0; i < 8; i++)
			crc = (crc & 0x80000000u) ? (crc << 1) ^ 0x04C11DB7u : crc << 1;
	}
	return crc;
}

static uint8_t xor_range(uint8_t cs, const uint8_t *p, size_t n)
{
	while (n--)
		cs ^= *p++;
	return cs;
}

/* ESPHome leaves its version in the banner format string and the
 * component's log tag in .rodata; a strings(1)-style look finds them. */
static void scan_esphome(const uint8_t *b, size_t n, struct esp_image_info *info)
{
	static const char banner[] = "ESPHome version ", tail[] = " compiled on ";
	static const char tag[] = "\0improv_serial\0";
	const uint8_t *p = memmem(b, n, banner, sizeof banner - 1);
	if (p) {
		const uint8_t *v = p + sizeof banner - 1, *end = b + n;
		size_t k = 0;
		while (v + k < end && k + 1 < sizeof info->esphome_version && v[k] > 0x20 && v[k] < 0x7F)
			k++;
		if (v + k + sizeof tail - 1 <= end && memcmp(v + k, tail, sizeof tail - 1) == 0 && k) {
			memcpy(info->esphome_version, v, k);
			info->esphome_version[k] = 0;
		}
	}
	info->improv_serial = memmem(b, n, tag, sizeof tag - 1) != NULL;
}

int esp_image_parse(const uint8_t *buf, size_t len, esp_chip_id chip_hint,
                    struct esp_image_info *info, char *msg, size_t msglen)
{
	memset(info, 0, sizeof *info);
	info->ext_chip_id = -1;
	espimg_msg(msg, msglen, "%s", "");
	if (len < 1 || buf[0] != ESP_IMAGE_MAGIC) {
		info->needed = len ? 0 : 1;
		if (len)
			espimg_msg(msg, msglen, "not a firmware image: first byte is 0x%02x, not 0x%02x",
			        buf[0], ESP_IMAGE_MAGIC);
		else
			espimg_msg(msg, msglen, "empty");
		return -EINVAL;
	}
	if (len < ESP_IMAGE_HDR_LEN + 8) {
		info->needed = ESP_IMAGE_HDR_LEN + ESP_IMAGE_EXT_HDR_LEN;
		espimg_msg(msg, msglen, "truncated: %zu bytes is too short for an image header", len);
		return -EINVAL;
	}
	info->n_segments = buf[1];
	info->flash_mode = buf[2];
	info->flash_size_freq = buf[3];
	info->entry = espimg_le32(buf + 4);
	if (buf[1] == 0 || buf[1] > ESP_IMAGE_MAX_SEGMENTS) {
		espimg_msg(msg, msglen, "invalid image: %u segments (at most %d)", buf[1], ESP_IMAGE_MAX_SEGMENTS);
		return -EINVAL;
	}
	int layout = espimg_layout(buf, len);
	if (layout == IMG_NONE && len < ESP_IMAGE_HDR_LEN + ESP_IMAGE_EXT_HDR_LEN) {
		info->needed = ESP_IMAGE_HDR_LEN + ESP_IMAGE_EXT_HDR_LEN;
		espimg_msg(msg, msglen, "truncated: %zu bytes is too short for an image header", len);
		return -EINVAL;
	}
	if (layout == IMG_NONE) {
		espimg_msg(msg, msglen, "invalid image header (flash mode %u, extended header byte 15 = %u)",
		        buf[2], buf[23]);
		return -EINVAL;
	}
	size_t pos;
	if (layout == IMG_ESP8266) {
		info->chip = ESP_CHIP_ESP8266;
		pos = ESP_IMAGE_HDR_LEN;
	} else {
		const uint8_t *x = buf + ESP_IMAGE_HDR_LEN;
		info->has_ext_header = true;
		info->ext_chip_id = x[4] | x[5] << 8;
		const struct esp_chip_info *ci = esp_chip_by_image_id(info->ext_chip_id);
		info->chip = ci ? ci->id : ESP_CHIP_UNKNOWN;
		info->min_rev = x[6];
		info->min_rev_full = (uint16_t)(x[7] | x[8] << 8);
		info->max_rev_full = (uint16_t)(x[9] | x[10] << 8);
		info->hash_appended = x[15] == 1;
		pos = ESP_IMAGE_HDR_LEN + ESP_IMAGE_EXT_HDR_LEN;
	}
	esp_chip_id size_chip = info->chip != ESP_CHIP_UNKNOWN ? info->chip : chip_hint;
	info->flash_size = esp_image_flash_size(size_chip, buf[3]);
	info->flash_freq_khz = esp_image_flash_freq_khz(size_chip, buf[3]);

	/* Segment headers and data; 64-bit arithmetic so huge lengths cannot
	 * wrap around. */
	uint64_t p = pos;
	uint8_t cs = 0xEF;
	bool have_all = true;
	for (int i = 0; i < info->n_segments; i++) {
		if (p + 8 > len) {
			info->needed = (size_t)(p + 8);
			have_all = false;
			break;
		}
		struct esp_image_segment *s = &info->seg[i];
		s->load_addr = espimg_le32(buf + p);
		s->len = espimg_le32(buf + p + 4);
		s->data_off = (uint32_t)(p + 8);
		info->n_seen = i + 1;
		if (s->len > 0x1000000) {
			espimg_msg(msg, msglen, "invalid image: segment %d is %u bytes long", i, s->len);
			return -EINVAL;
		}
		if (espimg_addr_flash_mapped(info->chip, s->load_addr))
			info->flash_mapped = true;
		p += 8;
		if (i == 0 && info->has_ext_header && s->len >= 256 && p + 256 <= len &&
		    espimg_le32(buf + p) == ESP_APP_DESC_MAGIC)
			parse_app_desc(buf + p, &info->app);
		if (p + s->len > len) {
			info->needed = (size_t)(p + s->len);
			have_all = false;
			break;
		}
		cs = xor_range(cs, buf + p, s->len);
		p += s->len;
	}
	if (have_all) {
		p += 15 - (p % 16);        /* checksum sits at offset 15 mod 16 */
		info->data_len = (size_t)(p + 1);
		info->image_len = info->data_len + (info->hash_appended ? 32 : 0);
		info->needed = info->image_len;
	}
	if (!have_all || info->image_len > len) {
		if (info->data_len && info->data_len <= len) {
			info->checksum = buf[info->data_len - 1];
			info->checksum_calc = cs;
			info->checksum_ok = cs == info->checksum;
		}
		espimg_msg(msg, msglen, "truncated image: needs %s%zu bytes, only %zu present",
		        have_all ? "" : "at least ", info->needed, len);
		return -EINVAL;
	}
	info->complete = true;
	scan_esphome(buf, info->image_len, info);
	info->checksum = buf[info->data_len - 1];
	info->checksum_calc = cs;
	info->checksum_ok = cs == info->checksum;
	if (!info->checksum_ok && layout == IMG_ESP8266 && info->n_seen > 0 &&
	    info->seg[0].data_off == 0x10 && info->seg[0].len >= 8) {
		/* Arduino's elf2bin stores the file length and a CRC32 in the
		 * first 8 data bytes after computing the XOR checksum. */
		uint8_t fixed = xor_range(cs, buf + 0x10, 8);
		if (fixed == info->checksum) {
			info->checksum_ok = true;
			info->esp8266_crc_present = true;
		}
	}
	if (!info->checksum_ok) {
		espimg_msg(msg, msglen, "corrupt image: checksum 0x%02x, computed 0x%02x",
		        info->checksum, info->checksum_calc);
		return -EINVAL;
	}
	if (info->hash_appended) {
		uint8_t d[SHA256_DIGEST_LENGTH];
		SHA2_CTX ctx;
		SHA256Init(&ctx);
		SHA256Update(&ctx, buf, info->data_len);
		SHA256Final(d, &ctx);
		info->sha_ok = memcmp(d, buf + info->data_len, 32) == 0;
		if (!info->sha_ok) {
			espimg_msg(msg, msglen, "corrupt image: appended SHA-256 does not match");
			return -EINVAL;
		}
	}
	return 0;
}

int esp_image_set_flash_params(uint8_t *buf, size_t len, uint8_t mode, uint8_t size_freq)
{
	struct esp_image_info info;
	char msg[8];
	int r = esp_image_parse(buf, len, ESP_CHIP_UNKNOWN, &info, msg, sizeof msg);
	if (!info.complete)
		return -EINVAL;
	if (r < 0 && !(info.hash_appended && info.checksum_ok))
		return -EINVAL; /* corrupt beyond a stale digest: leave it alone */
	buf[2] = mode;
	buf[3] = size_freq;
	if (info.hash_appended) {
		SHA2_CTX ctx;
		SHA256Init(&ctx);
		SHA256Update(&ctx, buf, info.data_len);
		SHA256Final(buf + info.data_len, &ctx);
	}
	return 0;
}
