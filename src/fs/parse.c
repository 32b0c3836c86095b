/* Parsers of what users write into the device files (see parse.h).  A
 * value is checked whole before anything is done with it: an erase that
 * is refused here has erased nothing. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "espfs/text.h"
#include "parse.h"

static size_t strip_newline(const char *buf, size_t len)
{
	if (len && buf[len - 1] == '\n')
		len--;
	if (len && buf[len - 1] == '\r')
		len--;
	return len;
}

/* ---- erase ---- */

int parse_part_word(const char *buf, size_t len, char *out, size_t cap, char *why, size_t whylen)
{
	len = strip_newline(buf, len);
	if (cap)
		out[0] = 0;
	if (len == 0 || len > PART_WORD_MAX || len >= cap) {
		snprintf(why, whylen, "expected one partition name of 1 to %d characters", PART_WORD_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7F) {
			snprintf(why, whylen, "a partition name is one word of printable ASCII "
				 "characters (no blanks, no line breaks inside)");
			return -EINVAL;
		}
	memcpy(out, buf, len);
	out[len] = 0;
	return 0;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* One unsigned number at buf[*i]: "0x" hex, "0" octal or decimal, as
 * strtoul reads them, but without its leading sign and blanks (strtoull
 * turns "-0x1000" into 2^64-0x1000) and with a 32-bit ceiling checked
 * digit by digit, so no value wraps. */
static int scan_u32(const char *buf, size_t len, size_t *i, uint32_t *out)
{
	size_t p = *i;
	unsigned base = 10;
	if (p < len && buf[p] == '0') {
		base = 8;
		if (p + 1 < len && (buf[p + 1] == 'x' || buf[p + 1] == 'X')) {
			base = 16;
			p += 2;
		}
	}
	uint64_t v = 0;
	size_t digits = 0;
	for (; p < len; p++, digits++) {
		char c = buf[p];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			break;
		if (d >= base)
			return -EINVAL;  /* "09", "0x1g" */
		v = v * base + d;
		if (v > UINT32_MAX)
			return -ERANGE;
	}
	if (digits == 0 && base != 8)
		return -EINVAL;  /* "", "0x" */
	*i = p;
	*out = (uint32_t)v;
	return 0;
}

int parse_erase(const char *buf, size_t len, uint32_t flash_size, uint32_t *off, uint32_t *n,
		char *why, size_t whylen)
{
	static const char usage[] = "erase: expected \"1\" (whole chip) or \"OFFSET LENGTH\" "
				    "(e.g. \"0x9000 0x6000\", multiples of 0x1000)";
	len = strip_newline(buf, len);
	if ((len == 1 && buf[0] == '1') || (len == 3 && !memcmp(buf, "all", 3))) {
		*off = 0;
		*n = 0;
		return 0;
	}
	uint32_t o = 0, l = 0;
	size_t i = 0;
	int rc = scan_u32(buf, len, &i, &o);
	size_t gap = i;
	while (rc == 0 && i < len && is_blank(buf[i]))
		i++;
	if (rc == 0 && i == gap)
		rc = -EINVAL;  /* no blank between the two numbers */
	if (rc == 0)
		rc = scan_u32(buf, len, &i, &l);
	if (rc == 0 && i != len)
		rc = -EINVAL;  /* trailing garbage, a sign, a third value */
	if (rc == -ERANGE) {
		snprintf(why, whylen, "erase: offset and length are at most 32 bits (0xffffffff)");
		return -EINVAL;
	}
	if (rc < 0) {
		snprintf(why, whylen, "%s", usage);
		return -EINVAL;
	}
	if (o % ERASE_ALIGN || l % ERASE_ALIGN || l == 0) {
		snprintf(why, whylen, "erase: offset and length must be non-zero multiples of 0x1000 "
			 "(got 0x%x 0x%x; nothing erased)", o, l);
		return -EINVAL;
	}
	uint64_t end = (uint64_t)o + l;  /* both < 2^32: no wrap in 64 bits */
	if ((flash_size && end > flash_size) || end > UINT32_MAX) {
		snprintf(why, whylen, "erase: 0x%x+0x%x is past the end of the %u-byte flash "
			 "(nothing erased)", o, l, flash_size);
		return -EFBIG;
	}
	*off = o;
	*n = l;
	return 0;
}

/* ---- wifi ---- */

/* cJSON turns "\u0000" into a NUL that ends its C string: "Ne\u0000t"
 * would provision "Ne".  Every backslash in valid JSON starts a two-char
 * escape, so stepping over pairs finds each "\u" exactly. */
static bool json_has_nul_escape(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\\')
			continue;
		if ((buf[i + 1] == 'u' || buf[i + 1] == 'U') && i + 6 <= len &&
		    !memcmp(buf + i + 2, "0000", 4))
			return true;
		i++;  /* skip the escaped character */
	}
	return false;
}

static void wipe_string(cJSON *p)
{
	if (cJSON_IsString(p) && p->valuestring)
		explicit_bzero(p->valuestring, strlen(p->valuestring));
}

static int parse_wifi_json(const char *buf, size_t len, char *ssid, size_t ssid_cap, char *pass,
			   size_t pass_cap, char *why, size_t whylen)
{
	if (json_has_nul_escape(buf, len)) {
		snprintf(why, whylen, "wifi: NUL character (\\u0000) in the value");
		return -EINVAL;
	}
	cJSON *o = cJSON_ParseWithLength(buf, len);
	if (!o || !cJSON_IsObject(o)) {
		cJSON_Delete(o);
		snprintf(why, whylen, "wifi: malformed JSON; expected {\"ssid\": ..., \"password\": ...}");
		return -EINVAL;
	}
	cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "ssid");
	cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "password");
	cJSON *p2 = cJSON_GetObjectItemCaseSensitive(o, "pass");
	if (!p)
		p = p2;
	int rc = 0;
	if (!cJSON_IsString(s) || (p && !cJSON_IsString(p))) {
		snprintf(why, whylen, "wifi: JSON needs a string \"ssid\" (and a string \"password\")");
		rc = -EINVAL;
	} else if (strlen(s->valuestring) >= ssid_cap || (p && strlen(p->valuestring) >= pass_cap)) {
		snprintf(why, whylen, "wifi: SSID longer than %d bytes or password longer than %d bytes",
			 SSID_MAX, PASS_MAX);
		rc = -EINVAL;
	} else {
		snprintf(ssid, ssid_cap, "%s", s->valuestring);
		snprintf(pass, pass_cap, "%s", p ? p->valuestring : "");
	}
	/* do not leave the secret in freed memory */
	wipe_string(p);
	wipe_string(p2);
	cJSON_Delete(o);
	return rc;
}

