/* Firmware images users drop into a device folder (src/proto/image.c,
 * image_classify.c): the image header, segments, app descriptor, the
 * classification of a whole buffer (with and without the device's
 * partition table) and the header rewrite. */
#include <stdlib.h>
#include <string.h>
#include "espfs/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	esp_chip_id hint = (esp_chip_id)(data[0] % ESP_CHIP_COUNT);
	const uint8_t *buf = data + 1;
	size_t len = size - 1;
	char msg[256];
	struct esp_image_info *info = calloc(1, sizeof *info);
	struct esp_image_class *c = calloc(1, sizeof *c);
	struct esp_partition_table *pt = calloc(1, sizeof *pt);
	esp_image_parse(buf, len, hint, info, msg, sizeof msg);
	esp_image_classify(buf, len, NULL, c);
	esp_image_describe(c, msg, sizeof msg);
	/* the same buffer as the table already on the device */
	if (len >= 0x8000 + 0xC00 && esp_pt_parse(buf + 0x8000, 0xC00, pt, msg, sizeof msg) == 0) {
		esp_image_classify(buf, len, pt, c);
		esp_image_describe(c, msg, sizeof msg);
	}
	uint8_t *copy = malloc(len ? len : 1);
	memcpy(copy, buf, len);
	esp_image_set_flash_params(copy, len, data[0] & 3, data[0]);
	free(copy);
	free(info);
	free(c);
	free(pt);
	return 0;
}
