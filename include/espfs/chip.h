/* Facts about each Espressif chip that both the client and the simulator
 * need (PROTOCOL.md A6-A17).  This table and SLIP are the only code the
 * simulator shares with the client side. */
#ifndef ESPFS_CHIP_H
#define ESPFS_CHIP_H
#include <stdbool.h>
#include <stdint.h>

typedef enum esp_chip_id {
	ESP_CHIP_UNKNOWN = 0,
	ESP_CHIP_ESP8266,
	ESP_CHIP_ESP32,
	ESP_CHIP_ESP32S2,
	ESP_CHIP_ESP32S3,
	ESP_CHIP_ESP32C2,
	ESP_CHIP_ESP32C3,
	ESP_CHIP_ESP32C6,
	ESP_CHIP_ESP32H2,
	ESP_CHIP_COUNT
} esp_chip_id;

#define ESP_CHIP_DETECT_MAGIC_REG 0x40001000u

struct esp_spi_regs {
	uint32_t cmd, addr, usr, usr1, usr2, mosi_dlen, miso_dlen, w0;
};

struct esp_chip_info {
	esp_chip_id id;
	const char *name;          /* "ESP32-S2": what `chip` shows */
	const char *key;           /* "esp32s2": command lines, stub file names */
	uint32_t magic[4];         /* READ_REG 0x40001000 values */
	int n_magic;
	int image_chip_id;         /* extended-header / GET_SECURITY_INFO id; -1 none */
	int security_info_len;     /* GET_SECURITY_INFO data bytes: 0 (absent), 12, 20 */
	int rom_status_len;        /* status bytes the ROM appends: 2 or 4 */
	uint32_t mac_reg[3];       /* eFuse words (ESP8266: MAC0, MAC1, MAC3) */
	struct esp_spi_regs spi;
	bool spi_has_dlen;         /* false on ESP8266: bit lengths live in USR1 */
	uint32_t bootloader_offset;
	bool rom_has_spi_attach;   /* ESP8266 ROM attaches via FLASH_BEGIN(0,0) */
	bool rom_has_defl;         /* FLASH_DEFL_* in ROM */
	bool rom_has_md5;          /* SPI_FLASH_MD5 in ROM */
	bool rom_has_read_slow;    /* READ_FLASH_SLOW in ROM */
	bool rom_has_change_baud;
	bool rom_begin_has_encrypt_word; /* ROM FLASH_BEGIN takes 20 bytes */
	uint32_t wdt_config0, wdt_config1, wdt_wprotect; /* RTC WDT; 0 = none */
	uint16_t usb_otg_rom_pid;  /* ROM's own USB-OTG CDC PID (303a:xxxx); 0 = none */
	/* The ROM's .bss byte that says which port its loader talks on, and
	 * its value for USB-OTG (esptool's UARTDEV_BUF_NO[_USB_OTG]): how a
	 * remote link, which shows no USB IDs, tells USB-OTG.  0 = none. */
	uint32_t uartdev_buf_no;
	uint8_t uartdev_usb_otg;
	bool has_usb_jtag_serial;  /* 303a:1001 */
	uint32_t default_flash_size;
};

#define ESP_WDT_WKEY 0x50D83AA1u

const struct esp_chip_info *esp_chip_get(esp_chip_id id);
const struct esp_chip_info *esp_chip_by_magic(uint32_t magic);
const struct esp_chip_info *esp_chip_by_image_id(int image_chip_id);
/* Accepts "esp32s2", "ESP32-S2", "esp32-s2" (case-insensitive). */
const struct esp_chip_info *esp_chip_by_name(const char *name);

/* Flash size in bytes for a JEDEC ID (manufacturer | type<<8 | capacity<<16);
 * 0 when unknown or when the ID means "no flash". */
uint32_t esp_flash_size_from_jedec(uint32_t jedec);

#endif
