/* Improv Wi-Fi Serial client: requests and answers over a transport
 * (PROTOCOL.md B3-B4; timing after improv-wifi-serial-sdk and
 * esp-web-tools).  Nothing here logs or reports an SSID or a password. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/improv.h"
#include "espfs/log.h"

#define US_PER_MS 1000u

static void set_msg(struct improv_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_msg(struct improv_client *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof c->msg, fmt, ap);
	va_end(ap);
}

void improv_client_init(struct improv_client *c, esp_transport *tr)
{
	memset(c, 0, sizeof *c);
	c->tr = tr;
	c->state = -1;
	c->error = -1;
	improv_parser_init(&c->ps);
}

static uint64_t now_us(struct improv_client *c)
{
	return esp_now_us(c->tr->clock);
}

static uint64_t deadline_after(struct improv_client *c, uint32_t ms)
{
	return now_us(c) + (uint64_t)ms * US_PER_MS;
}

/* Next packet from the device before deadline (console lines go to the
 * parser's ring on the way).  0, -ETIMEDOUT, or a transport error. */
static int next_packet(struct improv_client *c, uint64_t deadline, struct improv_packet *p)
{
	for (;;) {
		while (c->rx_pos < c->rx_len) {
			size_t used = 0;
			int got = improv_parser_feed(&c->ps, c->rx + c->rx_pos, c->rx_len - c->rx_pos, &used, p);
			c->rx_pos += used;
			if (got) {
				c->packets_in++;
				if (p->type == IMPROV_TYPE_STATE && p->len >= 1)
					c->state = p->data[0];
				else if (p->type == IMPROV_TYPE_ERROR && p->len >= 1)
					c->error = p->data[0];
				return 0;
			}
		}
		if (c->cancel && atomic_load(c->cancel)) {
			set_msg(c, "cancelled");
			return -EINTR;
		}
		uint64_t now = now_us(c);
		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t ms = (deadline - now + US_PER_MS - 1) / US_PER_MS;
		if (c->cancel && ms > IMPROV_CANCEL_POLL_MS)
			ms = IMPROV_CANCEL_POLL_MS;
		bool partial = c->ps.n > 0;
		if (partial && ms > IMPROV_GAP_MS)
			ms = IMPROV_GAP_MS;
		int r = esp_tr_read(c->tr, c->rx, sizeof c->rx, ms > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)ms);
		if (r == -ETIMEDOUT) {
			if (partial && ms == IMPROV_GAP_MS)
				improv_parser_gap(&c->ps);
			continue;
		}
		if (r < 0) {
			set_msg(c, "serial port error: %s", strerror(-r));
			return r;
		}
		c->rx_pos = 0;
		c->rx_len = (size_t)r;
	}
}

/* Send one encoded packet in one write (the device drops a packet split
 * by > 100 ms), then wipe the buffer: it may hold a Wi-Fi password. */
static int send_wiped(struct improv_client *c, uint8_t *out, size_t n)
{
	int r = esp_tr_write(c->tr, out, n);
	explicit_bzero(out, n);
	if (r < 0) {
		set_msg(c, "serial port error: %s", strerror(-r));
		return r;
	}
	c->packets_out++;
	return 0;
}

static int send_rpc(struct improv_client *c, uint8_t cmd, const uint8_t *payload, size_t plen)
{
	uint8_t out[IMPROV_MAX_WIRE];
	int n = improv_encode_rpc(cmd, payload, plen, out);
	if (n < 0) {
		set_msg(c, "Improv request too long (%zu bytes)", plen);
		return n;
	}
	int r = send_wiped(c, out, (size_t)n);
	if (r < 0)
		return r;
	LOGD("improv: sent RPC 0x%02x (%zu payload bytes)", cmd, plen);
	return 0;
}

static int device_error(struct improv_client *c, uint8_t code, const char *what)
{
	int e = improv_error_errno(code);
	switch (code) {
	case IMPROV_ERR_UNKNOWN_RPC:
		set_msg(c, "the firmware does not support %s (Improv error 0x02: unknown RPC)", what);
		break;
	case IMPROV_ERR_UNABLE_TO_CONNECT:
		set_msg(c, "the device could not connect to the Wi-Fi network "
		        "(wrong password, or the network is out of reach)");
		break;
	default:
		set_msg(c, "%s failed: Improv error 0x%02x (%s)", what, code, improv_error_name(code));
	}
	return e;
}

