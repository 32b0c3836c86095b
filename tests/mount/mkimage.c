/* espfs-mkimage CHIP KIND OUT [PROJECT]: write a synthetic, bootable
 * image (KIND: factory, bootloader, ptable, app, ota-factory, ota-ptable) so the mount tests stand
 * alone without ../shared/firmware. */
#include <stdio.h>
#include <stdlib.h>
#include "espfs/device.h"

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s CHIP factory|bootloader|ptable|app|ota-factory|ota-ptable OUT [PROJECT]\n", argv[0]);
		return 2;
	}
	uint8_t *img;
	size_t len;
	int rc = device_synth_image(argv[1], argv[2], argc > 4 ? argv[4] : NULL, &img, &len);
	if (rc < 0) {
		fprintf(stderr, "%s: cannot make a %s image for %s (%d)\n", argv[0], argv[2], argv[1], rc);
		return 1;
	}
	FILE *f = fopen(argv[3], "wb");
	if (!f || fwrite(img, 1, len, f) != len || fclose(f) != 0) {
		perror(argv[3]);
		free(img);
		return 1;
	}
	free(img);
	return 0;
}
