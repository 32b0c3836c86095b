/* Stub flasher mode: upload (synthetic and the real stub JSON files of
 * esptool-js 0.7.0 and esp-web-flasher 5.1.5), OHAI, stub status bytes and
 * commands, READ_FLASH flow control, stub error codes, ACK pipelining
 * (PROTOCOL.md A2, A3, A9-A13). */
#include <cjson/cJSON.h>
#include <md5.h>
#include <zlib.h>
#include "t.h"
#include "simtest.h"

#define RAM_BLOCK 0x1800

static int upload(struct st *s, uint32_t addr, const uint8_t *data, uint32_t len)
{
	uint32_t blocks = (len + RAM_BLOCK - 1) / RAM_BLOCK;
	uint32_t b[4] = { len, blocks, RAM_BLOCK, addr };
	if (st_words(s, 0x05, b, 4, 500) < 2 || st_status(s, 0) != 0)
		return -1;
	for (uint32_t k = 0; k < blocks; k++) {
		uint32_t n = len - k * RAM_BLOCK < RAM_BLOCK ? len - k * RAM_BLOCK : RAM_BLOCK;
		if (st_data(s, 0x07, k, data + k * RAM_BLOCK, n, 500) < 2 || st_status(s, 0) != 0)
			return -1;
	}
	return 0;
}

/* MEM_END(entry) then the raw "OHAI" frame. */
static int start_stub(struct st *s, uint32_t entry)
{
	uint32_t e[2] = { 0, entry };
	if (st_words(s, 0x06, e, 2, 500) < 2)
		return -1;
	int n = st_frame(s, 3000);
	if (n != 4 || memcmp(s->dec.buf, "OHAI", 4) != 0)
		return -1;
	return 0;
}

static int open_stub(struct st *s, const char *chip, bool timing, bool native)
{
	struct sim_config cfg = { .chip = chip, .timing = timing, .native_usb = native };
	if (st_open_cfg(s, &cfg) < 0)
		return -1;
	uint8_t text[300];
	for (size_t i = 0; i < sizeof text; i++)
		text[i] = (uint8_t)i;
	if (upload(s, 0x40090000, text, sizeof text) < 0)
		return -1;
	return start_stub(s, 0x40090004);
}

/* A stub started at `entry` (code uploaded around it). */
static int open_stub_at(struct st *s, const char *chip, uint32_t entry)
{
	struct sim_config cfg = { .chip = chip };
	if (st_open_cfg(s, &cfg) < 0)
		return -1;
	uint8_t text[300];
	for (size_t i = 0; i < sizeof text; i++)
		text[i] = (uint8_t)i;
	if (upload(s, entry - 0x80, text, sizeof text) < 0)
		return -1;
	return start_stub(s, entry);
}

/* RUN_USER_CODE and FLASH_END(0) per stub flavour (PROTOCOL.md A3): the
 * legacy stub (known by the entry point of esp-web-flasher 5.1.5's
 * image) resets into the firmware / back into the ROM; esp-flasher-stub
 * ignores the first and never reboots on the second. */
static void stub_flavours_run_and_reboot(void)
{
	static const struct { const char *chip; uint32_t entry; bool legacy; } cases[] = {
		{ "esp32", 0x400BE5AC, true }, { "esp32c3", 0x40380670, true },
		{ "esp32", 0x400A902C, false }, { "esp32c3", 0x40380E9A, false },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct st s;
		printf("# %s entry 0x%08x (%s)\n", cases[i].chip, cases[i].entry, cases[i].legacy ? "legacy" : "new");
		CHECK_EQ(open_stub_at(&s, cases[i].chip, cases[i].entry), 0);
		CHECK(sim_get_mode(s.d) == SIM_MODE_STUB);
		st_cmd(&s, 0xD3, NULL, 0, 0);          /* RUN_USER_CODE: no reply */
		uint8_t buf[2048];
		st_drain_raw(&s, buf, sizeof buf, 300);
		CHECK_EQ(sim_get_mode(s.d) == SIM_MODE_STUB, !cases[i].legacy);
		st_close(&s);

		CHECK_EQ(open_stub_at(&s, cases[i].chip, cases[i].entry), 0);
		uint32_t begin[4] = { 0, 0, 0x400, 0 };
		CHECK_EQ(st_words(&s, 0x02, begin, 4, 500), 2);
		uint32_t end[1] = { 0 };
		CHECK_EQ(st_words(&s, 0x04, end, 1, 500), 2);
		CHECK_EQ(st_status(&s, 0), 0);
		size_t n = st_drain_raw(&s, buf, sizeof buf - 1, 300);
		buf[n] = 0;
		if (cases[i].legacy) {
			/* a CPU reset: straps not re-sampled, so the ROM loader */
			CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
			CHECK(memmem(buf, n, "waiting for download", 20) != NULL);
			uint32_t v = 0;
			CHECK_EQ(st_sync(&s, &v), 0);
			CHECK_EQ(v, 0x20120707u);          /* the ROM answers again */
		} else {
			CHECK(sim_get_mode(s.d) == SIM_MODE_STUB);
		}
		st_close(&s);
	}
}

