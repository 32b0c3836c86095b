/* The loader's speed features, for correctness only (timings live in
 * tests/bench/loader_speed.c): ESP_WRITE_SKIP_SAME sends nothing for an
 * identical image, only the changed blocks/sectors for a changed one, and
 * erases (or leaves) 0xFF regions; results are byte-exact on stub and ROM;
 * errors still surface within deadlines; READ_FLASH with two packets in
 * flight is byte-exact; baud negotiation falls back when the port refuses
 * a rate or the line garbles at it, and leaves native USB alone.  A
 * transport wrapper between loader and simulator decodes the host's SLIP
 * frames to count commands and bytes, and can play a port with a baud
 * limit. */
#include <errno.h>
#include <md5.h>
#include <stdio.h>
#include <unistd.h>
#include "t.h"
#include "espfs/loader.h"
#include "espfs/sim.h"
#include "espfs/slip.h"

/* ---- counting / limiting transport ---- */

struct wrap {
	esp_transport t;
	esp_transport *in;
	slip_decoder dec;
	uint8_t frame[0x4100];
	unsigned ops[256];          /* commands seen, by opcode */
	uint64_t data_bytes;        /* payload of FLASH_DATA / FLASH_DEFL_DATA */
	uint32_t max_block, min_block;  /* of those payloads (min: all but the last) */
	uint32_t last_block;
	uint32_t begin_off[64], begin_size[64];
	int n_begin;
	uint32_t refuse_above;      /* set_baud fails above this (0: never) */
	uint32_t garble_above;      /* device->host bytes corrupted above this */
	uint32_t deaf_above;        /* host->device bytes all lost above this */
	uint64_t rng;
};

static int w_read(esp_transport *t, uint8_t *b, size_t n, uint32_t ms)
{
	struct wrap *w = (struct wrap *)t;
	int rc = esp_tr_read(w->in, b, n, ms);
	if (rc > 0 && w->garble_above && t->baud > w->garble_above) {
		for (int i = 0; i < rc; i++) {
			w->rng = w->rng * 6364136223846793005ull + 1442695040888963407ull;
			if ((w->rng >> 33) % 5 == 0)
				b[i] ^= (uint8_t)(1u << ((w->rng >> 40) % 8));
		}
	}
	return rc;
}

static int w_write(esp_transport *t, const uint8_t *b, size_t n)
{
	struct wrap *w = (struct wrap *)t;
	size_t pos = 0;
	while (pos < n) {
		size_t used = 0;
		if (slip_decoder_feed(&w->dec, b + pos, n - pos, &used)) {
			const uint8_t *f = w->dec.buf;
			if (w->dec.len >= 8 && f[0] == 0) {
				w->ops[f[1]]++;
				if ((f[1] == ESP_FLASH_DATA || f[1] == ESP_FLASH_DEFL_DATA) && w->dec.len >= 24) {
					uint32_t k = (uint32_t)w->dec.len - 24;
					w->data_bytes += k;
					if (k > w->max_block)
						w->max_block = k;
					if (w->last_block && (!w->min_block || w->last_block < w->min_block))
						w->min_block = w->last_block;
					w->last_block = k;
				}
				if ((f[1] == ESP_FLASH_BEGIN || f[1] == ESP_FLASH_DEFL_BEGIN) && w->dec.len >= 24 &&
				    w->n_begin < 64) {
					w->begin_size[w->n_begin] = (uint32_t)f[8] | (uint32_t)f[9] << 8 |
								    (uint32_t)f[10] << 16 | (uint32_t)f[11] << 24;
					w->begin_off[w->n_begin++] = (uint32_t)f[20] | (uint32_t)f[21] << 8 |
								     (uint32_t)f[22] << 16 | (uint32_t)f[23] << 24;
				}
			}
		}
		pos += used;
		if (!used)
			break;
	}
	if (w->deaf_above && t->baud > w->deaf_above)
		return (int)n;        /* the line eats them */
	return esp_tr_write(w->in, b, n);
}

