/* Improv Wi-Fi Serial: codec byte vectors, the line-aware parser, and the
 * client's request/response flows against a scripted fake device on a
 * fake clock (no sleeping: the fake transport moves time forward). */
#include <errno.h>
#include "t.h"
#include "espfs/improv.h"
#include "espfs/log.h"

/* ---------- codec ---------- */

/* The request-current-state packet as captured from the JS SDK. */
static const uint8_t state_req[] = { 0x49, 0x4d, 0x50, 0x52, 0x4f, 0x56, 0x01, 0x03, 0x02, 0x02,
                                     0x00, 0xe5, 0x0a };

static void encode_state_request_exactly(void)
{
	uint8_t out[IMPROV_MAX_WIRE];
	int n = improv_encode_rpc(IMPROV_CMD_GET_STATE, NULL, 0, out);
	CHECK_EQ(n, sizeof state_req);
	CHECK_MEM(out, state_req, sizeof state_req);
}

static void encode_wifi_spec_example(void)
{
	/* spec example: 01 1E 0C "MyWirelessAP" 10 "mysecurepassword" */
	const uint8_t want[] = { 0x49, 0x4d, 0x50, 0x52, 0x4f, 0x56, 0x01, 0x03, 0x20, 0x01, 0x1e, 0x0c,
		0x4d, 0x79, 0x57, 0x69, 0x72, 0x65, 0x6c, 0x65, 0x73, 0x73, 0x41, 0x50, 0x10, 0x6d, 0x79,
		0x73, 0x65, 0x63, 0x75, 0x72, 0x65, 0x70, 0x61, 0x73, 0x73, 0x77, 0x6f, 0x72, 0x64, 0xc1, 0x0a };
	uint8_t out[IMPROV_MAX_WIRE];
	int n = improv_encode_wifi((const uint8_t *)"MyWirelessAP", 12,
	                           (const uint8_t *)"mysecurepassword", 16, out);
	CHECK_EQ(n, sizeof want);
	CHECK_MEM(out, want, sizeof want);
}

static void encode_limits(void)
{
	uint8_t ssid[255], pw[255], out[IMPROV_MAX_WIRE + 8];
	memset(ssid, 'S', sizeof ssid);
	memset(pw, 'p', sizeof pw);
	/* 251 bytes of credentials fill the 255-byte packet exactly */
	int n = improv_encode_wifi(ssid, 200, pw, 51, out);
	CHECK_EQ(n, 9 + 255 + 2);
	CHECK_EQ(out[8], 255);
	CHECK_EQ(out[10], 253);
	CHECK_EQ(improv_encode_wifi(ssid, 200, pw, 52, out), -EINVAL);
	CHECK_EQ(improv_encode_wifi(ssid, 0, pw, 8, out), -EINVAL);
	CHECK_EQ(improv_encode_wifi(ssid, 32, pw, 0, out) > 0, 1);  /* open network */
	CHECK_EQ(improv_encode_packet(IMPROV_TYPE_RPC, ssid, 256, out), -EINVAL);
	CHECK_EQ(improv_encode_rpc(5, ssid, 254, out), -EINVAL);
	CHECK_EQ(improv_encode_rpc(5, ssid, 253, out), 9 + 255 + 2);
}

static void decode_state_error_result(void)
{
	const uint8_t st[] = { 0x49, 0x4d, 0x50, 0x52, 0x4f, 0x56, 0x01, 0x01, 0x01, 0x02, 0xe2 };
	const uint8_t er[] = { 0x49, 0x4d, 0x50, 0x52, 0x4f, 0x56, 0x01, 0x02, 0x01, 0x03, 0xe4 };
	/* ESPHome's device-info result, with the trailing 0x00 (L = total + 3) */
	const uint8_t res[] = { 0x49, 0x4d, 0x50, 0x52, 0x4f, 0x56, 0x01, 0x04, 0x22, 0x03, 0x1f, 0x07,
		0x45, 0x53, 0x50, 0x48, 0x6f, 0x6d, 0x65, 0x08, 0x32, 0x30, 0x32, 0x34, 0x2e, 0x36, 0x2e, 0x36,
		0x08, 0x45, 0x53, 0x50, 0x33, 0x32, 0x2d, 0x43, 0x33, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0xf2 };
	struct improv_packet p;
	CHECK_EQ(improv_decode(st, sizeof st, &p), sizeof st);
	CHECK_EQ(p.type, IMPROV_TYPE_STATE);
	CHECK_EQ(p.len, 1);
	CHECK_EQ(p.data[0], IMPROV_STATE_AUTHORIZED);
	CHECK_EQ(improv_decode(er, sizeof er, &p), sizeof er);
	CHECK_EQ(p.type, IMPROV_TYPE_ERROR);
	CHECK_EQ(improv_error_errno(p.data[0]), -ECONNREFUSED);
	CHECK_EQ(improv_decode(res, sizeof res, &p), sizeof res);
	struct improv_strings s;
	CHECK_EQ(improv_parse_result(&p, &s), 0);
	CHECK_EQ(s.cmd, IMPROV_CMD_GET_INFO);
	CHECK_EQ(s.n, 4);
	char b[32];
	improv_string_copy(&s, 0, b, sizeof b);
	CHECK_STR(b, "ESPHome");
	improv_string_copy(&s, 2, b, sizeof b);
	CHECK_STR(b, "ESP32-C3");
	improv_string_copy(&s, 3, b, sizeof b);
	CHECK_STR(b, "test");
	improv_string_copy(&s, 9, b, sizeof b);
	CHECK_STR(b, "");
	/* incomplete, foreign, bad checksum, bad version */
	CHECK_EQ(improv_decode(res, 20, &p), -EAGAIN);
	CHECK_EQ(improv_decode(res, 4, &p), -EAGAIN);
	CHECK_EQ(improv_decode((const uint8_t *)"IMPX", 4, &p), -EINVAL);
	uint8_t bad[sizeof st];
	memcpy(bad, st, sizeof st);
	bad[10] ^= 1;
	CHECK_EQ(improv_decode(bad, sizeof bad, &p), -EPROTO);
	memcpy(bad, st, sizeof st);
	bad[6] = 2;
	bad[10] += 1;   /* checksum right, version wrong */
	CHECK_EQ(improv_decode(bad, sizeof bad, &p), -EPROTO);
	/* a string list longer than the packet */
	p.type = IMPROV_TYPE_RESULT;
	p.len = 4;
	p.data[0] = 3; p.data[1] = 2; p.data[2] = 5; p.data[3] = 'a';
	CHECK_EQ(improv_parse_result(&p, &s), -EPROTO);
	p.data[1] = 9;
	CHECK_EQ(improv_parse_result(&p, &s), -EPROTO);
	/* empty list (scan terminator 04 00 00) */
	p.len = 3;
	p.data[0] = 4; p.data[1] = 0; p.data[2] = 0;
	CHECK_EQ(improv_parse_result(&p, &s), 0);
	CHECK_EQ(s.n, 0);
}

