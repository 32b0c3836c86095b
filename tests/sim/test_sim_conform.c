/* What the genuine ESP32 and ESP32-C3 ROMs do, as measured against QEMU
 * by tests/conformance (the byte sequences below are the ROM's replies
 * from those runs), checked here on the simulator without QEMU so the
 * suite keeps them even where ../shared is absent.  Also the chip facts
 * esptool reads: revision eFuse words, MAC CRC / MAC_EXT. */
#include <md5.h>
#include <stdio.h>
#include <string.h>
#include "t.h"
#include "simtest.h"

static int open_mac(struct st *s, const char *chip, const char *mac)
{
	uint8_t m[6];
	unsigned b[6];
	sscanf(mac, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]);
	for (int i = 0; i < 6; i++)
		m[i] = (uint8_t)b[i];
	struct sim_config cfg = { .chip = chip, .mac = m };
	return st_open_cfg(s, &cfg);
}

static void send_block(struct st *s, uint8_t op, uint32_t seq, const uint8_t *blk, uint32_t len, uint8_t xor_flip)
{
	uint8_t p[16 + 1024];
	st_put32(p, len);
	st_put32(p + 4, seq);
	memset(p + 8, 0, 8);
	memcpy(p + 16, blk, len);
	st_check(s, op, p, 16 + len, st_xor(blk, len) ^ xor_flip, 1000);
}

/* Reply bytes 8..11 of the last frame: the ROM's four status bytes. */
static uint32_t status4(struct st *s, size_t data_len)
{
	return st_le32(s->dec.buf + 8 + data_len);
}

/* The ROM builds replies in one buffer: the two "reserved" status bytes
 * are what an earlier, longer reply left there, and the error byte is
 * sticky where the command does not clear it. */
static void rom_reply_buffer_and_sticky_error(void)
{
	struct st s;
	if (open_mac(&s, "esp32", "24:0a:c4:12:34:56") < 0) {
		CHECK(0);
		return;
	}
	CHECK_EQ(st_sync(&s, NULL), 0);
	uint32_t att[2] = { 0, 0 };
	CHECK_EQ(st_words(&s, 0x0D, att, 2, 200), 4);
	uint32_t md5[4] = { 0x10000, 0x800, 0, 0 };
	CHECK_EQ(st_words(&s, 0x13, md5, 4, 1000), 32 + 4);
	char hex[4] = { (char)s.dec.buf[8], (char)s.dec.buf[9], (char)s.dec.buf[10], (char)s.dec.buf[11] };
	CHECK_EQ(status4(&s, 32), 0);
	/* SYNC: 01 08 04 00 07 07 12 20 00 00 <hex[2]> <hex[3]> */
	st_cmd(&s, 0x08, st_sync_data, sizeof st_sync_data, 0);
	for (int i = 0; i < 8; i++) {
		CHECK_EQ(st_resp(&s, 200), 12);
		CHECK(s.dec.buf[8] == 0 && s.dec.buf[9] == 0);
		CHECK(s.dec.buf[10] == (uint8_t)hex[2] && s.dec.buf[11] == (uint8_t)hex[3]);
	}
	/* a failure sets the error byte; SPI_SET_PARAMS and FLASH_BEGIN keep
	 * it (00 07), SPI_ATTACH and READ_REG clear it */
	uint32_t begin[4] = { 0x1000, 1, 0x400, 0x20000 };
	CHECK_EQ(st_words(&s, 0x02, begin, 4, 1000), 4);
	uint8_t blk[1024];
	memset(blk, 0x3C, sizeof blk);
	send_block(&s, 0x03, 0, blk, sizeof blk, 1);
	CHECK(s.dec.buf[8] == 1 && s.dec.buf[9] == 0x07);
	uint32_t params[6] = { 0, 4u << 20, 0x10000, 0x1000, 0x100, 0xFFFF };
	CHECK_EQ(st_words(&s, 0x0B, params, 6, 200), 4);
	CHECK(s.dec.buf[8] == 0 && s.dec.buf[9] == 0x07);
	CHECK_EQ(st_words(&s, 0x02, begin, 4, 1000), 4);
	CHECK(s.dec.buf[8] == 0 && s.dec.buf[9] == 0x07);
	CHECK_EQ(st_words(&s, 0x0D, att, 2, 200), 4);
	CHECK(s.dec.buf[8] == 0 && s.dec.buf[9] == 0);
	st_close(&s);
}

/* FLASH_DATA / MEM_DATA numbering on the ROM: a wrong number fails with
 * 05 before the checksum is looked at; the expected number moves on even
 * when the checksum then fails, so the same block resent fails; data go
 * to a running position.  Measured on both ROMs. */
