/* Improv serial on the simulated device, as ESPHome + sdk-cpp behave
 * (PROTOCOL.md part B): codec bytes, state/info/scan/provision, errors,
 * the swallowed byte after a handled packet and the 100 ms gap. */
#include "test_app_util.h"

#define MB (1024u * 1024u)
#define MS 1000u

/* the request improv-wifi-serial-sdk sends first (REFCLIENTS.md) */
static const uint8_t sdk_state_req[13] = { 0x49, 0x4d, 0x50, 0x52, 0x4f, 0x56, 0x01, 0x03, 0x02, 0x02, 0x00, 0xe5, 0x0a };

/* An ESPHome device with improv_serial, booted and past setup(). */
static void up(struct tdev *d, esp_chip_id chip, int image_chip)
{
	tdev_init(d, chip, 4 * MB);
	strcpy(d->wifi[0].ssid, "HomeNet");
	strcpy(d->wifi[0].pass, "correct horse");
	strcpy(d->wifi[1].ssid, "CafeOpen");
	strcpy(d->wifi[2].ssid, "HomeNet");       /* same SSID seen twice */
	strcpy(d->wifi[2].pass, "other");
	strcpy(d->wifi[3].ssid, "");              /* hidden */
	d->env.n_wifi = 4;
	put_layout(d, image_chip, "2024.6.6", true);
	tdev_boot(d);
	tdev_run(d, 2000 * MS);
}

static int improv(struct tdev *d, struct tpkt *p, int max)
{
	return tout_improv(&d->out, p, max);
}

static void test_encoder_vectors(void)
{
	uint8_t out[64];
	static const uint8_t st[] = { 0x49, 0x4d, 0x50, 0x52, 0x4f, 0x56, 0x01, 0x01, 0x01, 0x02, 0xe2, 0x0a };
	CHECK_EQ(improv_encode(1, (const uint8_t[]){ 2 }, 1, out), sizeof st);
	CHECK_MEM(out, st, sizeof st);
	/* the empty scan terminator: data 04 00 00 (sdk-cpp keeps a checksum slot) */
	uint8_t data[8];
	CHECK_EQ(improv_rpc_result(4, NULL, 0, data, sizeof data), 3);
	CHECK_MEM(data, ((const uint8_t[]){ 4, 0, 0 }), 3);
	const char *s[2] = { "ab", "c" };
	CHECK_EQ(improv_rpc_result(3, s, 2, data, sizeof data), 8);
	CHECK_MEM(data, ((const uint8_t[]){ 3, 5, 2, 'a', 'b', 1, 'c', 0 }), 8);
	char big[300];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	const char *b1[1] = { big };
	uint8_t dbig[300];
	CHECK_EQ(improv_rpc_result(3, b1, 1, dbig, sizeof dbig), 0);
}

static void test_silent_until_asked_then_sdk_request(void)
{
	struct tdev d;
	up(&d, ESP_CHIP_ESP32, 0);
	struct tpkt p[8];
	CHECK_EQ(improv(&d, p, 8), 0);
	size_t before = d.out.len;
	tdev_send(&d, sdk_state_req, sizeof sdk_state_req);
	tdev_run(&d, 10 * MS);
	int n = improv(&d, p, 8);
	CHECK_EQ(n, 1);
	CHECK(p[0].csum_ok);
	CHECK_EQ(p[0].type, 1);
	CHECK_EQ(p[0].len, 1);
	CHECK_EQ(p[0].data[0], 0x02);
	static const uint8_t want[] = { 0x49, 0x4d, 0x50, 0x52, 0x4f, 0x56, 0x01, 0x01, 0x01, 0x02, 0xe2, 0x0a };
	CHECK(memmem(d.out.b + before, d.out.len - before, want, sizeof want) != NULL);
	/* answered within a few ms, not at once */
	tdev_free(&d);

	up(&d, ESP_CHIP_ESP32, 0);
	tdev_send(&d, sdk_state_req, sizeof sdk_state_req);
	sim_app_poll(d.app, d.now);
	CHECK_EQ(improv(&d, p, 8), 0);
	sim_app_poll(d.app, d.now + 5 * MS);
	CHECK_EQ(improv(&d, p, 8), 1);
	tdev_free(&d);
}

