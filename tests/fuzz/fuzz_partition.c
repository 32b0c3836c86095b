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
	/* what `boot` reads, and the entry a switch would write after it */
	uint32_t seq = 0;
	int act = esp_otadata_active(data, size, &seq);
	if (act < -1 || act > 1 || (act >= 0 && (seq == 0 || seq == 0xFFFFFFFFu)))
		__builtin_trap();
	int n = size ? 1 + data[0] % 16 : 1, slot = size > 1 ? data[1] % n : 0;
	uint32_t next = esp_otadata_next_seq(act >= 0 ? seq : 0, slot, n);
	if (next && (next < seq || next == 0xFFFFFFFFu || (next - 1) % (uint32_t)n != (uint32_t)slot))
		__builtin_trap();
	uint8_t e[0x1000 + 32];
	memset(e, 0xFF, sizeof e);
	esp_otadata_entry(e, next ? next : 1);
	if (esp_otadata_active(e, sizeof e, &seq) != 0 || seq != (next ? next : 1))
		__builtin_trap();  /* what a switch writes, the bootloader takes */
	return 0;
}
