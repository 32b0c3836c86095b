/* Partition tables (PROTOCOL.md A18, ESP-IDF gen_esp32part.py format) and
 * otadata select entries. */
#include <errno.h>
#include <string.h>
#include <md5.h>
#include <zlib.h>
#include "espfs/image.h"
#include "image_priv.h"

#define ROW 32

static bool all_ff(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++ != 0xFF)
			return false;
	return true;
}

int esp_pt_parse(const uint8_t *buf, size_t len, struct esp_partition_table *pt,
                 char *msg, size_t msglen)
{
	memset(pt, 0, sizeof *pt);
	espimg_msg(msg, msglen, "%s", "");
	if (len > ESP_PT_MAX_LEN)
		len = ESP_PT_MAX_LEN;
	if (len < ROW || buf[0] != 0xAA || buf[1] != 0x50) {
		espimg_msg(msg, msglen, "not a partition table (no AA 50 entry at the start)");
		return -EINVAL;
	}
	size_t off;
	for (off = 0; off + ROW <= len; off += ROW) {
		const uint8_t *r = buf + off;
		if (r[0] == 0xAA && r[1] == 0x50) {
			if (pt->has_md5) {
				espimg_msg(msg, msglen, "invalid partition table: entry after the MD5 row");
				return -EINVAL;
			}
			if (pt->n >= ESP_PT_MAX_ENTRIES) {
				espimg_msg(msg, msglen, "invalid partition table: more than %d entries", ESP_PT_MAX_ENTRIES);
				return -EINVAL;
			}
			struct esp_partition *e = &pt->p[pt->n++];
			e->type = r[2];
			e->subtype = r[3];
			e->offset = espimg_le32(r + 4);
			e->size = espimg_le32(r + 8);
			e->flags = espimg_le32(r + 28);
			int i;
			for (i = 0; i < 16 && r[12 + i]; i++)
				e->label[i] = (r[12 + i] >= 0x20 && r[12 + i] < 0x7F) ? (char)r[12 + i] : '?';
			e->label[i] = 0;
			if ((uint64_t)e->offset + e->size > 0x100000000ull) {
				espimg_msg(msg, msglen, "invalid partition table: '%s' runs past 4 GiB", e->label);
				return -EINVAL;
			}
		} else if (r[0] == 0xEB && r[1] == 0xEB && all_ff(r + 2, 14)) {
			if (pt->has_md5) {
				espimg_msg(msg, msglen, "invalid partition table: two MD5 rows");
				return -EINVAL;
			}
			uint8_t d[MD5_DIGEST_LENGTH];
			MD5_CTX ctx;
			MD5Init(&ctx);
			MD5Update(&ctx, buf, off);
			MD5Final(d, &ctx);
			pt->has_md5 = true;
			pt->md5_ok = memcmp(d, r + 16, 16) == 0;
			if (!pt->md5_ok) {
				espimg_msg(msg, msglen, "corrupt partition table: MD5 row does not match");
				return -EINVAL;
			}
		} else if (all_ff(r, ROW)) {
			pt->has_end = true;
			break;
		} else {
			espimg_msg(msg, msglen, "invalid partition table: garbage row at +0x%zx", off);
			return -EINVAL;
		}
	}
	pt->len = off + (pt->has_end ? ROW : 0);
	if (!pt->has_end && len < ESP_PT_MAX_LEN) {
		espimg_msg(msg, msglen, "truncated partition table: no end marker in %zu bytes", len);
		return -EINVAL;
	}
	for (int i = 0; i < pt->n; i++)
		for (int j = i + 1; j < pt->n; j++) {
			const struct esp_partition *a = &pt->p[i], *b = &pt->p[j];
			if (a->size && b->size && a->offset < b->offset + (uint64_t)b->size &&
			    b->offset < a->offset + (uint64_t)a->size) {
				espimg_msg(msg, msglen, "invalid partition table: '%s' and '%s' overlap",
				        a->label, b->label);
				return -EINVAL;
			}
		}
	return 0;
}

const struct esp_partition *esp_pt_find(const struct esp_partition_table *pt, int type, int subtype)
{
	for (int i = 0; pt && i < pt->n; i++)
		if ((type == ESP_PT_ANY || pt->p[i].type == type) &&
		    (subtype == ESP_PT_ANY || pt->p[i].subtype == subtype))
			return &pt->p[i];
	return NULL;
}

const struct esp_partition *esp_pt_find_label(const struct esp_partition_table *pt, const char *label)
{
	for (int i = 0; pt && label && i < pt->n; i++)
		if (strcmp(pt->p[i].label, label) == 0)
			return &pt->p[i];
	return NULL;
}

const struct esp_partition *esp_pt_first_app(const struct esp_partition_table *pt)
{
	const struct esp_partition *best = NULL;
	for (int i = 0; pt && i < pt->n; i++)
		if (pt->p[i].type == ESP_PT_TYPE_APP && (!best || pt->p[i].offset < best->offset))
			best = &pt->p[i];
	return best;
}

const struct esp_partition *esp_pt_boot_app(const struct esp_partition_table *pt)
{
	/* The 2nd-stage bootloader with blank otadata boots factory, else
	 * ota_0 (ESP-IDF bootloader_utility); esptool and ESPHome write the
	 * app there. */
	const struct esp_partition *p = esp_pt_find(pt, ESP_PT_TYPE_APP, ESP_PT_APP_FACTORY);
	if (!p)
		p = esp_pt_find(pt, ESP_PT_TYPE_APP, ESP_PT_APP_OTA0);
	return p ? p : esp_pt_first_app(pt);
}

