/* Fault injection, each observed the way a client sees it: through the
 * transport. */
#include "t.h"
#include "simtest.h"

static const uint8_t sync_reply[14] = { 0xc0, 0x01, 0x08, 0x04, 0x00, 0x07, 0x07, 0x12, 0x20, 0x00, 0x00, 0x00, 0x00, 0xc0 };

static int open_quiet(struct st *s, const char *chip)
{
	if (st_open(s, chip) < 0)
		return -1;
	uint8_t junk[1024];
	st_drain_raw(s, junk, sizeof junk, 20);   /* boot banner */
	return 0;
}

/* Send n SYNCs, return the raw bytes received. */
static size_t syncs(struct st *s, int n, uint8_t *buf, size_t cap)
{
	size_t got = 0;
	for (int i = 0; i < n; i++) {
		st_cmd(s, 0x08, st_sync_data, sizeof st_sync_data, 0);
		got += st_drain_raw(s, buf + got, cap - got, 5);
	}
	return got;
}

static int count_good(const uint8_t *b, size_t n)
{
	int good = 0;
	for (size_t i = 0; i + sizeof sync_reply <= n; i++)
		if (memcmp(b + i, sync_reply, sizeof sync_reply) == 0)
			good++;
	return good;
}

static void corrupt_bytes(void)
{
	static uint8_t a[20000], b[20000];
	size_t na = 0, nb = 0;
	for (int run = 0; run < 2; run++) {
		struct st s;
		if (open_quiet(&s, "esp32") < 0) {
			CHECK(0);
			return;
		}
		struct sim_faults f = { .corrupt_rate = 0.02, .seed = 7 };
		sim_set_faults(s.d, &f);
		size_t n = syncs(&s, 10, run ? b : a, sizeof a);
		if (run)
			nb = n;
		else
			na = n;
		st_close(&s);
	}
	CHECK_EQ(na, 10 * 8 * sizeof sync_reply);    /* nothing lost */
	int good = count_good(a, na);
	CHECK(good < 80 && good > 20);                /* some frames damaged */
	CHECK(na == nb && memcmp(a, b, na) == 0);     /* same seed, same damage */
}

static void drop_bytes(void)
{
	struct st s;
	if (open_quiet(&s, "esp32c6") < 0) {
		CHECK(0);
		return;
	}
	struct sim_faults f = { .drop_rate = 0.05, .seed = 3 };
	sim_set_faults(s.d, &f);
	static uint8_t buf[20000];
	size_t n = syncs(&s, 10, buf, sizeof buf);
	CHECK(n < 10 * 8 * sizeof sync_reply);
	CHECK(n > 10 * 8 * sizeof sync_reply / 2);
	CHECK(count_good(buf, n) < 80);
	/* faults off: clean again */
	sim_set_faults(s.d, NULL);
	n = syncs(&s, 1, buf, sizeof buf);
	CHECK_EQ(count_good(buf, n), 8);
	st_close(&s);
}

static void stall(void)
{
	struct st s;
	if (open_quiet(&s, "esp32s2") < 0) {
		CHECK(0);
		return;
	}
	struct sim_faults f = { .stall = true };
	sim_set_faults(s.d, &f);
	st_cmd(&s, 0x08, st_sync_data, sizeof st_sync_data, 0);
	uint8_t b[16];
	CHECK_EQ(esp_tr_read(s.t, b, sizeof b, 200), -ETIMEDOUT);
	st_close(&s);
}

static void garbage(void)
{
	struct st s;
	if (open_quiet(&s, "esp8266") < 0) {
		CHECK(0);
		return;
	}
	struct sim_faults f = { .garbage = true, .seed = 11 };
	sim_set_faults(s.d, &f);
	static uint8_t buf[4000];
	size_t n = syncs(&s, 3, buf, sizeof buf);
	CHECK(n > 0);
	/* no valid ESP8266 SYNC reply among the bytes */
	static const uint8_t want[12] = { 0xc0, 0x01, 0x08, 0x02, 0x00, 0x07, 0x07, 0x12, 0x20, 0x00, 0x00, 0xc0 };
	int good = 0;
	for (size_t i = 0; i + sizeof want <= n; i++)
		good += memcmp(buf + i, want, sizeof want) == 0;
	CHECK_EQ(good, 0);
	st_close(&s);
}

