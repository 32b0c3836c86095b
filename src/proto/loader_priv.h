/* Internals shared by loader.c, loader_flash.c and stub.c (not installed). */
#ifndef ESPFS_LOADER_PRIV_H
#define ESPFS_LOADER_PRIV_H
#include <stdarg.h>
#include "espfs/loader.h"
#include "espfs/slip.h"

/* Room for a stub READ_FLASH packet (4096) or the biggest reply. */
#define ESP_FRAME_CAP (8192 + 64)

/* Timeouts (PROTOCOL.md A5, esptool values). */
#define ESP_TMO_DEFAULT_MS 3000u
#define ESP_TMO_SYNC_MS 100u
#define ESP_TMO_CHIP_ERASE_MS 120000u
#define ESP_TMO_ERASE_PER_MB_MS 30000u   /* ROM FLASH_BEGIN and stub ERASE_REGION */
#define ESP_TMO_WRITE_PER_MB_MS 40000u   /* per data block, uncompressed size */
#define ESP_TMO_MD5_PER_MB_MS 8000u
#define ESP_TMO_MEM_END_MS 200u
#define ESP_TMO_READ_PACKET_MS 3000u

struct esp_loader {
	esp_transport *t;
	slip_reader rd;
	uint8_t frame[ESP_FRAME_CAP];
	const struct esp_chip_info *chip;
	bool stub;
	bool synced;
	bool attached;            /* SPI flash attached (ROM needs it explicitly) */
	bool params_set;          /* SPI_SET_PARAMS sent with flash_size */
	bool secure_download;     /* GET_SECURITY_INFO said so */
	bool last_verified;       /* last write was checked by MD5 */
	bool probe_differed;      /* skip-same: the last range probed held other data */
	bool send_stalled;        /* the last send timed out: nothing reads the port */
	uint32_t turnaround_us;   /* least port latency seen in a round trip; 0 unknown */
	uint8_t last_status[2];   /* status bytes of the last failure reply; 0 0 else */
	uint32_t flash_size;      /* 0 until known */
	uint32_t jedec;
	uint64_t rom_clk_num, rom_clk_den; /* ESP32 ROM baud correction (A14); 0 unknown */
	uint32_t baud_cap;        /* lowest rate known to garble on this port; 0 none */
	esp_stub kept_stub;       /* copy of the last stub started; text NULL: none */
	char err[256];
};

void esp__err(esp_loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like esp__err, but keeps the existing message as the reason:
 * "<prefix>: <old message>". */
void esp__err_prefix(esp_loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline void esp__put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t esp__get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
uint8_t esp__checksum(const uint8_t *data, size_t len);
/* Timeout for an operation scaled per MB (10^6 bytes), never below 3 s. */
uint32_t esp__timeout_per_mb(uint32_t ms_per_mb, uint64_t bytes);

/* The two halves of a command, kept apart so a writer can have a block in
 * flight while the device works on the previous one. */
int esp__send(esp_loader *l, uint8_t op, const uint8_t *data, size_t len, uint32_t chk);
int esp__recv(esp_loader *l, uint8_t op, uint32_t timeout_ms, uint32_t *value,
	      uint8_t *resp_data, size_t resp_cap, size_t expect_len);

#define ESP_ESPRESSIF_VID 0x303A
#define ESP_USB_JTAG_SERIAL_PID 0x1001
#define ESP32_EFUSE_WORD4 0x3FF5A010u   /* low byte: 8 MHz clock calibration */
#define ESP32_RTC_CALI_REG 0x3FF5F06Cu  /* RTC calibration value, bits 7..31 */

/* ESPFS_TRACE=1: a timeline line on stderr (what, opcode, byte count). */
void esp__trace(const esp_loader *l, const char *what, uint8_t op, size_t len);
const char *esp__who(const esp_loader *l);     /* "ROM" or "stub", for messages */
/* The last failure reply says the packet was damaged on the way (so the
 * device did not use it and it may be sent again). */
bool esp__damaged_in_transit(const esp_loader *l);
bool esp__is_usb_jtag(const esp_transport *t);
/* Detect the chip unless known. */
int esp__need_chip(esp_loader *l);
/* WRITE_REG of a whole word, no delay. */
int esp__wreg(esp_loader *l, uint32_t addr, uint32_t val);

/* Attach SPI flash, learn its size and tell the ROM/stub (once). */
int esp__flash_ready(esp_loader *l);
/* Block size for flash writes and RAM uploads on this link. */
uint32_t esp__write_block(const esp_loader *l);
uint32_t esp__ram_block(const esp_loader *l);

/* CHANGE_BAUDRATE's first word for a wanted rate (ESP32 ROM clock fix). */
uint32_t esp__baud_word(esp_loader *l, uint32_t baud);

/* FLASH_BEGIN / FLASH_DEFL_BEGIN with the 16- vs 20-byte rule (A3). */
int esp__flash_begin(esp_loader *l, uint8_t op, uint32_t size_word, uint32_t blocks,
		     uint32_t block_size, uint32_t offset, uint32_t timeout_ms);

/* Write plen bytes (a multiple of 4) at a sector-aligned offset: deflate
 * when flags ask and the responder has it, else plain; no verification. */
int esp__write_range(esp_loader *l, uint32_t offset, const uint8_t *buf, size_t plen, unsigned flags,
		     esp_progress_fn progress, void *ctx);
/* ESP_WRITE_SKIP_SAME (loader_skip.c).  buf holds plen bytes and 0xFF up
 * to the next sector boundary.  *same: the whole range already matched. */
int esp__write_skip_same(esp_loader *l, uint32_t offset, const uint8_t *buf, size_t plen, unsigned flags,
			 esp_progress_fn progress, void *ctx, bool *same);
void esp__keep_stub(esp_loader *l, const esp_stub *stub);
/* Compressed block sizes for a stub write that keep the link busy while
 * the flash erases (loader_blocks.c); NULL: fixed blocks of bs. */
uint32_t *esp__plan_defl_blocks(const esp_loader *l, uint32_t offset, const uint8_t *z, size_t zlen,
				size_t raw_len, uint32_t bs, size_t *nblocks);
void esp__md5(const uint8_t *data, size_t len, uint8_t out[16]);

#endif
