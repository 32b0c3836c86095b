/* Improv Wi-Fi Serial packets and the line-aware stream parser
 * (PROTOCOL.md B1-B2, B4 "Incoming parser"). */
#include <errno.h>
#include <string.h>
#include "espfs/improv.h"

static const uint8_t header[6] = { 'I', 'M', 'P', 'R', 'O', 'V' };

const char *improv_state_name(int s)
{
	switch (s) {
	case IMPROV_STATE_STOPPED: return "stopped";
	case IMPROV_STATE_AWAITING_AUTH: return "awaiting authorization";
	case IMPROV_STATE_AUTHORIZED: return "ready";
	case IMPROV_STATE_PROVISIONING: return "provisioning";
	case IMPROV_STATE_PROVISIONED: return "provisioned";
	default: return "unknown";
	}
}

const char *improv_error_name(int e)
{
	switch (e) {
	case IMPROV_ERR_NONE: return "no error";
	case IMPROV_ERR_INVALID_RPC: return "invalid RPC packet";
	case IMPROV_ERR_UNKNOWN_RPC: return "unknown RPC command";
	case IMPROV_ERR_UNABLE_TO_CONNECT: return "unable to connect";
	case IMPROV_ERR_NOT_AUTHORIZED: return "not authorized";
	case IMPROV_ERR_BAD_HOSTNAME: return "bad hostname";
	default: return "unknown error";
	}
}

int improv_error_errno(int e)
{
	switch (e) {
	case IMPROV_ERR_NONE: return 0;
	case IMPROV_ERR_INVALID_RPC: return -EPROTO;
	case IMPROV_ERR_UNKNOWN_RPC: return -EOPNOTSUPP;
	case IMPROV_ERR_UNABLE_TO_CONNECT: return -ECONNREFUSED;
	case IMPROV_ERR_NOT_AUTHORIZED: return -EACCES;
	case IMPROV_ERR_BAD_HOSTNAME: return -EINVAL;
	default: return -EIO;
	}
}

int improv_encode_packet(uint8_t type, const uint8_t *data, size_t len, uint8_t *out)
{
	if (len > IMPROV_MAX_DATA)
		return -EINVAL;
	memcpy(out, header, 6);
	out[6] = IMPROV_VERSION;
	out[7] = type;
	out[8] = (uint8_t)len;
	if (len)
		memcpy(out + 9, data, len);
	unsigned sum = 0;
	for (size_t i = 0; i < 9 + len; i++)
		sum += out[i];
	out[9 + len] = (uint8_t)sum;
	out[10 + len] = '\n';
	return (int)(11 + len);
}

int improv_encode_rpc(uint8_t cmd, const uint8_t *payload, size_t plen, uint8_t *out)
{
	uint8_t d[IMPROV_MAX_DATA];
	if (plen > IMPROV_MAX_DATA - 2)
		return -EINVAL;
	d[0] = cmd;
	d[1] = (uint8_t)plen;
	if (plen)
		memcpy(d + 2, payload, plen);
	int r = improv_encode_packet(IMPROV_TYPE_RPC, d, plen + 2, out);
	explicit_bzero(d, sizeof d);  /* it may hold a password */
	return r;
}

int improv_encode_wifi(const uint8_t *ssid, size_t ssid_len, const uint8_t *pw, size_t pw_len,
                       uint8_t *out)
{
	uint8_t d[IMPROV_MAX_DATA];
	if (ssid_len == 0 || ssid_len > 255 || pw_len > 255 || ssid_len + pw_len > IMPROV_MAX_CREDENTIALS)
		return -EINVAL;
	d[0] = (uint8_t)ssid_len;
	memcpy(d + 1, ssid, ssid_len);
	d[1 + ssid_len] = (uint8_t)pw_len;
	if (pw_len)
		memcpy(d + 2 + ssid_len, pw, pw_len);
	int r = improv_encode_rpc(IMPROV_CMD_WIFI, d, ssid_len + pw_len + 2, out);
	explicit_bzero(d, sizeof d);
	return r;
}

int improv_decode(const uint8_t *buf, size_t len, struct improv_packet *p)
{
	size_t k = len < 6 ? len : 6;
	if (memcmp(buf, header, k) != 0)
		return -EINVAL;
	if (len < IMPROV_HDR_LEN)
		return -EAGAIN;
	size_t total = IMPROV_HDR_LEN + buf[8] + 1;
	if (len < total)
		return -EAGAIN;
	if (buf[6] != IMPROV_VERSION)
		return -EPROTO;
	unsigned sum = 0;
	for (size_t i = 0; i < total - 1; i++)
		sum += buf[i];
	if ((uint8_t)sum != buf[total - 1])
		return -EPROTO;
	p->type = buf[7];
	p->len = buf[8];
	memcpy(p->data, buf + 9, p->len);
	return (int)total;
}

