/* Flash write (plain and compressed), MD5 verify, read and erase
 * (PROTOCOL.md A9-A12). */
#include <errno.h>
#include <md5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef ESPFS_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif
#include "espfs/log.h"
#include "loader_priv.h"

/* Stub READ_FLASH (A12): packets of 4096, the most either stub accepts.
 * The in-flight limit is in bytes: the legacy stub sends while fewer
 * than that are unacknowledged, so two packets' worth keeps one packet
 * on the wire while the ack of the previous one travels back and the
 * stub reads the next from flash (esptool's 64 means one packet at a
 * time: the link idles for a round trip per packet).  esp-flasher-stub
 * ignores the value and sends one packet per ack; we accept either. */
#define READ_PACKET 0x1000
#define READ_IN_FLIGHT (2 * READ_PACKET)
/* One READ_FLASH command covers at most this much, so a cancel waits for
 * at most one such piece (the stub cannot be stopped mid-stream). */
#define READ_CHUNK 0x10000
#define ROM_READ_SLOW_MAX 64
/* ROM reads: one MD5 check per piece, and a piece is what a mismatch
 * reads again */
#define ROM_READ_PIECE 0x1000
#define ROM_READ_ATTEMPTS 3
#define ROM_ADDR_LIMIT (16u << 20)
#define WRITE_BLOCK_ATTEMPTS 3   /* as esptool */

static uint8_t *zlib_pack(const uint8_t *in, size_t n, size_t *out_len);

uint32_t esp_esp8266_erase_size(uint32_t offset, uint32_t size)
{
	/* The ESP8266 ROM erases N+H sectors (H = sectors up to the next
	 * 64 KiB boundary) when the area crosses one, else 2N (A9, esptool
	 * issue #33); ask for less so that it erases what we mean. */
	const uint32_t S = ESP_SECTOR, per_block = 16;
	uint32_t n = (uint32_t)(((uint64_t)size + S - 1) / S);
	uint32_t start = offset / S;
	uint32_t head = per_block - start % per_block;
	if (n < head)
		head = n;
	if (n < 2 * head)
		return (n + 1) / 2 * S;
	return (n - head) * S;
}

uint32_t esp_esp8266_rom_erases(uint32_t offset, uint32_t size)
{
	/* what the ROM then does with the erase size asked for (A9): n
	 * sectors plus those up to the next 64 KiB boundary when the area
	 * crosses it, else twice n; so an odd count inside a block takes
	 * the sector after it too */
	const uint32_t S = ESP_SECTOR;
	uint32_t n = esp_esp8266_erase_size(offset, size) / S;
	uint32_t head = 16 - offset / S % 16;
	return (n > head ? n + head : 2 * n) * S;
}

static int check_range(esp_loader *l, const char *what, uint32_t offset, uint64_t len)
{
	if ((uint64_t)offset + len > l->flash_size) {
		esp__err(l, "%s of %llu bytes at 0x%x goes past the end of the %u-byte flash", what,
			 (unsigned long long)len, offset, l->flash_size);
		return -EFBIG;
	}
	return 0;
}

static int report(esp_progress_fn progress, void *ctx, uint64_t done, uint64_t total)
{
	return progress && progress(ctx, done, total) ? -EINTR : 0;
}

/* One data block: header (length, sequence, 0, 0) and payload; the
 * header's checksum field covers the payload only (A4). */
static int send_block(esp_loader *l, uint8_t op, uint32_t seq, const uint8_t *data, size_t n,
		      size_t padded_to, uint8_t *buf)
{
	esp__put32(buf, (uint32_t)padded_to);
	esp__put32(buf + 4, seq);
	esp__put32(buf + 8, 0);
	esp__put32(buf + 12, 0);
	memcpy(buf + 16, data, n);
	if (padded_to > n)
		memset(buf + 16 + n, 0xFF, padded_to - n);
	return esp__send(l, op, buf, 16 + padded_to, esp__checksum(buf + 16, padded_to));
}

/* Measured on the real ESP32 and C3 ROMs (QEMU; tests/conformance): a
 * DATA block refused for its checksum still moves the ROM's expected
 * block number on, but not its write position, so the same block sent
 * again under the same number is refused (01 05) and under the next
 * number lands where it belongs.  FLASH_DATA takes numbers past the
 * count announced in BEGIN; FLASH_DEFL_DATA does not (01 0c), and a
 * larger count in DEFL_BEGIN keeps the ROM from writing the end of the
 * stream, so a compressed session with a refused block is begun again
 * (ESP_ERESTART_SESSION).  A stub keeps its number: it is sent again
 * under the same one, as esptool does. */
