/* Stub flasher: JSON files (esptool / esptool-js format), where to find
 * them, and uploading one into RAM (PROTOCOL.md A13). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "loader_priv.h"

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int esp_base64_decode(const char *in, size_t in_len, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	int bits = 0, pad = 0;
	size_t o = 0;
	for (size_t i = 0; i < in_len; i++) {
		char c = in[i];
		if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		int v = b64_value(c);
		if (v < 0 || pad)
			return -EINVAL; /* bad character, or data after padding */
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -ENOSPC;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* leftover bits must be the zero fill of a proper final group */
	if (bits >= 6 || pad > 2 || (acc & ((1u << bits) - 1)) != 0)
		return -EINVAL;
	return (int)o;
}

static char *read_text(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[n] = 0;
	*len = n;
	return buf;
}

static int get_u32(const cJSON *root, const char *key, uint32_t *v, bool required)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
	if (!it)
		return required ? -ENOENT : 0;
	if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 4294967295.0)
		return -EINVAL;
	*v = (uint32_t)it->valuedouble;
	return 0;
}

static int get_b64(const cJSON *root, const char *key, uint8_t **out, size_t *len)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
	*out = NULL;
	*len = 0;
	if (!it)
		return 0;
	if (!cJSON_IsString(it))
		return -EINVAL;
	size_t in = strlen(it->valuestring);
	uint8_t *b = malloc(in / 4 * 3 + 3);
	if (!b)
		return -ENOMEM;
	int n = esp_base64_decode(it->valuestring, in, b, in / 4 * 3 + 3);
	if (n < 0) {
		free(b);
		return n;
	}
	*out = b;
	*len = (size_t)n;
	return 0;
}

int esp_stub_load_file(const char *path, esp_stub *stub, char *err, size_t errlen)
{
	memset(stub, 0, sizeof *stub);
	size_t len = 0;
	char *text = read_text(path, &len);
	if (!text) {
		int e = errno ? errno : EIO;
		snprintf(err, errlen, "cannot read stub %s: %s", path, strerror(e));
		return -e;
	}
	int rc = esp_stub_parse(text, len, path, stub, err, errlen);
	free(text);
	return rc;
}

int esp_stub_parse(const char *text, size_t len, const char *path, esp_stub *stub, char *err,
		   size_t errlen)
{
	memset(stub, 0, sizeof *stub);
	cJSON *root = cJSON_ParseWithLength(text, len);
	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		snprintf(err, errlen, "stub %s is not a JSON object", path);
		return -EINVAL;
	}
	int rc;
	const char *bad = NULL;
	if ((rc = get_u32(root, "entry", &stub->entry, true)) < 0)
		bad = "entry";
	else if ((rc = get_u32(root, "text_start", &stub->text_start, true)) < 0)
		bad = "text_start";
	else if ((rc = get_u32(root, "data_start", &stub->data_start, false)) < 0)
		bad = "data_start";
	else if ((rc = get_b64(root, "text", &stub->text, &stub->text_len)) < 0 || !stub->text_len) {
		bad = "text";
		rc = rc < 0 ? rc : -EINVAL;
	} else if ((rc = get_b64(root, "data", &stub->data, &stub->data_len)) < 0)
		bad = "data";
	cJSON_Delete(root);
	if (bad) {
		esp_stub_free(stub);
		snprintf(err, errlen, "stub %s: missing or invalid \"%s\"", path, bad);
		return rc == -ENOMEM ? rc : -EINVAL;
	}
	snprintf(stub->source, sizeof stub->source, "%s", path);
	return 0;
}

/* A copy of the running stub, so that baud negotiation can reset a chip
 * it lost at a bad rate and bring the stub back (loader_baud.c). */
void esp__keep_stub(esp_loader *l, const esp_stub *stub)
{
	if (stub == &l->kept_stub)
		return;
	esp_stub_free(&l->kept_stub);
	esp_stub c = *stub;
	c.text = stub->text_len ? malloc(stub->text_len) : NULL;
	c.data = stub->data_len ? malloc(stub->data_len) : NULL;
	if ((stub->text_len && !c.text) || (stub->data_len && !c.data)) {
		free(c.text);
		free(c.data);
		memset(&l->kept_stub, 0, sizeof l->kept_stub);
		return;
	}
	if (c.text)
		memcpy(c.text, stub->text, stub->text_len);
	if (c.data)
		memcpy(c.data, stub->data, stub->data_len);
	l->kept_stub = c;
}

