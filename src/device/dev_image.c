/* Adapter between the device manager and the image module (image.h): what
 * a file dropped into a device folder is and where it belongs on this
 * device, and whether bytes written at an offset put an image where it
 * does not belong.  The device's own partition table (cached at attach)
 * decides where an app goes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "device_i.h"
#include "espfs/text.h"
#include "espfs/image.h"

/* The partition table from the cached first 64 KiB; NULL when none. */
static struct esp_partition_table *device_pt(esp_device *d)
{
	uint8_t raw[ESP_PT_MAX_LEN];
	char msg[160];
	if (device_head_read(d, ESP_PT_OFFSET, raw, sizeof raw) < 0)
		return NULL;
	struct esp_partition_table *pt = malloc(sizeof *pt);
	if (pt && esp_pt_parse(raw, sizeof raw, pt, msg, sizeof msg) < 0) {
		free(pt);
		pt = NULL;
	}
	return pt;
}

/* "name@0x10000.bin": espfs/text.h (strict: no sign, 32 bits) */
static bool forced_offset(const char *name, uint32_t *off)
{
	return esp_name_forced_offset(name, off);
}

static int check(esp_device *d, uint32_t off, const uint8_t *buf, size_t len, bool complete,
		 char *why, size_t whylen);

int device_image_target(esp_device *d, const uint8_t *buf, size_t len, const char *name,
			bool onto_flash_bin, uint32_t *offset, char *why, size_t whylen)
{
	struct dev_identity id;
	device_identity(d, &id);
	if (!id.chip) {
		snprintf(why, whylen, "the chip is not identified");
		return -EINVAL;
	}
	uint32_t off = 0;
	if (!forced_offset(name, &off)) {
		struct esp_partition_table *pt = device_pt(d);
		struct esp_image_class *c = malloc(sizeof *c);
		if (!c) {
			free(pt);
			return -ENOMEM;
		}
		int rc = esp_image_classify(buf, len, pt, c);
		free(pt);
		if (c->kind == ESP_KIND_UNKNOWN && onto_flash_bin) {
			off = 0;  /* a raw flash image replacing flash.bin */
		} else if (c->kind == ESP_KIND_UNKNOWN) {
			snprintf(why, whylen, "%s is not a firmware image, bootloader or partition "
				 "table; name it NAME@0xOFFSET.bin to write it at an offset",
				 name ? name : "the file");
			free(c);
			return -EINVAL;
		} else if (rc < 0) {
			snprintf(why, whylen, "%s: %s", name ? name : "image", c->reason);
			free(c);
			return -EINVAL;
		} else {
			off = c->flash_offset;
		}
		free(c);
	}
	if (off % ESP_SECTOR) {
		snprintf(why, whylen, "offset 0x%x is not a multiple of 4 KiB", off);
		return -EINVAL;
	}
	if ((uint64_t)off + len > id.flash_size) {
		snprintf(why, whylen, "%zu bytes at 0x%x do not fit the %u-byte flash", len, off,
			 id.flash_size);
		return -EFBIG;
	}
	*offset = off;
	return check(d, off, buf, len, true, why, whylen);
}

static int check(esp_device *d, uint32_t off, const uint8_t *buf, size_t len, bool complete,
		 char *why, size_t whylen)
{
	struct dev_identity id;
	device_identity(d, &id);
	if (!id.chip)
		return 0;
	struct esp_partition_table *pt = device_pt(d);
	int rc = esp_image_check_write(id.chip->id, off, buf, len, complete, pt, why, whylen);
	free(pt);
	if (rc == 0 && id.revision >= 0)
		rc = esp_image_check_revision(id.chip->id, (unsigned)id.revision, off, buf, len, why, whylen);
	return rc == -EAGAIN ? 0 : rc;
}

int device_image_check(esp_device *d, uint32_t off, const uint8_t *buf, size_t len, char *why,
		       size_t whylen)
{
	return check(d, off, buf, len, false, why, whylen);
}

int device_app_check(esp_device *d, uint32_t off, const uint8_t *buf, size_t len, bool complete,
		     char *why, size_t whylen)
{
	struct dev_identity id;
	device_identity(d, &id);
	if (!complete && len < ESP_IMAGE_CHECK_PREFIX)
		return -EAGAIN;
	if (len < ESP_IMAGE_HDR_LEN + ESP_IMAGE_EXT_HDR_LEN || buf[0] != ESP_IMAGE_MAGIC) {
		snprintf(why, whylen, "an app partition takes an app image%s%s; this is not one "
			 "(no 0xE9 image header at its start)", id.chip ? " for " : "",
			 id.chip ? id.chip->name : "");
		return -EINVAL;
	}
	struct esp_image_info *info = malloc(sizeof *info);
	if (!info)
		return -ENOMEM;
	char msg[160];
	int rc = esp_image_parse(buf, len, id.chip ? id.chip->id : ESP_CHIP_UNKNOWN, info, msg,
				 sizeof msg);
	if (id.chip && info->chip != id.chip->id) {
		const struct esp_chip_info *c = esp_chip_get(info->chip);
		snprintf(why, whylen, "the image is built for %s, not for this %s",
			 c ? c->name : "another chip", id.chip->name);
		rc = -EINVAL;
	} else if (info->n_seen && !info->flash_mapped) {
		snprintf(why, whylen, "the image is a bootloader (nothing of it runs from flash), "
			 "not an app");
		rc = -EINVAL;
	} else if (complete && rc < 0) {
		snprintf(why, whylen, "%s", msg);
	} else {
		rc = 0;
	}
	free(info);
	return rc < 0 ? rc : check(d, off, buf, len, complete, why, whylen);
}
