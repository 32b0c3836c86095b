/* The simulated ROM's and 2nd-stage bootloader's view of flash: image
 * headers, segment tables, XOR checksum, appended SHA-256, partition table
 * and otadata (PROTOCOL.md A17/A18).  Deliberately independent of
 * src/proto/image.c so a misreading of the format cannot hide in both. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <md5.h>
#include "app_priv.h"

/* ---------------- SHA-256 ---------------- */

static const uint32_t sha_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(struct appsha *s, const uint8_t *b)
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 |
		       (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = s->h[0], bb = s->h[1], c = s->h[2], d = s->h[3];
	uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
		uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
		h = g; g = f; f = e; e = d + t1;
		d = c; c = bb; bb = a; a = t1 + t2;
	}
	s->h[0] += a; s->h[1] += bb; s->h[2] += c; s->h[3] += d;
	s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

void appsha_init(struct appsha *s)
{
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	memcpy(s->h, iv, sizeof iv);
	s->total = 0;
	s->used = 0;
}

void appsha_update(struct appsha *s, const void *data, size_t n)
{
	const uint8_t *p = data;
	s->total += n;
	while (n) {
		if (s->used == 0 && n >= 64) {
			sha_block(s, p);
			p += 64;
			n -= 64;
			continue;
		}
		size_t k = 64 - s->used < n ? 64 - s->used : n;
		memcpy(s->buf + s->used, p, k);
		s->used += k;
		p += k;
		n -= k;
		if (s->used == 64) {
			sha_block(s, s->buf);
			s->used = 0;
		}
	}
}

void appsha_final(struct appsha *s, uint8_t out[32])
{
	uint64_t bits = s->total * 8;
	uint8_t pad = 0x80, zero = 0, len[8];
	appsha_update(s, &pad, 1);
	while (s->used != 56)
		appsha_update(s, &zero, 1);
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(bits >> (56 - 8 * i));
	appsha_update(s, len, 8);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)s->h[i];
	}
}

/* ---------------- CRCs ---------------- */