static void synthetic_stub_says_ohai(void)
{
	struct st s;
	CHECK_EQ(open_stub(&s, "esp32", false, false), 0);
	CHECK(sim_get_mode(s.d) == SIM_MODE_STUB);
	uint32_t v = 1;
	CHECK_EQ(st_sync(&s, &v), 0);
	CHECK_EQ(v, 0);                        /* a stub answers SYNC with 0 */
	CHECK_EQ(s.dec.len, 10);               /* 2 status bytes */
	st_close(&s);
}

static void mem_end_without_code_stays_in_rom(void)
{
	struct st s;
	if (st_open(&s, "esp32c3") < 0) {
		CHECK(0);
		return;
	}
	uint8_t text[64] = { 1 };
	CHECK_EQ(upload(&s, 0x40380000, text, sizeof text), 0);
	uint32_t e[2] = { 0, 0x40390000 };     /* nothing uploaded there */
	st_words(&s, 0x06, e, 2, 500);
	CHECK_EQ(st_frame(&s, 300), -ETIMEDOUT);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	st_close(&s);
}

static size_t b64dec(const char *in, uint8_t *out)
{
	static int8_t map[256];
	static int init;
	if (!init) {
		memset(map, -1, sizeof map);
		const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		for (int i = 0; i < 64; i++)
			map[(uint8_t)a[i]] = (int8_t)i;
		init = 1;
	}
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;
	for (; *in; in++) {
		int v = map[(uint8_t)*in];
		if (v < 0)
			continue;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	return n;
}

static int run_real_stub(const char *path, const char *chip)
{
	size_t len;
	uint8_t *js = t_read_file(path, &len);
	if (!js)
		return -2;
	js[len] = 0;
	cJSON *j = cJSON_Parse((char *)js);
	free(js);
	if (!j)
		return -1;
	int rc = -1;
	struct st s;
	if (st_open(&s, chip) < 0) {
		cJSON_Delete(j);
		return -1;
	}
	st_sync(&s, NULL);
	const char *fields[2] = { "text", "data" };
	for (int f = 0; f < 2; f++) {
		cJSON *b = cJSON_GetObjectItem(j, fields[f]);
		char key[16];
		snprintf(key, sizeof key, "%s_start", fields[f]);
		cJSON *a = cJSON_GetObjectItem(j, key);
		if (!cJSON_IsString(b) || !cJSON_IsNumber(a))
			continue;
		uint8_t *bin = malloc(strlen(b->valuestring));
		size_t n = b64dec(b->valuestring, bin);
		int r = upload(&s, (uint32_t)a->valuedouble, bin, (uint32_t)n);
		free(bin);
		if (r < 0)
			goto out;
	}
	cJSON *e = cJSON_GetObjectItem(j, "entry");
	if (!cJSON_IsNumber(e) || start_stub(&s, (uint32_t)e->valuedouble) < 0)
		goto out;
	uint32_t v = 1;
	if (st_sync(&s, &v) < 0 || v != 0)
		goto out;
	/* and it flashes: 4-byte SPI_ATTACH, a block, MD5 raw */
	uint32_t att = 0;
	if (st_words(&s, 0x0D, &att, 1, 200) != 2 || st_status(&s, 0))
		goto out;
	rc = sim_get_mode(s.d) == SIM_MODE_STUB ? 0 : -1;
out:
	st_close(&s);
	cJSON_Delete(j);
	return rc;
}

static void real_stub_files_start(void)
{
	const char *src = getenv("ESPFS_SOURCE");
	if (!src)
		SKIP("ESPFS_SOURCE not set");
	static const char *dirs[] = {
		"tests/interop/node_modules/esptool-js/lib/targets/stub_flasher",
		"tests/interop/node_modules/esp-web-flasher/dist/stubs",
	};
	static const char *chips[] = { "esp8266", "esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c6" };
	int tried = 0;
	for (int di = 0; di < 2; di++)
		for (size_t c = 0; c < sizeof chips / sizeof chips[0]; c++) {
			char path[512];
			snprintf(path, sizeof path, "%s/%s/%s.json", src, dirs[di], chips[c]);
			int r = run_real_stub(path, chips[c]);
			if (r == -2)
				continue;
			tried++;
			CHECK_MSG(r == 0, "%s", path);
		}
	if (!tried)
		SKIP("no stub JSON files (npm packages not installed in tests/interop)");
}

static void stub_commands(void)
{
	struct st s;
	CHECK_EQ(open_stub(&s, "esp32s3", false, false), 0);
	uint32_t att8[2] = { 0, 0 }, att4 = 0;
	CHECK_EQ(st_words(&s, 0x0D, att8, 2, 200), 2);
	CHECK_EQ(st_status(&s, 0), 0xC0);           /* the stub wants exactly 4 bytes */
	CHECK_EQ(st_words(&s, 0x0D, &att4, 1, 200), 2);
	CHECK_EQ(st_status(&s, 0), 0);

	enum { BS = 0x4000, N = 3, SIZE = BS * N - 100 };
	static uint8_t img[BS * N];
	memset(img, 0xFF, sizeof img);
	for (int i = 0; i < SIZE; i++)
		img[i] = (uint8_t)(i * 31 + 7);
	static uint8_t zeros[0x20000];
	sim_flash_load(s.d, 0x40000, zeros, sizeof zeros);   /* not blank: the stub must erase */
	uint32_t b[5] = { SIZE, N, BS, 0x40000, 0 };
	CHECK_EQ(st_words(&s, 0x02, b, 5, 500), 2);
	CHECK_EQ(st_status(&s, 0), 0);
	for (uint32_t k = 0; k < N; k++) {
		CHECK_EQ(st_data(&s, 0x03, k, img + k * BS, BS, 500), 2);  /* last one padded */
		CHECK_EQ(st_status(&s, 0), 0);
	}
	uint32_t end = 1;
	CHECK_EQ(st_words(&s, 0x04, &end, 1, 500), 2);
	CHECK_EQ(st_status(&s, 0), 0);
	uint8_t *c = sim_flash_copy(s.d, 0x40000, BS * N);
	CHECK(c && memcmp(c, img, SIZE) == 0);
	free(c);

	uint32_t md[4] = { 0x40000, SIZE, 0, 0 };
	CHECK_EQ(st_words(&s, 0x13, md, 4, 500), 16 + 2);
	MD5_CTX m;
	uint8_t dig[16];
	MD5Init(&m);
	MD5Update(&m, img, SIZE);
	MD5Final(dig, &m);
	CHECK_MEM(s.dec.buf + 8, dig, 16);         /* raw, not hex */

	uint32_t er[2] = { 0x41000, 0x1000 };
	CHECK_EQ(st_words(&s, 0xD1, er, 2, 500), 2);
	CHECK_EQ(st_status(&s, 0), 0);
	c = sim_flash_copy(s.d, 0x40FFF, 0x1002);
	CHECK(c && c[0] != 0xFF && c[1] == 0xFF && c[0x1000] == 0xFF && c[0x1001] != 0xFF);
	free(c);
	uint32_t bad[2] = { 0x41001, 0x1000 };
	st_words(&s, 0xD1, bad, 2, 500);
	CHECK_EQ(st_status(&s, 0), 0xC0);
	CHECK_EQ(st_words(&s, 0xD0, NULL, 0, 500), 2);
	CHECK_EQ(st_status(&s, 0), 0);
	c = sim_flash_copy(s.d, 0, sim_flash_size(s.d));
	int ff = 1;
	for (uint32_t i = 0; c && i < sim_flash_size(s.d); i++)
		ff &= c[i] == 0xFF;
	CHECK(c && ff);
	free(c);
	st_close(&s);
}

static void stub_deflate(void)
{
	struct st s;
	CHECK_EQ(open_stub(&s, "esp32c6", false, false), 0);
	enum { RAW = 100000 };
	static uint8_t raw[RAW];
	for (int i = 0; i < RAW; i++)
		raw[i] = (uint8_t)(i % 251 < 50 ? 0 : i * 3);
	uLongf clen = compressBound(RAW);
	uint8_t *z = malloc(clen);
	compress2(z, &clen, raw, RAW, 9);
	uint32_t bs = 0x4000, nb = (uint32_t)((clen + bs - 1) / bs);
	uint32_t b[5] = { RAW, nb, bs, 0x100000, 0 };
	CHECK_EQ(st_words(&s, 0x10, b, 5, 500), 2);
	for (uint32_t k = 0; k < nb; k++) {
		uint32_t len = (uint32_t)(clen - k * bs < bs ? clen - k * bs : bs);
		CHECK_EQ(st_data(&s, 0x11, k, z + k * bs, len, 500), 2);
		CHECK_EQ(st_status(&s, 0), 0);
	}
	uint32_t end = 1;
	st_words(&s, 0x12, &end, 1, 500);
	CHECK_EQ(st_status(&s, 0), 0);
	uint8_t *c = sim_flash_copy(s.d, 0x100000, RAW);
	CHECK(c && memcmp(c, raw, RAW) == 0);
	free(c);
	free(z);
	st_close(&s);
}

static void read_flash_flow(void)
{
	struct st s;
	CHECK_EQ(open_stub(&s, "esp32", false, false), 0);
	enum { LEN = 10000, PKT = 4096 };
	static uint8_t pat[LEN];
	for (int i = 0; i < LEN; i++)
		pat[i] = (uint8_t)(i ^ (i >> 8));
	sim_flash_load(s.d, 0x2000, pat, LEN);
	uint32_t rf[4] = { 0x2000, LEN, PKT, 64 };
	CHECK_EQ(st_words(&s, 0xD2, rf, 4, 500), 2);
	CHECK_EQ(st_status(&s, 0), 0);
	static uint8_t got[LEN];
	uint32_t have = 0;
	while (have < LEN) {
		int n = st_frame(&s, 500);
		CHECK(n > 0);
		if (n <= 0)
			break;
		CHECK_EQ(n, LEN - have < PKT ? LEN - have : PKT);
		memcpy(got + have, s.dec.buf, (size_t)n);
		have += (uint32_t)n;
		/* nothing more until we acknowledge */
		if (have < LEN)
			CHECK_EQ(st_frame(&s, 50), -ETIMEDOUT);
		uint8_t ack[4];
		st_put32(ack, have);
		st_send_frame(&s, ack, 4);
	}
	CHECK_MEM(got, pat, LEN);
	int n = st_frame(&s, 500);
	CHECK_EQ(n, 16);
	MD5_CTX m;
	uint8_t dig[16];
	MD5Init(&m);
	MD5Update(&m, pat, LEN);
	MD5Final(dig, &m);
	CHECK(n == 16 && memcmp(s.dec.buf, dig, 16) == 0);
	/* back to commands */
	CHECK_EQ(st_words(&s, 0x0A, (uint32_t[]){ 0x40001000 }, 1, 200), 2);
	CHECK_EQ(st_le32(s.dec.buf + 4), 0x00F01D83);
	st_close(&s);
}

static void stub_error_codes(void)
{
	struct st s;
	CHECK_EQ(open_stub(&s, "esp32", false, false), 0);
	st_cmd(&s, 0x77, NULL, 0, 0);
	CHECK_EQ(st_resp(&s, 200), 10);
	CHECK_EQ(s.dec.buf[1], 0x77);
	CHECK_EQ(s.dec.buf[8], 0xC3);              /* invalid command */
	uint8_t blk[32] = { 1, 2, 3 };
	st_data(&s, 0x03, 0, blk, sizeof blk, 200);
	CHECK_EQ(st_status(&s, 0), 0xC6);          /* not in flash mode */
	uint32_t b[4] = { 16, 1, 0x4000, 0x1000 };
	st_words(&s, 0x02, b, 4, 200);
	uint8_t p[16 + 32];
	st_put32(p, 32);
	st_put32(p + 4, 0);
	memset(p + 8, 0, 8);
	memcpy(p + 16, blk, 32);
	st_check(&s, 0x03, p, sizeof p, st_xor(blk, 32) ^ 0x80, 200);
	CHECK_EQ(st_status(&s, 0), 0xC1);          /* bad checksum */
	st_data(&s, 0x03, 0, blk, sizeof blk, 200);
	CHECK_EQ(st_status(&s, 0), 0);
	st_data(&s, 0x03, 1, blk, sizeof blk, 200);
	CHECK_EQ(st_status(&s, 0), 0xC9);          /* more than declared */
	st_words(&s, 0x02, b, 4, 200);
	uint32_t end = 1;
	st_words(&s, 0x04, &end, 1, 200);
	CHECK_EQ(st_status(&s, 0), 0xC0);          /* END before all declared bytes */
	st_cmd(&s, 0x14, NULL, 0, 0);              /* no security info on ESP32 */
	CHECK_EQ(st_resp(&s, 200), 10);
	CHECK_EQ(s.dec.buf[8], 0xFF);
	st_close(&s);
}

/* Timing model: the ROM answers a block after programming it; the stub
 * answers on receipt and programs while the next block arrives, so the
 * answer to block N+1 waits for block N's programming. */
static void ack_pipelining(void)
{
	for (int stub = 0; stub < 2; stub++) {
		struct st s;
		if (stub) {
			CHECK_EQ(open_stub(&s, "esp32c3", true, true), 0);
			uint32_t att = 0;
			st_words(&s, 0x0D, &att, 1, 500);
		} else {
			struct sim_config cfg = { .chip = "esp32c3", .timing = true, .native_usb = true };
			CHECK_EQ(st_open_cfg(&s, &cfg), 0);
			uint32_t att[2] = { 0, 0 };
			st_words(&s, 0x0D, att, 2, 500);
			uint32_t pr[6] = { 0, 4u << 20, 0x10000, 0x1000, 0x100, 0xFFFF };
			st_words(&s, 0x0B, pr, 6, 500);
		}
		enum { BS = 0x4000, N = 4 };
		static uint8_t blk[BS];
		memset(blk, 0x5A, sizeof blk);
		uint32_t b[5] = { BS * N, N, BS, 0x80000, 0 };
		st_words(&s, 0x02, b, 5, 5000);
		uint64_t t[N];
		for (int k = 0; k < N; k++) {
			uint64_t t0 = esp_now_us(&s.fc.clock);
			st_data(&s, 0x03, (uint32_t)k, blk, BS, 5000);
			t[k] = esp_now_us(&s.fc.clock) - t0;
		}
		/* 16 KiB over USB ~16 ms; programming 64 pages 44.8 ms (+ erase
		 * for the stub, which erases as it goes) */
		if (!stub) {
			for (int k = 0; k < N; k++)
				CHECK_MSG(t[k] >= 16000 + 44800, "rom block %d answered after %llu us", k, (unsigned long long)t[k]);
		} else {
			CHECK_MSG(t[0] < 16000 + 44800, "stub block 0 answered after %llu us", (unsigned long long)t[0]);
			for (int k = 1; k < N; k++)
				CHECK_MSG(t[k] >= 44800, "stub block %d answered after %llu us", k, (unsigned long long)t[k]);
			uint64_t t0 = esp_now_us(&s.fc.clock);
			uint32_t end = 1;
			st_words(&s, 0x04, &end, 1, 5000);
			CHECK(esp_now_us(&s.fc.clock) - t0 >= 44800);  /* barrier: last block */
		}
		st_close(&s);
	}
}

/* The stub erases sector by sector up to the next 64 KiB boundary, then
 * in 64 KiB blocks while the declared size covers them: a write of
 * 0x20000 bytes at 0x1000 costs 15 sectors + 1 block + 1 sector. */
static void stub_erase_realigns_to_blocks(void)
{
	struct st s;
	CHECK_EQ(open_stub(&s, "esp32c3", true, true), 0);
	uint32_t att = 0;
	st_words(&s, 0x0D, &att, 1, 500);
	enum { BS = 0x4000, SIZE = 0x20000, OFF = 0x1000 };
	static uint8_t zeros[0x40000];
	sim_flash_load(s.d, 0, zeros, sizeof zeros);
	static uint8_t blk[BS];
	memset(blk, 0x3C, sizeof blk);
	uint64_t t0 = esp_now_us(&s.fc.clock);
	uint32_t b[5] = { SIZE, SIZE / BS, BS, OFF, 0 };
	st_words(&s, 0x02, b, 5, 5000);
	for (uint32_t k = 0; k < SIZE / BS; k++)
		st_data(&s, 0x03, k, blk, BS, 5000);
	uint32_t end = 1;
	st_words(&s, 0x04, &end, 1, 5000);
	CHECK_EQ(st_status(&s, 0), 0);
	uint64_t dt = esp_now_us(&s.fc.clock) - t0;
	uint64_t flash_work = (15 * 45000 + 150000 + 45000) + (SIZE / 256) * 700;
	CHECK_MSG(dt >= flash_work && dt <= flash_work + 60000, "write took %llu us, flash work %llu us",
		  (unsigned long long)dt, (unsigned long long)flash_work);
	uint8_t *c = sim_flash_copy(s.d, 0, 0x40000);
	CHECK(c && c[OFF - 1] == 0 && c[OFF] == 0x3C && c[OFF + SIZE - 1] == 0x3C && c[OFF + SIZE] == 0);
	free(c);
	st_close(&s);
}

int main(void)
{
	RUN(synthetic_stub_says_ohai);
	RUN(stub_flavours_run_and_reboot);
	RUN(mem_end_without_code_stays_in_rom);
	RUN(real_stub_files_start);
	RUN(stub_commands);
	RUN(stub_deflate);
	RUN(read_flash_flow);
	RUN(stub_error_codes);
	RUN(ack_pipelining);
	RUN(stub_erase_realigns_to_blocks);
	return t_done();
}