int improv_get_state(struct improv_client *c, uint32_t timeout_ms)
{
	if (!timeout_ms)
		timeout_ms = IMPROV_DETECT_TIMEOUT_MS;
	uint64_t deadline = deadline_after(c, timeout_ms);
	uint64_t next_send = now_us(c);
	struct improv_packet p;
	c->url[0] = 0;
	for (;;) {
		uint64_t now = now_us(c);
		if (now >= next_send) {
			int r = send_rpc(c, IMPROV_CMD_GET_STATE, NULL, 0);
			if (r < 0)
				return r;
			/* re-ask every second: the device answers only when it is
			 * up, and says nothing on its own */
			while (next_send <= now)
				next_send += (uint64_t)IMPROV_RESEND_MS * US_PER_MS;
		}
		int r = next_packet(c, next_send < deadline ? next_send : deadline, &p);
		if (r == -ETIMEDOUT) {
			if (now_us(c) >= deadline) {
				set_msg(c, "no Improv answer within %u ms", timeout_ms);
				return -ETIMEDOUT;
			}
			continue;
		}
		if (r < 0)
			return r;
		if (p.type != IMPROV_TYPE_STATE || p.len < 1)
			continue;
		int state = p.data[0];
		if (state == IMPROV_STATE_PROVISIONED) {
			/* the URL list follows right away (ESPHome sends both in one go) */
			uint64_t until = now_us(c) + (uint64_t)IMPROV_RESEND_MS * US_PER_MS;
			if (until > deadline)
				until = deadline;
			while (next_packet(c, until, &p) == 0) {
				struct improv_strings s;
				if (p.type == IMPROV_TYPE_RESULT && improv_parse_result(&p, &s) == 0 &&
				    s.cmd == IMPROV_CMD_GET_STATE) {
					improv_string_copy(&s, 0, c->url, sizeof c->url);
					break;
				}
			}
		}
		return state;
	}
}

/* Handler for RPC results of the command being waited for: returns 1 when
 * done, 0 to wait for more, < 0 on error. */
typedef int (*result_fn)(struct improv_client *c, const struct improv_strings *s, void *ctx);

static int rpc(struct improv_client *c, uint8_t cmd, const uint8_t *payload, size_t plen,
               uint32_t timeout_ms, const char *what, result_fn fn, void *ctx)
{
	uint64_t deadline = deadline_after(c, timeout_ms ? timeout_ms : IMPROV_RPC_TIMEOUT_MS);
	int r = send_rpc(c, cmd, payload, plen);
	if (r < 0)
		return r;
	struct improv_packet p;
	for (;;) {
		r = next_packet(c, deadline, &p);
		if (r == -ETIMEDOUT) {
			set_msg(c, "no answer to %s within %u ms", what,
			        timeout_ms ? timeout_ms : IMPROV_RPC_TIMEOUT_MS);
			return r;
		}
		if (r < 0)
			return r;
		if (p.type == IMPROV_TYPE_ERROR && p.len >= 1 && p.data[0] != IMPROV_ERR_NONE)
			return device_error(c, p.data[0], what);
		if (p.type != IMPROV_TYPE_RESULT)
			continue;
		struct improv_strings s;
		if (improv_parse_result(&p, &s) < 0) {
			set_msg(c, "malformed Improv answer to %s", what);
			return -EPROTO;
		}
		if (s.cmd != cmd)
			continue;   /* a late answer to an earlier request */
		r = fn(c, &s, ctx);
		if (r != 0)
			return r < 0 ? r : 0;
	}
}

static int info_result(struct improv_client *c, const struct improv_strings *s, void *ctx)
{
	struct improv_info *info = ctx;
	if (s->n < 4) {
		set_msg(c, "device info has %d strings, expected at least 4", s->n);
		return -EPROTO;
	}
	info->n_strings = s->n;
	improv_string_copy(s, 0, info->firmware, sizeof info->firmware);
	improv_string_copy(s, 1, info->version, sizeof info->version);
	improv_string_copy(s, 2, info->chip, sizeof info->chip);
	improv_string_copy(s, 3, info->name, sizeof info->name);
	improv_string_copy(s, 4, info->os_name, sizeof info->os_name);
	improv_string_copy(s, 5, info->os_version, sizeof info->os_version);
	return 1;
}

int improv_device_info(struct improv_client *c, struct improv_info *info, uint32_t timeout_ms)
{
	memset(info, 0, sizeof *info);
	return rpc(c, IMPROV_CMD_GET_INFO, NULL, 0, timeout_ms, "the device-info request", info_result, info);
}

struct scan_ctx { struct improv_network *nets; int cap, n; };