#define ESP_ERESTART_SESSION 1000

/* Blocks are sent and acknowledged one by one, and that is already a
 * pipeline: a stub ACKs a block as soon as it has it and programs it while
 * the next one is on the wire.  Sending a further block before that ACK
 * would be a third block at the device, which has two buffers (the legacy
 * stub's UART interrupt fills one while the main loop writes from the
 * other, and switches on every complete frame): the third would land in
 * the buffer still being written.  What is left to win is the idling when
 * a block's flash work outlasts the next block's transfer: see
 * loader_blocks.c. */
static int write_blocks(esp_loader *l, uint8_t op, uint32_t offset, const uint8_t *src, size_t n,
			uint32_t bs, const uint32_t *sizes, bool pad_last, uint64_t raw_total,
			esp_progress_fn progress, void *ctx)
{
	uint8_t *buf = malloc(16 + bs);
	if (!buf)
		return -ENOMEM;
	int rc = 0;
	uint32_t seq = 0, shift = 0;  /* shift: ROM block numbers spent on refused blocks */
	for (size_t pos = 0, chunk; pos < n; pos += chunk, seq++) {
		/* sizes: a plan of shorter blocks (loader_blocks.c), else bs */
		size_t want = sizes ? sizes[seq] : bs;
		chunk = n - pos < want ? n - pos : want;
		size_t padded = pad_last ? bs : chunk;
		/* esptool: 40 s per MB of the block's uncompressed size */
		uint64_t raw = (uint64_t)padded * raw_total / n + 1;
		uint32_t tmo = esp__timeout_per_mb(ESP_TMO_WRITE_PER_MB_MS, raw);
		for (int attempt = 1;; attempt++) {
			slip_reader_flush(&l->rd);
			rc = send_block(l, op, seq + shift, src + pos, chunk, padded, buf);
			if (rc == 0)
				rc = esp__recv(l, op, tmo, NULL, NULL, 0, 0);
			/* Anything but a refusal (no reply, a garbled reply)
			 * leaves open whether the block was taken: not retried. */
			if (rc < 0 && attempt < WRITE_BLOCK_ATTEMPTS && esp__damaged_in_transit(l)) {
				if (!l->stub && op == ESP_FLASH_DEFL_DATA) {
					rc = -ESP_ERESTART_SESSION;
					break;
				}
				if (!l->stub)
					shift++;
				continue;
			}
			break;
		}
		if (rc == -ESP_ERESTART_SESSION)
			break;
		if (rc < 0) {
			esp__err_prefix(l, "flash write failed at 0x%llx (block %u)",
					(unsigned long long)offset + (uint64_t)pos * raw_total / n, seq);
			break;
		}
		uint64_t done = (uint64_t)(pos + chunk) * raw_total / n;
		if ((rc = report(progress, ctx, done, raw_total)) < 0) {
			esp__err(l, "flash write cancelled at 0x%llx", (unsigned long long)offset + done);
			break;
		}
	}
	free(buf);
	return rc;
}

