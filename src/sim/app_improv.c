/* Improv Wi-Fi serial, device side, as ESPHome's improv_serial component
 * runs it on top of the sdk-cpp byte parser (PROTOCOL.md B1-B3):
 * - position-driven parser: the packet stays in the buffer after it was
 *   handled, so the next byte only resets the parser (it is swallowed);
 * - a gap of more than 100 ms discards a partial packet;
 * - bad checksum -> error 0x01; unknown or malformed RPC -> error 0x02;
 * - silent until asked; every packet is followed by '\n'. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "app_priv.h"

#define REPLY_US 2000u            /* ESPHome answers on its next loop() pass */
#define CONNECT_OK_US 1500000u    /* simulated association + DHCP */
#define CONNECT_FAIL_US 3000000u  /* real ESPHome waits 30 s; the sim shortens it */
#define RX_CAP (9 + 255 + 2)

enum { T_STATE = 1, T_ERROR = 2, T_RPC = 3, T_RESULT = 4 };
enum { C_WIFI = 1, C_STATE = 2, C_INFO = 3, C_SCAN = 4 };

struct improv_dev {
	struct improv_hooks h;
	uint8_t state;
	int provisioned;            /* wifi index, -1 none */
	uint8_t rx[RX_CAP];
	size_t rx_len;
	uint64_t last_byte_us;      /* 0: no partial packet (sdk-cpp's last_read_byte_) */
	uint64_t now_us;
	/* pending connection attempt */
	bool connecting;
	uint64_t connect_due_us;
	int connect_wifi;           /* index or -1 (will fail) */
};

size_t improv_encode(uint8_t type, const uint8_t *data, uint8_t len, uint8_t *out)
{
	memcpy(out, "IMPROV", 6);
	out[6] = 1;
	out[7] = type;
	out[8] = len;
	if (len)
		memcpy(out + 9, data, len);
	uint8_t sum = 0;
	for (size_t i = 0; i < 9u + len; i++)
		sum = (uint8_t)(sum + out[i]);
	out[9 + len] = sum;
	out[10 + len] = '\n';
	return 11u + len;
}

size_t improv_rpc_result(uint8_t cmd, const char *const *strs, int n, uint8_t *out, size_t cap)
{
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		size_t l = strlen(strs[i]);
		if (l > 255)
			return 0;
		total += 1 + l;
	}
	/* sdk-cpp reserves the checksum byte even when it does not fill it. */
	if (total > 252 || total + 3 > cap)
		return 0;
	size_t o = 0;
	out[o++] = cmd;
	out[o++] = (uint8_t)total;
	for (int i = 0; i < n; i++) {
		size_t l = strlen(strs[i]);
		out[o++] = (uint8_t)l;
		memcpy(out + o, strs[i], l);
		o += l;
	}
	out[o++] = 0;
	return o;
}

static void send_packet(struct improv_dev *d, uint8_t type, const uint8_t *data, uint8_t len)
{
	uint8_t pkt[9 + 255 + 2];
	size_t n = improv_encode(type, data, len, pkt);
	d->h.out(d->h.ctx, d->now_us + REPLY_US, pkt, n);
}

static void send_state(struct improv_dev *d, uint8_t state)
{
	d->state = state;
	send_packet(d, T_STATE, &state, 1);
}

static void send_error(struct improv_dev *d, uint8_t err)
{
	send_packet(d, T_ERROR, &err, 1);
}

static void send_result(struct improv_dev *d, uint8_t cmd, const char *const *strs, int n)
{
	uint8_t data[256];
	size_t len = improv_rpc_result(cmd, strs, n, data, sizeof data);
	if (len)
		send_packet(d, T_RESULT, data, (uint8_t)len);
}

