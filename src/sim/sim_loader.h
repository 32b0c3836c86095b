/* Shared by the loader files (loader*.c): opcodes, error codes and the
 * reply helpers of the ROM loader / stub model. */
#ifndef ESPSIM_LOADER_H
#define ESPSIM_LOADER_H
#include "sim_priv.h"

enum {
	OP_FLASH_BEGIN = 0x02, OP_FLASH_DATA, OP_FLASH_END, OP_MEM_BEGIN, OP_MEM_END, OP_MEM_DATA,
	OP_SYNC, OP_WRITE_REG, OP_READ_REG, OP_SPI_SET_PARAMS, OP_SPI_ATTACH = 0x0D,
	OP_READ_FLASH_SLOW, OP_CHANGE_BAUD, OP_DEFL_BEGIN, OP_DEFL_DATA, OP_DEFL_END,
	OP_MD5, OP_SECURITY_INFO,
	OP_ERASE_FLASH = 0xD0, OP_ERASE_REGION, OP_READ_FLASH, OP_RUN_USER_CODE,
};

/* ROM error codes (byte 1 after 0x01) */
enum {
	ROM_BAD_PARAM = 0x01, ROM_INVALID_MSG = 0x05, ROM_RESULT_WRONG = 0x06, ROM_BAD_CHECKSUM = 0x07,
	ROM_FLASH_WRITE_ERR = 0x08, ROM_FLASH_READ_ERR = 0x09, ROM_READ_LEN_ERR = 0x0A,
	ROM_INFLATE_ERR = 0x0B, ROM_ADLER_ERR = 0x0C, ROM_RAM_SIZE = 0x0E, ROM_RAM_ADDR = 0x0F,
};
/* Stub error codes (byte 0) */
enum {
	STUB_BAD_LEN = 0xC0, STUB_BAD_CHECKSUM = 0xC1, STUB_BAD_BLOCKSIZE = 0xC2, STUB_INVALID_CMD = 0xC3,
	STUB_SPI_FAIL = 0xC4, STUB_NOT_IN_FLASH = 0xC6, STUB_INFLATE = 0xC7, STUB_NOT_ENOUGH = 0xC8,
	STUB_TOO_MUCH = 0xC9, STUB_NOT_IMPL = 0xFF,
};

#define ROM_DEFAULT_SPI_SIZE (2u << 20)
#define ZBUF_SIZE 65536

static inline uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static inline void put32(uint8_t *p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }

/* XOR checksum of DATA payloads, seed 0xEF (PROTOCOL.md A4) */
static inline uint8_t xor_sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0xEF;
	for (size_t i = 0; i < n; i++)
		s ^= p[i];
	return s;
}

/* a command starts when it has arrived and the device is free */
static inline uint64_t start_time(sim_device *d, uint64_t t)
{
	return t > d->busy_ns ? t : d->busy_ns;
}

static inline bool range_ok(uint32_t limit, uint32_t off, uint64_t len)
{
	return off <= limit && len <= limit - off;
}

/* Replies with the responder's status bytes (ROM: chip's count; stub: 2). */
void sim_ld_ok(sim_device *d, uint8_t op, uint32_t value, const uint8_t *data, size_t n, uint64_t t);
/* code: ROM error code for the ROM, stub error code for the stub */
void sim_ld_fail(sim_device *d, uint8_t op, uint8_t code, uint64_t t);
void sim_ld_fail2(sim_device *d, uint8_t op, uint8_t rom, uint8_t stub, uint64_t t);
void sim_ld_unsupported(sim_device *d, uint8_t op, uint64_t t);
/* ESP32-family ROM: a failure whose reply still carries n bytes of the
 * reply buffer as they are (READ_FLASH_SLOW) */
void sim_ld_rom_fail_data(sim_device *d, uint8_t op, size_t n, uint8_t code, uint64_t t);
/* ESP32-family ROM sequence check of a DATA block; true: answered */
bool sim_ld_rom_seq(sim_device *d, bool active, uint32_t *next, uint32_t seq, uint8_t op, uint64_t t);
/* bytes of flash the responder can address now */
uint32_t sim_ld_spi_limit(sim_device *d);

/* loader_flash.c */
void sim_ld_flash_begin(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint64_t t);
void sim_ld_flash_data(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint32_t csum, uint64_t t);
void sim_ld_flash_end(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint64_t t);
void sim_ld_erase_cmd(sim_device *d, uint8_t op, const uint8_t *p, size_t n, uint64_t t);
/* loader_mem.c */
void sim_ld_mem_begin(sim_device *d, const uint8_t *p, size_t n, uint64_t t);
void sim_ld_mem_data(sim_device *d, const uint8_t *p, size_t n, uint32_t csum, uint64_t t);
void sim_ld_mem_end(sim_device *d, const uint8_t *p, size_t n, uint64_t t);
/* loader_read.c */
void sim_ld_md5_cmd(sim_device *d, const uint8_t *p, size_t n, uint64_t t);
void sim_ld_read_flash_slow(sim_device *d, const uint8_t *p, size_t n, uint64_t t);
void sim_ld_read_flash(sim_device *d, const uint8_t *p, size_t n, uint64_t t);
void sim_ld_read_flash_pump(sim_device *d, uint64_t t);

#endif