static void test_not_listening_during_boot(void)
{
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32, 4 * MB);
	put_layout(&d, 0, "2024.6.6", true);
	tdev_boot(&d);
	tdev_run(&d, 100 * MS);                    /* still in the bootloader */
	tdev_send(&d, sdk_state_req, sizeof sdk_state_req);
	tdev_run(&d, 200 * MS);
	struct tpkt p[2];
	CHECK_EQ(improv(&d, p, 2), 0);
	tdev_run(&d, 1500 * MS);
	tdev_send(&d, sdk_state_req, sizeof sdk_state_req);
	tdev_run(&d, 10 * MS);
	CHECK_EQ(improv(&d, p, 2), 1);
	tdev_free(&d);
}

static void test_device_info(void)
{
	struct tdev d;
	up(&d, ESP_CHIP_ESP32C3, 5);
	uint8_t r[16];
	size_t n = timprov_req(3, NULL, 0, r);
	r[n++] = '\n';
	tdev_send(&d, r, n);
	tdev_run(&d, 10 * MS);
	struct tpkt p[2];
	CHECK_EQ(improv(&d, p, 2), 1);
	char s[64];
	CHECK_EQ(p[0].type, 4);
	CHECK_EQ(p[0].data[0], 3);
	CHECK_EQ(p[0].len, p[0].data[1] + 3);      /* trailing 0x00 after the list */
	CHECK_EQ(p[0].data[p[0].len - 1], 0);
	CHECK_EQ(tpkt_nstr(&p[0]), 4);
	CHECK(tpkt_str(&p[0], 0, s, sizeof s) && strcmp(s, "ESPHome") == 0);
	CHECK(tpkt_str(&p[0], 1, s, sizeof s) && strcmp(s, "2024.6.6") == 0);
	CHECK(tpkt_str(&p[0], 2, s, sizeof s) && strcmp(s, "ESP32-C3") == 0);
	CHECK(tpkt_str(&p[0], 3, s, sizeof s) && strcmp(s, "my-widget") == 0);
	tdev_free(&d);
}

static void test_project_identity_in_newer_esphome(void)
{
	/* ESPHome >= 2024.9 reports `project:` name/version (esphome#7248) */
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32, 4 * MB);
	put_layout(&d, 0, "2024.10.1", true);
	tdev_boot(&d);
	tdev_run(&d, 2000 * MS);
	uint8_t r[16];
	size_t n = timprov_req(3, NULL, 0, r);
	r[n++] = '\n';
	tdev_send(&d, r, n);
	tdev_run(&d, 10 * MS);
	struct tpkt p[2];
	char s[64];
	CHECK_EQ(improv(&d, p, 2), 1);
	CHECK(tpkt_str(&p[0], 0, s, sizeof s) && strcmp(s, "acme.widget") == 0);
	CHECK(tpkt_str(&p[0], 1, s, sizeof s) && strcmp(s, "2.0") == 0);
	tdev_free(&d);
}

static void test_scan(void)
{
	struct tdev d;
	up(&d, ESP_CHIP_ESP32, 0);
	uint8_t r[16];
	size_t n = timprov_req(4, NULL, 0, r);
	r[n++] = '\n';
	tdev_send(&d, r, n);
	tdev_run(&d, 10 * MS);
	struct tpkt p[8];
	int np = improv(&d, p, 8);
	CHECK_EQ(np, 3);                           /* 2 unique visible SSIDs + terminator */
	if (np == 3) {
		char s[64];
		CHECK(tpkt_str(&p[0], 0, s, sizeof s) && strcmp(s, "HomeNet") == 0);
		CHECK(tpkt_str(&p[0], 2, s, sizeof s) && strcmp(s, "YES") == 0);
		CHECK(tpkt_str(&p[0], 1, s, sizeof s));
		int rssi = atoi(s);
		CHECK(rssi < -20 && rssi > -100);
		char again[12];
		snprintf(again, sizeof again, "%d", rssi);
		CHECK_STR(s, again);                    /* plain decimal text */
		CHECK(tpkt_str(&p[1], 0, s, sizeof s) && strcmp(s, "CafeOpen") == 0);
		CHECK(tpkt_str(&p[1], 2, s, sizeof s) && strcmp(s, "NO") == 0);
		CHECK_EQ(p[2].len, 3);
		CHECK_MEM(p[2].data, ((const uint8_t[]){ 4, 0, 0 }), 3);
		for (int i = 0; i < 3; i++)
			CHECK(p[i].csum_ok && p[i].type == 4 && p[i].data[0] == 4);
	}
	tdev_free(&d);
}

static size_t wifi_req(const char *ssid, const char *pass, uint8_t *out)
{
	uint8_t data[200];
	size_t sl = strlen(ssid), pl = strlen(pass);
	data[0] = (uint8_t)sl;
	memcpy(data + 1, ssid, sl);
	data[1 + sl] = (uint8_t)pl;
	memcpy(data + 2 + sl, pass, pl);
	size_t n = timprov_req(1, data, (uint8_t)(2 + sl + pl), out);
	out[n++] = '\n';
	return n;
}