static int w_flush(esp_transport *t) { return esp_tr_flush_input(((struct wrap *)t)->in); }
static int w_baud(esp_transport *t, uint32_t baud)
{
	struct wrap *w = (struct wrap *)t;
	if (w->refuse_above && baud > w->refuse_above)
		return -EINVAL;
	int rc = esp_tr_set_baud(w->in, baud);
	if (rc == 0)
		t->baud = baud;
	return rc;
}
static int w_lines(esp_transport *t, int d, int r) { return esp_tr_set_lines(((struct wrap *)t)->in, d, r); }
static void w_close(esp_transport *t) { (void)t; }
static const struct esp_transport_ops w_ops = { w_read, w_write, w_flush, w_baud, w_lines, w_close };

static void w_reset_counts(struct wrap *w)
{
	memset(w->ops, 0, sizeof w->ops);
	w->data_bytes = 0;
	w->n_begin = 0;
	w->max_block = w->min_block = w->last_block = 0;
}

/* ---- rig ---- */

struct rig {
	esp_fake_clock fc;
	sim_device *d;
	esp_transport *st;
	struct wrap w;
	esp_loader *l;
	char why[256];
};

static void rig_close(struct rig *r)
{
	if (r->l)
		esp_loader_free(r->l);
	esp_tr_close(r->st);
	if (r->d)
		sim_device_free(r->d);
	memset(r, 0, sizeof *r);
}

static const char *stub_dir(char *buf, size_t cap)
{
	const char *src = getenv("ESPFS_SOURCE");
	if (!src)
		return NULL;
	snprintf(buf, cap, "%s/tests/interop/node_modules/esptool-js/lib/targets/stub_flasher", src);
	return access(buf, R_OK) == 0 ? buf : NULL;
}

/* 1: connected (stub when asked); 0: skip (no stub files); -1: failed. */
static int rig_open(struct rig *r, const char *chip, bool native_usb, bool use_stub)
{
	memset(r, 0, sizeof *r);
	esp_fake_clock_init(&r->fc, 1000000);
	struct sim_config cfg = { .chip = chip, .name = chip, .native_usb = native_usb, .timing = true,
				  .clock = &r->fc.clock };
	r->d = sim_device_new(&cfg, r->why, sizeof r->why);
	if (!r->d || sim_transport_open(r->d, &r->st) < 0)
		return -1;
	r->w.t = *r->st;
	r->w.t.ops = &w_ops;
	r->w.in = r->st;
	r->w.rng = 12345;
	slip_decoder_init(&r->w.dec, r->w.frame, sizeof r->w.frame);
	r->l = esp_loader_new(&r->w.t);
	if (esp_loader_connect(r->l, ESP_RESET_AUTO, 0) < 0 || esp_loader_detect_chip(r->l, NULL) < 0)
		goto fail;
	if (use_stub) {
		char dir[1024], path[1200], err[256];
		esp_stub s;
		if (!stub_dir(dir, sizeof dir) || esp_stub_find(esp_loader_chip(r->l), dir, path, sizeof path) < 0)
			return 0;
		if (esp_stub_load_file(path, &s, err, sizeof err) < 0) {
			snprintf(r->why, sizeof r->why, "%s", err);
			return -1;
		}
		int rc = esp_loader_run_stub(r->l, &s);
		esp_stub_free(&s);
		if (rc < 0)
			goto fail;
	}
	if (esp_loader_flash_id(r->l, NULL, NULL) < 0)
		goto fail;
	return 1;
fail:
	snprintf(r->why, sizeof r->why, "%s", esp_loader_error(r->l));
	return -1;
}

#define OPEN_OR_RETURN(r, chip, usb, stub) do { \
	int _o = rig_open(r, chip, usb, stub); \
	if (_o <= 0) { \
		if (_o == 0) { rig_close(r); SKIP("stub JSON not installed (tests/interop/node_modules)"); } \
		CHECK_MSG(0, "rig: %s", (r)->why); rig_close(r); return; \
	} } while (0)

