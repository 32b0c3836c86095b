/* Chip facts.  Sources: PROTOCOL.md A6 (magic, ids), A7 (MAC eFuse words),
 * A8 (SPI registers, JEDEC sizes), A15 (RTC WDT), A16 (USB PIDs),
 * A17 (bootloader offsets); all from esptool's per-target modules. */
#include <string.h>
#include <strings.h>
#include "espfs/chip.h"

#define SPI_ESP32   { 0x3FF42000, 0x3FF42004, 0x3FF4201C, 0x3FF42020, 0x3FF42024, 0x3FF42028, 0x3FF4202C, 0x3FF42080 }
#define SPI_S2      { 0x3F402000, 0x3F402004, 0x3F402018, 0x3F40201C, 0x3F402020, 0x3F402024, 0x3F402028, 0x3F402058 }
#define SPI_S3C3    { 0x60002000, 0x60002004, 0x60002018, 0x6000201C, 0x60002020, 0x60002024, 0x60002028, 0x60002058 }
#define SPI_C6      { 0x60003000, 0x60003004, 0x60003018, 0x6000301C, 0x60003020, 0x60003024, 0x60003028, 0x60003058 }

static const struct esp_chip_info chips[ESP_CHIP_COUNT] = {
	[ESP_CHIP_ESP8266] = {
		.id = ESP_CHIP_ESP8266, .name = "ESP8266", .key = "esp8266",
		.magic = { 0xFFF0C101 }, .n_magic = 1, .image_chip_id = -1,
		.security_info_len = 0, .rom_status_len = 2,
		.mac_reg = { 0x3FF00050, 0x3FF00054, 0x3FF0005C },
		.spi = { 0x60000200, 0x60000204, 0x6000021C, 0x60000220, 0x60000224, 0, 0, 0x60000240 },
		.spi_has_dlen = false, .bootloader_offset = 0x0,
		.default_flash_size = 4u << 20,
	},
	[ESP_CHIP_ESP32] = {
		.id = ESP_CHIP_ESP32, .name = "ESP32", .key = "esp32",
		.magic = { 0x00F01D83 }, .n_magic = 1, .image_chip_id = 0,
		.security_info_len = 0, .rom_status_len = 4,
		.mac_reg = { 0x3FF5A004, 0x3FF5A008 },
		.spi = SPI_ESP32, .spi_has_dlen = true, .bootloader_offset = 0x1000,
		.rom_has_spi_attach = true, .rom_has_defl = true, .rom_has_md5 = true,
		.rom_has_read_slow = true, .rom_has_change_baud = true,
		.default_flash_size = 4u << 20,
	},
	[ESP_CHIP_ESP32S2] = {
		.id = ESP_CHIP_ESP32S2, .name = "ESP32-S2", .key = "esp32s2",
		.magic = { 0x000007C6 }, .n_magic = 1, .image_chip_id = 2,
		.security_info_len = 12, .rom_status_len = 4,
		.mac_reg = { 0x3F41A044, 0x3F41A048 },
		.spi = SPI_S2, .spi_has_dlen = true, .bootloader_offset = 0x1000,
		.rom_has_spi_attach = true, .rom_has_defl = true, .rom_has_md5 = true,
		.rom_has_read_slow = false, .rom_has_change_baud = true,
		.rom_begin_has_encrypt_word = true,
		.wdt_config0 = 0x3F408094, .wdt_config1 = 0x3F408098, .wdt_wprotect = 0x3F4080AC,
		.usb_otg_rom_pid = 0x0002,
		.uartdev_buf_no = 0x3FFFFD14, .uartdev_usb_otg = 2,
		.default_flash_size = 4u << 20,
	},
	[ESP_CHIP_ESP32S3] = {
		.id = ESP_CHIP_ESP32S3, .name = "ESP32-S3", .key = "esp32s3",
		.magic = { 0x00000009 }, .n_magic = 1, .image_chip_id = 9,
		.security_info_len = 20, .rom_status_len = 4,
		.mac_reg = { 0x60007044, 0x60007048 },
		.spi = SPI_S3C3, .spi_has_dlen = true, .bootloader_offset = 0x0,
		.rom_has_spi_attach = true, .rom_has_defl = true, .rom_has_md5 = true,
		.rom_has_change_baud = true, .rom_begin_has_encrypt_word = true,
		.wdt_config0 = 0x60008098, .wdt_config1 = 0x6000809C, .wdt_wprotect = 0x600080B0,
		.usb_otg_rom_pid = 0x0009, .has_usb_jtag_serial = true,
		.uartdev_buf_no = 0x3FCEF14C, .uartdev_usb_otg = 3,
		.default_flash_size = 4u << 20,
	},
	[ESP_CHIP_ESP32C2] = {
		.id = ESP_CHIP_ESP32C2, .name = "ESP32-C2", .key = "esp32c2",
		.magic = { 0x6F51306F, 0x7C41A06F, 0x0C21E06F }, .n_magic = 3, .image_chip_id = 12,
		.security_info_len = 20, .rom_status_len = 4,
		.mac_reg = { 0x60008840, 0x60008844 },
		.spi = SPI_S3C3, .spi_has_dlen = true, .bootloader_offset = 0x0,
		.rom_has_spi_attach = true, .rom_has_defl = true, .rom_has_md5 = true,
		.rom_has_change_baud = true, .rom_begin_has_encrypt_word = true,
		.wdt_config0 = 0x60008084, .wdt_config1 = 0x60008088, .wdt_wprotect = 0x6000809C,
		.default_flash_size = 4u << 20,
	},
	[ESP_CHIP_ESP32C3] = {
		.id = ESP_CHIP_ESP32C3, .name = "ESP32-C3", .key = "esp32c3",
		.magic = { 0x6921506F, 0x1B31506F, 0x4881606F, 0x4361606F }, .n_magic = 4,
		.image_chip_id = 5, .security_info_len = 20, .rom_status_len = 4,
		.mac_reg = { 0x60008844, 0x60008848 },
		.spi = SPI_S3C3, .spi_has_dlen = true, .bootloader_offset = 0x0,
		.rom_has_spi_attach = true, .rom_has_defl = true, .rom_has_md5 = true,
		.rom_has_change_baud = true, .rom_begin_has_encrypt_word = true,
		.wdt_config0 = 0x60008090, .wdt_config1 = 0x60008094, .wdt_wprotect = 0x600080A8,
		.has_usb_jtag_serial = true,
		.default_flash_size = 4u << 20,
	},
	[ESP_CHIP_ESP32C6] = {
		.id = ESP_CHIP_ESP32C6, .name = "ESP32-C6", .key = "esp32c6",
		.magic = { 0x2CE0806F }, .n_magic = 1, .image_chip_id = 13,
		.security_info_len = 20, .rom_status_len = 4,
		.mac_reg = { 0x600B0844, 0x600B0848 },
		.spi = SPI_C6, .spi_has_dlen = true, .bootloader_offset = 0x0,
		.rom_has_spi_attach = true, .rom_has_defl = true, .rom_has_md5 = true,
		.rom_has_change_baud = true, .rom_begin_has_encrypt_word = true,
		/* esptool disables the C6 watchdog reset: it can freeze the chip */
		.has_usb_jtag_serial = true,
		.default_flash_size = 4u << 20,
	},
	[ESP_CHIP_ESP32H2] = {
		.id = ESP_CHIP_ESP32H2, .name = "ESP32-H2", .key = "esp32h2",
		.magic = { 0xD7B73E80 }, .n_magic = 1, .image_chip_id = 16,
		.security_info_len = 20, .rom_status_len = 4,
		.mac_reg = { 0x600B0844, 0x600B0848 },
		.spi = SPI_C6, .spi_has_dlen = true, .bootloader_offset = 0x0,
		.rom_has_spi_attach = true, .rom_has_defl = true, .rom_has_md5 = true,
		.rom_has_change_baud = true, .rom_begin_has_encrypt_word = true,
		.has_usb_jtag_serial = true,
		.default_flash_size = 4u << 20,
	},
};

