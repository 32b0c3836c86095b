/* Improv Wi-Fi Serial, client side (PROTOCOL.md part B).
 *
 * Codec: pure functions on byte vectors.  Parser: line-aware and
 * incremental; packets are recognised only at the start of a line, every
 * other line is console output kept in a small ring (for a `console` view).
 * Client: request/response over an esp_transport, deadlines measured on the
 * transport's clock.
 *
 * Errors (negative errno; improv_client.msg says why in words):
 *   -ETIMEDOUT    no (complete) answer within the deadline
 *   -ECONNREFUSED the device could not join the network (Improv error 0x03,
 *                 "unable to connect": wrong password, AP out of reach);
 *                 chosen over EIO because the device did answer, the
 *                 network refused it
 *   -EOPNOTSUPP   the firmware does not know the RPC (error 0x02)
 *   -EINVAL       bad arguments (SSID+password longer than a packet holds),
 *                 or the device rejected a hostname (error 0x05)
 *   -EACCES       not authorized (error 0x04, BLE only in practice)
 *   -EPROTO       the device called our RPC invalid (0x01) or answered garbage
 *   -EIO          unknown error (0xFF) from the device
 *   -EINTR        cancelled through improv_client.cancel
 *   transport errors (-ENODEV ...) are passed up unchanged.
 *
 * SSIDs and passwords are byte strings with explicit lengths.  Neither is
 * ever logged or put in a message; the encoded request is wiped after
 * sending.  Not thread-safe: one call at a time per client (which is also
 * how RPCs are serialized). */
#ifndef ESPFS_IMPROV_H
#define ESPFS_IMPROV_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "espfs/transport.h"

#define IMPROV_VERSION 1
#define IMPROV_HDR_LEN 9                           /* "IMPROV" ver type len */
#define IMPROV_MAX_DATA 255
#define IMPROV_MAX_WIRE (IMPROV_HDR_LEN + IMPROV_MAX_DATA + 2) /* + checksum + '\n' */
/* data = [cmd, len, ssid_len, ssid, pw_len, pw] must fit in 255 bytes */
#define IMPROV_MAX_CREDENTIALS 251

enum improv_type { IMPROV_TYPE_STATE = 0x01, IMPROV_TYPE_ERROR = 0x02,
                   IMPROV_TYPE_RPC = 0x03, IMPROV_TYPE_RESULT = 0x04 };
enum improv_state { IMPROV_STATE_STOPPED = 0x00, IMPROV_STATE_AWAITING_AUTH = 0x01,
                    IMPROV_STATE_AUTHORIZED = 0x02, IMPROV_STATE_PROVISIONING = 0x03,
                    IMPROV_STATE_PROVISIONED = 0x04 };
enum improv_error { IMPROV_ERR_NONE = 0x00, IMPROV_ERR_INVALID_RPC = 0x01,
                    IMPROV_ERR_UNKNOWN_RPC = 0x02, IMPROV_ERR_UNABLE_TO_CONNECT = 0x03,
                    IMPROV_ERR_NOT_AUTHORIZED = 0x04, IMPROV_ERR_BAD_HOSTNAME = 0x05,
                    IMPROV_ERR_UNKNOWN = 0xFF };
enum improv_cmd { IMPROV_CMD_WIFI = 0x01, IMPROV_CMD_GET_STATE = 0x02,
                  IMPROV_CMD_GET_INFO = 0x03, IMPROV_CMD_SCAN = 0x04,
                  IMPROV_CMD_HOSTNAME = 0x05, IMPROV_CMD_DEVICE_NAME = 0x06 };

/* Timeouts (ms), after improv-wifi-serial-sdk and esp-web-tools. */
#define IMPROV_DETECT_TIMEOUT_MS     1500   /* initialize() when already running */
#define IMPROV_AFTER_FLASH_TIMEOUT_MS 10000 /* first boot after a fresh install */
#define IMPROV_RESEND_MS             1000   /* state request repeat */
#define IMPROV_RPC_TIMEOUT_MS        30000
#define IMPROV_PROVISION_TIMEOUT_MS  45000  /* device tries ~30 s itself */
#define IMPROV_CANCEL_POLL_MS        100
#define IMPROV_GAP_MS                250    /* silence that ends a partial packet */

const char *improv_state_name(int state);   /* "authorized", ... */
const char *improv_error_name(int err);     /* "unable to connect", ... */
int improv_error_errno(int err);            /* mapping above; 0 for 0x00 */

/* ---- codec ---- */
struct improv_packet {
	uint8_t type;
	uint8_t len;
	uint8_t data[IMPROV_MAX_DATA];
};

/* A whole packet as sent on the wire, with the trailing '\n' the device
 * needs (its parser swallows the byte after a packet).  out must hold
 * len + 11 bytes.  Returns the byte count, or -EINVAL if len > 255. */
int improv_encode_packet(uint8_t type, const uint8_t *data, size_t len, uint8_t *out);
/* An RPC: data = [cmd, payload_len, payload].  -EINVAL if payload > 253. */
int improv_encode_rpc(uint8_t cmd, const uint8_t *payload, size_t plen, uint8_t *out);
/* The Wi-Fi settings RPC.  -EINVAL when ssid_len + pw_len > 251, or
 * ssid_len == 0. */
int improv_encode_wifi(const uint8_t *ssid, size_t ssid_len, const uint8_t *pw, size_t pw_len,
                       uint8_t *out);

