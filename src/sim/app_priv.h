/* Private to src/sim/app*.c: image checks (app_image.c) and the Improv
 * device (app_improv.c) that app.c glues into a booting "firmware".
 * Exposed in a header so the tests can reach the codecs directly. */
#ifndef ESPFS_SIM_APP_PRIV_H
#define ESPFS_SIM_APP_PRIV_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sim_app.h"

/* ---- SHA-256 (FIPS 180-4), written for the simulator ---- */
struct appsha {
	uint32_t h[8];
	uint64_t total;
	uint8_t buf[64];
	size_t used;
};
void appsha_init(struct appsha *s);
void appsha_update(struct appsha *s, const void *data, size_t n);
void appsha_final(struct appsha *s, uint8_t out[32]);

/* CRC-32 as the ESP ROM's crc32_le (zlib polynomial, reflected). */
uint32_t app_crc32_le(uint32_t crc, const uint8_t *p, size_t n);
/* The Arduino ESP8266 core's flash CRC (MSB first, poly 0x04C11DB7, init
 * ~0, no final xor) that elf2bin.py stores at 0x1010 after the image's
 * XOR checksum was computed. */
uint32_t app_crc32_msb(uint32_t crc, const uint8_t *p, size_t n);

/* ---- firmware image (PROTOCOL.md A17) ---- */
#define APPIMG_MAX_SEGS 16
struct appimg_seg {
	uint32_t addr, len;
	uint32_t data_off;          /* offset of the data within the image */
};
struct appimg {
	uint32_t flash_off;         /* where the image starts in flash */
	uint8_t nseg, mode, size_freq;
	uint32_t entry;
	int chip_id;                /* extended header; -1 on ESP8266 */
	bool hash_appended;
	struct appimg_seg seg[APPIMG_MAX_SEGS];
	uint32_t len;               /* header .. checksum (+ SHA-256) */
	uint8_t csum_calc, csum_stored;
	bool csum_ok, sha_ok;
	uint8_t *data;              /* whole image (len bytes), owned */
};

enum appimg_err {
	APPIMG_OK = 0,
	APPIMG_BAD_MAGIC,          /* first byte not 0xE9 */
	APPIMG_BAD_SEGMENTS,       /* count > 16 or segments run off flash */
	APPIMG_IO,                 /* flash read failed */
};

/* Reads the image at off: headers, segment table, whole body.  The
 * checksum/SHA results land in img (csum_ok, sha_ok); structural problems
 * are the return value.  zero_from/zero_len: bytes (image-relative) that
 * count as 0 for the XOR checksum (ESP8266 Arduino CRC slot); 0 = none. */
int appimg_read(const struct sim_app_env *env, uint32_t off, bool esp8266,
		uint32_t zero_from, uint32_t zero_len, struct appimg *img);
void appimg_free(struct appimg *img);
/* First 32-bit word at off (for "invalid header: 0x%08x"). */
uint32_t appimg_word(const struct sim_app_env *env, uint32_t off);

/* ---- partition table (A18) + otadata ---- */
#define APP_PT_OFFSET 0x8000u
#define APP_PT_MAX 95
struct app_part {
	uint8_t type, subtype;
	uint32_t offset, size;
	char label[17];
};
struct app_ptable {
	struct app_part p[APP_PT_MAX];
	int n;
};
enum app_pt_err {
	APP_PT_OK = 0,
	APP_PT_NO_MAGIC,           /* first entry is not AA 50 */
	APP_PT_BAD_MD5,
	APP_PT_IO,
};
/* Parses the table at APP_PT_OFFSET; *bad_magic gets the offending first
 * two bytes (as IDF prints them) on APP_PT_NO_MAGIC. */
int app_ptable_read(const struct sim_app_env *env, struct app_ptable *pt, uint16_t *bad_magic);
/* The OTA slot (0..15) otadata selects, or -1 when otadata has no valid
 * entry.  n_ota: number of ota_N app partitions. */
int app_otadata_slot(const struct sim_app_env *env, uint32_t otadata_off, int n_ota);

/* ---- what the app image says about itself ---- */
struct app_info {
	bool has_desc;              /* esp_app_desc_t found */
	char version[33], project[33], time[17], date[17], idf_ver[33];
	bool esphome;               /* "ESPHome version X compiled on" found */
	char esphome_version[32];
	char device_name[64];       /* App.get_name() */
	char friendly_name[64];
	char compiled[40];          /* "Jul 11 2024, 21:54:06" */
	char project_name[96], project_version[32]; /* esphome: project: */
	bool improv_serial;         /* improv_serial component linked in */
	bool web_server;
	char next_url[160];         /* improv next_url as compiled in */
};
void app_info_scan(const struct appimg *img, struct app_info *info);

/* ---- Improv serial, device side (PROTOCOL.md part B) ---- */
#define IMPROV_STATE_AUTHORIZED 0x02
#define IMPROV_STATE_PROVISIONING 0x03
#define IMPROV_STATE_PROVISIONED 0x04
#define IMPROV_ERR_INVALID_RPC 0x01
#define IMPROV_ERR_UNKNOWN_RPC 0x02
#define IMPROV_ERR_UNABLE_TO_CONNECT 0x03
#define IMPROV_TIMEOUT_US 100000u   /* sdk-cpp IMPROV_SERIAL_TIMEOUT */

/* Encoders (return bytes written incl. the trailing '\n'; out >= 9+L+2). */
size_t improv_encode(uint8_t type, const uint8_t *data, uint8_t len, uint8_t *out);
/* RPC result data as sdk-cpp builds it without checksum:
 * [cmd, total, (len, str)..., 0x00].  Returns the data length, 0 if the
 * strings do not fit in cap (or 255). */
size_t improv_rpc_result(uint8_t cmd, const char *const *strs, int n, uint8_t *out, size_t cap);

struct improv_dev;
struct improv_hooks {
	void *ctx;
	/* Queue bytes for output at due_us (whole packet or console line). */
	void (*out)(void *ctx, uint64_t due_us, const uint8_t *buf, size_t n);
	/* Strings the device answers with. */
	const char *info[4];        /* firmware, version, variant, device name */
	const sim_app_wifi *wifi;
	int n_wifi;
	const char *url[2];         /* redirect URLs after provisioning */
	int n_url;
	bool esphome_logs;          /* log "[D][improv_serial...]" lines too */
};
struct improv_dev *improv_dev_new(const struct improv_hooks *h, int provisioned_wifi);
void improv_dev_free(struct improv_dev *d);
void improv_dev_input(struct improv_dev *d, const uint8_t *buf, size_t n, uint64_t now_us);
void improv_dev_poll(struct improv_dev *d, uint64_t now_us);
uint64_t improv_dev_next_event_us(const struct improv_dev *d);
uint8_t improv_dev_state(const struct improv_dev *d);
int improv_dev_provisioned_wifi(const struct improv_dev *d); /* index or -1 */
/* Deterministic RSSI the simulated air reports for an SSID. */
int improv_rssi_for(const char *ssid);

#endif