static void test_provision_success(void)
{
	struct tdev d;
	up(&d, ESP_CHIP_ESP32, 0);
	uint8_t r[300];
	size_t n = wifi_req("HomeNet", "correct horse", r);
	uint64_t t0 = d.now;
	tdev_send(&d, r, n);
	tdev_run(&d, 10 * MS);
	struct tpkt p[8];
	CHECK_EQ(improv(&d, p, 8), 1);
	CHECK(p[0].type == 1 && p[0].data[0] == IMPROV_STATE_PROVISIONING);
	CHECK_EQ(sim_app_improv_state(d.app), IMPROV_STATE_PROVISIONING);
	/* while connecting, the state reads 0x03 */
	tdev_send(&d, sdk_state_req, sizeof sdk_state_req);
	tdev_run(&d, 10 * MS);
	CHECK_EQ(improv(&d, p, 8), 2);
	CHECK_EQ(p[1].data[0], IMPROV_STATE_PROVISIONING);
	/* done within a few seconds of sim time */
	while (improv(&d, p, 8) < 4 && d.now - t0 < 10000 * MS)
		tdev_run(&d, 50 * MS);
	uint64_t took = d.now - t0;
	CHECK_MSG(took >= 500 * MS && took <= 3500 * MS, "took %llu us", (unsigned long long)took);
	int np = improv(&d, p, 8);
	CHECK_EQ(np, 4);
	if (np == 4) {
		char url[100];
		CHECK(p[2].type == 1 && p[2].data[0] == IMPROV_STATE_PROVISIONED);
		CHECK(p[3].type == 4 && p[3].data[0] == 1);
		CHECK(tpkt_str(&p[3], 0, url, sizeof url));
		CHECK(strncmp(url, "http://192.168.", 15) == 0);
	}
	CHECK_STR(sim_app_stored_ssid(d.app), "HomeNet");
	/* the password never reaches the console */
	CHECK(!tout_has(&d.out, "correct horse"));
	CHECK(tout_has(&d.out, "Received Improv wifi settings ssid=HomeNet, password=\r\n"));
	/* current state now carries the URL too (cmd 0x02) */
	tdev_send(&d, sdk_state_req, sizeof sdk_state_req);
	tdev_run(&d, 10 * MS);
	np = improv(&d, p, 8);
	CHECK_EQ(np, 6);
	if (np == 6) {
		CHECK(p[4].type == 1 && p[4].data[0] == IMPROV_STATE_PROVISIONED);
		CHECK(p[5].type == 4 && p[5].data[0] == 2 && tpkt_nstr(&p[5]) == 1);
	}
	/* after a reset the stored credentials make it boot provisioned */
	char ssid[64];
	snprintf(ssid, sizeof ssid, "%s", sim_app_stored_ssid(d.app));
	sim_app_free(d.app);
	d.out.len = 0;
	d.env.stored_ssid = ssid;
	tdev_boot(&d);
	tdev_run(&d, 2000 * MS);
	CHECK_EQ(sim_app_improv_state(d.app), IMPROV_STATE_PROVISIONED);
	tdev_free(&d);
}

static void test_provision_wrong_password(void)
{
	struct tdev d;
	up(&d, ESP_CHIP_ESP32S3, 9);
	uint8_t r[300];
	size_t n = wifi_req("HomeNet", "wrong", r);
	tdev_send(&d, r, n);
	tdev_run(&d, 5000 * MS);
	struct tpkt p[8];
	int np = improv(&d, p, 8);
	CHECK_EQ(np, 3);
	if (np == 3) {
		CHECK(p[0].type == 1 && p[0].data[0] == IMPROV_STATE_PROVISIONING);
		CHECK(p[1].type == 2 && p[1].data[0] == IMPROV_ERR_UNABLE_TO_CONNECT);
		CHECK(p[2].type == 1 && p[2].data[0] == IMPROV_STATE_AUTHORIZED);
	}
	CHECK(sim_app_stored_ssid(d.app) == NULL);
	CHECK(!tout_has(&d.out, "=wrong"));
	/* unknown SSID fails the same way */
	n = wifi_req("Nowhere", "x", r);
	tdev_send(&d, r, n);
	tdev_run(&d, 5000 * MS);
	np = improv(&d, p, 8);
	CHECK_EQ(np, 6);
	if (np == 6)
		CHECK(p[4].type == 2 && p[4].data[0] == IMPROV_ERR_UNABLE_TO_CONNECT);
	tdev_free(&d);
}