void esp_stub_free(esp_stub *stub)
{
	if (!stub)
		return;
	free(stub->text);
	free(stub->data);
	stub->text = stub->data = NULL;
	stub->text_len = stub->data_len = 0;
}

/* <dir>/<key>.json (esptool, esptool-js >= 0.7, esp-web-flasher), or
 * esptool-js 0.6's stub_flasher_<key without "esp">.json. */
static int try_dir(const char *dir, const struct esp_chip_info *chip, char *path, size_t cap)
{
	const char *k = chip->key;
	if (!dir || !*dir)
		return -ENOENT;
	snprintf(path, cap, "%s/%s.json", dir, k);
	if (access(path, R_OK) == 0)
		return 0;
	snprintf(path, cap, "%s/stub_flasher_%s.json", dir, strncmp(k, "esp", 3) == 0 ? k + 3 : k);
	if (access(path, R_OK) == 0)
		return 0;
	return -ENOENT;
}

int esp_stub_find(const struct esp_chip_info *chip, const char *dir, char *path, size_t cap)
{
	if (!chip)
		return -EINVAL;
	if (dir)
		return try_dir(dir, chip, path, cap);
	if (try_dir(getenv("ESPFS_STUB_DIR"), chip, path, cap) == 0)
		return 0;
	static const char *fixed[] = { "/usr/share/espfs/stubs", "/usr/local/share/espfs/stubs" };
	for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
		if (try_dir(fixed[i], chip, path, cap) == 0)
			return 0;
	/* An installed esptool: its new stubs ("2") before the legacy ones ("1"),
	 * as esptool >= 5.3 itself prefers. */
	static const char *pats[] = {
		"/usr/lib/python3*/dist-packages/esptool/targets/stub_flasher/%s",
		"/usr/local/lib/python3*/dist-packages/esptool/targets/stub_flasher/%s",
		"/usr/local/lib/python3*/site-packages/esptool/targets/stub_flasher/%s",
		"/usr/lib/python3*/site-packages/esptool/targets/stub_flasher/%s",
		"%s/.local/lib/python3*/site-packages/esptool/targets/stub_flasher/%s",
	};
	static const char *subdirs[] = { "2", "1" };
	const char *home = getenv("HOME");
	for (size_t s = 0; s < 2; s++) {
		for (size_t i = 0; i < sizeof pats / sizeof *pats; i++) {
			char pat[512];
			if (i == 4) {
				if (!home)
					continue;
				snprintf(pat, sizeof pat, pats[i], home, subdirs[s]);
			} else {
				snprintf(pat, sizeof pat, pats[i], subdirs[s]);
			}
			glob_t g;
			if (glob(pat, 0, NULL, &g) != 0)
				continue;
			int found = -ENOENT;
			for (size_t j = g.gl_pathc; j-- > 0 && found;) /* newest python last */
				found = try_dir(g.gl_pathv[j], chip, path, cap);
			globfree(&g);
			if (found == 0)
				return 0;
		}
	}
	return -ENOENT;
}