const struct esp_chip_info *esp_chip_get(esp_chip_id id)
{
	if (id <= ESP_CHIP_UNKNOWN || id >= ESP_CHIP_COUNT)
		return NULL;
	return &chips[id];
}

const struct esp_chip_info *esp_chip_by_magic(uint32_t magic)
{
	for (int i = 1; i < ESP_CHIP_COUNT; i++)
		for (int k = 0; k < chips[i].n_magic; k++)
			if (chips[i].magic[k] == magic)
				return &chips[i];
	return NULL;
}

const struct esp_chip_info *esp_chip_by_image_id(int image_chip_id)
{
	for (int i = 1; i < ESP_CHIP_COUNT; i++)
		if (chips[i].image_chip_id == image_chip_id && image_chip_id >= 0)
			return &chips[i];
	return NULL;
}

const struct esp_chip_info *esp_chip_by_name(const char *name)
{
	char norm[32];
	size_t n = 0;
	if (!name)
		return NULL;
	for (const char *p = name; *p && n + 1 < sizeof norm; p++)
		if (*p != '-' && *p != '_')
			norm[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	norm[n] = 0;
	for (int i = 1; i < ESP_CHIP_COUNT; i++)
		if (strcmp(chips[i].key, norm) == 0)
			return &chips[i];
	return NULL;
}

uint32_t esp_flash_size_from_jedec(uint32_t jedec)
{
	uint8_t manuf = jedec & 0xFF, cap = (jedec >> 16) & 0xFF;
	if ((jedec & 0xFFFFFF) == 0xFFFFFF || (jedec & 0xFFFFFF) == 0 || (jedec & 0xFFFFFF) == 0xFFFF3F)
		return 0;
	if (manuf == 0x1F) { /* Adesto encodes size in the type byte */
		uint8_t id = (jedec >> 8) & 0x1F;
		return (id >= 4 && id <= 9) ? (512u << 10) << (id - 4) : 0;
	}
	if (cap >= 0x12 && cap <= 0x1C)
		return 1u << (cap - 0x12 + 18);
	if (cap >= 0x32 && cap <= 0x3A)
		return 1u << (cap - 0x32 + 18);
	if (cap >= 0x20 && cap <= 0x22)
		return 64u << (20 + cap - 0x20);
	return 0;
}