int improv_parse_result(const struct improv_packet *p, struct improv_strings *out)
{
	memset(out, 0, sizeof *out);
	if (p->type != IMPROV_TYPE_RESULT || p->len < 2)
		return -EPROTO;
	out->cmd = p->data[0];
	size_t total = p->data[1];
	if (total + 2 > p->len)
		return -EPROTO;
	size_t i = 2, end = 2 + total;
	while (i < end) {
		size_t l = p->data[i];
		if (i + 1 + l > end || out->n >= IMPROV_MAX_STRINGS)
			return -EPROTO;
		out->s[out->n] = p->data + i + 1;
		out->len[out->n] = (uint8_t)l;
		out->n++;
		i += 1 + l;
	}
	return 0;
}

void improv_string_copy(const struct improv_strings *s, int i, char *dst, size_t cap)
{
	size_t k = 0;
	if (!cap)
		return;
	if (i >= 0 && i < s->n)
		for (; k < s->len[i] && k + 1 < cap; k++) {
			uint8_t b = s->s[i][k];
			dst[k] = (b < 0x20 || b == 0x7F) ? '?' : (char)b;
		}
	dst[k] = 0;
}

/* ---- stream parser ---- */

void improv_parser_init(struct improv_parser *ps)
{
	memset(ps, 0, sizeof *ps);
	ps->line_start = true;
}

static void end_line(struct improv_parser *ps)
{
	ps->cur[ps->cur_n] = 0;
	memcpy(ps->ring[ps->ring_head], ps->cur, ps->cur_n + 1);
	ps->ring_head = (ps->ring_head + 1) % IMPROV_CONSOLE_LINES;
	if (ps->ring_count < IMPROV_CONSOLE_LINES)
		ps->ring_count++;
	if (ps->on_line)
		ps->on_line(ps->line_ctx, ps->cur);
	ps->cur_n = 0;
}

static void text_byte(struct improv_parser *ps, uint8_t b)
{
	if (b == '\n') {
		end_line(ps);
		ps->in_text = false;
		ps->line_start = true;
		return;
	}
	if (b == '\r')
		return;
	if (ps->cur_n + 1 < IMPROV_CONSOLE_LINE_MAX)
		ps->cur[ps->cur_n++] = (b < 0x20 && b != '\t') || b == 0x7F ? '?' : (char)b;
}

/* The candidate packet was log text after all: so is the rest of the line. */
static void to_text(struct improv_parser *ps, uint8_t b)
{
	for (size_t k = 0; k < ps->n; k++)
		text_byte(ps, ps->buf[k]);
	ps->n = 0;
	ps->line_start = false;
	ps->in_text = true;
	text_byte(ps, b);
}

void improv_parser_gap(struct improv_parser *ps)
{
	if (ps->n == 0)
		return;
	ps->n = 0;
	ps->want = 0;
	ps->dropped++;
	ps->line_start = true;
}

unsigned improv_console_count(const struct improv_parser *ps)
{
	return ps->ring_count;
}

const char *improv_console_line(const struct improv_parser *ps, unsigned i)
{
	if (i >= ps->ring_count)
		return NULL;
	unsigned first = (ps->ring_head + IMPROV_CONSOLE_LINES - ps->ring_count) % IMPROV_CONSOLE_LINES;
	return ps->ring[(first + i) % IMPROV_CONSOLE_LINES];
}

int improv_parser_feed(struct improv_parser *ps, const uint8_t *in, size_t n, size_t *used,
                       struct improv_packet *pkt)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t b = in[i];
		if (ps->in_text) {
			text_byte(ps, b);
			continue;
		}
		if (ps->after_packet) {
			ps->after_packet = false;
			if (b == '\n')
				continue;
		}
		if (ps->n == 0 && !ps->line_start) {
			ps->in_text = true;
			text_byte(ps, b);
			continue;
		}
		if (ps->n < 6) {
			/* Still matching "IMPROV"; a mismatch makes the bytes so far
			 * (and the rest of the line) console text. */
			if (b == header[ps->n]) {
				ps->buf[ps->n++] = b;
				ps->line_start = false;
				continue;
			}
			to_text(ps, b);
			continue;
		}
		if (ps->n == 6 && b != IMPROV_VERSION) {
			to_text(ps, b);   /* "IMPROVISED ...": a log line */
			continue;
		}
		/* Past the magic, a 0x0A is data (type or length may be 10). */
		ps->buf[ps->n++] = b;
		if (ps->n == IMPROV_HDR_LEN)
			ps->want = IMPROV_HDR_LEN + (size_t)ps->buf[8] + 1;
		if (ps->n >= IMPROV_HDR_LEN && ps->n == ps->want) {
			int r = improv_decode(ps->buf, ps->n, pkt);
			ps->n = 0;
			ps->want = 0;
			/* the device ends every packet with '\n'; treat what follows
			 * as a fresh line either way */
			ps->line_start = true;
			ps->after_packet = true;
			if (r > 0) {
				*used = i + 1;
				return 1;
			}
			ps->dropped++;
		}
	}
	*used = n;
	return 0;
}