uint32_t app_crc32_le(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int i = 0; i < 8; i++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

uint32_t app_crc32_msb(uint32_t crc, const uint8_t *p, size_t n)
{
	while (n--) {
		crc ^= (uint32_t)*p++ << 24;
		for (int i = 0; i < 8; i++)
			crc = (crc << 1) ^ (0x04C11DB7u & (0u - (crc >> 31)));
	}
	return crc;
}

/* ---------------- images ---------------- */

static uint32_t le32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int fread_at(const struct sim_app_env *env, uint32_t off, uint8_t *buf, uint32_t n)
{
	if (off > env->flash_size || n > env->flash_size - off)
		return -1;
	return env->flash_read(env->flash_ctx, off, buf, n) < 0 ? -1 : 0;
}

uint32_t appimg_word(const struct sim_app_env *env, uint32_t off)
{
	uint8_t b[4];
	if (fread_at(env, off, b, 4) < 0)
		return 0xFFFFFFFFu;
	return le32(b);
}

int appimg_read(const struct sim_app_env *env, uint32_t off, bool esp8266,
		uint32_t zero_from, uint32_t zero_len, struct appimg *img)
{
	memset(img, 0, sizeof *img);
	img->flash_off = off;
	img->chip_id = -1;
	uint8_t hdr[24];
	uint32_t hlen = esp8266 ? 8 : 24;
	if (fread_at(env, off, hdr, hlen) < 0)
		return APPIMG_IO;
	if (hdr[0] != 0xE9)
		return APPIMG_BAD_MAGIC;
	img->nseg = hdr[1];
	img->mode = hdr[2];
	img->size_freq = hdr[3];
	img->entry = le32(hdr + 4);
	if (!esp8266) {
		img->chip_id = hdr[12] | hdr[13] << 8;
		img->hash_appended = hdr[23] == 1;
	}
	if (img->nseg == 0 || img->nseg > APPIMG_MAX_SEGS)
		return APPIMG_BAD_SEGMENTS;
	uint32_t pos = hlen;
	for (int i = 0; i < img->nseg; i++) {
		uint8_t sh[8];
		if (fread_at(env, off + pos, sh, 8) < 0)
			return APPIMG_BAD_SEGMENTS;
		img->seg[i].addr = le32(sh);
		img->seg[i].len = le32(sh + 4);
		img->seg[i].data_off = pos + 8;
		/* A length running off the flash is what an erased or torn image
		 * looks like; the ROM would read garbage and fail the checksum. */
		if (img->seg[i].len > env->flash_size || pos + 8 + img->seg[i].len > env->flash_size - off)
			return APPIMG_BAD_SEGMENTS;
		pos += 8 + img->seg[i].len;
	}
	pos = (pos | 15) + 1;               /* padding, then the checksum byte ends a 16-byte line */
	uint32_t total = pos + (img->hash_appended ? 32 : 0);
	if (total > env->flash_size - off)
		return APPIMG_BAD_SEGMENTS;
	img->data = malloc(total);
	if (!img->data)
		return APPIMG_IO;
	if (fread_at(env, off, img->data, total) < 0) {
		appimg_free(img);
		return APPIMG_IO;
	}
	img->len = total;
	uint8_t cs = 0xEF;
	for (int i = 0; i < img->nseg; i++) {
		const struct appimg_seg *s = &img->seg[i];
		for (uint32_t k = 0; k < s->len; k++) {
			uint32_t at = s->data_off + k;
			if (zero_len && at >= zero_from && at < zero_from + zero_len)
				continue;
			cs ^= img->data[at];
		}
	}
	img->csum_calc = cs;
	img->csum_stored = img->data[pos - 1];
	img->csum_ok = cs == img->csum_stored;
	img->sha_ok = true;
	if (img->hash_appended) {
		struct appsha s;
		uint8_t d[32];
		appsha_init(&s);
		appsha_update(&s, img->data, pos);
		appsha_final(&s, d);
		img->sha_ok = memcmp(d, img->data + pos, 32) == 0;
	}
	return APPIMG_OK;
}

void appimg_free(struct appimg *img)
{
	free(img->data);
	img->data = NULL;
}

/* ---------------- partition table, otadata ---------------- */

int app_ptable_read(const struct sim_app_env *env, struct app_ptable *pt, uint16_t *bad_magic)
{
	uint8_t t[0xC00];
	memset(pt, 0, sizeof *pt);
	if (fread_at(env, APP_PT_OFFSET, t, sizeof t) < 0)
		return APP_PT_IO;
	if (t[0] != 0xAA || t[1] != 0x50) {
		if (bad_magic)
			*bad_magic = (uint16_t)(t[0] | t[1] << 8);
		return APP_PT_NO_MAGIC;
	}
	for (size_t o = 0; o + 32 <= sizeof t; o += 32) {
		const uint8_t *e = t + o;
		if (e[0] == 0xEB && e[1] == 0xEB) {
			MD5_CTX c;
			uint8_t d[16];
			MD5Init(&c);
			MD5Update(&c, t, o);
			MD5Final(d, &c);
			return memcmp(d, e + 16, 16) == 0 ? APP_PT_OK : APP_PT_BAD_MD5;
		}
		if (e[0] != 0xAA || e[1] != 0x50 || pt->n == APP_PT_MAX)
			break;
		struct app_part *p = &pt->p[pt->n++];
		p->type = e[2];
		p->subtype = e[3];
		p->offset = le32(e + 4);
		p->size = le32(e + 8);
		memcpy(p->label, e + 12, 16);
		p->label[16] = 0;
	}
	return APP_PT_OK;       /* tables without an MD5 row are accepted by IDF too */
}

int app_otadata_slot(const struct sim_app_env *env, uint32_t otadata_off, int n_ota)
{
	/* esp_ota_select_entry_t: ota_seq u32, seq_label[20], ota_state u32,
	 * crc u32 = crc32_le(~0, &ota_seq, 4); two copies one sector apart,
	 * the higher valid sequence wins. */
	uint32_t best = 0;
	if (n_ota <= 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		uint8_t e[32];
		if (fread_at(env, otadata_off + 0x1000u * (uint32_t)i, e, 32) < 0)
			continue;
		uint32_t seq = le32(e), state = le32(e + 24), crc = le32(e + 28);
		if (seq == 0xFFFFFFFFu || seq == 0)
			continue;
		if (app_crc32_le(0xFFFFFFFFu, e, 4) != crc)
			continue;
		if (state == 3 || state == 4)   /* ESP_OTA_IMG_INVALID / ABORTED */
			continue;
		if (seq > best)
			best = seq;
	}
	return best ? (int)((best - 1) % (uint32_t)n_ota) : -1;
}

/* ---------------- what the app says about itself ---------------- */

static void copy_field(char *dst, size_t cap, const uint8_t *src, size_t n)
{
	size_t k = 0;
	while (k < n && k + 1 < cap && src[k] >= 0x20 && src[k] < 0x7F)
		k++;
	memcpy(dst, src, k);
	dst[k] = 0;
}

/* The NUL-terminated string that contains byte i, as [*s, *e). */
static void string_around(const uint8_t *d, size_t n, size_t i, size_t *s, size_t *e)
{
	size_t a = i, b = i;
	while (a > 0 && d[a - 1] >= 0x20 && d[a - 1] < 0x7F)
		a--;
	while (b < n && d[b] >= 0x20 && d[b] < 0x7F)
		b++;
	*s = a;
	*e = b;
}

static const uint8_t *find(const uint8_t *d, size_t n, const char *needle, size_t from)
{
	size_t k = strlen(needle);
	if (!d || from >= n)
		return NULL;
	return memmem(d + from, n - from, needle, k);
}

/* A whole NUL-delimited string equal to needle (a log TAG, say). */
static bool has_exact(const uint8_t *d, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	for (const uint8_t *p = find(d, n, needle, 0); p; p = find(d, n, needle, (size_t)(p - d) + 1)) {
		size_t at = (size_t)(p - d);
		if ((at == 0 || d[at - 1] == 0) && (at + k == n || d[at + k] == 0))
			return true;
	}
	return false;
}

static bool is_name_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static bool is_compile_stamp(const uint8_t *p, size_t len)
{
	/* __DATE__ ", " __TIME__: "Jul 11 2024, 21:54:06" */
	if (len != 21)
		return false;
	return p[0] >= 'A' && p[0] <= 'Z' && p[3] == ' ' && p[6] == ' ' && p[11] == ',' &&
	       p[15] == ':' && p[18] == ':';
}

void app_info_scan(const struct appimg *img, struct app_info *info)
{
	memset(info, 0, sizeof *info);
	const uint8_t *d = img->data;
	size_t n = img->len;
	/* esp_app_desc_t opens the first (DROM) segment of IDF apps. */
	if (img->nseg > 0 && img->seg[0].len >= 256 && le32(d + img->seg[0].data_off) == 0xABCD5432u) {
		const uint8_t *a = d + img->seg[0].data_off;
		info->has_desc = true;
		copy_field(info->version, sizeof info->version, a + 16, 32);
		copy_field(info->project, sizeof info->project, a + 48, 32);
		copy_field(info->time, sizeof info->time, a + 80, 16);
		copy_field(info->date, sizeof info->date, a + 96, 16);
		copy_field(info->idf_ver, sizeof info->idf_ver, a + 112, 32);
	}
	/* ESPHome's Application::setup() banner: "ESPHome version %s compiled
	 * on %s" with the version folded in by the compiler. */
	const uint8_t *p = find(d, n, "ESPHome version ", 0);
	while (p) {
		size_t s, e;
		string_around(d, n, (size_t)(p - d), &s, &e);
		const char *tail = " compiled on %s";
		size_t tl = strlen(tail);
		size_t vs = (size_t)(p - d) + 16;
		if (e - s > tl + 16 && memcmp(d + e - tl, tail, tl) == 0 && e - tl > vs) {
			info->esphome = true;
			copy_field(info->esphome_version, sizeof info->esphome_version, d + vs, e - tl - vs);
			break;
		}
		p = find(d, n, "ESPHome version ", (size_t)(p - d) + 1);
	}
	if (!info->esphome)
		return;
	p = find(d, n, "Project ", 0);
	while (p) {
		size_t s, e;
		string_around(d, n, (size_t)(p - d), &s, &e);
		const uint8_t *v = memmem(p, e - (size_t)(p - d), " version ", 9);
		if (s == (size_t)(p - d) && v && !memchr(p, '%', e - s)) {
			copy_field(info->project_name, sizeof info->project_name, p + 8, (size_t)(v - p) - 8);
			copy_field(info->project_version, sizeof info->project_version, v + 9, (size_t)(d + e - v) - 9);
			break;
		}
		p = find(d, n, "Project ", (size_t)(p - d) + 1);
	}
	/* App.pre_setup(name, friendly_name, ..., __DATE__ ", " __TIME__)
	 * leaves the compile stamp, and the mDNS/OTA host "<name>.local",
	 * next to each other in .rodata. */
	p = find(d, n, ".local", 0);
	while (p) {
		size_t s, e;
		string_around(d, n, (size_t)(p - d), &s, &e);
		bool ok = e == (size_t)(p - d) + 6 && s < (size_t)(p - d) && (e >= n || d[e] == 0) &&
			  s > 0 && d[s - 1] == 0;
		for (size_t k = s; ok && k < (size_t)(p - d); k++)
			ok = is_name_char(d[k]);
		if (ok) {
			copy_field(info->device_name, sizeof info->device_name, d + s, (size_t)(p - d) - s);
			break;
		}
		p = find(d, n, ".local", (size_t)(p - d) + 1);
	}
	/* App.pre_setup()'s __DATE__ ", " __TIME__ compile stamp */
	for (p = find(d, n, ", ", 0); p; p = find(d, n, ", ", (size_t)(p - d) + 1)) {
		size_t at = (size_t)(p - d);
		if (at >= 11 && at + 10 <= n && (at == 11 || d[at - 12] == 0) &&
		    (at + 10 == n || d[at + 10] == 0) && is_compile_stamp(d + at - 11, 21)) {
			copy_field(info->compiled, sizeof info->compiled, d + at - 11, 21);
			break;
		}
	}
	if (!info->device_name[0])
		snprintf(info->device_name, sizeof info->device_name, "%s",
			 info->has_desc && info->project[0] ? info->project : "esphome");
	info->improv_serial = has_exact(d, n, "improv_serial");
	info->web_server = has_exact(d, n, "web_server");
	p = find(d, n, "https://my.home-assistant.io/redirect/", 0);
	if (p) {
		size_t s, e;
		string_around(d, n, (size_t)(p - d), &s, &e);
		copy_field(info->next_url, sizeof info->next_url, p, d + e - p);
	}
}