static int upload(esp_loader *l, const uint8_t *bytes, size_t len, uint32_t addr)
{
	uint32_t rb = esp__ram_block(l);
	uint32_t blocks = (uint32_t)((len + rb - 1) / rb);
	uint8_t p[16];
	esp__put32(p, (uint32_t)len);
	esp__put32(p + 4, blocks);
	esp__put32(p + 8, rb);
	esp__put32(p + 12, addr);
	int rc = esp_loader_command(l, ESP_MEM_BEGIN, p, sizeof p, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	if (rc < 0)
		return rc;
	uint8_t *buf = malloc(16 + rb);
	if (!buf)
		return -ENOMEM;
	for (uint32_t seq = 0; seq < blocks && rc >= 0; seq++) {
		size_t off = (size_t)seq * rb, n = len - off < rb ? len - off : rb;
		esp__put32(buf, (uint32_t)n);
		esp__put32(buf + 4, seq);
		esp__put32(buf + 8, 0);
		esp__put32(buf + 12, 0);
		memcpy(buf + 16, bytes + off, n);
		/* a block refused as damaged on the way was not used: again */
		for (int attempt = 1; attempt <= 3; attempt++) {
			rc = esp_loader_command(l, ESP_MEM_DATA, buf, 16 + n, esp__checksum(bytes + off, n),
						ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
			if (rc >= 0 || !esp__damaged_in_transit(l))
				break;
		}
	}
	free(buf);
	return rc < 0 ? rc : 0;
}

/* MEM_END was sent and no "OHAI" came: the ROM may have jumped to the
 * stub all the same, so whether anything still answers is unknown.  SYNC
 * again (no reset) and say which: the stub after all (its "OHAI" lost),
 * the ROM (a caller may go on with it), or nothing (esp_loader_synced()
 * is then false: reset the chip). */
static int after_failed_start(esp_loader *l, const esp_stub *stub, int rc)
{
	char why[sizeof l->err];
	memcpy(why, l->err, sizeof why);
	const struct esp_chip_info *chip = l->chip;
	bool sd = l->secure_download;
	if (esp_loader_connect(l, ESP_RESET_NONE, 1) < 0) {
		esp__err(l, "%s; the chip no longer answers (reset it)", why);
		return rc;
	}
	l->chip = chip;
	l->secure_download = sd;
	if (l->stub) {
		esp__keep_stub(l, stub);
		return 0;
	}
	esp__err(l, "%s; the ROM loader still answers", why);
	return rc;
}

int esp_loader_run_stub(esp_loader *l, const esp_stub *stub)
{
	int rc;
	if (l->stub)
		return 0; /* SYNC said one is already running */
	if (!l->chip && (rc = esp_loader_detect_chip(l, NULL)) < 0)
		return rc;
	if (l->secure_download) {
		esp__err(l, "Secure Download Mode forbids loading the stub");
		return -EACCES;
	}
	if ((rc = upload(l, stub->text, stub->text_len, stub->text_start)) < 0 ||
	    (stub->data_len && (rc = upload(l, stub->data, stub->data_len, stub->data_start)) < 0)) {
		esp__err_prefix(l, "uploading stub %s", stub->source);
		return rc;
	}
	/* MEM_END: the ROM may jump before it answers, and the stub's "OHAI"
	 * can arrive right after (or instead of) the reply, so read both here
	 * rather than through the command path. */
	uint8_t p[8];
	esp__put32(p, stub->entry == 0);
	esp__put32(p + 4, stub->entry);
	slip_reader_flush(&l->rd);
	if ((rc = esp__send(l, ESP_MEM_END, p, sizeof p, 0)) < 0)
		return rc;
	uint64_t deadline = esp_now_us(l->t->clock) + ESP_TMO_DEFAULT_MS * 1000ull;
	for (int frames = 0; frames < 100; frames++) {
		int n = slip_read_frame(&l->rd, deadline);
		if (n < 0) {
			esp__err(l, "stub %s did not start (no \"OHAI\"): %s", stub->source, strerror(-n));
			return after_failed_start(l, stub, n);
		}
		const uint8_t *f = l->frame;
		if (n == 4 && memcmp(f, "OHAI", 4) == 0) {
			l->stub = true;
			l->params_set = false; /* tell the stub the flash size too */
			esp__keep_stub(l, stub);
			return 0;
		}
		if (n >= 10 && f[0] == 1 && f[1] == ESP_MEM_END && f[8] != 0) {
			esp__err(l, "ROM refused to start the stub: error 0x%02x (%s)", f[9],
				 esp_status_text(f[8], f[9]));
			return esp_status_to_errno(f[8], f[9]);
		}
	}
	esp__err(l, "stub %s did not start (no \"OHAI\")", stub->source);
	return after_failed_start(l, stub, -EPROTO);
}
