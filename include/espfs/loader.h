/* Client for the Espressif ROM serial loader and the stub flasher
 * (PROTOCOL.md part A).  No threads, no global state: one esp_loader per
 * port, used by one thread at a time.  Every call returns 0 (or a count) on
 * success and a negative errno on failure; esp_loader_error() then tells why
 * in words fit for a user ("flash write failed at 0x12000: ROM error 0x08
 * (flash write error)").  Every call finishes within its deadline. */
#ifndef ESPFS_LOADER_H
#define ESPFS_LOADER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "espfs/chip.h"
#include "espfs/transport.h"

/* Opcodes (PROTOCOL.md A3). */
enum {
	ESP_FLASH_BEGIN = 0x02, ESP_FLASH_DATA = 0x03, ESP_FLASH_END = 0x04,
	ESP_MEM_BEGIN = 0x05, ESP_MEM_END = 0x06, ESP_MEM_DATA = 0x07,
	ESP_SYNC = 0x08, ESP_WRITE_REG = 0x09, ESP_READ_REG = 0x0A,
	ESP_SPI_SET_PARAMS = 0x0B, ESP_SPI_ATTACH = 0x0D, ESP_READ_FLASH_SLOW = 0x0E,
	ESP_CHANGE_BAUDRATE = 0x0F, ESP_FLASH_DEFL_BEGIN = 0x10, ESP_FLASH_DEFL_DATA = 0x11,
	ESP_FLASH_DEFL_END = 0x12, ESP_SPI_FLASH_MD5 = 0x13, ESP_GET_SECURITY_INFO = 0x14,
	ESP_ERASE_FLASH = 0xD0, ESP_ERASE_REGION = 0xD1, ESP_READ_FLASH = 0xD2,
	ESP_RUN_USER_CODE = 0xD3,
};

#define ESP_CHECKSUM_SEED 0xEF
#define ESP_ROM_WRITE_BLOCK 0x400
#define ESP_STUB_WRITE_BLOCK 0x4000
#define ESP_RAM_BLOCK 0x1800
#define ESP_SECTOR 0x1000

typedef enum esp_reset_mode {
	ESP_RESET_NONE = 0,      /* toggle nothing; just SYNC */
	ESP_RESET_AUTO,          /* chain: USB-JTAG-Serial (PID 0x1001) or classic DTR/RTS */
	ESP_RESET_CLASSIC,
	ESP_RESET_USB_JTAG,
} esp_reset_mode;

typedef struct esp_stub {
	uint32_t entry;
	uint8_t *text; size_t text_len; uint32_t text_start;
	uint8_t *data; size_t data_len; uint32_t data_start;
	char source[256];        /* file it came from, for messages */
} esp_stub;

/* Progress callback: done/total bytes of the current operation.  Return
 * non-zero to cancel: the operation stops between blocks with -EINTR. */