static void rom_data_sequence_rule(void)
{
	struct st s;
	if (st_open(&s, "esp32c3") < 0) {
		CHECK(0);
		return;
	}
	uint32_t att[2] = { 0, 0 };
	st_words(&s, 0x0D, att, 2, 200);
	uint32_t begin[5] = { 0x2000, 2, 0x400, 0x10000, 0 };
	CHECK_EQ(st_words(&s, 0x02, begin, 5, 1000), 4);
	uint8_t blk[1024];
	for (int i = 0; i < 1024; i++)
		blk[i] = (uint8_t)i;
	send_block(&s, 0x03, 5, blk, sizeof blk, 1);    /* wrong number and checksum */
	CHECK(s.dec.buf[8] == 1 && s.dec.buf[9] == 0x05);
	send_block(&s, 0x03, 1, blk, sizeof blk, 0);    /* out of order */
	CHECK(s.dec.buf[8] == 1 && s.dec.buf[9] == 0x05);
	send_block(&s, 0x03, 0, blk, sizeof blk, 1);    /* bad checksum: 0 is used up */
	CHECK(s.dec.buf[8] == 1 && s.dec.buf[9] == 0x07);
	send_block(&s, 0x03, 0, blk, sizeof blk, 0);
	CHECK(s.dec.buf[8] == 1 && s.dec.buf[9] == 0x05);
	send_block(&s, 0x03, 1, blk, sizeof blk, 0);
	CHECK(s.dec.buf[8] == 0 && s.dec.buf[9] == 0x05);
	send_block(&s, 0x03, 2, blk, sizeof blk, 0);    /* past the announced count */
	CHECK(s.dec.buf[8] == 0 && s.dec.buf[9] == 0x05);
	/* block 1 landed at 0x10000, block 2 right after it */
	uint32_t md5[4] = { 0x10000, 0x800, 0, 0 };
	CHECK_EQ(st_words(&s, 0x13, md5, 4, 1000), 32 + 4);
	CHECK_MEM(s.dec.buf + 8, "1576a94d6cb334dd126cb1c27f19e0f2", 32);
	/* MEM_DATA follows the same rule */
	uint32_t mb[4] = { 64, 1, 64, 0x3FC90000 };
	CHECK_EQ(st_words(&s, 0x05, mb, 4, 200), 4);
	uint8_t zero[64] = { 0 };
	send_block(&s, 0x07, 0, zero, 64, 0xFD);
	CHECK(s.dec.buf[8] == 1 && s.dec.buf[9] == 0x07);
	send_block(&s, 0x07, 1, zero, 64, 0);
	CHECK(s.dec.buf[8] == 0 && s.dec.buf[9] == 0x07);
	send_block(&s, 0x07, 0, zero, 64, 0);
	CHECK(s.dec.buf[8] == 1 && s.dec.buf[9] == 0x05);
	st_close(&s);
}

struct rev { const char *chip; unsigned major, minor; };

/* esptool's get_major/minor_chip_version for each target, applied to
 * what the simulator answers; the app's boot log must say the same. */
static void revision_from_efuse_words(void)
{
	static const struct rev want[] = {
		{ "esp32", 3, 0 }, { "esp32s2", 1, 0 }, { "esp32s3", 0, 2 },
		{ "esp32c3", 0, 3 }, { "esp32c6", 0, 1 },
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		struct st s;
		if (st_open(&s, want[i].chip) < 0) {
			CHECK(0);
			continue;
		}
		unsigned major, minor;
		if (!strcmp(want[i].chip, "esp32")) {
			uint32_t w3 = st_read_reg(&s, 0x3FF5A00C), w5 = st_read_reg(&s, 0x3FF5A014);
			uint32_t date = st_read_reg(&s, 0x3FF6607C);
			unsigned bits = ((w3 >> 15) & 1) | ((w5 >> 20) & 1) << 1 | (date >> 31) << 2;
			major = bits == 7 ? 3 : bits == 3 ? 2 : bits == 1 ? 1 : 0;
			minor = (w5 >> 24) & 3;
			CHECK_EQ(date, 0x96042000u);   /* QEMU's ESP32 reads this */
		} else if (!strcmp(want[i].chip, "esp32s2")) {
			uint32_t w3 = st_read_reg(&s, 0x3F41A044 + 12), w4 = st_read_reg(&s, 0x3F41A044 + 16);
			major = (w3 >> 18) & 3;
			minor = ((w3 >> 20) & 1) << 3 | ((w4 >> 4) & 7);
		} else {
			uint32_t blk1 = !strcmp(want[i].chip, "esp32s3") ? 0x60007044 :
					!strcmp(want[i].chip, "esp32c3") ? 0x60008844 : 0x600B0844;
			uint32_t w3 = st_read_reg(&s, blk1 + 12), w5 = st_read_reg(&s, blk1 + 20);
			major = (w5 >> 24) & 3;
			minor = ((w5 >> 23) & 1) << 3 | ((w3 >> 18) & 7);
		}
		printf("# %s: v%u.%u\n", want[i].chip, major, minor);
		CHECK_EQ(major, want[i].major);
		CHECK_EQ(minor, want[i].minor);
		st_close(&s);
	}
}

