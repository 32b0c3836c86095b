/* One-value files of the kernel (espfs/sysfs.h): the serial transport
 * and the device manager's brltty check both read USB IDs this way. */
#include <stdio.h>
#include "espfs/sysfs.h"

unsigned esp_sysfs_hex(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned v = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%x", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}