static void test_errors(void)
{
	struct tdev d;
	up(&d, ESP_CHIP_ESP32, 0);
	struct tpkt p[8];
	uint8_t r[64];
	/* bad checksum -> error 0x01 */
	size_t n = timprov_req(2, NULL, 0, r);
	r[n - 1] ^= 0x55;
	r[n++] = '\n';
	tdev_send(&d, r, n);
	tdev_run(&d, 10 * MS);
	CHECK_EQ(improv(&d, p, 8), 1);
	CHECK(p[0].type == 2 && p[0].data[0] == IMPROV_ERR_INVALID_RPC);
	/* unknown command -> error 0x02 */
	n = timprov_req(0x09, NULL, 0, r);
	r[n++] = '\n';
	tdev_send(&d, r, n);
	tdev_run(&d, 10 * MS);
	CHECK_EQ(improv(&d, p, 8), 2);
	CHECK(p[1].type == 2 && p[1].data[0] == IMPROV_ERR_UNKNOWN_RPC);
	/* inner length disagrees with the packet length -> parsed as unknown */
	n = timprov_req(2, (const uint8_t[]){ 0x77 }, 1, r);
	r[10] = 0;                                 /* claims 0 data bytes, packet has 1 */
	uint8_t s = 0;
	for (size_t i = 0; i < n - 1; i++)
		s = (uint8_t)(s + r[i]);
	r[n - 1] = s;
	r[n++] = '\n';
	tdev_send(&d, r, n);
	tdev_run(&d, 10 * MS);
	CHECK_EQ(improv(&d, p, 8), 3);
	CHECK(p[2].type == 2 && p[2].data[0] == IMPROV_ERR_UNKNOWN_RPC);
	/* Wi-Fi settings whose SSID length runs past the data -> unknown */
	static const uint8_t bad_wifi[] = { 40, 'a', 'b', 1, 'c' };
	n = timprov_req(1, bad_wifi, sizeof bad_wifi, r);
	r[n++] = '\n';
	tdev_send(&d, r, n);
	tdev_run(&d, 10 * MS);
	CHECK_EQ(improv(&d, p, 8), 4);
	CHECK(p[3].type == 2 && p[3].data[0] == IMPROV_ERR_UNKNOWN_RPC);
	CHECK_EQ(sim_app_improv_state(d.app), IMPROV_STATE_AUTHORIZED);
	/* a well-formed non-RPC packet (type 1) is ignored */
	uint8_t st[16];
	size_t k = improv_encode(1, (const uint8_t[]){ 4 }, 1, st);
	tdev_send(&d, st, k);
	/* wrong version byte: dropped silently at byte 6 */
	n = timprov_req(2, NULL, 0, r);
	r[6] = 2;
	r[n++] = '\n';
	tdev_send(&d, r, n);
	/* line noise and a log line are ignored */
	tdev_send(&d, "hello\r\nIMPRO\n", 13);
	tdev_run(&d, 10 * MS);
	CHECK_EQ(improv(&d, p, 8), 4);
	/* and the parser still works afterwards */
	tdev_send(&d, sdk_state_req, sizeof sdk_state_req);
	tdev_run(&d, 10 * MS);
	CHECK_EQ(improv(&d, p, 8), 5);
	CHECK_EQ(d.out.bad_pieces, 0);
	tdev_free(&d);
}

static void test_swallowed_byte(void)
{
	struct tdev d;
	up(&d, ESP_CHIP_ESP32, 0);
	struct tpkt p[8];
	uint8_t two[64];
	size_t a = timprov_req(2, NULL, 0, two);
	size_t b = timprov_req(3, NULL, 0, two + a);
	/* back to back, no separator: the 'I' of the second is swallowed */
	tdev_send(&d, two, a + b);
	tdev_run(&d, 200 * MS);
	int np = improv(&d, p, 8);
	CHECK_EQ(np, 1);
	CHECK(np >= 1 && p[0].type == 1);
	/* with the '\n' separator both are answered */
	uint8_t sep[64];
	a = timprov_req(2, NULL, 0, sep);
	sep[a++] = '\n';
	b = timprov_req(3, NULL, 0, sep + a);
	sep[a + b] = '\n';
	tdev_send(&d, sep, a + b + 1);
	tdev_run(&d, 10 * MS);
	np = improv(&d, p, 8);
	CHECK_EQ(np, 3);
	CHECK(np == 3 && p[1].type == 1 && p[2].type == 4 && p[2].data[0] == 3);
	/* a packet 150 ms after the previous one needs no separator: the
	 * idle timeout reset the parser */
	a = timprov_req(2, NULL, 0, sep);
	tdev_run(&d, 150 * MS);
	tdev_send(&d, sep, a);
	tdev_run(&d, 150 * MS);
	tdev_send(&d, sep, a);
	tdev_run(&d, 10 * MS);
	CHECK_EQ(improv(&d, p, 8), 5);
	tdev_free(&d);
}