/* Decode exactly one packet at buf (no framing around it).  Returns the
 * bytes used (10 + L; the newline is not part of it), -EAGAIN if more bytes
 * are needed, -EINVAL if buf does not start with "IMPROV", -EPROTO on a bad
 * version or checksum. */
int improv_decode(const uint8_t *buf, size_t len, struct improv_packet *p);

/* Strings of an RPC result: data[0] = cmd, data[1] = list length, then
 * (len, bytes)...; anything after data[1] + 2 bytes (ESPHome's trailing
 * 0x00) is ignored.  Pointers point into p.  -EPROTO when malformed. */
#define IMPROV_MAX_STRINGS 64
struct improv_strings {
	uint8_t cmd;
	int n;
	const uint8_t *s[IMPROV_MAX_STRINGS];
	uint8_t len[IMPROV_MAX_STRINGS];
};
int improv_parse_result(const struct improv_packet *p, struct improv_strings *out);
/* Copy string i as a C string (NULs and control bytes become '?'). */
void improv_string_copy(const struct improv_strings *s, int i, char *dst, size_t cap);

/* ---- line-aware stream parser ---- */
#define IMPROV_CONSOLE_LINES 64
#define IMPROV_CONSOLE_LINE_MAX 256
typedef void (*improv_line_fn)(void *ctx, const char *line);

struct improv_parser {
	uint8_t buf[IMPROV_MAX_WIRE];
	size_t n;                   /* bytes of a candidate packet */
	size_t want;                /* full packet length once the header is in */
	bool line_start;
	bool in_text;               /* rest of this line is console text */
	bool after_packet;          /* the '\n' ending a packet is not a line */
	char cur[IMPROV_CONSOLE_LINE_MAX];
	size_t cur_n;
	char ring[IMPROV_CONSOLE_LINES][IMPROV_CONSOLE_LINE_MAX];
	unsigned ring_head, ring_count;
	unsigned long dropped;      /* packets dropped (checksum, version) */
	improv_line_fn on_line;     /* optional: called for every finished line */
	void *line_ctx;
};
void improv_parser_init(struct improv_parser *ps);
/* Feed bytes.  Returns 1 when a packet completed (in *pkt; *used tells how
 * many bytes were consumed: feed the rest again), 0 when all bytes were
 * consumed without completing one. */
int improv_parser_feed(struct improv_parser *ps, const uint8_t *in, size_t n, size_t *used,
                       struct improv_packet *pkt);
/* No byte came for a while: a packet cut short (device reset mid-packet)
 * is abandoned so it cannot swallow what comes next. */
void improv_parser_gap(struct improv_parser *ps);
/* Recent console lines, oldest first: i in [0, improv_console_count()). */
unsigned improv_console_count(const struct improv_parser *ps);
const char *improv_console_line(const struct improv_parser *ps, unsigned i);

/* ---- client ---- */
struct improv_client {
	esp_transport *tr;
	struct improv_parser ps;
	int state;                  /* last state seen, -1 none */
	int error;                  /* last error packet, -1 none */
	char url[256];              /* redirect URL from the last state/provision result */
	char msg[200];              /* reason for the last failure */
	unsigned long packets_in, packets_out;
	atomic_int *cancel;         /* optional: non-zero makes a waiting call return
	                             * -EINTR within IMPROV_CANCEL_POLL_MS */
	uint8_t rx[512];            /* bytes read but not yet parsed */
	size_t rx_pos, rx_len;
};

struct improv_info {
	char firmware[64], version[64], chip[32], name[64];
	char os_name[64], os_version[64];   /* "" when absent */
	int n_strings;
};

struct improv_network {
	uint8_t ssid[255];
	uint8_t ssid_len;
	int rssi;
	bool auth;                  /* "YES": needs a password */
};

void improv_client_init(struct improv_client *c, esp_transport *tr);

/* Ask for the state, re-sending the request every second until a state
 * packet arrives (the device is silent until asked).  timeout_ms 0 means
 * IMPROV_DETECT_TIMEOUT_MS; use IMPROV_AFTER_FLASH_TIMEOUT_MS right after
 * flashing.  Returns the state (>= 0); when provisioned, c->url gets the
 * redirect URL if the device sends one.  -ETIMEDOUT: no Improv here. */
int improv_get_state(struct improv_client *c, uint32_t timeout_ms);
/* RPC 0x03.  timeout_ms 0 = IMPROV_RPC_TIMEOUT_MS. */
int improv_device_info(struct improv_client *c, struct improv_info *info, uint32_t timeout_ms);
/* RPC 0x04: fills up to cap networks; returns how many the device listed
 * (may exceed cap: only cap are stored). */
int improv_scan(struct improv_client *c, struct improv_network *nets, int cap, uint32_t timeout_ms);
/* RPC 0x01.  timeout_ms 0 = IMPROV_PROVISION_TIMEOUT_MS.  0 on success
 * (c->url = redirect URL or ""). */
int improv_provision(struct improv_client *c, const uint8_t *ssid, size_t ssid_len,
                     const uint8_t *pw, size_t pw_len, uint32_t timeout_ms);
/* RPC 0x05 / 0x06: value NULL (or len 0) = get.  The current (or new)
 * value is copied to out.  -EOPNOTSUPP when the firmware lacks the RPC. */
int improv_hostname(struct improv_client *c, const char *set, char *out, size_t cap, uint32_t timeout_ms);
int improv_device_name(struct improv_client *c, const char *set, char *out, size_t cap, uint32_t timeout_ms);

#endif
