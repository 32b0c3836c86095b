/* Reading the kernel's one-value files (sysfs: idVendor, idProduct). */
#ifndef ESPFS_SYSFS_H
#define ESPFS_SYSFS_H

/* The hex number at the start of the file at path ("10c4\n"); 0 when the
 * file cannot be read or holds no number. */
unsigned esp_sysfs_hex(const char *path);

#endif