#define CHECK_RC(call) do { int _rc = (call); CHECK_MSG(_rc == 0, "%s = %d: %s", #call, _rc, esp_loader_error(r.l)); } while (0)

static uint8_t *image(size_t n, uint32_t seed)
{
	uint8_t *b = malloc(n);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		b[i] = (i / 4096) % 3 ? (uint8_t)(seed >> 24) : (uint8_t)("skip same "[i % 10]);
	}
	return b;
}

static bool flash_is(struct rig *r, uint32_t off, const uint8_t *want, size_t n)
{
	uint8_t *f = sim_flash_copy(r->d, off, (uint32_t)n);
	bool ok = f && memcmp(f, want, n) == 0;
	free(f);
	return ok;
}

static unsigned data_cmds(const struct wrap *w)
{
	return w->ops[ESP_FLASH_DATA] + w->ops[ESP_FLASH_DEFL_DATA];
}

/* ---- skip-same ---- */

#define BASE 0x100000u
#define LEN (0x80000u + 0x1234u)   /* 8.07 blocks: a partial block at the end */

static void skip_same_identical(bool stub)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, stub);
	uint8_t *img = image(LEN, 1);
	CHECK_RC(esp_loader_write_flash(r.l, BASE, img, LEN, ESP_WRITE_COMPRESS, NULL, NULL));
	CHECK(data_cmds(&r.w) > 0);
	w_reset_counts(&r.w);
	uint64_t t0 = esp_now_us(&r.fc.clock);
	CHECK_RC(esp_loader_write_flash(r.l, BASE, img, LEN, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME, NULL, NULL));
	printf("# identical re-write at 115200: %u data commands, %u MD5, %llu ms sim time\n", data_cmds(&r.w),
	       r.w.ops[ESP_SPI_FLASH_MD5], (unsigned long long)(esp_now_us(&r.fc.clock) - t0) / 1000);
	CHECK_EQ(data_cmds(&r.w), 0u);
	CHECK_EQ(r.w.ops[ESP_FLASH_BEGIN] + r.w.ops[ESP_FLASH_DEFL_BEGIN] + r.w.ops[ESP_ERASE_REGION], 0u);
	/* 9 blocks at 115200: the per-block round trips (~7 ms each) cost
	 * more than hashing 0.5 MB again: the first sector, then one MD5 of
	 * it all */
	CHECK_EQ(r.w.ops[ESP_SPI_FLASH_MD5], 2u);
	CHECK(esp_loader_last_write_verified(r.l));
	CHECK(flash_is(&r, BASE, img, LEN));
	/* at 921600 a round trip is cheap: per block straight away, and
	 * their answers say "identical" just as well (no final verify) */
	CHECK_RC(esp_loader_change_baud(r.l, 921600));
	w_reset_counts(&r.w);
	CHECK_RC(esp_loader_write_flash(r.l, BASE, img, LEN, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME, NULL, NULL));
	CHECK_EQ(data_cmds(&r.w), 0u);
	CHECK_EQ(r.w.ops[ESP_SPI_FLASH_MD5], 9u);
	CHECK(esp_loader_last_write_verified(r.l));
	free(img);
	rig_close(&r);
}
static void skip_same_identical_stub(void) { skip_same_identical(true); }
static void skip_same_identical_rom(void) { skip_same_identical(false); }

/* One byte in one sector of block 2, and several sectors of block 5: the
 * first goes alone, the second as its whole block; nothing else. */
