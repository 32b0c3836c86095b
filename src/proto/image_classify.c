/* What a buffer is (factory / bootloader / partition table / app /
 * otadata), which chip it is for, where it goes; and whether a write of it
 * to a given chip and offset is sane (DESIGN.md section 2: wrong chip or an
 * app at the bootloader offset is refused before anything is erased). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/image.h"
#include "image_priv.h"

const char *esp_image_kind_name(enum esp_image_kind k)
{
	switch (k) {
	case ESP_KIND_FACTORY: return "factory";
	case ESP_KIND_BOOTLOADER: return "bootloader";
	case ESP_KIND_PARTITION_TABLE: return "partition_table";
	case ESP_KIND_APP: return "app";
	case ESP_KIND_OTADATA: return "otadata";
	default: return "unknown";
	}
}

static const char *chip_name(esp_chip_id id)
{
	const struct esp_chip_info *ci = esp_chip_get(id);
	return ci ? ci->name : "an unknown chip";
}

static bool all_ff(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++ != 0xFF)
			return false;
	return true;
}

/* "built for ESP32 (chip id 0)", "built for ESP8266". */
static void built_for(const struct esp_image_info *in, char *out, size_t cap)
{
	if (!in->has_ext_header)
		espimg_msg(out, cap, "built for ESP8266");
	else
		espimg_msg(out, cap, "built for %s (chip id %d)", chip_name(in->chip), in->ext_chip_id);
}

/* An ESP32-family image without an app descriptor that runs entirely from
 * RAM is a 2nd-stage bootloader.  Only decided when every segment header
 * was seen. */
static bool is_bootloader(const struct esp_image_info *in)
{
	return !in->app.present && !in->flash_mapped && in->n_seen == in->n_segments;
}

static uint32_t app_offset(const struct esp_partition_table *pt)
{
	const struct esp_partition *p = esp_pt_boot_app(pt);
	return p ? p->offset : ESP_APP_OFFSET;
}

static void classify_factory_esp32(const uint8_t *buf, size_t len, uint32_t boot_off,
                                   struct esp_image_class *c)
{
	char m[160];
	c->kind = ESP_KIND_FACTORY;
	c->flash_offset = 0;
	c->has_boot = true;
	c->boot_off = boot_off;
	int rb = esp_image_parse(buf + boot_off, len - boot_off, ESP_CHIP_UNKNOWN, &c->boot, m, sizeof m);
	c->chip = c->boot.chip;
	if (rb < 0) {
		espimg_msg(c->reason, sizeof c->reason, "bootloader at 0x%x: %s", boot_off, m);
		return;
	}
	const struct esp_chip_info *ci = esp_chip_get(c->chip);
	if (!ci || !c->boot.has_ext_header) {
		espimg_msg(c->reason, sizeof c->reason, "bootloader at 0x%x is built for %s (chip id %d)",
		        boot_off, chip_name(c->chip), c->boot.ext_chip_id);
		return;
	}
	if (ci->bootloader_offset != boot_off) {
		espimg_msg(c->reason, sizeof c->reason, "bootloader at 0x%x, but the %s boots from 0x%x",
		        boot_off, ci->name, ci->bootloader_offset);
		return;
	}
	/* A merged image may stop after the bootloader or the table (esptool
	 * merge_bin of fewer parts), and a flash dump may have an erased app
	 * partition: both fine.  What is there must be intact. */
	c->app_off = ESP_APP_OFFSET;
	if (len >= ESP_PT_OFFSET + 32 && !all_ff(buf + ESP_PT_OFFSET, 32)) {
		int rp = esp_pt_parse(buf + ESP_PT_OFFSET, len - ESP_PT_OFFSET, &c->pt, m, sizeof m);
		c->has_pt = rp == 0 || c->pt.n > 0;
		if (rp < 0) {
			espimg_msg(c->reason, sizeof c->reason, "partition table at 0x%x: %s", ESP_PT_OFFSET, m);
			return;
		}
		c->app_off = app_offset(&c->pt);
	}
	if (c->app_off >= len || buf[c->app_off] == 0xFF) {
		c->valid = true;    /* no app (yet) */
		return;
	}
	if (buf[c->app_off] != ESP_IMAGE_MAGIC) {
		espimg_msg(c->reason, sizeof c->reason, "no app image at 0x%x (the boot app partition): "
		           "first byte 0x%02x", c->app_off, buf[c->app_off]);
		return;
	}
	c->has_app = true;
	int ra = esp_image_parse(buf + c->app_off, len - c->app_off, c->chip, &c->app, m, sizeof m);
	if (ra < 0) {
		espimg_msg(c->reason, sizeof c->reason, "app at 0x%x: %s", c->app_off, m);
		return;
	}
	if (c->app.chip != c->chip) {
		char b[64];
		built_for(&c->app, b, sizeof b);
		espimg_msg(c->reason, sizeof c->reason, "app at 0x%x is %s, the bootloader for %s",
		        c->app_off, b, chip_name(c->chip));
		return;
	}
	c->valid = true;
}