const char *esp_pt_type_name(uint8_t type)
{
	switch (type) {
	case ESP_PT_TYPE_APP: return "app";
	case ESP_PT_TYPE_DATA: return "data";
	case ESP_PT_TYPE_BOOTLOADER: return "bootloader";
	case ESP_PT_TYPE_PT: return "partition_table";
	default: return type >= 0x40 && type <= 0xFE ? "custom" : "unknown";
	}
}

const char *esp_pt_subtype_name(uint8_t type, uint8_t subtype)
{
	static const char *const ota[16] = { "ota_0", "ota_1", "ota_2", "ota_3", "ota_4", "ota_5",
		"ota_6", "ota_7", "ota_8", "ota_9", "ota_10", "ota_11", "ota_12", "ota_13", "ota_14", "ota_15" };
	if (type == ESP_PT_TYPE_APP) {
		if (subtype == ESP_PT_APP_FACTORY) return "factory";
		if (subtype >= ESP_PT_APP_OTA0 && subtype <= ESP_PT_APP_OTA15) return ota[subtype - ESP_PT_APP_OTA0];
		if (subtype == ESP_PT_APP_TEST) return "test";
		if (subtype == 0x30) return "tee_0";
		if (subtype == 0x31) return "tee_1";
		return NULL;
	}
	if (type == ESP_PT_TYPE_DATA) {
		switch (subtype) {
		case 0x00: return "ota";
		case 0x01: return "phy";
		case 0x02: return "nvs";
		case 0x03: return "coredump";
		case 0x04: return "nvs_keys";
		case 0x05: return "efuse";
		case 0x06: return "undefined";
		case 0x80: return "esphttpd";
		case 0x81: return "fat";
		case 0x82: return "spiffs";
		case 0x83: return "littlefs";
		case 0x90: return "tee_ota";
		default: return NULL;
		}
	}
	if (type == ESP_PT_TYPE_BOOTLOADER)
		return subtype == 0 ? "primary" : subtype == 1 ? "ota" : subtype == 2 ? "recovery" : NULL;
	if (type == ESP_PT_TYPE_PT)
		return subtype == 0 ? "primary" : subtype == 1 ? "ota" : NULL;
	return NULL;
}

int esp_otadata_parse(const uint8_t *buf, size_t len, struct esp_otadata *od)
{
	/* esp_ota_select_entry_t: ota_seq u32, seq_label[20], ota_state u32,
	 * crc u32 = CRC-32 (zlib, seeded 0xFFFFFFFF) of ota_seq. */
	memset(od, 0, sizeof *od);
	od->active = -1;
	if (len < 0x1000 + ROW)
		return -EINVAL;
	for (int i = 0; i < 2; i++) {
		const uint8_t *e = buf + i * 0x1000;
		od->blank[i] = all_ff(e, ROW);
		od->seq[i] = espimg_le32(e);
		uint32_t crc = (uint32_t)crc32(0xFFFFFFFFul, e, 4);
		od->valid[i] = !od->blank[i] && od->seq[i] != 0xFFFFFFFFu && crc == espimg_le32(e + 28);
	}
	if (od->valid[0] || od->valid[1])
		od->active = (od->valid[0] && (!od->valid[1] || od->seq[0] >= od->seq[1])) ? 0 : 1;
	/* The rest of each sector is erased; an entry that is neither valid
	 * nor blank (boot_app0.bin's ota_seq 0) is legal and just ignored. */
	if (!all_ff(buf + ROW, 0x1000 - ROW) ||
	    !all_ff(buf + 0x1000 + ROW, (len < ESP_OTADATA_LEN ? len : ESP_OTADATA_LEN) - 0x1000 - ROW))
		return -EINVAL;
	return od->active >= 0 || (od->blank[0] && od->blank[1]) ? 0 : -EINVAL;
}

int esp_otadata_active(const uint8_t *buf, size_t len, uint32_t *seq)
{
	int best = -1;
	uint32_t best_seq = 0;
	for (int i = 0; i < 2; i++) {
		if (len < 0x1000u * (size_t)i + ROW)
			break;
		const uint8_t *e = buf + 0x1000u * (size_t)i;
		uint32_t s = espimg_le32(e), state = espimg_le32(e + 24);
		if (s == 0xFFFFFFFFu || s == 0 || state == 3 || state == 4)
			continue;
		if ((uint32_t)crc32(0xFFFFFFFFul, e, 4) != espimg_le32(e + 28))
			continue;
		if (best < 0 || s > best_seq) {
			best = i;
			best_seq = s;
		}
	}
	if (seq)
		*seq = best < 0 ? 0 : best_seq;
	return best;
}

uint32_t esp_otadata_next_seq(uint32_t cur, int slot, int n_ota)
{
	if (n_ota <= 0 || slot < 0 || slot >= n_ota)
		return 0;
	uint64_t want = (uint64_t)slot + 1;  /* (want - 1) % n_ota == slot */
	if (cur > want)
		want += ((cur - want + (uint64_t)n_ota - 1) / (uint64_t)n_ota) * (uint64_t)n_ota;
	return want >= 0xFFFFFFFFull ? 0 : (uint32_t)want;
}

void esp_otadata_entry(uint8_t e[32], uint32_t seq)
{
	memset(e, 0xFF, ROW);
	for (int i = 0; i < 4; i++)
		e[i] = (uint8_t)(seq >> (8 * i));
	uint32_t crc = (uint32_t)crc32(0xFFFFFFFFul, e, 4);
	for (int i = 0; i < 4; i++)
		e[28 + i] = (uint8_t)(crc >> (8 * i));
}