static void skip_same_partial(bool stub)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, stub);
	uint8_t *a = image(LEN, 2);
	uint8_t *b = malloc(LEN);
	memcpy(b, a, LEN);
	b[0x25123] ^= 0x5A;                    /* block 2, sector 5 */
	for (uint32_t i = 0x51000; i < 0x54000; i += 0x800)
		b[i] ^= 0xFF;                     /* block 5, sectors 1..3 */
	b[LEN - 1] ^= 1;                       /* the partial last block, sector 1 */
	CHECK_RC(esp_loader_write_flash(r.l, BASE, a, LEN, ESP_WRITE_COMPRESS, NULL, NULL));
	w_reset_counts(&r.w);
	CHECK_RC(esp_loader_write_flash(r.l, BASE, b, LEN, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME, NULL, NULL));
	CHECK(esp_loader_last_write_verified(r.l));
	CHECK(flash_is(&r, BASE, b, LEN));
	printf("# partial: %d writes, %llu data bytes, %u MD5\n", r.w.n_begin,
	       (unsigned long long)r.w.data_bytes, r.w.ops[ESP_SPI_FLASH_MD5]);
	for (int i = 0; i < r.w.n_begin; i++)
		printf("#   write 0x%x +0x%x\n", r.w.begin_off[i], stub ? r.w.begin_size[i] : 0);
	CHECK_EQ(r.w.n_begin, 3);
	if (r.w.n_begin == 3) {
		CHECK_EQ(r.w.begin_off[0], BASE + 0x25000);
		CHECK_EQ(r.w.begin_off[1], BASE + 0x50000);
		CHECK_EQ(r.w.begin_off[2], BASE + 0x81000);   /* its second sector only */
		if (stub) {
			CHECK_EQ(r.w.begin_size[0], 0x1000u);
			CHECK_EQ(r.w.begin_size[1], 0x10000u);
			CHECK_EQ(r.w.begin_size[2], (LEN + 3) / 4 * 4 - 0x81000);
		}
	}
	/* far less than the whole image went over the wire */
	CHECK(r.w.data_bytes < LEN / 4);
	free(a);
	free(b);
	rig_close(&r);
}
static void skip_same_partial_stub(void) { skip_same_partial(true); }
static void skip_same_partial_rom(void) { skip_same_partial(false); }

/* Blocks that should be 0xFF: erased when the device holds data there,
 * left alone when it is blank; never sent. */
static void skip_same_ff_regions(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, true);
	uint8_t *a = image(LEN, 3);
	uint8_t *b = malloc(LEN);
	memcpy(b, a, LEN);
	memset(b + 0x30000, 0xFF, 0x20000);   /* blocks 3, 4: data on the device */
	CHECK_RC(esp_loader_write_flash(r.l, BASE, a, LEN, ESP_WRITE_COMPRESS, NULL, NULL));
	CHECK_RC(esp_loader_erase_region(r.l, BASE + 0x60000, 0x10000));   /* block 6 blank */
	memset(a + 0x60000, 0xFF, 0x10000);
	memset(b + 0x60000, 0xFF, 0x10000);
	w_reset_counts(&r.w);
	CHECK_RC(esp_loader_write_flash(r.l, BASE, b, LEN, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME, NULL, NULL));
	CHECK(flash_is(&r, BASE, b, LEN));
	CHECK(esp_loader_last_write_verified(r.l));
	CHECK_EQ(r.w.ops[ESP_ERASE_REGION], 1u);      /* blocks 3+4 in one go */
	CHECK_EQ(data_cmds(&r.w), 0u);
	CHECK_EQ(r.w.n_begin, 0);
	free(a);
	free(b);
	rig_close(&r);
}

/* A fresh flash with skip-same onto a blank chip: same bytes on flash,
 * and no more data on the wire than without it. */
static void skip_same_fresh_blank(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, true);
	uint8_t *a = image(LEN, 4);
	memset(a, 0xFF, 0x3000);
	CHECK_RC(esp_loader_write_flash(r.l, BASE, a, LEN, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME, NULL, NULL));
	CHECK(flash_is(&r, BASE, a, LEN));
	uint64_t with = r.w.data_bytes;
	unsigned md5s = r.w.ops[ESP_SPI_FLASH_MD5];
	rig_close(&r);
	OPEN_OR_RETURN(&r, "esp32", false, true);
	CHECK_RC(esp_loader_write_flash(r.l, BASE, a, LEN, ESP_WRITE_COMPRESS, NULL, NULL));
	printf("# fresh: %llu data bytes with skip-same (%u MD5), %llu without\n", (unsigned long long)with,
	       md5s, (unsigned long long)r.w.data_bytes);
	CHECK(with <= r.w.data_bytes);
	/* its first sector (0xFF here, as on the chip), the whole range
	 * (blank: nothing more to ask) and the final verify; no sector probes */
	CHECK_EQ(md5s, 3u);
	free(a);
	rig_close(&r);
}