typedef int (*esp_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct esp_loader esp_loader;

esp_loader *esp_loader_new(esp_transport *t);
void esp_loader_free(esp_loader *l);           /* does not close t */
const char *esp_loader_error(const esp_loader *l);
esp_transport *esp_loader_transport(esp_loader *l);

/* Reset (per mode) and SYNC, draining the extra replies; tells ROM from a
 * running stub.  attempts: reset+sync cycles (0 = default 4), each with
 * up to 5 SYNCs of 100 ms.  A port without DTR/RTS (pty) gets SYNC only.
 * A stub left running at another baud rate will not answer: reset it. */
int esp_loader_connect(esp_loader *l, esp_reset_mode mode, int attempts);
bool esp_loader_is_stub(const esp_loader *l);
/* The loader answered SYNC since the last connect or reset: a later
 * failure (detection, flash id) is not "no download mode". */
bool esp_loader_synced(const esp_loader *l);
/* The last command could not even be sent: the port stopped taking data
 * within the command's deadline (nothing reads it: a stalled chip). */
bool esp_loader_send_stalled(const esp_loader *l);

/* GET_SECURITY_INFO, then the magic register. */
int esp_loader_detect_chip(esp_loader *l, const struct esp_chip_info **chip);
const struct esp_chip_info *esp_loader_chip(const esp_loader *l);
int esp_loader_read_mac(esp_loader *l, uint8_t mac[6]);
/* Chip revision from eFuse (and on the ESP32 the APB_CTRL date register),
 * as esptool reads it: *rev = major * 100 + minor.  -EOPNOTSUPP on chips
 * whose eFuse layout espfs does not know (all but ESP32 and ESP32-C3). */
int esp_loader_read_revision(esp_loader *l, unsigned *rev);
/* Attaches SPI flash first if not yet done; reads JEDEC ID and size. */
int esp_loader_flash_id(esp_loader *l, uint32_t *jedec, uint32_t *size);
int esp_loader_spi_attach(esp_loader *l);
int esp_loader_spi_set_params(esp_loader *l, uint32_t flash_size);

int esp_loader_read_reg(esp_loader *l, uint32_t addr, uint32_t *val);
int esp_loader_write_reg(esp_loader *l, uint32_t addr, uint32_t val, uint32_t mask, uint32_t delay_us);

/* Stub flasher: parse an esptool/esptool-js JSON file; find one for a chip
 * in dir (NULL: $ESPFS_STUB_DIR, then standard locations). */
int esp_stub_load_file(const char *path, esp_stub *stub, char *err, size_t errlen);
/* The same from JSON text in memory (path only names it in messages);
 * what esp_stub_load_file does after reading the file (and what
 * tests/fuzz feeds). */
int esp_stub_parse(const char *text, size_t len, const char *path, esp_stub *stub, char *err,
		   size_t errlen);
int esp_stub_find(const struct esp_chip_info *chip, const char *dir, char *path, size_t cap);
void esp_stub_free(esp_stub *stub);
/* MEM_BEGIN/DATA/END upload, then wait for "OHAI". */
int esp_loader_run_stub(esp_loader *l, const esp_stub *stub);

/* CHANGE_BAUDRATE, then switch the transport. */
int esp_loader_change_baud(esp_loader *l, uint32_t baud);
/* The fastest rate up to wanted (0: 921600) that the link carries: wanted,
 * then the standard rates below it (2M, 1.5M, 921600, 460800, 230400),
 * each checked by a few READ_REG round trips after the change; a rate the
 * port refuses is skipped before the device hears of it, a rate that
 * garbles is left again (CHANGE_BAUDRATE sent at it) and remembered as
 * this port's cap.  Never goes below the current rate; native USB links
 * and the ESP8266 ROM keep their rate.  Returns the rate in use (> 0), or
 * a negative errno when the device could not be reached again (-EPROTO:
 * reset it and connect again). */
int esp_loader_negotiate_baud(esp_loader *l, uint32_t wanted);

enum {
	ESP_WRITE_COMPRESS = 1u << 0,   /* FLASH_DEFL when the responder has it */
	ESP_WRITE_NO_VERIFY = 1u << 1,  /* skip the final MD5 check */
	/* Compare the device's MD5 with ours first (whole range, then per
	 * 64 KiB block, then per 4 KiB sector where that pays) and send only
	 * what differs; blocks that should be all 0xFF are erased, not sent,
	 * or left alone when already blank.  Needs MD5 (stub or ESP32+ ROM);
	 * otherwise ignored.  An identical image costs one MD5 round trip. */
	ESP_WRITE_SKIP_SAME = 1u << 2,
};
/* Write len bytes at offset, then verify by MD5 unless told not to.
 * offset must be a multiple of 4096 (-EINVAL otherwise): ROM and stubs
 * erase whole sectors, so the rest of the last sector (after len, padded
 * to 4 bytes with 0xFF) is erased too; callers keep partial sectors by
 * read-modify-write.  Handles the ESP8266 ROM erase-size bug as esptool
 * does, which for an odd sector count inside one 64 KiB block still
 * erases one sector more (no erase size avoids that; the stub is exact).
 * A block the device refuses with a checksum error is sent again (3
 * tries); any other failure ends the write with the offset in the error.
 * -EFBIG past the flash end (or past 16 MB through a ROM). */
int esp_loader_write_flash(esp_loader *l, uint32_t offset, const uint8_t *data, size_t len,
			   unsigned flags, esp_progress_fn progress, void *ctx);
/* MD5 of a flash region (ROM: hex reply; stub: raw). -EOPNOTSUPP on ESP8266 ROM. */
int esp_loader_flash_md5(esp_loader *l, uint32_t offset, uint32_t len, uint8_t md5[16]);
/* Can the responder hash flash regions (stub, or a ROM with MD5, outside
 * secure download mode)? */
bool esp_loader_can_md5(const esp_loader *l);
/* Does the flash hold exactly data at offset (one MD5, compared here)?
 * 1 yes, 0 no, <0 error (-EOPNOTSUPP: the responder cannot hash). */
int esp_loader_flash_holds(esp_loader *l, uint32_t offset, const uint8_t *data, uint32_t len);
/* Stub READ_FLASH (4 KiB packets, two in flight, acks, final MD5
 * checked, asked once more on a mismatch; 64 KiB per command, so a cancel
 * waits for at most one such piece) or ROM READ_FLASH_SLOW (ESP32 only;
 * checked by SPI_FLASH_MD5, see esp_loader_can_read); -EOPNOTSUPP on
 * other ROMs: load the stub. */
int esp_loader_read_flash(esp_loader *l, uint32_t offset, uint8_t *buf, size_t len,
			  esp_progress_fn progress, void *ctx);
/* Can the responder read flash (a stub, or a ROM with READ_FLASH_SLOW)?
 * ROM reads are checked by the ROM's MD5 per 4 KiB piece, each piece
 * read up to 3 times before -EIO. */
bool esp_loader_can_read(const esp_loader *l);
/* Stub ERASE_REGION / ERASE_FLASH; ROM: FLASH_BEGIN over the region. */
int esp_loader_erase_region(esp_loader *l, uint32_t offset, uint32_t len);
int esp_loader_erase_all(esp_loader *l);

/* Disarm the RTC and super watchdogs of the ROM (C3, S3, C6, H2); done by
 * esp_loader_detect_chip() itself on a USB-Serial/JTAG port. */
int esp_loader_disable_watchdogs(esp_loader *l);

/* Leave the loader: RTS pulse (hard), or RTC watchdog (USB-OTG chips). */
int esp_loader_hard_reset(esp_loader *l);
int esp_loader_watchdog_reset(esp_loader *l);

/* Lower level, for tests and tools: send one command and wait for its
 * response.  resp_data gets the data before the status bytes. */
int esp_loader_command(esp_loader *l, uint8_t op, const uint8_t *data, size_t len, uint32_t chk,
		       uint32_t timeout_ms, uint32_t *value, uint8_t *resp_data, size_t resp_cap,
		       size_t expect_len);

/* expect_len for esp_loader_command: hand back the whole reply payload
 * (data and status bytes) unchecked; returns its length. */
#define ESP_EXPECT_RAW ((size_t)-1)

/* ROM/stub error code to errno and to words; one place for both.
 * esp_status_to_errno returns a negative errno (0 when s0 is 0). */
int esp_status_to_errno(uint8_t s0, uint8_t s1);
const char *esp_status_text(uint8_t s0, uint8_t s1);

/* Did the last successful esp_loader_write_flash check the result by MD5?
 * false when told not to, or when nothing can (ESP8266 ROM without stub:
 * no MD5 and no read command; esp_loader_error() then says so). */
bool esp_loader_last_write_verified(const esp_loader *l);
/* GET_SECURITY_INFO reported Secure Download Mode. */
bool esp_loader_secure_download(const esp_loader *l);
/* Flash size learnt by esp_loader_flash_id() (0 until then). */
uint32_t esp_loader_flash_size(const esp_loader *l);

/* erase_size word for FLASH_BEGIN to the ESP8266 ROM, which erases too
 * much (PROTOCOL.md A9, esptool's formula). */
uint32_t esp_esp8266_erase_size(uint32_t offset, uint32_t size);
/* Bytes from offset the ESP8266 ROM really erases for a write of size
 * bytes there (with that erase size): one sector more than asked when an
 * odd number of sectors lies inside one 64 KiB block. */
uint32_t esp_esp8266_rom_erases(uint32_t offset, uint32_t size);
/* RFC 4648 base64 (whitespace ignored); returns the decoded length or
 * -EINVAL (bad input) / -ENOSPC (out too small). */
int esp_base64_decode(const char *in, size_t in_len, uint8_t *out, size_t cap);

#endif
