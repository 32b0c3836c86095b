/* Parsers for the bytes users write into the device files (erase, wifi,
 * state) and for the names they give files.  Pure functions: no FUSE, no
 * device, so the unit tests and the fuzzers (tests/fuzz) call them as is.
 * Each returns 0 or a negative errno and, on failure, a one-line reason in
 * why[] that never contains the password. */
#ifndef ESPFS_FS_PARSE_H
#define ESPFS_FS_PARSE_H
#include <stddef.h>
#include <stdint.h>

/* 802.11 limits an SSID to 32 bytes; WPA2 passphrases are 8..63 bytes,
 * or 64 hex digits.  Improv itself would carry up to 251 bytes for both,
 * but nothing longer can ever join a network. */
#define SSID_MAX 32
#define PASS_MAX 64
/* The erase granularity of every supported chip's flash (and esptool's
 * alignment rule for erase_region). */
#define ERASE_ALIGN 0x1000u
/* Longest file name (NAME_MAX); the kernel lets FUSE pass up to 1024. */
#define ESPFS_NAME_MAX 255

/* "1" / "all": whole chip (*n = 0).  "OFFSET LENGTH": two unsigned
 * numbers (decimal, 0x hex or 0 octal), no sign, each at most 32 bits,
 * separated by blanks, nothing else but one trailing newline.  Both must
 * be multiples of 0x1000 (-EINVAL otherwise: an erase is never rounded,
 * it would destroy bytes the user did not name), LENGTH non-zero, and
 * OFFSET+LENGTH at most flash_size (-EFBIG), computed without wrapping.
 * flash_size 0 (not known yet): only the 32-bit limit is checked here;
 * the device layer checks the real size before its first erase command
 * (dev_erase_range_ok). */
int parse_erase(const char *buf, size_t len, uint32_t flash_size, uint32_t *off, uint32_t *n,
		char *why, size_t whylen);

/* One word naming a partition (a label, "ota_1", "factory"), as written
 * to `erase` and `boot`: 1..16 printable ASCII characters without blanks,
 * one trailing newline allowed.  -EINVAL (why) otherwise. */
#define PART_WORD_MAX 16
int parse_part_word(const char *buf, size_t len, char *out, size_t cap, char *why, size_t whylen);

/* "ssid:password" or {"ssid": ..., "password": ...}.  Refuses a NUL byte
 * anywhere (also as \u0000 inside JSON strings, which cJSON would cut
 * at), an empty SSID and values over the 802.11/WPA limits.  The SSID may
 * hold any other bytes (802.11 allows them); espfs escapes it wherever it
 * shows it (esp_text_escape).  pass is wiped on failure. */
int parse_wifi(const char *buf, size_t len, char *ssid, size_t ssid_cap, char *pass,
	       size_t pass_cap, char *why, size_t whylen);

/* Commands written to `state`. */
enum state_cmd {
	STATE_CMD_RESET,
	STATE_CMD_UNPLUG, STATE_CMD_REPLUG, STATE_CMD_BUTTONS,
	STATE_CMD_HOLD_BOOT, STATE_CMD_RELEASE_BOOT, STATE_CMD_PRESS_RESET,
	STATE_CMD_UNPLUG_AT, STATE_CMD_CORRUPT, STATE_CMD_FAULT, STATE_CMD_ACK,
	STATE_CMD_CONSOLE_BAUD,
};
struct state_req {
	enum state_cmd cmd;
	int pct;          /* unplug-at: 0..100 */
	double rate;      /* corrupt: 0..1 */
	const char *fault; /* fault: "stall", "program-fail", "garbage", "none" */
	uint32_t baud;    /* console-baud: 300..5000000 */
};
/* One known command, optionally followed by one newline; anything else
 * (other bytes after it, a second line, a NUL) is -EINVAL.  "unplug-at N"
 * takes N in 0..100, "corrupt RATE" a probability 0..1, "fault NAME" one
 * of the simulator's fault names, "console-baud N" a rate in 300..5000000.
 * why[] shows the value only escaped. */
int parse_state_cmd(const char *buf, size_t len, struct state_req *out, char *why,
		    size_t whylen);

/* A file name from the kernel: -ENAMETOOLONG over ESPFS_NAME_MAX bytes,
 * -EINVAL for "", ".", ".." or one holding '/' (never sent by the kernel,
 * refused in case). */
int check_name(const char *name);

#endif