struct prog { uint64_t last, total; int calls, cancel_after; bool backwards; };

static int on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct prog *p = ctx;
	if (done < p->last)
		p->backwards = true;
	p->last = done;
	p->total = total;
	p->calls++;
	return p->cancel_after && p->calls >= p->cancel_after;
}

/* Progress covers the whole range (skipped parts count as done), only
 * forwards, and a cancel stops the write with -EINTR. */
static void skip_same_progress_and_cancel(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, true);
	uint8_t *a = image(LEN, 5);
	CHECK_RC(esp_loader_write_flash(r.l, BASE, a, LEN, ESP_WRITE_COMPRESS, NULL, NULL));
	a[0x70000] ^= 1;
	a[0x20000] ^= 1;
	a[0x20800] ^= 1;
	struct prog p = { 0 };
	CHECK_RC(esp_loader_write_flash(r.l, BASE, a, LEN, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME, on_progress, &p));
	CHECK(!p.backwards);
	CHECK_EQ(p.total, (uint64_t)(LEN + 3) / 4 * 4);
	CHECK_EQ(p.last, p.total);
	CHECK(p.calls >= 2);
	a[0x70000] ^= 1;
	a[0x20000] ^= 1;
	struct prog c = { .cancel_after = 1 };
	int rc = esp_loader_write_flash(r.l, BASE, a, LEN, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME, on_progress, &c);
	CHECK_MSG(rc == -EINTR, "rc %d: %s", rc, esp_loader_error(r.l));
	CHECK_EQ(c.calls, 1);
	free(a);
	rig_close(&r);
}

/* ---- faults ---- */

static void skip_same_faults_surface(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, true);
	uint8_t *a = image(LEN, 6);
	CHECK_RC(esp_loader_write_flash(r.l, BASE, a, LEN, ESP_WRITE_COMPRESS, NULL, NULL));
	a[0x10000] ^= 1;
	struct sim_faults f = { .flash_program_fail = true };
	sim_set_faults(r.d, &f);
	uint64_t t0 = esp_now_us(&r.fc.clock);
	int rc = esp_loader_write_flash(r.l, BASE, a, LEN, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME, NULL, NULL);
	printf("# program failure: rc %d: %s\n", rc, esp_loader_error(r.l));
	CHECK(rc == -EIO);
	CHECK(esp_now_us(&r.fc.clock) - t0 < 10000000);
	struct sim_faults none = { 0 };
	sim_set_faults(r.d, &none);
	/* and a stall in the middle of the MD5 pass: a timeout, not a hang */
	struct sim_faults st = { .stall = true };
	sim_set_faults(r.d, &st);
	t0 = esp_now_us(&r.fc.clock);
	rc = esp_loader_write_flash(r.l, BASE, a, LEN, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME, NULL, NULL);
	CHECK_EQ(rc, -ETIMEDOUT);
	CHECK(esp_now_us(&r.fc.clock) - t0 < 10000000);
	free(a);
	rig_close(&r);
}

/* Corrupted and dropped bytes on the way back: a write either fails with
 * an error by its deadline or is really on flash. */
