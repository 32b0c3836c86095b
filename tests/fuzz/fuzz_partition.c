/* Partition tables and otadata read from a device's flash or a dropped
 * file (src/proto/partition.c). */
#include <string.h>
#include "espfs/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct esp_partition_table pt;
	char msg[256];
	if (esp_pt_parse(data, size, &pt, msg, sizeof msg) == 0) {
		if (pt.n < 0 || pt.n > ESP_PT_MAX_ENTRIES || pt.len > size)
			__builtin_trap();
		for (int i = 0; i < pt.n; i++) {
			esp_pt_type_name(pt.p[i].type);
			esp_pt_subtype_name(pt.p[i].type, pt.p[i].subtype);
			esp_pt_find_label(&pt, pt.p[i].label);
		}
		esp_pt_find(&pt, ESP_PT_ANY, ESP_PT_ANY);
		esp_pt_first_app(&pt);
		esp_pt_boot_app(&pt);
	}
	struct esp_otadata od;
	esp_otadata_parse(data, size, &od);
	return 0;
}