/* ---------- parser ---------- */

static size_t mkpkt(uint8_t *out, uint8_t type, const uint8_t *d, size_t n)
{
	/* independent of improv_encode: checksum summed here */
	memcpy(out, "IMPROV", 6);
	out[6] = 1; out[7] = type; out[8] = (uint8_t)n;
	memcpy(out + 9, d, n);
	unsigned s = 0;
	for (size_t i = 0; i < 9 + n; i++)
		s += out[i];
	out[9 + n] = (uint8_t)s;
	out[10 + n] = '\n';
	return 11 + n;
}

static size_t mkresult(uint8_t *out, uint8_t cmd, const char *const *strs, int n, bool trailing0)
{
	uint8_t d[256];
	size_t p = 2;
	for (int i = 0; i < n; i++) {
		size_t l = strlen(strs[i]);
		d[p++] = (uint8_t)l;
		memcpy(d + p, strs[i], l);
		p += l;
	}
	d[0] = cmd;
	d[1] = (uint8_t)(p - 2);
	if (trailing0)
		d[p++] = 0;
	return mkpkt(out, IMPROV_TYPE_RESULT, d, p);
}

static int feed_all(struct improv_parser *ps, const uint8_t *b, size_t n, struct improv_packet *out,
                    int max, size_t chunk)
{
	int got = 0;
	size_t pos = 0;
	while (pos < n) {
		size_t len = n - pos < chunk ? n - pos : chunk, used;
		struct improv_packet p;
		if (improv_parser_feed(ps, b + pos, len, &used, &p) && got < max)
			out[got++] = p;
		pos += used;
	}
	return got;
}

static void count_line(void *ctx, const char *line)
{
	(void)line;
	(*(int *)ctx)++;
}