static void writes_exact_under_noise(void)
{
	for (int run = 0; run < 4; run++) {
		struct rig r;
		OPEN_OR_RETURN(&r, "esp32", false, true);
		uint8_t *a = image(0x30000, 7 + (uint32_t)run);
		struct sim_faults f = { .seed = 100 + (uint32_t)run };
		if (run % 2)
			f.drop_rate = 0.002;
		else
			f.corrupt_rate = 0.002;
		sim_set_faults(r.d, &f);
		uint64_t t0 = esp_now_us(&r.fc.clock);
		unsigned flags = ESP_WRITE_COMPRESS | (run >= 2 ? ESP_WRITE_SKIP_SAME : 0);
		int rc = esp_loader_write_flash(r.l, BASE, a, 0x30000, flags, NULL, NULL);
		uint64_t ms = (esp_now_us(&r.fc.clock) - t0) / 1000;
		printf("# noise run %d: rc %d after %llu ms: %s\n", run, rc, (unsigned long long)ms,
		       rc ? esp_loader_error(r.l) : "ok");
		CHECK(ms < 30000);
		if (rc == 0)
			CHECK(flash_is(&r, BASE, a, 0x30000));
		else
			CHECK(rc == -ETIMEDOUT || rc == -EPROTO || rc == -EIO);
		free(a);
		rig_close(&r);
	}
}

/* ---- block plan ---- */

/* At 2 Mbaud a 16 KiB block is on the wire for ~82 ms, less than a 64 KiB
 * erase: blocks that start a new flash block are cut short (the plan cuts
 * at multiples of 256 compressed bytes).  The result
 * must be byte-exact, every block within what the stub accepts, and the
 * stub must take the declared count. */
static void planned_blocks_exact(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, true);
	CHECK_RC(esp_loader_change_baud(r.l, 2000000));
	uint8_t *a = image(0x60000, 12);
	w_reset_counts(&r.w);
	CHECK_RC(esp_loader_write_flash(r.l, 0x40000, a, 0x60000, ESP_WRITE_COMPRESS, NULL, NULL));
	CHECK(esp_loader_last_write_verified(r.l));
	CHECK(flash_is(&r, 0x40000, a, 0x60000));
	unsigned blocks = data_cmds(&r.w);
	printf("# 2M: %u blocks for %llu compressed bytes, %u..%u each\n", blocks,
	       (unsigned long long)r.w.data_bytes, r.w.min_block, r.w.max_block);
	CHECK(r.w.max_block <= ESP_STUB_WRITE_BLOCK);
	CHECK(blocks > (r.w.data_bytes + ESP_STUB_WRITE_BLOCK - 1) / ESP_STUB_WRITE_BLOCK);   /* some were cut */
	CHECK(r.w.min_block >= 256);
	/* at 115200 nothing needs cutting: full blocks */
	CHECK_RC(esp_loader_change_baud(r.l, 115200));
	w_reset_counts(&r.w);
	a[5] ^= 1;
	CHECK_RC(esp_loader_write_flash(r.l, 0x40000, a, 0x60000, ESP_WRITE_COMPRESS, NULL, NULL));
	CHECK(flash_is(&r, 0x40000, a, 0x60000));
	CHECK_EQ(data_cmds(&r.w), (unsigned)((r.w.data_bytes + ESP_STUB_WRITE_BLOCK - 1) / ESP_STUB_WRITE_BLOCK));
	free(a);
	rig_close(&r);
}

/* The same at 2 Mbaud with a noisy line back: an error by the deadline
 * or a byte-exact result. */
static void planned_blocks_under_noise(void)
{
	for (int run = 0; run < 3; run++) {
		struct rig r;
		OPEN_OR_RETURN(&r, "esp32", false, true);
		CHECK_RC(esp_loader_change_baud(r.l, 2000000));
		uint8_t *a = image(0x40000, 13 + (uint32_t)run);
		struct sim_faults f = { .corrupt_rate = run ? 0.02 : 0.001, .drop_rate = run == 2 ? 0.02 : 0,
					.seed = 7 + (uint32_t)run };
		sim_set_faults(r.d, &f);
		uint64_t t0 = esp_now_us(&r.fc.clock);
		int rc = esp_loader_write_flash(r.l, 0x80000, a, 0x40000, ESP_WRITE_COMPRESS, NULL, NULL);
		uint64_t ms = (esp_now_us(&r.fc.clock) - t0) / 1000;
		printf("# 2M noise run %d: rc %d after %llu ms: %s\n", run, rc, (unsigned long long)ms,
		       rc ? esp_loader_error(r.l) : "ok");
		CHECK(ms < 15000);
		if (rc == 0)
			CHECK(flash_is(&r, 0x80000, a, 0x40000));
		else
			CHECK(rc == -ETIMEDOUT || rc == -EPROTO || rc == -EIO);
		free(a);
		rig_close(&r);
	}
}