/* Arduino ESP8266 firmware: eboot at 0, the app at 0x1000; the app's CRC32
 * and the stored length cover the whole file. */
static void classify_factory_esp8266(const uint8_t *buf, size_t len, struct esp_image_class *c)
{
	char m[160];
	c->kind = ESP_KIND_FACTORY;
	c->chip = ESP_CHIP_ESP8266;
	c->flash_offset = 0;
	c->has_boot = c->has_app = true;
	c->boot_off = 0;
	c->app_off = ESP8266_APP_OFFSET;
	if (esp_image_parse(buf, len, ESP_CHIP_ESP8266, &c->boot, m, sizeof m) < 0) {
		espimg_msg(c->reason, sizeof c->reason, "eboot at 0x0: %s", m);
		return;
	}
	if (esp_image_parse(buf + c->app_off, len - c->app_off, ESP_CHIP_ESP8266, &c->app, m, sizeof m) < 0) {
		espimg_msg(c->reason, sizeof c->reason, "app at 0x1000: %s", m);
		return;
	}
	/* The CRC is there if the XOR checksum needed those 8 bytes zeroed,
	 * or (1 in 256: their XOR was 0) if the stored length is exactly
	 * the end of the app. */
	uint32_t stored = espimg_le32(buf + c->app_off + 0x10);
	if (stored == c->app_off + c->app.image_len)
		c->app.esp8266_crc_present = true;
	if (c->app.esp8266_crc_present) {
		uint32_t size = stored;
		uint32_t want = espimg_le32(buf + c->app_off + 0x14);
		if (size < c->app_off + 0x18 || size > len) {
			espimg_msg(c->reason, sizeof c->reason, "truncated: the image says it is %u bytes, only %zu present",
			        size, len);
			return;
		}
		static const uint8_t zero[8];
		uint32_t crc = esp8266_crc32(0xFFFFFFFFu, buf, c->app_off + 0x10);
		crc = esp8266_crc32(crc, zero, 8);
		crc = esp8266_crc32(crc, buf + c->app_off + 0x18, size - c->app_off - 0x18);
		c->app.esp8266_crc_ok = crc == want;
		if (!c->app.esp8266_crc_ok) {
			espimg_msg(c->reason, sizeof c->reason, "corrupt image: CRC32 0x%08x, computed 0x%08x", want, crc);
			return;
		}
	}
	c->valid = true;
}