static void packets_among_log_lines(void)
{
	uint8_t s[2048];
	size_t n = 0;
	const char *l1 = "[I][app:102]: ESPHome version 2024.6.6 compiled on Jul 11 2024\r\n";
	memcpy(s, l1, strlen(l1)); n += strlen(l1);
	uint8_t st = IMPROV_STATE_AUTHORIZED;
	n += mkpkt(s + n, IMPROV_TYPE_STATE, &st, 1);
	const char *l2 = "[D][wifi:123]: mid-line IMPROV is text, not a packet\r\n";
	memcpy(s + n, l2, strlen(l2)); n += strlen(l2);
	const char *info[] = { "ESPHome", "2024.6.6", "ESP32", "kitchen" };
	n += mkresult(s + n, IMPROV_CMD_GET_INFO, info, 4, true);
	/* a packet whose length byte is 0x0A (newline) must survive */
	uint8_t ten[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	n += mkpkt(s + n, 0x7E, ten, sizeof ten);
	const char *l3 = "IMPROVISED text at a line start\n";
	memcpy(s + n, l3, strlen(l3)); n += strlen(l3);
	/* bad checksum: dropped */
	size_t bad = n;
	n += mkpkt(s + n, IMPROV_TYPE_STATE, &st, 1);
	s[bad + 10] ^= 0x55;
	uint8_t err = IMPROV_ERR_UNKNOWN_RPC;
	n += mkpkt(s + n, IMPROV_TYPE_ERROR, &err, 1);
	const char *l4 = "partial line without newline";
	memcpy(s + n, l4, strlen(l4)); n += strlen(l4);

	/* same result whether fed at once, byte by byte, or in odd chunks */
	size_t chunks[] = { sizeof s, 1, 7, 64 };
	for (size_t c = 0; c < 4; c++) {
		struct improv_parser ps;
		improv_parser_init(&ps);
		int lines = 0;
		ps.on_line = count_line;
		ps.line_ctx = &lines;
		struct improv_packet p[8];
		int got = feed_all(&ps, s, n, p, 8, chunks[c]);
		CHECK_EQ(got, 4);
		CHECK_EQ(p[0].type, IMPROV_TYPE_STATE);
		CHECK_EQ(p[0].data[0], IMPROV_STATE_AUTHORIZED);
		CHECK_EQ(p[1].type, IMPROV_TYPE_RESULT);
		CHECK_EQ(p[1].len, 34);   /* 2 + 31 string bytes + trailing 0x00 */
		CHECK_EQ(p[2].type, 0x7E);
		CHECK_EQ(p[2].len, 10);
		CHECK_MEM(p[2].data, ten, 10);
		CHECK_EQ(p[3].type, IMPROV_TYPE_ERROR);
		CHECK_EQ(ps.dropped, 1);
		/* console: the three complete text lines, \r stripped, no blank
		 * lines for the newline after each packet */
		CHECK_EQ(improv_console_count(&ps), 3);
		CHECK_STR(improv_console_line(&ps, 0), "[I][app:102]: ESPHome version 2024.6.6 compiled on Jul 11 2024");
		CHECK_STR(improv_console_line(&ps, 1), "[D][wifi:123]: mid-line IMPROV is text, not a packet");
		CHECK_STR(improv_console_line(&ps, 2), "IMPROVISED text at a line start");
		CHECK(improv_console_line(&ps, 3) == NULL);
		CHECK_EQ(lines, 3);
	}
}

static void console_ring_keeps_recent_lines(void)
{
	struct improv_parser ps;
	improv_parser_init(&ps);
	char line[64];
	for (int i = 0; i < IMPROV_CONSOLE_LINES + 10; i++) {
		int k = snprintf(line, sizeof line, "line %d\n", i);
		size_t used;
		struct improv_packet p;
		CHECK_EQ(improv_parser_feed(&ps, (uint8_t *)line, (size_t)k, &used, &p), 0);
	}
	CHECK_EQ(improv_console_count(&ps), IMPROV_CONSOLE_LINES);
	CHECK_STR(improv_console_line(&ps, 0), "line 10");
	snprintf(line, sizeof line, "line %d", IMPROV_CONSOLE_LINES + 9);
	CHECK_STR(improv_console_line(&ps, IMPROV_CONSOLE_LINES - 1), line);
	/* an over-long line is cut, not overflowing */
	uint8_t big[1000];
	memset(big, 'x', sizeof big);
	big[999] = '\n';
	size_t used;
	struct improv_packet p;
	improv_parser_feed(&ps, big, sizeof big, &used, &p);
	CHECK_EQ(strlen(improv_console_line(&ps, IMPROV_CONSOLE_LINES - 1)), IMPROV_CONSOLE_LINE_MAX - 1);
}

static void parser_survives_garbage(void)
{
	struct improv_parser ps;
	improv_parser_init(&ps);
	uint32_t x = 99;
	uint8_t b[4096];
	for (int round = 0; round < 50; round++) {
		for (size_t i = 0; i < sizeof b; i++) {
			x ^= x << 13; x ^= x >> 17; x ^= x << 5;
			b[i] = (uint8_t)x;
			if (x % 97 == 0 && i + 6 < sizeof b) { /* plant header starts */
				memcpy(b + i, "\nIMPROV", 7);
				i += 6;
			}
		}
		struct improv_packet p[64];
		feed_all(&ps, b, sizeof b, p, 64, 1 + round * 13);
	}
	/* random packets through decode and the result parser */
	for (int i = 0; i < 20000; i++) {
		uint8_t raw[IMPROV_MAX_WIRE];
		size_t n = 9 + (x % 260);
		for (size_t k = 0; k < n && k < sizeof raw; k++) {
			x ^= x << 13; x ^= x >> 17; x ^= x << 5;
			raw[k] = (uint8_t)x;
		}
		memcpy(raw, "IMPROV\x01\x04", 8);
		if (n > sizeof raw)
			n = sizeof raw;
		unsigned sum = 0;
		size_t total = 9 + raw[8] + 1;
		if (total <= n) {
			for (size_t k = 0; k + 1 < total; k++)
				sum += raw[k];
			raw[total - 1] = (uint8_t)sum;
		}
		struct improv_packet pk;
		struct improv_strings st;
		int r = improv_decode(raw, n, &pk);
		CHECK(r == -EAGAIN || r == (int)total);
		if (r > 0 && improv_parse_result(&pk, &st) == 0) {
			char tmp[8];
			for (int k = 0; k < st.n; k++)
				improv_string_copy(&st, k, tmp, sizeof tmp);
			CHECK(st.n <= IMPROV_MAX_STRINGS);
		}
	}
	/* still in sync afterwards: a clean packet on a fresh line decodes */
	uint8_t s[64];
	uint8_t st = 4;
	s[0] = '\n';
	size_t n = 1 + mkpkt(s + 1, IMPROV_TYPE_STATE, &st, 1);
	/* a garbage packet may be swallowing bytes: at most 266 bytes of
	 * newlines bring the parser back to a line start */
	uint8_t nl[300];
	memset(nl, '\n', sizeof nl);
	struct improv_packet p[2];
	feed_all(&ps, nl, sizeof nl, p, 2, sizeof nl);
	CHECK_EQ(feed_all(&ps, s, n, p, 2, n), 1);
	CHECK_EQ(p[0].data[0], 4);
}

/* ---------- fake transport + scripted device ---------- */

struct say { uint64_t at, seq; uint8_t b[300]; size_t n; };
struct rpc_seen { uint64_t at; uint8_t cmd; uint8_t payload[256]; size_t plen; };

struct fake {
	esp_transport t;
	esp_fake_clock fc;
	struct say q[64];
	int nq;
	uint64_t seq;
	uint8_t pending[4096];
	size_t np;
	struct rpc_seen rpc[64];
	int nrpc;
	int bad_writes;
	int read_error;             /* returned by read when non-zero */
	atomic_int *cancel_flag;    /* set once the clock passes cancel_at */
	uint64_t cancel_at;
	void (*device)(struct fake *f, const struct rpc_seen *r);
	int counter;
};

static uint64_t fnow(struct fake *f) { return esp_now_us(&f->fc.clock); }

static void say(struct fake *f, uint32_t delay_ms, const uint8_t *b, size_t n)
{
	if (f->nq >= 64)
		return;
	struct say *s = &f->q[f->nq++];
	s->at = fnow(f) + (uint64_t)delay_ms * 1000;
	s->seq = f->seq++;   /* equal times keep their order */
	memcpy(s->b, b, n);
	s->n = n;
}
static void say_state(struct fake *f, uint32_t ms, uint8_t st)
{
	uint8_t b[16];
	say(f, ms, b, mkpkt(b, IMPROV_TYPE_STATE, &st, 1));
}
static void say_error(struct fake *f, uint32_t ms, uint8_t e)
{
	uint8_t b[16];
	say(f, ms, b, mkpkt(b, IMPROV_TYPE_ERROR, &e, 1));
}
static void say_result(struct fake *f, uint32_t ms, uint8_t cmd, const char *const *s, int n)
{
	uint8_t b[300];
	say(f, ms, b, mkresult(b, cmd, s, n, true));
}
static void say_text(struct fake *f, uint32_t ms, const char *t)
{
	say(f, ms, (const uint8_t *)t, strlen(t));
}

/* move due output into the pending buffer, in time order */
static void deliver_due(struct fake *f)
{
	for (;;) {
		int best = -1;
		for (int i = 0; i < f->nq; i++)
			if (f->q[i].at <= fnow(f) && (best < 0 || f->q[i].at < f->q[best].at ||
			    (f->q[i].at == f->q[best].at && f->q[i].seq < f->q[best].seq)))
				best = i;
		if (best < 0)
			return;
		if (f->np + f->q[best].n <= sizeof f->pending) {
			memcpy(f->pending + f->np, f->q[best].b, f->q[best].n);
			f->np += f->q[best].n;
		}
		f->q[best] = f->q[--f->nq];
	}
}

static int fake_read(esp_transport *t, uint8_t *buf, size_t len, uint32_t timeout_ms)
{
	struct fake *f = (struct fake *)t;
	if (f->read_error)
		return f->read_error;
	if (f->cancel_flag && fnow(f) >= f->cancel_at)
		atomic_store(f->cancel_flag, 1);
	deliver_due(f);
	if (!f->np) {
		uint64_t limit = fnow(f) + (uint64_t)timeout_ms * 1000, next = UINT64_MAX;
		for (int i = 0; i < f->nq; i++)
			if (f->q[i].at < next)
				next = f->q[i].at;
		if (next > limit) {
			esp_fake_clock_advance(&f->fc, limit - fnow(f));
			if (f->cancel_flag && fnow(f) >= f->cancel_at)
				atomic_store(f->cancel_flag, 1);   /* "another thread" */
			return -ETIMEDOUT;
		}
		esp_fake_clock_advance(&f->fc, next - fnow(f));
		deliver_due(f);
	}
	size_t n = f->np < len ? f->np : len;
	memcpy(buf, f->pending, n);
	memmove(f->pending, f->pending + n, f->np - n);
	f->np -= n;
	return (int)n;
}

/* The device side parses what the client wrote, independently of the
 * code under test: one whole packet + '\n' per write. */
static int fake_write(esp_transport *t, const uint8_t *b, size_t n)
{
	struct fake *f = (struct fake *)t;
	unsigned sum = 0;
	if (n < 12 || memcmp(b, "IMPROV", 6) || b[6] != 1 || b[7] != IMPROV_TYPE_RPC ||
	    n != (size_t)b[8] + 11 || b[n - 1] != '\n' || b[10] != b[8] - 2) {
		f->bad_writes++;
		return (int)n;
	}
	for (size_t i = 0; i < n - 2; i++)
		sum += b[i];
	if ((uint8_t)sum != b[n - 2]) {
		f->bad_writes++;
		return (int)n;
	}
	if (f->nrpc < 64) {
		struct rpc_seen *r = &f->rpc[f->nrpc++];
		r->at = fnow(f);
		r->cmd = b[9];
		r->plen = b[10];
		memcpy(r->payload, b + 11, r->plen);
		if (f->device)
			f->device(f, r);
	}
	return (int)n;
}

static int fake_flush(esp_transport *t) { (void)t; return 0; }
static int fake_baud(esp_transport *t, uint32_t b) { (void)t; (void)b; return 0; }
static int fake_lines(esp_transport *t, int d, int r) { (void)t; (void)d; (void)r; return -ENOTTY; }
static void fake_close(esp_transport *t) { (void)t; }
static const struct esp_transport_ops fake_ops = { fake_read, fake_write, fake_flush, fake_baud,
                                                   fake_lines, fake_close };

static struct fake *fake_new(void (*device)(struct fake *, const struct rpc_seen *))
{
	struct fake *f = calloc(1, sizeof *f);
	esp_fake_clock_init(&f->fc, 5000000);
	f->t.ops = &fake_ops;
	f->t.clock = &f->fc.clock;
	f->t.flags = ESP_TR_NO_LINES;
	f->device = device;
	return f;
}

/* ---------- scripted devices ---------- */

/* boots slowly: ignores everything for 2.5 s, then answers like ESPHome */
static uint64_t boot_done;
static void dev_slow_boot(struct fake *f, const struct rpc_seen *r)
{
	if (fnow(f) < boot_done)
		return;
	if (r->cmd == IMPROV_CMD_GET_STATE) {
		say_text(f, 1, "[I][improv_serial:050]: request state\r\n");
		say_state(f, 2, IMPROV_STATE_AUTHORIZED);
	}
}

static void resends_state_request_every_second(void)
{
	struct fake *f = fake_new(dev_slow_boot);
	uint64_t t0 = fnow(f);
	boot_done = t0 + 2500000;
	say_text(f, 100, "ets Jun  8 2016 00:22:57\r\nrst:0x1 (POWERON_RESET)\r\n");
	struct improv_client c;
	improv_client_init(&c, &f->t);
	int st = improv_get_state(&c, IMPROV_AFTER_FLASH_TIMEOUT_MS);
	CHECK_EQ(st, IMPROV_STATE_AUTHORIZED);
	CHECK_EQ(c.state, IMPROV_STATE_AUTHORIZED);
	CHECK_EQ(f->nrpc, 4);          /* t = 0, 1, 2, 3 s */
	for (int i = 0; i < f->nrpc; i++) {
		CHECK_EQ(f->rpc[i].cmd, IMPROV_CMD_GET_STATE);
		CHECK_EQ(f->rpc[i].at - t0, (uint64_t)i * 1000000);
	}
	CHECK_EQ(f->bad_writes, 0);
	CHECK(fnow(f) - t0 < 3100000);
	/* the boot log went to the console ring */
	CHECK_EQ(improv_console_count(&c.ps), 3);
	CHECK_STR(improv_console_line(&c.ps, 0), "ets Jun  8 2016 00:22:57");
	free(f);
}

/* resets in the middle of its first answer (a cut packet), then works */
static void dev_cut_packet(struct fake *f, const struct rpc_seen *r)
{
	if (r->cmd != IMPROV_CMD_GET_STATE)
		return;
	if (f->counter++ == 0) {
		say(f, 2, (const uint8_t *)"IMPROV\x01\x01\x40", 9);  /* claims 64 data bytes */
		say_text(f, 400, "ets Jun  8 2016 00:22:57\r\n");
		say_state(f, 450, IMPROV_STATE_AUTHORIZED);
	} else {
		say_state(f, 2, IMPROV_STATE_AUTHORIZED);
	}
}

static void cut_packet_does_not_swallow_the_next(void)
{
	struct fake *f = fake_new(dev_cut_packet);
	struct improv_client c;
	improv_client_init(&c, &f->t);
	uint64_t t0 = fnow(f);
	CHECK_EQ(improv_get_state(&c, 0), IMPROV_STATE_AUTHORIZED);
	CHECK_EQ(fnow(f) - t0, 450000);   /* the first answer, not the re-ask */
	CHECK_EQ(f->nrpc, 1);
	CHECK_EQ(c.ps.dropped, 1);
	CHECK_STR(improv_console_line(&c.ps, 0), "ets Jun  8 2016 00:22:57");
	free(f);
}

static void silent_device_times_out_in_time(void)
{
	struct fake *f = fake_new(NULL);
	uint64_t t0 = fnow(f);
	struct improv_client c;
	improv_client_init(&c, &f->t);
	CHECK_EQ(improv_get_state(&c, 0), -ETIMEDOUT);
	CHECK_EQ(fnow(f) - t0, (uint64_t)IMPROV_DETECT_TIMEOUT_MS * 1000);
	CHECK_EQ(f->nrpc, 2);          /* t = 0 and 1 s within 1.5 s */
	CHECK(strstr(c.msg, "no Improv answer") != NULL);
	t0 = fnow(f);
	struct improv_info info;
	CHECK_EQ(improv_device_info(&c, &info, 2000), -ETIMEDOUT);
	CHECK_EQ(fnow(f) - t0, 2000000);
	free(f);
}

static const char *const info4[] = { "ESPHome", "2024.6.6", "ESP32-C3", "kitchen-light" };
static const char *const info6[] = { "ESPHome", "2025.12.2", "ESP32-S3", "desk", "ESP-IDF", "5.3.1" };
static const char *const url[] = { "http://192.168.1.50:80" };

static void dev_esphome(struct fake *f, const struct rpc_seen *r)
{
	switch (r->cmd) {
	case IMPROV_CMD_GET_STATE:
		say_state(f, 5, f->counter ? IMPROV_STATE_PROVISIONED : IMPROV_STATE_AUTHORIZED);
		if (f->counter)
			say_result(f, 5, IMPROV_CMD_GET_STATE, url, 1);
		break;
	case IMPROV_CMD_GET_INFO:
		/* a stale scan result and a log line first: both ignored */
		say_result(f, 2, IMPROV_CMD_SCAN, NULL, 0);
		say_text(f, 3, "[D][improv:1]: info\r\n");
		if (f->counter)
			say_result(f, 10, IMPROV_CMD_GET_INFO, info6, 6);
		else
			say_result(f, 10, IMPROV_CMD_GET_INFO, info4, 4);
		break;
	case IMPROV_CMD_SCAN: {
		const char *n1[] = { "HomeNet", "-48", "YES" }, *n2[] = { "Cafe Free", "-71", "NO" },
		           *n3[] = { "Neighbour", "-90", "YES" };
		say_result(f, 500, IMPROV_CMD_SCAN, n1, 3);
		say_text(f, 600, "[W][wifi:9]: scan done\r\n");
		say_result(f, 700, IMPROV_CMD_SCAN, n2, 3);
		say_result(f, 800, IMPROV_CMD_SCAN, n3, 3);
		say_result(f, 900, IMPROV_CMD_SCAN, NULL, 0);
		break;
	}
	default:
		say_error(f, 5, IMPROV_ERR_UNKNOWN_RPC);   /* ESPHome 2024: only 0x01-0x04 */
	}
}

static void state_info_scan_flows(void)
{
	struct fake *f = fake_new(dev_esphome);
	struct improv_client c;
	improv_client_init(&c, &f->t);
	CHECK_EQ(improv_get_state(&c, 0), IMPROV_STATE_AUTHORIZED);
	CHECK_STR(c.url, "");
	struct improv_info info;
	CHECK_EQ(improv_device_info(&c, &info, 0), 0);
	CHECK_STR(info.firmware, "ESPHome");
	CHECK_STR(info.version, "2024.6.6");
	CHECK_STR(info.chip, "ESP32-C3");
	CHECK_STR(info.name, "kitchen-light");
	CHECK_STR(info.os_name, "");
	CHECK_EQ(info.n_strings, 4);
	struct improv_network nets[2];
	uint64_t t0 = fnow(f);
	CHECK_EQ(improv_scan(&c, nets, 2, 0), 3);  /* three listed, two stored */
	CHECK_EQ(fnow(f) - t0, 900000);
	CHECK_EQ(nets[0].ssid_len, 7);
	CHECK_MEM(nets[0].ssid, "HomeNet", 7);
	CHECK_EQ(nets[0].rssi, -48);
	CHECK(nets[0].auth);
	CHECK_MEM(nets[1].ssid, "Cafe Free", 9);
	CHECK_EQ(nets[1].rssi, -71);
	CHECK(!nets[1].auth);
	CHECK_EQ(f->bad_writes, 0);
	/* the RPCs went out one at a time, each after the previous answer */
	CHECK_EQ(f->nrpc, 3);
	CHECK(f->rpc[1].at > f->rpc[0].at && f->rpc[2].at > f->rpc[1].at);

	/* provisioned device: URL after the state; 6 info strings */
	f->counter = 1;
	CHECK_EQ(improv_get_state(&c, 0), IMPROV_STATE_PROVISIONED);
	CHECK_STR(c.url, "http://192.168.1.50:80");
	CHECK_EQ(improv_device_info(&c, &info, 0), 0);
	CHECK_EQ(info.n_strings, 6);
	CHECK_STR(info.os_name, "ESP-IDF");
	CHECK_STR(info.os_version, "5.3.1");

	/* hostname / device name: unknown RPC on ESPHome 2024 */
	char name[64] = "unchanged";
	CHECK_EQ(improv_hostname(&c, NULL, name, sizeof name, 0), -EOPNOTSUPP);
	CHECK_STR(name, "");
	CHECK(strstr(c.msg, "does not support") != NULL);
	CHECK_EQ(improv_device_name(&c, "new-name", name, sizeof name, 0), -EOPNOTSUPP);
	free(f);
}

static char dev_name[64] = "old-name";
static void dev_names(struct fake *f, const struct rpc_seen *r)
{
	if (r->cmd == IMPROV_CMD_DEVICE_NAME || r->cmd == IMPROV_CMD_HOSTNAME) {
		if (r->plen && r->cmd == IMPROV_CMD_HOSTNAME && memchr(r->payload, '_', r->plen)) {
			say_error(f, 3, IMPROV_ERR_BAD_HOSTNAME);
			return;
		}
		if (r->plen) {
			memcpy(dev_name, r->payload, r->plen);
			dev_name[r->plen] = 0;
		}
		const char *s[] = { dev_name };
		say_result(f, 3, r->cmd, s, 1);
	}
}

static void hostname_and_device_name(void)
{
	struct fake *f = fake_new(dev_names);
	struct improv_client c;
	improv_client_init(&c, &f->t);
	char out[64];
	CHECK_EQ(improv_device_name(&c, NULL, out, sizeof out, 0), 0);
	CHECK_STR(out, "old-name");
	CHECK_EQ(f->rpc[0].plen, 0);
	CHECK_EQ(improv_device_name(&c, "Living Room", out, sizeof out, 0), 0);
	CHECK_STR(out, "Living Room");
	CHECK_EQ(f->rpc[1].plen, 11);
	CHECK_MEM(f->rpc[1].payload, "Living Room", 11);
	CHECK_EQ(improv_hostname(&c, "living_room", out, sizeof out, 0), -EINVAL);
	CHECK(strstr(c.msg, "bad hostname") != NULL);
	CHECK_EQ(improv_hostname(&c, "living-room", out, sizeof out, 0), 0);
	CHECK_STR(out, "living-room");
	char big[300];
	memset(big, 'a', sizeof big);
	big[299] = 0;
	CHECK_EQ(improv_hostname(&c, big, out, sizeof out, 0), -EINVAL);
	CHECK_EQ(f->bad_writes, 0);
	free(f);
}

/* Wi-Fi: joins after 6 s when the password matches, else fails after 30 s
 * like ESPHome (error 0x03, back to ready). */
static const uint8_t good_ssid[] = { 'H', 'o', 'm', 'e', 0x00, 0x0A, 0xFF };   /* arbitrary bytes */
static const uint8_t good_pw[] = "hunter2-\x0a-\x00-secret";
static void dev_wifi(struct fake *f, const struct rpc_seen *r)
{
	if (r->cmd != IMPROV_CMD_WIFI) {
		say_error(f, 2, IMPROV_ERR_UNKNOWN_RPC);
		return;
	}
	size_t sl = r->payload[0], pl = r->payload[1 + sl];
	if (r->plen != sl + pl + 2) {
		say_error(f, 2, IMPROV_ERR_INVALID_RPC);
		return;
	}
	say_state(f, 5, IMPROV_STATE_PROVISIONING);
	if (f->counter == 2)
		return;   /* never finishes */
	bool ok = sl == sizeof good_ssid && !memcmp(r->payload + 1, good_ssid, sl) &&
	          pl == sizeof good_pw && !memcmp(r->payload + 2 + sl, good_pw, pl);
	if (ok) {
		say_text(f, 5000, "[I][wifi:500]: Connected!\r\n");
		say_state(f, 6000, IMPROV_STATE_PROVISIONED);
		if (f->counter != 1)
			say_result(f, 6000, IMPROV_CMD_WIFI, url, 1);
	} else {
		say_text(f, 10000, "[W][wifi:600]: Connecting failed\r\n");
		say_error(f, 30000, IMPROV_ERR_UNABLE_TO_CONNECT);
		say_state(f, 30000, IMPROV_STATE_AUTHORIZED);
	}
}

static char logbuf[8192];
static size_t loglen;
static void log_capture(int level, const char *line, void *ctx)
{
	(void)level; (void)ctx;
	size_t n = strlen(line);
	if (loglen + n + 1 < sizeof logbuf) {
		memcpy(logbuf + loglen, line, n);
		loglen += n;
		logbuf[loglen++] = '\n';
	}
}

static bool contains(const char *hay, size_t n, const char *needle)
{
	return memmem(hay, n, needle, strlen(needle)) != NULL;
}

static void provision_success_and_bytes(void)
{
	struct fake *f = fake_new(dev_wifi);
	struct improv_client c;
	improv_client_init(&c, &f->t);
	uint64_t t0 = fnow(f);
	CHECK_EQ(improv_provision(&c, good_ssid, sizeof good_ssid, good_pw, sizeof good_pw, 0), 0);
	CHECK_STR(c.url, "http://192.168.1.50:80");
	CHECK_EQ(fnow(f) - t0, 6000000);
	CHECK_EQ(c.state, IMPROV_STATE_PROVISIONED);
	/* the device got the exact bytes, lengths explicit (NUL and LF inside) */
	CHECK_EQ(f->nrpc, 1);
	CHECK_EQ(f->rpc[0].payload[0], sizeof good_ssid);
	CHECK_MEM(f->rpc[0].payload + 1, good_ssid, sizeof good_ssid);
	CHECK_EQ(f->rpc[0].payload[1 + sizeof good_ssid], sizeof good_pw);
	CHECK_MEM(f->rpc[0].payload + 2 + sizeof good_ssid, good_pw, sizeof good_pw);
	CHECK_EQ(f->bad_writes, 0);
	/* state 4 without the URL result: success after a short grace */
	f->counter = 1;
	t0 = fnow(f);
	CHECK_EQ(improv_provision(&c, good_ssid, sizeof good_ssid, good_pw, sizeof good_pw, 0), 0);
	CHECK_STR(c.url, "");
	CHECK(fnow(f) - t0 <= 8000000);
	free(f);
}

static void wrong_password_never_leaks(void)
{
	struct fake *f = fake_new(dev_wifi);
	struct improv_client c;
	improv_client_init(&c, &f->t);
	const uint8_t wrong[] = "correct-horse-WRONG";
	loglen = 0;
	int old = esp_log_get_level();
	esp_log_set_level(ESP_LOG_DEBUG - 8);   /* nothing to stderr, all to the sink */
	esp_log_set_sink(log_capture, NULL);
	uint64_t t0 = fnow(f);
	int r = improv_provision(&c, good_ssid, sizeof good_ssid, wrong, sizeof wrong - 1, 0);
	esp_log_set_sink(NULL, NULL);
	esp_log_set_level(old);
	CHECK_EQ(r, -ECONNREFUSED);
	CHECK_EQ(fnow(f) - t0, 30000000);
	CHECK(strstr(c.msg, "could not connect") != NULL);
	CHECK(!contains(c.msg, strlen(c.msg), "WRONG"));
	CHECK(!contains(c.msg, strlen(c.msg), "Home"));
	CHECK(loglen > 0);   /* the client did log (so the check below means something) */
	CHECK(!contains(logbuf, loglen, "WRONG"));
	CHECK(!contains(logbuf, loglen, "correct-horse"));
	/* and the console ring holds only what the device printed */
	for (unsigned i = 0; i < improv_console_count(&c.ps); i++)
		CHECK(strstr(improv_console_line(&c.ps, i), "WRONG") == NULL);
	/* too long for a packet: refused before anything is sent */
	uint8_t pw[255];
	memset(pw, 'Q', sizeof pw);
	int before = f->nrpc;
	CHECK_EQ(improv_provision(&c, good_ssid, sizeof good_ssid, pw, sizeof pw, 0), -EINVAL);
	CHECK_EQ(f->nrpc, before);
	CHECK(!contains(c.msg, strlen(c.msg), "QQQ"));
	free(f);
}

static void provision_timeout_within_deadline(void)
{
	struct fake *f = fake_new(dev_wifi);
	f->counter = 2;
	struct improv_client c;
	improv_client_init(&c, &f->t);
	uint64_t t0 = fnow(f);
	CHECK_EQ(improv_provision(&c, good_ssid, sizeof good_ssid, good_pw, sizeof good_pw, 0), -ETIMEDOUT);
	CHECK_EQ(fnow(f) - t0, (uint64_t)IMPROV_PROVISION_TIMEOUT_MS * 1000);
	CHECK(IMPROV_PROVISION_TIMEOUT_MS >= 45000);
	CHECK(strstr(c.msg, "still trying") != NULL);
	/* a shorter deadline is honoured too */
	t0 = fnow(f);
	CHECK_EQ(improv_provision(&c, good_ssid, sizeof good_ssid, good_pw, sizeof good_pw, 1234), -ETIMEDOUT);
	CHECK_EQ(fnow(f) - t0, 1234000);
	free(f);
}

static void cancel_stops_provisioning(void)
{
	struct fake *f = fake_new(dev_wifi);
	f->counter = 2;               /* the device never finishes */
	atomic_int cancel = 0;
	struct improv_client c;
	improv_client_init(&c, &f->t);
	c.cancel = &cancel;
	uint64_t t0 = fnow(f);
	f->cancel_flag = &cancel;
	f->cancel_at = t0 + 7000000;
	CHECK_EQ(improv_provision(&c, good_ssid, sizeof good_ssid, good_pw, sizeof good_pw, 0), -EINTR);
	CHECK(fnow(f) - t0 >= 7000000);
	CHECK(fnow(f) - t0 <= 7000000 + IMPROV_CANCEL_POLL_MS * 1000);
	CHECK_STR(c.msg, "cancelled");
	free(f);
}

static void device_errors_map_to_errno(void)
{
	CHECK_EQ(improv_error_errno(IMPROV_ERR_NONE), 0);
	CHECK_EQ(improv_error_errno(IMPROV_ERR_INVALID_RPC), -EPROTO);
	CHECK_EQ(improv_error_errno(IMPROV_ERR_UNKNOWN_RPC), -EOPNOTSUPP);
	CHECK_EQ(improv_error_errno(IMPROV_ERR_UNABLE_TO_CONNECT), -ECONNREFUSED);
	CHECK_EQ(improv_error_errno(IMPROV_ERR_NOT_AUTHORIZED), -EACCES);
	CHECK_EQ(improv_error_errno(IMPROV_ERR_BAD_HOSTNAME), -EINVAL);
	CHECK_EQ(improv_error_errno(IMPROV_ERR_UNKNOWN), -EIO);
	CHECK_STR(improv_error_name(3), "unable to connect");
	CHECK_STR(improv_state_name(2), "ready");
	/* unplugged mid-request: the transport's error comes back as is */
	struct fake *f = fake_new(NULL);
	f->read_error = -ENODEV;
	struct improv_client c;
	improv_client_init(&c, &f->t);
	CHECK_EQ(improv_get_state(&c, 0), -ENODEV);
	struct improv_info info;
	CHECK_EQ(improv_device_info(&c, &info, 0), -ENODEV);
	free(f);
}

int main(void)
{
	RUN(encode_state_request_exactly);
	RUN(encode_wifi_spec_example);
	RUN(encode_limits);
	RUN(decode_state_error_result);
	RUN(packets_among_log_lines);
	RUN(console_ring_keeps_recent_lines);
	RUN(parser_survives_garbage);
	RUN(resends_state_request_every_second);
	RUN(cut_packet_does_not_swallow_the_next);
	RUN(silent_device_times_out_in_time);
	RUN(state_info_scan_flows);
	RUN(hostname_and_device_name);
	RUN(provision_success_and_bytes);
	RUN(wrong_password_never_leaks);
	RUN(provision_timeout_within_deadline);
	RUN(cancel_stops_provisioning);
	RUN(device_errors_map_to_errno);
	return t_done();
}