static void log_line(struct improv_dev *d, uint64_t at, const char *fmt, const char *arg)
{
	if (!d->h.esphome_logs)
		return;
	char line[400];
	int n = snprintf(line, sizeof line, fmt, arg);
	if (n > 0)
		d->h.out(d->h.ctx, at, (const uint8_t *)line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

int improv_rssi_for(const char *ssid)
{
	uint32_t h = 2166136261u;
	for (const char *p = ssid; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return -40 - (int)(h % 46);
}

static void send_urls(struct improv_dev *d, uint8_t cmd)
{
	send_result(d, cmd, d->h.url, d->h.n_url);
}

static void do_scan(struct improv_dev *d)
{
	for (int i = 0; i < d->h.n_wifi; i++) {
		const char *ssid = d->h.wifi[i].ssid;
		bool dup = false;
		for (int k = 0; k < i && !dup; k++)
			dup = strcmp(d->h.wifi[k].ssid, ssid) == 0;
		if (dup || !ssid[0])        /* ESPHome skips hidden and repeated SSIDs */
			continue;
		char rssi[12];
		snprintf(rssi, sizeof rssi, "%d", improv_rssi_for(ssid));
		const char *s[3] = { ssid, rssi, d->h.wifi[i].pass[0] ? "YES" : "NO" };
		send_result(d, C_SCAN, s, 3);
	}
	send_result(d, C_SCAN, NULL, 0);
}

/* sdk-cpp parse_improv_data() + ESPHome parse_improv_payload_().
 * Returns true when the command was handled (the parser then keeps the
 * packet and swallows the next byte). */
static bool handle_rpc(struct improv_dev *d, const uint8_t *data, size_t len)
{
	int cmd = -1;
	char ssid[256] = "", pass[256] = "";
	if (len >= 2 && data[1] == len - 2) {
		cmd = data[0];
		if (cmd == C_WIFI) {
			size_t ssid_end = 3u + (len > 2 ? data[2] : 0);
			if (len < 3 || ssid_end >= len || ssid_end + 1 + data[ssid_end] > len) {
				cmd = -1;
			} else {
				memcpy(ssid, data + 3, data[2]);
				ssid[data[2]] = 0;
				memcpy(pass, data + ssid_end + 1, data[ssid_end]);
				pass[data[ssid_end]] = 0;
			}
		}
	}
	switch (cmd) {
	case C_WIFI: {
		d->connecting = true;
		d->connect_wifi = -1;
		for (int i = 0; i < d->h.n_wifi; i++)
			if (strcmp(d->h.wifi[i].ssid, ssid) == 0 && strcmp(d->h.wifi[i].pass, pass) == 0) {
				d->connect_wifi = i;
				break;
			}
		d->connect_due_us = d->now_us + (d->connect_wifi >= 0 ? CONNECT_OK_US : CONNECT_FAIL_US);
		send_state(d, IMPROV_STATE_PROVISIONING);
		/* ESPHome hides the password (LOG_SECRET); so do we, always. */
		log_line(d, d->now_us + REPLY_US,
			 "[D][improv_serial:128]: Received Improv wifi settings ssid=%s, password=\r\n", ssid);
		return true;
	}
	case C_STATE:
		send_state(d, d->state);
		if (d->state == IMPROV_STATE_PROVISIONED)
			send_urls(d, C_STATE);
		return true;
	case C_INFO:
		send_result(d, C_INFO, d->h.info, 4);
		return true;
	case C_SCAN:
		do_scan(d);
		return true;
	default:
		log_line(d, d->now_us + REPLY_US, "%s", "[W][improv_serial:178]: Unknown Improv payload\r\n");
		send_error(d, IMPROV_ERR_UNKNOWN_RPC);
		return false;
	}
}

static bool parse_byte(struct improv_dev *d, size_t pos, uint8_t b)
{
	static const char hdr[] = "IMPROV";
	if (pos < 6)
		return b == (uint8_t)hdr[pos];
	if (pos == 6)
		return b == 1;
	if (pos <= 8)
		return true;
	uint8_t type = d->rx[7], len = d->rx[8];
	if (pos <= 8u + len)
		return true;
	if (pos == 9u + len) {
		uint8_t sum = 0;
		for (size_t i = 0; i < pos; i++)
			sum = (uint8_t)(sum + d->rx[i]);
		if (sum != b) {
			log_line(d, d->now_us + REPLY_US, "%s", "[W][improv_serial:196]: Error decoding Improv payload\r\n");
			send_error(d, IMPROV_ERR_INVALID_RPC);
			return false;
		}
		if (type == T_RPC)
			return handle_rpc(d, d->rx + 9, len);
	}
	return false;
}

void improv_dev_input(struct improv_dev *d, const uint8_t *buf, size_t n, uint64_t now_us)
{
	improv_dev_poll(d, now_us);
	d->now_us = now_us;
	if (d->last_byte_us && now_us - d->last_byte_us > IMPROV_TIMEOUT_US) {
		d->last_byte_us = 0;
		d->rx_len = 0;
	}
	for (size_t i = 0; i < n; i++) {
		size_t pos = d->rx_len;
		if (pos >= RX_CAP) {            /* cannot happen: parse_byte fails first */
			d->rx_len = 0;
			continue;
		}
		d->rx[d->rx_len++] = buf[i];
		if (parse_byte(d, pos, buf[i])) {
			d->last_byte_us = now_us ? now_us : 1;
		} else {
			d->last_byte_us = 0;
			d->rx_len = 0;
		}
	}
}

void improv_dev_poll(struct improv_dev *d, uint64_t now_us)
{
	if (d->connecting && d->connect_due_us <= now_us) {
		d->connecting = false;
		d->now_us = d->connect_due_us;
		if (d->connect_wifi >= 0) {
			d->provisioned = d->connect_wifi;
			log_line(d, d->now_us, "%s", "[I][wifi:617]: WiFi Connected!\r\n");
			send_state(d, IMPROV_STATE_PROVISIONED);
			send_urls(d, C_WIFI);
		} else {
			d->provisioned = -1;
			send_error(d, IMPROV_ERR_UNABLE_TO_CONNECT);
			send_state(d, IMPROV_STATE_AUTHORIZED);
			log_line(d, d->now_us + REPLY_US, "%s",
				 "[W][improv_serial:271]: Timed out trying to connect to given WiFi network\r\n");
		}
	}
	if (now_us > d->now_us)
		d->now_us = now_us;
}

uint64_t improv_dev_next_event_us(const struct improv_dev *d)
{
	return d->connecting ? d->connect_due_us : UINT64_MAX;
}

uint8_t improv_dev_state(const struct improv_dev *d)
{
	return d->state;
}

int improv_dev_provisioned_wifi(const struct improv_dev *d)
{
	return d->provisioned;
}

struct improv_dev *improv_dev_new(const struct improv_hooks *h, int provisioned_wifi)
{
	struct improv_dev *d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	d->h = *h;
	d->provisioned = provisioned_wifi;
	d->state = provisioned_wifi >= 0 ? IMPROV_STATE_PROVISIONED : IMPROV_STATE_AUTHORIZED;
	return d;
}

void improv_dev_free(struct improv_dev *d)
{
	free(d);
}