static int finish(esp_loader *l, uint8_t op)
{
	/* Stub only: END(1) ("stay in the loader") proves the last block is
	 * on flash.  The ROM would leave the loader, so it never gets one. */
	if (!l->stub)
		return 0;
	uint8_t p[4];
	esp__put32(p, 1);
	int rc = esp_loader_command(l, op, p, 4, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	if (rc < 0)
		esp__err_prefix(l, "finishing flash write");
	return rc < 0 ? rc : 0;
}

static int write_plain(esp_loader *l, uint32_t offset, const uint8_t *data, size_t len,
		       esp_progress_fn progress, void *ctx)
{
	uint32_t bs = esp__write_block(l);
	uint32_t blocks = (uint32_t)((len + bs - 1) / bs);
	uint32_t erase = (uint32_t)len;
	if (!l->stub && l->chip->id == ESP_CHIP_ESP8266)
		erase = esp_esp8266_erase_size(offset, (uint32_t)len);
	/* the ROM erases the whole area before answering; a stub as it goes */
	uint32_t tmo = l->stub ? ESP_TMO_DEFAULT_MS : esp__timeout_per_mb(ESP_TMO_ERASE_PER_MB_MS, len);
	int rc = esp__flash_begin(l, ESP_FLASH_BEGIN, erase, blocks, bs, offset, tmo);
	if (rc < 0) {
		esp__err_prefix(l, "starting flash write at 0x%x", offset);
		return rc;
	}
	/* The ROM wants whole blocks (last one padded with 0xFF, A9); a stub
	 * takes a short last block, which keeps it inside the declared size. */
	rc = write_blocks(l, ESP_FLASH_DATA, offset, data, len, bs, NULL, !l->stub, len, progress, ctx);
	if (rc < 0)
		return rc;
	return finish(l, ESP_FLASH_END);
}

static int write_defl(esp_loader *l, uint32_t offset, const uint8_t *data, size_t len,
		      const uint8_t *z, size_t zlen, esp_progress_fn progress, void *ctx)
{
	uint32_t bs = esp__write_block(l);
	size_t planned = 0;
	uint32_t *sizes = esp__plan_defl_blocks(l, offset, z, zlen, len, bs, &planned);
	uint32_t blocks = sizes ? (uint32_t)planned : (uint32_t)((zlen + bs - 1) / bs);
	esp__trace(l, "planned", 0, blocks);
	/* A10: the stub wants the exact size, the ROM whole blocks' worth */
	uint32_t size_word = l->stub ? (uint32_t)len : (uint32_t)((len + bs - 1) / bs * bs);
	uint32_t tmo = l->stub ? ESP_TMO_DEFAULT_MS : esp__timeout_per_mb(ESP_TMO_ERASE_PER_MB_MS, size_word);
	(void)data;
	int rc;
	for (int session = 1;; session++) {
		rc = esp__flash_begin(l, ESP_FLASH_DEFL_BEGIN, size_word, blocks, bs, offset, tmo);
		if (rc < 0) {
			esp__err_prefix(l, "starting compressed flash write at 0x%x", offset);
			break;
		}
		rc = write_blocks(l, ESP_FLASH_DEFL_DATA, offset, z, zlen, bs, sizes, false, len,
				  progress, ctx);
		if (rc != -ESP_ERESTART_SESSION)
			break;
		/* a ROM refused a block as damaged: begin the session again */
		if (session == WRITE_BLOCK_ATTEMPTS) {
			esp__err(l, "flash write at 0x%x: blocks damaged on the way %d times",
				 offset, session);
			rc = -EPROTO;
			break;
		}
		esp__trace(l, "restart", 0, session);
	}
	free(sizes);
	if (rc < 0)
		return rc;
	return finish(l, ESP_FLASH_DEFL_END);
}

void esp__md5(const uint8_t *data, size_t len, uint8_t out[16])
{
	MD5_CTX c;
	MD5Init(&c);
	MD5Update(&c, data, len);
	MD5Final(out, &c);
}

static void hex16(const uint8_t m[16], char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", m[i]);
}

/* The ESP32 ROM's FLASH_DEFL, given less than 32 KiB to write, leaves
 * zeros in the flash up to 32 KiB past the start of the write: measured
 * on the real ROM code in QEMU (8 KiB at 0x351000 zeroed 0x353000-
 * 0x359000; 20 KiB at 0x380000 zeroed 0x385000-0x388000; 32, 36 and
 * 40 KiB writes left the flash after them alone; plain FLASH_DATA never
 * did).  Those bytes may hold data; short writes go plain, which costs
 * at most 32 KiB uncompressed. */
#define ESP32_ROM_DEFL_MIN 0x8000u

static bool rom_defl_spills(const esp_loader *l, size_t plen)
{
	return !l->stub && l->chip->id == ESP_CHIP_ESP32 && plen < ESP32_ROM_DEFL_MIN;
}

/* A ROM that stops answering in the middle of a write has lost bytes of
 * a block and waits in its UART receive loop for the rest (seen on the
 * real ESP32-C3 ROM in QEMU, at a different block each time).  A SYNC
 * ends that frame; when the ROM answers it, the range is written once
 * more from its start (its FLASH_BEGIN erases the range again), which is
 * what the user would do.  False (the first error kept) otherwise. */
static bool rom_lost_a_block(esp_loader *l)
{
	char why[sizeof l->err];
	memcpy(why, l->err, sizeof why);
	if (esp_loader_connect(l, ESP_RESET_NONE, 1) == 0 && esp__flash_ready(l) == 0) {
		LOGW("%s: %s; the ROM answers again: writing the range once more", l->t->name, why);
		return true;
	}
	memcpy(l->err, why, sizeof why);
	return false;
}

/* Compressed when asked and possible (plain when that is shorter, as
 * esptool does), no verification: buf holds plen bytes, a multiple of 4. */
int esp__write_range(esp_loader *l, uint32_t offset, const uint8_t *buf, size_t plen, unsigned flags,
		     esp_progress_fn progress, void *ctx)
{
	esp__trace(l, "range", 0, plen);
	uint8_t *z = NULL;
	size_t zlen = 0;
	int rc;
	/* zlib framing, not raw deflate or gzip (A10) */
	if ((flags & ESP_WRITE_COMPRESS) && (l->stub || l->chip->rom_has_defl) && !rom_defl_spills(l, plen))
		z = zlib_pack(buf, plen, &zlen);
	esp__trace(l, "packed", 0, zlen);
	if (z)
		rc = write_defl(l, offset, buf, plen, z, zlen, progress, ctx);
	else
		rc = write_plain(l, offset, buf, plen, progress, ctx);
	if (rc == -ETIMEDOUT && !l->stub && rom_lost_a_block(l))
		rc = z ? write_defl(l, offset, buf, plen, z, zlen, progress, ctx)
		       : write_plain(l, offset, buf, plen, progress, ctx);
	free(z);
	return rc;
}

bool esp_loader_can_md5(const esp_loader *l)
{
	return l->chip && (l->stub || l->chip->rom_has_md5) && !l->secure_download;
}

int esp_loader_flash_holds(esp_loader *l, uint32_t offset, const uint8_t *data, uint32_t len)
{
	if (!esp_loader_can_md5(l))
		return -EOPNOTSUPP;
	uint8_t want[16], got[16];
	esp__md5(data, len, want);
	int rc = esp_loader_flash_md5(l, offset, len, got);
	return rc < 0 ? rc : memcmp(want, got, 16) == 0;
}

int esp_loader_write_flash(esp_loader *l, uint32_t offset, const uint8_t *data, size_t len,
			   unsigned flags, esp_progress_fn progress, void *ctx)
{
	l->last_verified = false;
	if (offset % ESP_SECTOR) {
		/* the ROM and both stubs erase whole sectors from offset down */
		esp__err(l, "flash write offset 0x%x is not a multiple of 4096", offset);
		return -EINVAL;
	}
	if (len > 0x7FFFFFFF) {
		esp__err(l, "flash write of %zu bytes is too large", len);
		return -EFBIG;
	}
	int rc = esp__flash_ready(l);
	if (rc < 0)
		return rc;
	size_t plen = (len + 3) & ~(size_t)3; /* whole words, like esptool */
	if ((rc = check_range(l, "flash write", offset, plen)) < 0)
		return rc;
	if (!l->stub && (uint64_t)offset + plen > ROM_ADDR_LIMIT) {
		/* 24-bit addresses in the ROM: they would wrap (A8) */
		esp__err(l, "the ROM loader cannot write past 16 MB; load the stub first");
		return -EFBIG;
	}
	if (len == 0)
		return 0;
	/* room for the 0xFF tail up to the sector end: the skip-same
	 * comparison covers whole sectors (a write erases them whole) */
	size_t cap = (plen + ESP_SECTOR - 1) & ~(size_t)(ESP_SECTOR - 1);
	uint8_t *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, data, len);
	memset(buf + len, 0xFF, cap - len);

	bool same = false;
	if ((flags & ESP_WRITE_SKIP_SAME) && esp_loader_can_md5(l))
		rc = esp__write_skip_same(l, offset, buf, plen, flags, progress, ctx, &same);
	else
		rc = esp__write_range(l, offset, buf, plen, flags, progress, ctx);

	if (rc == 0 && same) {
		/* the device's MD5 of the whole range matched ours: that is the
		 * verification */
		l->last_verified = true;
	} else if (rc == 0 && !(flags & ESP_WRITE_NO_VERIFY)) {
		if (!l->stub && !l->chip->rom_has_md5) {
			esp__err(l, "written but not verified: the %s ROM has neither MD5 nor read; "
				 "load the stub to verify", l->chip->name);
		} else if (l->secure_download) {
			esp__err(l, "written but not verified: Secure Download Mode forbids MD5");
		} else {
			uint8_t want[16], got[16];
			esp__md5(buf, plen, want);
			rc = esp_loader_flash_md5(l, offset, (uint32_t)plen, got);
			/* the digest travels without a checksum: a flipped bit on
			 * the way back looks like bad flash, so ask once more
			 * before calling it that */
			if (rc == 0 && memcmp(want, got, 16) != 0)
				rc = esp_loader_flash_md5(l, offset, (uint32_t)plen, got);
			if (rc == 0 && memcmp(want, got, 16) != 0) {
				char w[33], g[33];
				hex16(want, w);
				hex16(got, g);
				esp__err(l, "verify failed after writing %zu bytes at 0x%x: flash MD5 %s, expected %s",
					 plen, offset, g, w);
				rc = -EIO;
			} else if (rc == 0) {
				l->last_verified = true;
			} else {
				esp__err_prefix(l, "verifying write at 0x%x", offset);
			}
		}
	}
	free(buf);
	return rc;
}