static void test_gap_discards_partial_packet(void)
{
	struct tdev d;
	up(&d, ESP_CHIP_ESP32, 0);
	struct tpkt p[4];
	/* split with a 150 ms pause: discarded */
	tdev_send(&d, sdk_state_req, 7);
	tdev_run(&d, 150 * MS);
	tdev_send(&d, sdk_state_req + 7, sizeof sdk_state_req - 7);
	tdev_run(&d, 20 * MS);
	CHECK_EQ(improv(&d, p, 4), 0);
	/* split with a 50 ms pause: still one packet */
	tdev_send(&d, sdk_state_req, 7);
	tdev_run(&d, 50 * MS);
	tdev_send(&d, sdk_state_req + 7, sizeof sdk_state_req - 7);
	tdev_run(&d, 20 * MS);
	CHECK_EQ(improv(&d, p, 4), 1);
	/* byte by byte, 20 ms apart */
	for (size_t i = 0; i < sizeof sdk_state_req; i++) {
		tdev_send(&d, sdk_state_req + i, 1);
		tdev_run(&d, 20 * MS);
	}
	CHECK_EQ(improv(&d, p, 4), 2);
	tdev_free(&d);
}

static void test_packets_never_split_lines(void)
{
	/* Ask often while the console is busy: every emitted piece is a whole
	 * line or a whole packet, and packets start at a line start. */
	struct tdev d;
	up(&d, ESP_CHIP_ESP32, 0);
	for (int i = 0; i < 40; i++) {
		tdev_send(&d, sdk_state_req, sizeof sdk_state_req);
		tdev_run(&d, 377 * MS);
	}
	struct tpkt p[64];
	int np = improv(&d, p, 64);
	CHECK_EQ(np, 40);
	for (int i = 0; i < np; i++)
		CHECK(p[i].csum_ok);
	CHECK_EQ(d.out.bad_pieces, 0);
	CHECK(tout_count(&d.out, "'Uptime'") >= 8);
	tdev_free(&d);
}

static void test_forced_improv_on_plain_app(void)
{
	struct tdev d;
	tdev_init(&d, ESP_CHIP_ESP32S2, 4 * MB);
	put_layout(&d, 2, NULL, false);
	d.env.improv_forced = true;
	tdev_boot(&d);
	tdev_run(&d, 2000 * MS);
	CHECK(sim_app_speaks_improv(d.app));
	uint8_t r[16];
	size_t n = timprov_req(3, NULL, 0, r);
	r[n++] = '\n';
	tdev_send(&d, r, n);
	tdev_run(&d, 10 * MS);
	struct tpkt p[2];
	char s[64];
	CHECK_EQ(improv(&d, p, 2), 1);
	CHECK(tpkt_str(&p[0], 0, s, sizeof s) && strcmp(s, "widget") == 0);
	CHECK(tpkt_str(&p[0], 1, s, sizeof s) && strcmp(s, "1.2.3") == 0);
	CHECK(tpkt_str(&p[0], 2, s, sizeof s) && strcmp(s, "ESP32-S2") == 0);
	tdev_free(&d);

	/* not forced: the same app ignores Improv */
	tdev_init(&d, ESP_CHIP_ESP32S2, 4 * MB);
	put_layout(&d, 2, NULL, false);
	tdev_boot(&d);
	tdev_run(&d, 2000 * MS);
	tdev_send(&d, sdk_state_req, sizeof sdk_state_req);
	tdev_run(&d, 100 * MS);
	CHECK_EQ(improv(&d, p, 2), 0);
	tdev_free(&d);
}

int main(void)
{
	RUN(test_encoder_vectors);
	RUN(test_silent_until_asked_then_sdk_request);
	RUN(test_not_listening_during_boot);
	RUN(test_device_info);
	RUN(test_project_identity_in_newer_esphome);
	RUN(test_scan);
	RUN(test_provision_success);
	RUN(test_provision_wrong_password);
	RUN(test_errors);
	RUN(test_swallowed_byte);
	RUN(test_gap_discards_partial_packet);
	RUN(test_packets_never_split_lines);
	RUN(test_forced_improv_on_plain_app);
	return t_done();
}