static void unplug_at_percent(void)
{
	struct st s;
	if (open_quiet(&s, "esp32") < 0) {
		CHECK(0);
		return;
	}
	uint32_t att[2] = { 0, 0 };
	st_words(&s, 0x0D, att, 2, 200);
	uint32_t pr[6] = { 0, 4u << 20, 0x10000, 0x1000, 0x100, 0xFFFF };
	st_words(&s, 0x0B, pr, 6, 200);
	struct sim_faults f = { .unplug_at_percent = 50 };
	sim_set_faults(s.d, &f);
	enum { BS = 0x400, N = 8 };
	static uint8_t blk[BS];
	memset(blk, 0x11, sizeof blk);
	uint32_t b[4] = { BS * N, N, BS, 0x10000 };
	st_words(&s, 0x02, b, 4, 500);
	int k, r = 0;
	for (k = 0; k < N; k++) {
		r = st_data(&s, 0x03, (uint32_t)k, blk, BS, 200);
		if (r < 0)
			break;
	}
	CHECK_EQ(r, -ENODEV);
	CHECK_EQ(k, N / 2 - 1);                 /* the block that reached 50% */
	CHECK(sim_get_mode(s.d) == SIM_MODE_OFF);
	uint8_t *c = sim_flash_copy(s.d, 0x10000, BS * N);
	CHECK(c && c[0] == 0x11 && c[BS * (N / 2) - 1] == 0x11 && c[BS * (N / 2)] == 0xFF);
	free(c);
	st_close(&s);
}

static void flash_program_failure(void)
{
	/* ROM: the block's reply says 0x08 (flash write error) */
	struct st s;
	if (open_quiet(&s, "esp32c3") < 0) {
		CHECK(0);
		return;
	}
	uint32_t att[2] = { 0, 0 };
	st_words(&s, 0x0D, att, 2, 200);
	struct sim_faults f = { .flash_program_fail = true };
	sim_set_faults(s.d, &f);
	uint8_t blk[0x400];
	memset(blk, 0, sizeof blk);
	uint32_t b[5] = { sizeof blk, 1, sizeof blk, 0x8000, 0 };
	st_words(&s, 0x02, b, 5, 500);
	st_data(&s, 0x03, 0, blk, sizeof blk, 500);
	CHECK_EQ(st_status(&s, 0), 1);
	CHECK_EQ(st_status2(&s, 0), 0x08);
	uint8_t *c = sim_flash_copy(s.d, 0x8000, 16);
	CHECK(c && c[0] == 0xFF);
	free(c);
	st_close(&s);

	/* stub: ACKed on receipt, the failure shows on the next command */
	if (open_quiet(&s, "esp32c3") < 0) {
		CHECK(0);
		return;
	}
	uint8_t text[64] = { 0 };
	uint32_t mb[4] = { sizeof text, 1, 0x1800, 0x40380000 };
	st_words(&s, 0x05, mb, 4, 200);
	st_data(&s, 0x07, 0, text, sizeof text, 200);
	uint32_t me[2] = { 0, 0x40380000 };
	st_words(&s, 0x06, me, 2, 200);
	CHECK_EQ(st_frame(&s, 500), 4);
	sim_set_faults(s.d, &f);
	uint32_t sb[4] = { sizeof blk, 1, 0x4000, 0x8000 };
	st_words(&s, 0x02, sb, 4, 500);
	st_data(&s, 0x03, 0, blk, sizeof blk, 500);
	CHECK_EQ(st_status(&s, 0), 0);
	uint32_t end = 1;
	CHECK_EQ(st_words(&s, 0x04, &end, 1, 500), 2);
	CHECK_EQ(st_status(&s, 0), 0xC4);
	st_close(&s);
}

static int good_read_regs(struct st *s, int n)
{
	int good = 0;
	for (int i = 0; i < n; i++) {
		st_flush(s);
		uint8_t a[4] = { 0x00, 0x10, 0x00, 0x40 };
		st_cmd(s, 0x0A, a, 4, 0);
		int r = st_resp(s, 20);
		if (r == 12 && s->dec.buf[1] == 0x0A && st_le32(s->dec.buf + 4) == 0x00F01D83)
			good++;
	}
	return good;
}

static void marginal_link_above_max_baud(void)
{
	struct st s;
	if (open_quiet(&s, "esp32") < 0) {
		CHECK(0);
		return;
	}
	struct sim_faults f = { .max_baud = 230400, .seed = 5 };
	sim_set_faults(s.d, &f);
	CHECK_EQ(good_read_regs(&s, 20), 20);         /* 115200: clean */
	uint32_t cb[2] = { 921600, 0 };
	CHECK_EQ(st_words(&s, 0x0F, cb, 2, 200), 4);
	esp_tr_set_baud(s.t, 921600);
	int good = good_read_regs(&s, 20);
	CHECK_MSG(good < 5, "%d of 20 exchanges survived at 921600", good);
	st_close(&s);
}

int main(void)
{
	RUN(corrupt_bytes);
	RUN(drop_bytes);
	RUN(stall);
	RUN(garbage);
	RUN(unplug_at_percent);
	RUN(flash_program_failure);
	RUN(marginal_link_above_max_baud);
	return t_done();
}