/* A zlib stream (RFC 1950) of in; NULL when it would not be smaller.
 * libdeflate at level 10 packs ~1.3% tighter than zlib -9, which is 1.3%
 * less time on the wire (levels 11 and 12 gave the same size on 256 KiB
 * pieces of factory images, in 20-40% more time); zlib is the fallback. */
static uint8_t *zlib_pack(const uint8_t *in, size_t n, size_t *out_len)
{
#ifdef ESPFS_HAVE_LIBDEFLATE
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(10);
	if (c) {
		size_t cap = libdeflate_zlib_compress_bound(c, n);
		uint8_t *z = malloc(cap);
		size_t k = z ? libdeflate_zlib_compress(c, in, n, z, cap) : 0;
		libdeflate_free_compressor(c);
		if (k && k < n) {
			*out_len = k;
			return z;
		}
		free(z);
		if (k)
			return NULL;
	}
#endif
	uLongf zlen = compressBound((uLong)n);
	uint8_t *z = malloc(zlen);
	if (!z)
		return NULL;
	if (compress2(z, &zlen, in, (uLong)n, 9) != Z_OK || zlen >= n) {
		free(z);
		return NULL;
	}
	*out_len = zlen;
	return z;
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int esp_loader_flash_md5(esp_loader *l, uint32_t offset, uint32_t len, uint8_t md5[16])
{
	int rc = esp__flash_ready(l);
	if (rc < 0)
		return rc;
	if (!l->stub && !l->chip->rom_has_md5) {
		esp__err(l, "the %s ROM has no MD5 command", l->chip->name);
		return -EOPNOTSUPP;
	}
	if ((rc = check_range(l, "MD5", offset, len)) < 0)
		return rc;
	uint8_t p[16], r[32];
	esp__put32(p, offset);
	esp__put32(p + 4, len);
	esp__put32(p + 8, 0);
	esp__put32(p + 12, 0);
	/* A11: the ROM answers in 32 hex digits, a stub in 16 raw bytes */
	size_t want = l->stub ? 16 : 32;
	rc = esp_loader_command(l, ESP_SPI_FLASH_MD5, p, sizeof p, 0,
				esp__timeout_per_mb(ESP_TMO_MD5_PER_MB_MS, len), NULL, r, sizeof r, want);
	if (rc < 0) {
		esp__err_prefix(l, "MD5 of 0x%x+0x%x", offset, len);
		return rc;
	}
	if (l->stub) {
		memcpy(md5, r, 16);
		return 0;
	}
	for (int i = 0; i < 16; i++) {
		int hi = unhex((char)r[2 * i]), lo = unhex((char)r[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			esp__err(l, "ROM MD5 reply is not hexadecimal");
			return -EPROTO;
		}
		md5[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* A12: reply, then raw data frames each acknowledged with the running
 * byte count, then the MD5 of it all. */
static int read_stub_chunk(esp_loader *l, uint32_t offset, uint8_t *out, uint32_t n)
{
	uint8_t p[16];
	esp__put32(p, offset);
	esp__put32(p + 4, n);
	esp__put32(p + 8, READ_PACKET);
	esp__put32(p + 12, READ_IN_FLIGHT);
	int rc = esp_loader_command(l, ESP_READ_FLASH, p, sizeof p, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	if (rc < 0)
		return rc;
	uint32_t got = 0;
	MD5_CTX c;
	MD5Init(&c);
	while (got < n) {
		rc = slip_read_frame(&l->rd, esp_now_us(l->t->clock) + ESP_TMO_READ_PACKET_MS * 1000ull);
		if (rc < 0) {
			esp__err(l, "flash read stalled after %u of %u bytes at 0x%x: %s", got, n, offset,
				 strerror(-rc));
			return rc;
		}
		if ((uint32_t)rc > n - got || (rc != READ_PACKET && (uint32_t)rc != n - got)) {
			esp__err(l, "flash read: unexpected %d-byte packet after %u of %u bytes", rc, got, n);
			return -EPROTO;
		}
		memcpy(out + got, l->frame, (size_t)rc);
		MD5Update(&c, out + got, (size_t)rc);
		got += (uint32_t)rc;
		uint8_t ack[4];
		esp__put32(ack, got);
		if ((rc = slip_write_frame(l->t, ack, 4)) < 0) {
			esp__err(l, "flash read: cannot acknowledge: %s", strerror(-rc));
			return rc;
		}
	}
	rc = slip_read_frame(&l->rd, esp_now_us(l->t->clock) + ESP_TMO_READ_PACKET_MS * 1000ull);
	if (rc < 0) {
		esp__err(l, "flash read: no MD5 after the data: %s", strerror(-rc));
		return rc;
	}
	uint8_t want[16];
	MD5Final(want, &c);
	if (rc != 16 || memcmp(l->frame, want, 16) != 0) {
		esp__err(l, "flash read of 0x%x+0x%x: data does not match the stub's MD5", offset, n);
		return rc != 16 ? -EPROTO : -EIO;
	}
	return 0;
}

static int read_rom_slow(esp_loader *l, uint32_t offset, uint8_t *out, uint32_t n)
{
	uint8_t p[8], r[ROM_READ_SLOW_MAX];
	for (uint32_t pos = 0; pos < n; pos += ROM_READ_SLOW_MAX) {
		uint32_t k = n - pos < ROM_READ_SLOW_MAX ? n - pos : ROM_READ_SLOW_MAX;
		esp__put32(p, offset + pos);
		esp__put32(p + 4, k);
		/* the reply always carries 64 bytes */
		int rc = esp_loader_command(l, ESP_READ_FLASH_SLOW, p, sizeof p, 0, ESP_TMO_DEFAULT_MS,
					    NULL, r, sizeof r, ROM_READ_SLOW_MAX);
		if (rc < 0)
			return rc;
		memcpy(out + pos, r, k);
	}
	return 0;
}

/* READ_FLASH_SLOW replies carry no checksum and no digest: a bit flipped
 * on the way would be returned, and cached, as the flash's content.  So
 * each piece is checked against the ROM's own SPI_FLASH_MD5 of it (one
 * round trip per 64 reads) and read again when they differ; the MD5
 * travels unprotected too, so a mismatch is not yet a verdict. */
static int read_rom_checked(esp_loader *l, uint32_t offset, uint8_t *out, uint32_t n)
{
	int rc = 0;
	for (int attempt = 1; attempt <= ROM_READ_ATTEMPTS; attempt++) {
		rc = read_rom_slow(l, offset, out, n);
		if (rc == 0) {
			uint8_t want[16], got[16];
			rc = esp_loader_flash_md5(l, offset, n, got);
			esp__md5(out, n, want);
			if (rc == 0 && memcmp(want, got, 16) == 0)
				return 0;
			if (rc == 0) {
				esp__err(l, "flash read of 0x%x+0x%x: the data does not match the ROM's MD5 "
					 "(%d attempts)", offset, n, attempt);
				rc = -EIO;
			}
		}
		/* damage on the way (a mismatch, a garbled or lost reply, or
		 * the ROM's 01 05 "invalid message" for a request that lost
		 * bytes: it knows both commands) is worth another try; a port
		 * that is gone is not */
		if (rc != -EIO && rc != -EPROTO && rc != -ETIMEDOUT && rc != -EOPNOTSUPP)
			return rc;
		esp__trace(l, "reread", 0, offset);
	}
	return rc;
}

bool esp_loader_can_read(const esp_loader *l)
{
	return l->chip && (l->stub || l->chip->rom_has_read_slow);
}

int esp_loader_read_flash(esp_loader *l, uint32_t offset, uint8_t *buf, size_t len,
			  esp_progress_fn progress, void *ctx)
{
	int rc = esp__flash_ready(l);
	if (rc < 0)
		return rc;
	if ((rc = check_range(l, "flash read", offset, len)) < 0)
		return rc;
	if (!esp_loader_can_read(l)) {
		esp__err(l, "the %s ROM cannot read flash; load the stub first", l->chip->name);
		return -EOPNOTSUPP;
	}
	/* ROM reads are slow (64 B per round trip): report more often */
	size_t chunk = l->stub ? READ_CHUNK : ROM_READ_PIECE;
	for (size_t pos = 0; pos < len; pos += chunk) {
		uint32_t n = (uint32_t)(len - pos < chunk ? len - pos : chunk);
		uint32_t at = offset + (uint32_t)pos;
		if (l->stub) {
			rc = read_stub_chunk(l, at, buf + pos, n);
			/* a digest mismatch ends the stream cleanly: ask again once */
			if (rc == -EIO)
				rc = read_stub_chunk(l, at, buf + pos, n);
		} else if (esp_loader_can_md5(l)) {
			rc = read_rom_checked(l, at, buf + pos, n);
		} else {
			/* a ROM that reads but cannot hash: no such chip today */
			esp__err(l, "the %s ROM cannot check what it reads; load the stub first",
				 l->chip->name);
			rc = -EOPNOTSUPP;
		}
		if (rc < 0) {
			esp__err_prefix(l, "reading flash at 0x%x", at);
			return rc;
		}
		if ((rc = report(progress, ctx, pos + n, len)) < 0) {
			esp__err(l, "flash read cancelled at 0x%x", at + n);
			return rc;
		}
	}
	return 0;
}

int esp_loader_erase_region(esp_loader *l, uint32_t offset, uint32_t len)
{
	if (offset % ESP_SECTOR || len % ESP_SECTOR) {
		esp__err(l, "erase region 0x%x+0x%x is not sector (4096) aligned", offset, len);
		return -EINVAL;
	}
	int rc = esp__flash_ready(l);
	if (rc < 0)
		return rc;
	if ((rc = check_range(l, "erase", offset, len)) < 0)
		return rc;
	if (len == 0)
		return 0;
	uint32_t tmo = esp__timeout_per_mb(ESP_TMO_ERASE_PER_MB_MS, len);
	if (l->stub) {
		uint8_t p[8];
		esp__put32(p, offset);
		esp__put32(p + 4, len);
		rc = esp_loader_command(l, ESP_ERASE_REGION, p, sizeof p, 0, tmo, NULL, NULL, 0, 0);
	} else {
		/* The ROM has no erase command, but FLASH_BEGIN erases the area
		 * up front; no data and no FLASH_END follow (A9). */
		uint32_t erase = l->chip->id == ESP_CHIP_ESP8266 ? esp_esp8266_erase_size(offset, len) : len;
		uint32_t blocks = (len + ESP_ROM_WRITE_BLOCK - 1) / ESP_ROM_WRITE_BLOCK;
		rc = esp__flash_begin(l, ESP_FLASH_BEGIN, erase, blocks, ESP_ROM_WRITE_BLOCK, offset, tmo);
	}
	if (rc < 0)
		esp__err_prefix(l, "erasing 0x%x+0x%x", offset, len);
	return rc < 0 ? rc : 0;
}

int esp_loader_erase_all(esp_loader *l)
{
	int rc = esp__flash_ready(l);
	if (rc < 0)
		return rc;
	if (!l->stub)
		return esp_loader_erase_region(l, 0, l->flash_size);
	rc = esp_loader_command(l, ESP_ERASE_FLASH, NULL, 0, 0, ESP_TMO_CHIP_ERASE_MS, NULL, NULL, 0, 0);
	if (rc < 0)
		esp__err_prefix(l, "erasing the whole flash");
	return rc < 0 ? rc : 0;
}