/* ---- reads ---- */

static void read_two_in_flight_exact(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, true);
	uint8_t *a = image(0x41234, 8);
	sim_flash_load(r.d, 0x200000, a, 0x41234);
	uint8_t *rb = malloc(0x41234);
	CHECK_RC(esp_loader_read_flash(r.l, 0x200000, rb, 0x41234, NULL, NULL));
	CHECK(memcmp(rb, a, 0x41234) == 0);
	/* dropped bytes: an error by the deadline, never wrong data */
	struct sim_faults f = { .drop_rate = 0.0005, .seed = 9 };
	sim_set_faults(r.d, &f);
	memset(rb, 0, 0x41234);
	uint64_t t0 = esp_now_us(&r.fc.clock);
	int rc = esp_loader_read_flash(r.l, 0x200000, rb, 0x41234, NULL, NULL);
	printf("# read with drops: rc %d: %s\n", rc, rc ? esp_loader_error(r.l) : "ok");
	CHECK(esp_now_us(&r.fc.clock) - t0 < 20000000);
	if (rc == 0)
		CHECK(memcmp(rb, a, 0x41234) == 0);
	else
		CHECK(rc == -ETIMEDOUT || rc == -EPROTO || rc == -EIO);
	free(rb);
	free(a);
	rig_close(&r);
}

/* ---- baud ---- */

static void round_trip_ok(struct rig *rp)
{
	struct rig r = *rp;   /* for CHECK_RC's message */
	uint8_t *a = image(0x8000, 10);
	uint8_t *rb = malloc(0x8000);
	CHECK_RC(esp_loader_write_flash(r.l, 0x10000, a, 0x8000, ESP_WRITE_COMPRESS, NULL, NULL));
	CHECK_RC(esp_loader_read_flash(r.l, 0x10000, rb, 0x8000, NULL, NULL));
	CHECK(memcmp(a, rb, 0x8000) == 0);
	free(rb);
	free(a);
}

static void baud_plain(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, true);
	int b = esp_loader_negotiate_baud(r.l, 0);
	CHECK_MSG(b == 921600, "negotiated %d: %s", b, esp_loader_error(r.l));
	CHECK_EQ(r.w.t.baud, 921600u);
	round_trip_ok(&r);
	rig_close(&r);
}

static void baud_port_refuses(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, true);
	r.w.refuse_above = 1500000;
	w_reset_counts(&r.w);
	int b = esp_loader_negotiate_baud(r.l, 3000000);
	CHECK_MSG(b == 1500000, "negotiated %d: %s", b, esp_loader_error(r.l));
	/* the refused rates never reached the device */
	CHECK_EQ(r.w.ops[ESP_CHANGE_BAUDRATE], 1u);
	round_trip_ok(&r);
	rig_close(&r);
}

static void baud_garbled_falls_back(bool stub)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, stub);
	r.w.garble_above = 1000000;
	uint64_t t0 = esp_now_us(&r.fc.clock);
	int b = esp_loader_negotiate_baud(r.l, 3000000);
	printf("# garbled above 1M: negotiated %d in %llu ms sim time, %u CHANGE_BAUDRATE\n", b,
	       (unsigned long long)(esp_now_us(&r.fc.clock) - t0) / 1000, r.w.ops[ESP_CHANGE_BAUDRATE]);
	CHECK_MSG(b == 921600, "negotiated %d: %s", b, esp_loader_error(r.l));
	CHECK_EQ(r.w.t.baud, 921600u);
	round_trip_ok(&r);
	/* remembered: asking again does not try the bad rates */
	w_reset_counts(&r.w);
	b = esp_loader_negotiate_baud(r.l, 3000000);
	CHECK_EQ(b, 921600);
	CHECK_EQ(r.w.ops[ESP_CHANGE_BAUDRATE], 0u);
	rig_close(&r);
}
static void baud_garbled_falls_back_stub(void) { baud_garbled_falls_back(true); }
static void baud_garbled_falls_back_rom(void) { baud_garbled_falls_back(false); }