static int parse_wifi_value(const char *buf, size_t len, char *ssid, size_t ssid_cap, char *pass,
			    size_t pass_cap, char *why, size_t whylen)
{
	int rc;
	len = strip_newline(buf, len);
	if (memchr(buf, 0, len)) {
		snprintf(why, whylen, "wifi: NUL byte in the value");
		return -EINVAL;
	}
	size_t i = 0;
	while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r'))
		i++;
	if (i < len && buf[i] == '{') {
		rc = parse_wifi_json(buf, len, ssid, ssid_cap, pass, pass_cap, why, whylen);
	} else {
		const char *colon = memchr(buf, ':', len);
		if (!colon) {
			snprintf(why, whylen, "wifi: expected \"ssid:password\" (or a JSON object)");
			return -EINVAL;
		}
		size_t sl = (size_t)(colon - buf), pl = len - sl - 1;
		if (sl >= ssid_cap || pl >= pass_cap) {
			snprintf(why, whylen, "wifi: SSID longer than %d bytes or password longer than %d bytes",
				 SSID_MAX, PASS_MAX);
			return -EINVAL;
		}
		memcpy(ssid, buf, sl);
		ssid[sl] = 0;
		memcpy(pass, colon + 1, pl);
		pass[pl] = 0;
		rc = 0;
	}
	if (rc < 0)
		return rc;
	if (!ssid[0]) {
		snprintf(why, whylen, "wifi: empty SSID");
		rc = -EINVAL;
	} else if (strlen(ssid) > SSID_MAX) {
		snprintf(why, whylen, "wifi: SSID longer than %d bytes", SSID_MAX);
		rc = -EINVAL;
	} else if (strlen(pass) > PASS_MAX) {
		snprintf(why, whylen, "wifi: password longer than %d bytes", PASS_MAX);
		rc = -EINVAL;
	}
	return rc;
}

