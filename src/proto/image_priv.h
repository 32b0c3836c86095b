/* Helpers shared by image.c, image_classify.c and partition.c only. */
#ifndef ESPFS_IMAGE_PRIV_H
#define ESPFS_IMAGE_PRIV_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "espfs/chip.h"

enum { IMG_NONE = 0, IMG_ESP8266, IMG_EXT };

void espimg_msg(char *msg, size_t msglen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint32_t espimg_le32(const uint8_t *p);
/* Which header layout a plausible image at buf has (IMG_NONE: not an image
 * header; needs 24 bytes for the ESP32 family, 16 for ESP8266). */
int espimg_layout(const uint8_t *buf, size_t len);
bool espimg_addr_flash_mapped(esp_chip_id chip, uint32_t addr);

#endif