static int scan_result(struct improv_client *c, const struct improv_strings *s, void *ctx)
{
	struct scan_ctx *sc = ctx;
	if (s->n == 0)
		return 1;              /* the empty result ends the list */
	if (s->n < 3)
		return 0;
	if (sc->n < sc->cap) {
		struct improv_network *w = &sc->nets[sc->n];
		char num[16];
		memcpy(w->ssid, s->s[0], s->len[0]);
		w->ssid_len = s->len[0];
		improv_string_copy(s, 1, num, sizeof num);
		w->rssi = (int)strtol(num, NULL, 10);
		w->auth = s->len[2] == 3 && memcmp(s->s[2], "YES", 3) == 0;
	}
	sc->n++;
	return 0;
}

int improv_scan(struct improv_client *c, struct improv_network *nets, int cap, uint32_t timeout_ms)
{
	struct scan_ctx sc = { nets, cap < 0 ? 0 : cap, 0 };
	int r = rpc(c, IMPROV_CMD_SCAN, NULL, 0, timeout_ms, "the Wi-Fi scan", scan_result, &sc);
	return r < 0 ? r : sc.n;
}

int improv_provision(struct improv_client *c, const uint8_t *ssid, size_t ssid_len,
                     const uint8_t *pw, size_t pw_len, uint32_t timeout_ms)
{
	uint8_t out[IMPROV_MAX_WIRE];
	if (!timeout_ms)
		timeout_ms = IMPROV_PROVISION_TIMEOUT_MS;
	c->url[0] = 0;
	int n = improv_encode_wifi(ssid, ssid_len, pw, pw_len, out);
	if (n < 0) {
		set_msg(c, ssid_len == 0 ? "empty SSID" :
		        "SSID and password are too long for Improv (at most %d bytes together)",
		        IMPROV_MAX_CREDENTIALS);
		return n;
	}
	uint64_t deadline = deadline_after(c, timeout_ms);
	int r = send_wiped(c, out, (size_t)n);
	if (r < 0)
		return r;
	LOGD("improv: sent Wi-Fi settings");
	bool provisioning = false, provisioned = false;
	struct improv_packet p;
	for (;;) {
		r = next_packet(c, deadline, &p);
		if (r == -ETIMEDOUT) {
			if (provisioned)
				return 0;   /* connected; the URL list never came */
			set_msg(c, "no answer to the Wi-Fi settings within %u s%s", timeout_ms / 1000,
			        provisioning ? " (the device was still trying to connect)" : "");
			return r;
		}
		if (r < 0)
			return r;
		if (p.type == IMPROV_TYPE_ERROR && p.len >= 1 && p.data[0] != IMPROV_ERR_NONE)
			return device_error(c, p.data[0], "Wi-Fi provisioning");
		if (p.type == IMPROV_TYPE_STATE && p.len >= 1) {
			if (p.data[0] == IMPROV_STATE_PROVISIONING)
				provisioning = true;
			else if (p.data[0] == IMPROV_STATE_PROVISIONED && provisioning && !provisioned) {
				provisioned = true;
				/* the URL result follows at once; do not wait long for it */
				uint64_t soon = now_us(c) + 2000ull * US_PER_MS;
				if (soon < deadline)
					deadline = soon;
			}
			continue;
		}
		struct improv_strings s;
		if (p.type == IMPROV_TYPE_RESULT && improv_parse_result(&p, &s) == 0 &&
		    s.cmd == IMPROV_CMD_WIFI) {
			improv_string_copy(&s, 0, c->url, sizeof c->url);
			return 0;
		}
	}
}

struct str_ctx { char *out; size_t cap; };

static int str_result(struct improv_client *c, const struct improv_strings *s, void *ctx)
{
	struct str_ctx *sc = ctx;
	if (s->n < 1) {
		set_msg(c, "empty answer");
		return -EPROTO;
	}
	if (sc->out && sc->cap)
		improv_string_copy(s, 0, sc->out, sc->cap);
	return 1;
}

static int get_set(struct improv_client *c, uint8_t cmd, const char *set, char *out, size_t cap,
                   uint32_t timeout_ms, const char *what)
{
	size_t n = set ? strlen(set) : 0;
	if (n > IMPROV_MAX_DATA - 2) {
		set_msg(c, "%s too long (at most %d bytes)", what, IMPROV_MAX_DATA - 2);
		return -EINVAL;
	}
	struct str_ctx sc = { out, cap };
	if (out && cap)
		out[0] = 0;
	return rpc(c, cmd, (const uint8_t *)set, n, timeout_ms, what, str_result, &sc);
}

int improv_hostname(struct improv_client *c, const char *set, char *out, size_t cap, uint32_t timeout_ms)
{
	return get_set(c, IMPROV_CMD_HOSTNAME, set, out, cap, timeout_ms, "the hostname");
}

int improv_device_name(struct improv_client *c, const char *set, char *out, size_t cap, uint32_t timeout_ms)
{
	return get_set(c, IMPROV_CMD_DEVICE_NAME, set, out, cap, timeout_ms, "the device name");
}