/* The simulator's own marginal link: above max_baud 1 byte in 5 is
 * damaged both ways, so even getting the device back down is luck. */
static void baud_sim_max_baud(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, true);
	struct sim_faults f = { .max_baud = 1000000, .seed = 3 };
	sim_set_faults(r.d, &f);
	uint64_t t0 = esp_now_us(&r.fc.clock);
	int b = esp_loader_negotiate_baud(r.l, 2000000);
	printf("# sim max_baud 1M: negotiated %d in %llu ms sim time: %s\n", b,
	       (unsigned long long)(esp_now_us(&r.fc.clock) - t0) / 1000, b < 0 ? esp_loader_error(r.l) : "ok");
	CHECK_MSG(b == 921600, "negotiated %d: %s", b, esp_loader_error(r.l));
	round_trip_ok(&r);
	rig_close(&r);
}

/* Above 1M nothing reaches the device at all: it cannot be told to come
 * down, so the loader resets it, restarts the stub from its copy and
 * changes to the next rate from a working link. */
static void baud_dead_link_relinks(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, true);
	r.w.garble_above = 1000000;
	r.w.deaf_above = 1000000;
	w_reset_counts(&r.w);
	int b = esp_loader_negotiate_baud(r.l, 2000000);
	printf("# deaf above 1M: negotiated %d, %u SYNC, %u MEM_BEGIN\n", b, r.w.ops[ESP_SYNC], r.w.ops[ESP_MEM_BEGIN]);
	CHECK_MSG(b == 921600, "negotiated %d: %s", b, esp_loader_error(r.l));
	CHECK(esp_loader_is_stub(r.l));
	CHECK(r.w.ops[ESP_SYNC] > 0);          /* it did reconnect */
	CHECK(r.w.ops[ESP_MEM_BEGIN] >= 2);    /* and upload the stub again */
	round_trip_ok(&r);
	rig_close(&r);
}

static void baud_nothing_faster_works(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32", false, true);
	r.w.garble_above = 115200;
	int b = esp_loader_negotiate_baud(r.l, 921600);
	CHECK_MSG(b == 115200, "negotiated %d: %s", b, esp_loader_error(r.l));
	round_trip_ok(&r);
	rig_close(&r);
}

static void baud_native_usb_unchanged(void)
{
	struct rig r;
	OPEN_OR_RETURN(&r, "esp32c3", true, true);
	w_reset_counts(&r.w);
	int b = esp_loader_negotiate_baud(r.l, 2000000);
	CHECK_EQ(b, 115200);
	CHECK_EQ(r.w.ops[ESP_CHANGE_BAUDRATE], 0u);
	round_trip_ok(&r);
	rig_close(&r);
}

int main(void)
{
	RUN(skip_same_identical_stub);
	RUN(skip_same_identical_rom);
	RUN(skip_same_partial_stub);
	RUN(skip_same_partial_rom);
	RUN(skip_same_ff_regions);
	RUN(skip_same_fresh_blank);
	RUN(skip_same_progress_and_cancel);
	RUN(skip_same_faults_surface);
	RUN(writes_exact_under_noise);
	RUN(planned_blocks_exact);
	RUN(planned_blocks_under_noise);
	RUN(read_two_in_flight_exact);
	RUN(baud_plain);
	RUN(baud_port_refuses);
	RUN(baud_garbled_falls_back_stub);
	RUN(baud_garbled_falls_back_rom);
	RUN(baud_sim_max_baud);
	RUN(baud_dead_link_relinks);
	RUN(baud_nothing_faster_works);
	RUN(baud_native_usb_unchanged);
	return t_done();
}