/* ESP32 MAC word 2 carries the eFuse CRC-8 (QEMU's eFuse file: 0xF5 for
 * this MAC); the C6's carries MAC_EXT ff:fe. */
static void mac_words_carry_crc_and_mac_ext(void)
{
	struct st s;
	if (open_mac(&s, "esp32", "24:0a:c4:12:34:56") < 0) {
		CHECK(0);
		return;
	}
	CHECK_EQ(st_read_reg(&s, 0x3FF5A004), 0xC4123456u);
	CHECK_EQ(st_read_reg(&s, 0x3FF5A008), 0x00F5240Au);
	st_close(&s);
	if (open_mac(&s, "esp32c6", "40:4c:ca:01:02:03") < 0) {
		CHECK(0);
		return;
	}
	uint32_t m1 = st_read_reg(&s, 0x600B0848);
	CHECK_EQ(m1 & 0xFFFF, 0x404Cu);
	CHECK_EQ(m1 >> 16, 0xFFFEu);                   /* esptool: MAC_EXT ff:fe */
	st_close(&s);
}

/* C3 GET_SECURITY_INFO as the genuine ROM sends it (after a SYNC):
 * 7th key-purpose byte 0x0C, chip id 5, eco version 3. */
static void c3_security_info_bytes(void)
{
	struct st s;
	if (st_open(&s, "esp32c3") < 0) {
		CHECK(0);
		return;
	}
	CHECK_EQ(st_sync(&s, NULL), 0);
	static const uint8_t want[8 + 24] = {
		0x01, 0x14, 0x18, 0x00, 0x07, 0x07, 0x12, 0x20,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c,
		0x05, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };
	CHECK_EQ(st_check(&s, 0x14, NULL, 0, 0, 200), 24);
	CHECK_MEM(s.dec.buf, want, sizeof want);
	st_close(&s);
}

/* An unknown command makes the ROM send its previous reply again, as
 * many copies as it had, status 01 05 at the start of the buffer, no
 * data (measured; before: one frame with opcode 0). */
static void rom_repeats_last_reply_on_unknown_command(void)
{
	static const char *chips[] = { "esp32", "esp32c3" };
	for (size_t c = 0; c < 2; c++) {
		struct st s;
		if (st_open(&s, chips[c]) < 0) {
			CHECK(0);
			continue;
		}
		/* before any reply: one frame, opcode 0 */
		st_cmd(&s, 0x55, NULL, 0, 0);
		static const uint8_t first[12] = { 1, 0, 4, 0, 0, 0, 0, 0, 1, 5, 0, 0 };
		CHECK_EQ(st_resp(&s, 200), 12);
		CHECK_MEM(s.dec.buf, first, 12);
		CHECK_EQ(st_resp(&s, 300), -ETIMEDOUT);
		CHECK_EQ(st_sync(&s, NULL), 0);
		static const uint8_t after_sync[12] = { 1, 8, 4, 0, 7, 7, 0x12, 0x20, 1, 5, 0, 0 };
		st_cmd(&s, 0x55, NULL, 0, 0);
		for (int i = 0; i < 8; i++) {
			CHECK_EQ(st_resp(&s, 200), 12);
			CHECK_MEM(s.dec.buf, after_sync, 12);
		}
		CHECK_EQ(st_resp(&s, 300), -ETIMEDOUT);
		uint32_t magic = st_read_reg(&s, 0x40001000);
		st_cmd(&s, 0xD0, NULL, 0, 0);
		CHECK_EQ(st_resp(&s, 200), 12);
		CHECK(s.dec.buf[1] == 0x0A && st_le32(s.dec.buf + 4) == magic);
		CHECK(s.dec.buf[8] == 1 && s.dec.buf[9] == 5);
		CHECK_EQ(st_resp(&s, 300), -ETIMEDOUT);
		/* after an MD5 reply: its opcode, size 4, stale bytes '7' '6' */
		uint32_t att[2] = { 0, 0 };
		st_words(&s, 0x0D, att, 2, 200);
		uint32_t md5[4] = { 0, 0x800, 0, 0 };
		CHECK_EQ(st_words(&s, 0x13, md5, 4, 1000), 36);
		uint8_t h2 = s.dec.buf[10], h3 = s.dec.buf[11];
		st_cmd(&s, 0x55, NULL, 0, 0);
		CHECK_EQ(st_resp(&s, 200), 12);
		CHECK(s.dec.buf[1] == 0x13 && s.dec.buf[2] == 4);
		CHECK(s.dec.buf[8] == 1 && s.dec.buf[9] == 5 && s.dec.buf[10] == h2 && s.dec.buf[11] == h3);
		st_close(&s);
	}
}

int main(void)
{
	RUN(rom_repeats_last_reply_on_unknown_command);
	RUN(rom_reply_buffer_and_sticky_error);
	RUN(rom_data_sequence_rule);
	RUN(revision_from_efuse_words);
	RUN(mac_words_carry_crc_and_mac_ext);
	RUN(c3_security_info_bytes);
	return t_done();
}