int esp_image_classify(const uint8_t *buf, size_t len, const struct esp_partition_table *device_pt,
                       struct esp_image_class *c)
{
	char m[160];
	memset(c, 0, sizeof *c);
	c->chip = ESP_CHIP_UNKNOWN;
	if (len == 0) {
		espimg_msg(c->reason, sizeof c->reason, "empty file");
		return -EINVAL;
	}
	/* partition table on its own */
	if (len >= 2 && buf[0] == 0xAA && buf[1] == 0x50) {
		c->kind = ESP_KIND_PARTITION_TABLE;
		c->flash_offset = ESP_PT_OFFSET;
		c->has_pt = true;
		if (esp_pt_parse(buf, len, &c->pt, m, sizeof m) < 0) {
			espimg_msg(c->reason, sizeof c->reason, "%s", m);
			return -EINVAL;
		}
		c->valid = true;
		return 0;
	}
	/* merged image, ESP32/S2 layout: 4 KiB of 0xFF, bootloader at 0x1000 */
	if (len > 0x1000 + 24 && all_ff(buf, 0x1000) && buf[0x1000] == ESP_IMAGE_MAGIC &&
	    espimg_layout(buf + 0x1000, len - 0x1000) == IMG_EXT) {
		classify_factory_esp32(buf, len, 0x1000, c);
		return c->valid ? 0 : -EINVAL;
	}
	int layout = espimg_layout(buf, len);
	if (layout == IMG_ESP8266 && len > ESP8266_APP_OFFSET + 24 &&
	    espimg_layout(buf + ESP8266_APP_OFFSET, len - ESP8266_APP_OFFSET) == IMG_ESP8266) {
		struct esp_image_info eb;
		esp_image_parse(buf, len, ESP_CHIP_ESP8266, &eb, m, sizeof m);
		if (eb.data_len && eb.image_len <= ESP8266_APP_OFFSET) {
			classify_factory_esp8266(buf, len, c);
			return c->valid ? 0 : -EINVAL;
		}
	}
	/* merged image with the bootloader at 0 (S3/C2/C3/C6/H2) */
	if (layout == IMG_EXT && len > ESP_PT_OFFSET + 2 &&
	    buf[ESP_PT_OFFSET] == 0xAA && buf[ESP_PT_OFFSET + 1] == 0x50) {
		classify_factory_esp32(buf, len, 0, c);
		return c->valid ? 0 : -EINVAL;
	}
	if (layout != IMG_NONE) {
		int r = esp_image_parse(buf, len, ESP_CHIP_UNKNOWN, &c->app, m, sizeof m);
		c->chip = c->app.chip;
		if (layout == IMG_ESP8266) {
			/* The ESP8266 ROM boots the image at 0 whatever it is. */
			c->kind = c->app.flash_mapped ? ESP_KIND_APP : ESP_KIND_BOOTLOADER;
			c->flash_offset = 0;
		} else if (c->app.app.present || c->app.flash_mapped) {
			c->kind = ESP_KIND_APP;
			c->flash_offset = app_offset(device_pt);
		} else if (is_bootloader(&c->app)) {
			c->kind = ESP_KIND_BOOTLOADER;
			const struct esp_chip_info *ci = esp_chip_get(c->chip);
			c->flash_offset = ci ? ci->bootloader_offset : 0;
		} else {
			c->kind = ESP_KIND_APP; /* truncated before telling; apps are the common case */
			c->flash_offset = app_offset(device_pt);
		}
		if (c->kind == ESP_KIND_APP) {
			c->has_app = true;
		} else {
			c->boot = c->app;
			memset(&c->app, 0, sizeof c->app);
			c->has_boot = true;
		}
		if (r < 0) {
			espimg_msg(c->reason, sizeof c->reason, "%s", m);
			return -EINVAL;
		}
		if (c->chip == ESP_CHIP_UNKNOWN) {
			espimg_msg(c->reason, sizeof c->reason, "built for an unsupported chip (chip id %d)",
			        c->has_app ? c->app.ext_chip_id : c->boot.ext_chip_id);
			return -EINVAL;
		}
		c->valid = true;
		return 0;
	}
	struct esp_otadata od;
	if (len >= 0x1000 + 32 && len <= ESP_OTADATA_LEN && esp_otadata_parse(buf, len, &od) == 0 &&
	    od.active >= 0) {
		c->kind = ESP_KIND_OTADATA;
		const struct esp_partition *p = esp_pt_find(device_pt, ESP_PT_TYPE_DATA, ESP_PT_DATA_OTA);
		c->flash_offset = p ? p->offset : ESP_OTADATA_OFFSET;
		c->valid = true;
		return 0;
	}
	if (buf[0] == ESP_IMAGE_MAGIC)
		espimg_msg(c->reason, sizeof c->reason, "not a valid firmware image: implausible header "
		        "(%u segments, flash mode %u)", len > 1 ? buf[1] : 0, len > 2 ? buf[2] : 0);
	else
		espimg_msg(c->reason, sizeof c->reason, "not a firmware image, partition table or otadata "
		        "(first byte 0x%02x)", buf[0]);
	return -EINVAL;
}

void esp_image_describe(const struct esp_image_class *c, char *out, size_t cap)
{
	const struct esp_image_info *img = c->has_app ? &c->app : c->has_boot ? &c->boot : NULL;
	char what[160] = "";
	if (img && img->app.present && img->esphome_version[0] &&
	    strcmp(img->esphome_version, img->app.version) != 0)
		espimg_msg(what, sizeof what, " (%s %s, IDF %s, ESPHome %s)", img->app.project_name,
		           img->app.version, img->app.idf_ver, img->esphome_version);
	else if (img && img->app.present)
		espimg_msg(what, sizeof what, " (%s %s, IDF %s)", img->app.project_name,
		           img->app.version, img->app.idf_ver);
	else if (img && img->esphome_version[0])
		espimg_msg(what, sizeof what, " (ESPHome %s)", img->esphome_version);
	const char *chip = c->chip != ESP_CHIP_UNKNOWN ? chip_name(c->chip) : NULL;
	if (c->kind == ESP_KIND_UNKNOWN)
		espimg_msg(out, cap, "unknown content: %s", c->reason);
	else if (!c->valid)
		espimg_msg(out, cap, "invalid %s image%s%s: %s", esp_image_kind_name(c->kind),
		           chip ? " for " : "", chip ? chip : "", c->reason);
	else
		espimg_msg(out, cap, "%s%s%s%s%s, goes to 0x%x",
		           c->kind == ESP_KIND_PARTITION_TABLE ? "partition table" :
		           c->kind == ESP_KIND_OTADATA ? "otadata" : esp_image_kind_name(c->kind),
		           c->kind == ESP_KIND_PARTITION_TABLE || c->kind == ESP_KIND_OTADATA ? "" : " image",
		           chip ? " for " : "", chip ? chip : "", what, c->flash_offset);
}

