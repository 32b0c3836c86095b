/* Attribute files: the text a read returns (from the device's cache, never
 * from the chip), and the parsers for values written to `wifi` and `erase`
 * (whole value in one write, sysfs store() style). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "vfs.h"

/* 802.11 limits an SSID to 32 bytes; WPA2 passphrases are 8..63 bytes,
 * or 64 hex digits.  Improv itself would carry up to 251 bytes for both,
 * but nothing longer can ever join a network. */
#define SSID_MAX 32
#define PASS_MAX 64

char *attr_text(struct node *n, size_t *len)
{
	char buf[4096];  /* the state line with its warnings, never cut */
	struct dev_identity id;
	size_t l = 0;
	char *out;
	switch (n->kind) {
	case N_CHIP:
		device_identity(n->dev, &id);
		l = (size_t)snprintf(buf, sizeof buf, "%s\n", id.chip ? id.chip->name : "unknown");
		break;
	case N_MAC:
		device_identity(n->dev, &id);
		if (id.known)
			l = (size_t)snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x\n", id.mac[0],
					     id.mac[1], id.mac[2], id.mac[3], id.mac[4], id.mac[5]);
		else
			l = (size_t)snprintf(buf, sizeof buf, "unknown\n");
		break;
	case N_STATE:
		l = device_state_text(n->dev, buf, sizeof buf);
		break;
	case N_WIFI:
		l = device_wifi_text(n->dev, buf, sizeof buf);
		break;
	case N_INFO:
		out = device_info_json(n->dev);
		*len = out ? strlen(out) : 0;
		return out;
	default:
		*len = 0;
		return NULL;
	}
	out = malloc(l + 1);
	if (out)
		memcpy(out, buf, l + 1);
	*len = out ? l : 0;
	return out;
}

static size_t strip_newline(const char *buf, size_t len)
{
	if (len && buf[len - 1] == '\n')
		len--;
	if (len && buf[len - 1] == '\r')
		len--;
	return len;
}

static int parse_wifi_json(const char *buf, size_t len, char *ssid, size_t ssid_cap, char *pass,
			   size_t pass_cap, char *why, size_t whylen)
{
	cJSON *o = cJSON_ParseWithLength(buf, len);
	if (!o || !cJSON_IsObject(o)) {
		cJSON_Delete(o);
		snprintf(why, whylen, "wifi: malformed JSON; expected {\"ssid\": ..., \"password\": ...}");
		return -EINVAL;
	}
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "ssid");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "password");
	if (!p)
		p = cJSON_GetObjectItemCaseSensitive(o, "pass");
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
	if (p && cJSON_IsString(p))  /* do not leave the secret in freed memory */
		memset(p->valuestring, 0, strlen(p->valuestring));
	cJSON_Delete(o);
	return rc;
}

int parse_wifi(const char *buf, size_t len, char *ssid, size_t ssid_cap, char *pass,
	       size_t pass_cap, char *why, size_t whylen)
{
	int rc;
	len = strip_newline(buf, len);
	if (memchr(buf, 0, len)) {
		snprintf(why, whylen, "wifi: NUL byte in the value");
		return -EINVAL;
	}
	size_t i = 0;
	while (i < len && isspace((unsigned char)buf[i]))
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
	if (rc < 0)
		memset(pass, 0, pass_cap);
	return rc;
}

int parse_erase(const char *buf, size_t len, uint32_t flash_size, uint32_t *off, uint32_t *n,
		char *why, size_t whylen)
{
	char tmp[128];
	len = strip_newline(buf, len);
	if (len == 0 || len >= sizeof tmp) {
		snprintf(why, whylen, "erase: expected \"1\" (whole chip) or \"0xOFFSET 0xLENGTH\"");
		return -EINVAL;
	}
	memcpy(tmp, buf, len);
	tmp[len] = 0;
	if (!strcmp(tmp, "1") || !strcmp(tmp, "all")) {
		*off = 0;
		*n = 0;
		return 0;
	}
	char *e1, *e2;
	errno = 0;
	unsigned long long o = strtoull(tmp, &e1, 0);
	unsigned long long l = e1 != tmp ? strtoull(e1, &e2, 0) : 0;
	if (e1 == tmp || errno || e2 == e1 || !isspace((unsigned char)*e1) || *e2) {
		snprintf(why, whylen, "erase: expected \"1\" (whole chip) or \"0xOFFSET 0xLENGTH\"");
		return -EINVAL;
	}
	if (o % 0x1000 || l % 0x1000 || l == 0) {
		snprintf(why, whylen, "erase: offset and length must be non-zero multiples of 0x1000");
		return -EINVAL;
	}
	if (o + l > flash_size) {
		snprintf(why, whylen, "erase: 0x%llx+0x%llx is past the end of the %u-byte flash", o, l,
			 flash_size);
		return -EFBIG;
	}
	*off = (uint32_t)o;
	*n = (uint32_t)l;
	return 0;
}