int parse_wifi(const char *buf, size_t len, char *ssid, size_t ssid_cap, char *pass,
	       size_t pass_cap, char *why, size_t whylen)
{
	int rc = parse_wifi_value(buf, len, ssid, ssid_cap, pass, pass_cap, why, whylen);
	if (rc < 0)  /* every failure, whatever it left in pass */
		explicit_bzero(pass, pass_cap);
	return rc;
}

/* ---- state ---- */

int parse_state_cmd(const char *buf, size_t len, struct state_req *out, char *why,
		    size_t whylen)
{
	static const struct {
		const char *word;
		enum state_cmd cmd;
	} words[] = {
		{ "reset", STATE_CMD_RESET }, { "unplug", STATE_CMD_UNPLUG },
		{ "replug", STATE_CMD_REPLUG }, { "buttons", STATE_CMD_BUTTONS },
		{ "hold-boot", STATE_CMD_HOLD_BOOT }, { "release-boot", STATE_CMD_RELEASE_BOOT },
		{ "press-reset", STATE_CMD_PRESS_RESET }, { "ack", STATE_CMD_ACK },
	};
	static const char *const faults[] = { "stall", "program-fail", "garbage", "none" };
	len = strip_newline(buf, len);
	memset(out, 0, sizeof *out);
	for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
		if (len == strlen(words[k].word) && !memcmp(buf, words[k].word, len)) {
			out->cmd = words[k].cmd;
			return 0;
		}
	if (len > 10 && !memcmp(buf, "unplug-at ", 10)) {
		size_t i = 10;
		uint32_t pct = 0;
		if (((buf[i] >= '1' && buf[i] <= '9') || len == 11) &&
		    scan_u32(buf, len, &i, &pct) == 0 && i == len && pct <= 100) {
			out->cmd = STATE_CMD_UNPLUG_AT;
			out->pct = (int)pct;
			return 0;
		}
	}
	if (len > 8 && len < 40 && !memcmp(buf, "corrupt ", 8)) {
		char num[40], *end = NULL;
		memcpy(num, buf + 8, len - 8);
		num[len - 8] = 0;
		errno = 0;
		double r = num[0] >= '0' && num[0] <= '9' ? strtod(num, &end) : -1;
		if (end && !*end && !errno && r >= 0 && r <= 1) {
			out->cmd = STATE_CMD_CORRUPT;
			out->rate = r;
			return 0;
		}
	}
	if (len > 13 && !memcmp(buf, "console-baud ", 13)) {
		size_t i = 13;
		uint32_t b = 0;
		if (buf[i] >= '1' && buf[i] <= '9' && scan_u32(buf, len, &i, &b) == 0 && i == len &&
		    b >= 300 && b <= 5000000) {
			out->cmd = STATE_CMD_CONSOLE_BAUD;
			out->baud = b;
			return 0;
		}
		snprintf(why, whylen, "state: console-baud wants a rate, 300..5000000");
		return -EINVAL;
	}
	for (size_t k = 0; k < sizeof faults / sizeof faults[0]; k++)
		if (len == 6 + strlen(faults[k]) && !memcmp(buf, "fault ", 6) &&
		    !memcmp(buf + 6, faults[k], len - 6)) {
			out->cmd = STATE_CMD_FAULT;
			out->fault = faults[k];
			return 0;
		}
	/* never echo raw bytes: the state line is shown to every reader */
	char shown[48];
	esp_text_escape(shown, sizeof shown, buf, len < 20 ? len : 20);
	snprintf(why, whylen, "state: unknown command \"%s%s\" (try \"reset\" or \"ack\")", shown,
		 len > 20 ? "..." : "");
	return -EINVAL;
}

/* ---- names ---- */

int check_name(const char *name)
{
	size_t l = strnlen(name, ESPFS_NAME_MAX + 1);
	if (l > ESPFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (l == 0 || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
		return -EINVAL;
	return 0;
}