/* ---- write checks ---- */

/* Checks the image header at buf (flash address addr) against the target.
 * Returns 0 ok / not an image, -EINVAL refused, -EAGAIN need more. */
static int check_image_at(esp_chip_id target, uint32_t addr, const uint8_t *buf, size_t len,
                          bool complete, char *msg, size_t msglen)
{
	const struct esp_chip_info *ti = esp_chip_get(target);
	if (len < 1 || buf[0] != ESP_IMAGE_MAGIC)
		return 0;
	/* header + ext header + first segment header + app-descriptor magic */
	if (len < 36 && !complete)
		return -EAGAIN;
	int layout = espimg_layout(buf, len);
	if (layout == IMG_NONE)
		return 0;  /* 0xE9 by chance: data, not an image */
	struct esp_image_info in;
	char m[160], b[64];
	int r = esp_image_parse(buf, len, target, &in, m, sizeof m);
	if (in.chip != target) {
		built_for(&in, b, sizeof b);
		espimg_msg(msg, msglen, "not an %s image: %s", ti->name, b);
		return -EINVAL;
	}
	if (target != ESP_CHIP_ESP8266) {
		if (addr == ti->bootloader_offset && (in.app.present || in.flash_mapped)) {
			espimg_msg(msg, msglen, "this is an app image%s%s%s: it belongs in the app partition "
			        "(0x%x), not at the bootloader offset 0x%x",
			        in.app.present ? " (" : "", in.app.present ? in.app.project_name : "",
			        in.app.present ? ")" : "", ESP_APP_OFFSET, ti->bootloader_offset);
			return -EINVAL;
		}
		if (addr != ti->bootloader_offset && is_bootloader(&in)) {
			espimg_msg(msg, msglen, "this is a bootloader image: on the %s it belongs at 0x%x, not 0x%x",
			        ti->name, ti->bootloader_offset, addr);
			return -EINVAL;
		}
	}
	if (complete && r < 0) {
		espimg_msg(msg, msglen, "%s", m);
		return -EINVAL;
	}
	return 0;
}

int esp_image_check_write(esp_chip_id target, uint32_t off, const uint8_t *buf, size_t len,
                          bool complete, const struct esp_partition_table *device_pt,
                          char *msg, size_t msglen)
{
	const struct esp_chip_info *ti = esp_chip_get(target);
	espimg_msg(msg, msglen, "%s", "");
	if (!ti || len == 0)
		return (!ti || complete) ? 0 : -EAGAIN;
	if (off == 0 && buf[0] == 0xFF) {
		/* Maybe a merged image in the ESP32/S2 layout: the first 4 KiB
		 * erased, the bootloader at 0x1000. */
		size_t n = len < 0x1000 ? len : 0x1000;
		if (!all_ff(buf, n))
			return 0;
		if (len <= 0x1000)
			return complete ? 0 : -EAGAIN;
		if (buf[0x1000] != ESP_IMAGE_MAGIC)
			return 0;
		if (len < 0x1000 + 36 && !complete)
			return -EAGAIN;
		if (espimg_layout(buf + 0x1000, len - 0x1000) == IMG_NONE)
			return 0;
		if (ti->bootloader_offset != 0x1000) {
			struct esp_image_info in;
			char m[8], b[64];
			esp_image_parse(buf + 0x1000, len - 0x1000, target, &in, m, sizeof m);
			built_for(&in, b, sizeof b);
			if (in.chip != target)
				espimg_msg(msg, msglen, "not an %s image: %s", ti->name, b);
			else
				espimg_msg(msg, msglen, "this image puts the bootloader at 0x1000, but the %s boots from 0x%x",
				        ti->name, ti->bootloader_offset);
			return -EINVAL;
		}
		int r = check_image_at(target, 0x1000, buf + 0x1000, len - 0x1000, false, msg, msglen);
		if (r < 0 || !complete)
			return r;
	} else if (off == 0 && ti->bootloader_offset != 0 && buf[0] == ESP_IMAGE_MAGIC) {
		if (len < 36 && !complete)
			return -EAGAIN;
		if (espimg_layout(buf, len) != IMG_NONE) {
			int r = check_image_at(target, 0, buf, len, false, msg, msglen);
			if (r < 0)
				return r;
			espimg_msg(msg, msglen, "an image at 0x0 does not boot on the %s: its bootloader belongs "
			        "at 0x%x and apps at 0x%x", ti->name, ti->bootloader_offset, ESP_APP_OFFSET);
			return -EINVAL;
		}
		return 0;
	} else {
		int r = check_image_at(target, off, buf, len, false, msg, msglen);
		if (r < 0 || !complete)
			return r;
	}
	/* complete: the whole thing must be intact */
	if (off == 0 || buf[0] == ESP_IMAGE_MAGIC || (off == ESP_PT_OFFSET && len >= 2 &&
	                                               buf[0] == 0xAA && buf[1] == 0x50)) {
		struct esp_image_class *c = malloc(sizeof *c);
		if (!c)
			return -ENOMEM;
		int r = esp_image_classify(buf, len, device_pt, c);
		if (c->kind != ESP_KIND_UNKNOWN && c->kind != ESP_KIND_OTADATA && r < 0) {
			espimg_msg(msg, msglen, "%s", c->reason);
			free(c);
			return -EINVAL;
		}
		free(c);
	}
	return 0;
}

/* ---- chip revision ---- */

static int rev_ok(esp_chip_id target, unsigned rev, const uint8_t *h, size_t len, char *msg, size_t msglen)
{
	if (len < ESP_IMAGE_HDR_LEN + ESP_IMAGE_EXT_HDR_LEN || h[0] != ESP_IMAGE_MAGIC ||
	    espimg_layout(h, len) == IMG_NONE || target == ESP_CHIP_ESP8266)
		return 0;
	const uint8_t *x = h + ESP_IMAGE_HDR_LEN;
	const struct esp_chip_info *ci = esp_chip_by_image_id(x[4] | x[5] << 8);
	if (!ci || ci->id != target)
		return 0; /* a wrong chip is esp_image_check_write's to refuse */
	unsigned legacy = x[6], min_full = (unsigned)(x[7] | x[8] << 8), max_full = (unsigned)(x[9] | x[10] << 8);
	const char *name = ci->name;
	if (max_full == 0 || (max_full == 0xFFFF && min_full == 0 && legacy)) {
		/* an old header: one byte, the major revision (on the C3 the minor) */
		unsigned have = target == ESP_CHIP_ESP32C3 ? rev % 100 : rev / 100;
		if (legacy > have) {
			espimg_msg(msg, msglen, "image needs %s revision %s%u or newer; this chip is v%u.%u",
			           name, target == ESP_CHIP_ESP32C3 ? "v0." : "v", legacy, rev / 100, rev % 100);
			return -EINVAL;
		}
		return 0;
	}
	if (rev < min_full) {
		espimg_msg(msg, msglen, "image needs %s revision v%u.%u or newer; this chip is v%u.%u",
		           name, min_full / 100, min_full % 100, rev / 100, rev % 100);
		return -EINVAL;
	}
	if (max_full != 0xFFFF && rev > max_full) {
		espimg_msg(msg, msglen, "image supports %s revisions up to v%u.%u; this chip is v%u.%u",
		           name, max_full / 100, max_full % 100, rev / 100, rev % 100);
		return -EINVAL;
	}
	return 0;
}

int esp_image_check_revision(esp_chip_id target, unsigned rev, uint32_t off, const uint8_t *buf,
                             size_t len, char *msg, size_t msglen)
{
	int rc = rev_ok(target, rev, buf, len, msg, msglen);
	if (rc == 0 && off == 0 && len > 0x1000)
		rc = rev_ok(target, rev, buf + 0x1000, len - 0x1000, msg, msglen);
	if (rc == 0 && off < ESP_APP_OFFSET && len > ESP_APP_OFFSET - off)
		rc = rev_ok(target, rev, buf + (ESP_APP_OFFSET - off), len - (ESP_APP_OFFSET - off), msg, msglen);
	return rc;
}
