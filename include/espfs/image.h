/* Firmware images and partition tables (PROTOCOL.md A17-A18): parse,
 * validate, classify ("what is this buffer, which chip is it for, where
 * does it go") and check a write against a target chip and flash offset.
 *
 * Pure functions: no I/O, no global state, no allocation (but one
 * temporary in esp_image_check_write); every function is safe on
 * arbitrary bytes (never reads outside [buf, buf+len)).  The structs are
 * a few KiB (esp_image_class ~4.6 KiB): allocate them, or keep them off
 * small stacks.
 * Messages are short English sentences fit for the `state` file. */
#ifndef ESPFS_IMAGE_H
#define ESPFS_IMAGE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "espfs/chip.h"

#define ESP_IMAGE_MAGIC        0xE9
#define ESP_IMAGE_MAX_SEGMENTS 16
#define ESP_IMAGE_HDR_LEN      8     /* common header */
#define ESP_IMAGE_EXT_HDR_LEN  16    /* extended header (not on ESP8266) */
#define ESP_APP_DESC_MAGIC     0xABCD5432u
#define ESP_PT_OFFSET          0x8000u  /* default partition-table offset */
#define ESP_PT_MAX_LEN         0xC00u
#define ESP_APP_OFFSET         0x10000u /* app offset when no table tells */
#define ESP_OTADATA_OFFSET     0xE000u  /* Arduino/ESPHome default */
#define ESP_OTADATA_LEN        0x2000u
#define ESP8266_APP_OFFSET     0x1000u  /* Arduino: eboot at 0, app at 0x1000 */

/* esp_image_check_write() never needs more than this many bytes from the
 * start of a write to decide (the ESP32/ESP32-S2 case: 4 KiB of 0xFF, then
 * the bootloader's header, first segment header and app-descriptor magic). */
#define ESP_IMAGE_CHECK_PREFIX 0x1100u

enum esp_flash_mode { ESP_FLASH_QIO = 0, ESP_FLASH_QOUT, ESP_FLASH_DIO, ESP_FLASH_DOUT };

struct esp_image_segment {
	uint32_t load_addr;
	uint32_t len;
	uint32_t data_off;       /* offset of the data in the image */
};

/* esp_app_desc_t: the first 256 bytes of the first DROM segment. */
struct esp_app_desc {
	bool present;
	uint32_t secure_version;
	char version[33];
	char project_name[33];
	char time[17];
	char date[17];
	char idf_ver[33];
	uint8_t elf_sha256[32];
};

struct esp_image_info {
	esp_chip_id chip;         /* ESP_CHIP_UNKNOWN when it cannot be told */
	bool has_ext_header;      /* false: ESP8266 layout */
	int ext_chip_id;          /* raw extended-header chip id, -1 if none */
	uint8_t n_segments;
	uint8_t flash_mode;       /* enum esp_flash_mode */
	uint8_t flash_size_freq;  /* header byte 3, raw */
	uint32_t flash_size;      /* decoded per chip; 0 unknown */
	uint32_t flash_freq_khz;  /* decoded per chip; 0 unknown */
	uint32_t entry;
	uint8_t min_rev;          /* legacy, deprecated */
	uint16_t min_rev_full, max_rev_full;
	bool hash_appended;
	int n_seen;               /* segment headers read (< n_segments if truncated) */
	struct esp_image_segment seg[ESP_IMAGE_MAX_SEGMENTS];
	bool flash_mapped;        /* a segment loads into IROM/DROM (an app) */
	struct esp_app_desc app;
	/* Whole-image facts, valid when complete. */
	bool complete;            /* every byte incl. checksum (and SHA) present */
	size_t needed;            /* bytes needed to go on (image length once known) */
	size_t data_len;          /* header..checksum byte inclusive (SHA covers this) */
	size_t image_len;         /* data_len + 32 if hash_appended */
	uint8_t checksum, checksum_calc;
	bool checksum_ok;
	bool sha_ok;              /* meaningful when hash_appended */
	/* ESPHome builds (any chip): the version from the setup banner
	 * "ESPHome version X compiled on %s", and whether improv_serial is
	 * compiled in (its log tag).  "" / false otherwise. */
	char esphome_version[24];
	bool improv_serial;
	/* Arduino ESP8266: image length + CRC32 stored at app+0x10 of the file
	 * (eboot + app); the XOR checksum was computed with those 8 bytes zero. */
	bool esp8266_crc_present, esp8266_crc_ok;
};

/* Parse the image starting at buf.  chip_hint (ESP_CHIP_UNKNOWN allowed)
 * only breaks ties, e.g. for the ESP8266 flash-size table.  Returns 0 when
 * the image is complete and valid; -EINVAL when it is malformed, corrupt
 * (checksum, SHA-256) or truncated (info->complete false, info->needed says
 * how much is missing); msg gets the reason.  info is filled as far as the
 * bytes allow in every case. */
int esp_image_parse(const uint8_t *buf, size_t len, esp_chip_id chip_hint,
                    struct esp_image_info *info, char *msg, size_t msglen);

/* The ESP8266 Arduino layout: eboot at 0 and an app at 0x1000 whose
 * checksum and trailing CRC32 cover the whole file.  Used by parse. */
uint32_t esp8266_crc32(uint32_t crc, const uint8_t *buf, size_t len);

/* Names for humans: "DIO", "4MB", "80m", "ESP32-C3". */
const char *esp_flash_mode_name(uint8_t mode);
/* Flash size (bytes) and frequency (kHz) for header byte 3 on that chip. */
uint32_t esp_image_flash_size(esp_chip_id chip, uint8_t size_freq);
uint32_t esp_image_flash_freq_khz(esp_chip_id chip, uint8_t size_freq);

/* ---- partition table ---- */
#define ESP_PT_MAX_ENTRIES 95

enum { ESP_PT_TYPE_APP = 0x00, ESP_PT_TYPE_DATA = 0x01,
       ESP_PT_TYPE_BOOTLOADER = 0x02, ESP_PT_TYPE_PT = 0x03 };
enum { ESP_PT_APP_FACTORY = 0x00, ESP_PT_APP_OTA0 = 0x10, ESP_PT_APP_OTA15 = 0x1F,
       ESP_PT_APP_TEST = 0x20 };
enum { ESP_PT_DATA_OTA = 0x00, ESP_PT_DATA_PHY = 0x01, ESP_PT_DATA_NVS = 0x02,
       ESP_PT_DATA_COREDUMP = 0x03, ESP_PT_DATA_SPIFFS = 0x82, ESP_PT_DATA_LITTLEFS = 0x83 };
#define ESP_PT_FLAG_ENCRYPTED 0x1u
#define ESP_PT_FLAG_READONLY  0x2u
#define ESP_PT_ANY 0x100          /* wildcard for esp_pt_find */

struct esp_partition {
	uint8_t type, subtype;
	uint32_t offset, size, flags;
	char label[17];           /* NUL-terminated; non-printables as '?' */
};

struct esp_partition_table {
	int n;
	struct esp_partition p[ESP_PT_MAX_ENTRIES];
	bool has_md5, md5_ok;
	bool has_end;             /* 0xFF row seen */
	size_t len;               /* bytes used incl. MD5 row and end marker */
};

/* Parse a table at buf (normally flash 0x8000).  Returns 0 when valid;
 * -EINVAL (msg) when the first row is not AA 50, a row is neither an entry,
 * the MD5 row nor the end marker, the MD5 does not match, or entries
 * overlap / run past the 4 GiB address space.  Never reads past len or
 * ESP_PT_MAX_LEN. */
int esp_pt_parse(const uint8_t *buf, size_t len, struct esp_partition_table *pt,
                 char *msg, size_t msglen);
/* First entry with that type and subtype (ESP_PT_ANY matches all), or NULL. */
const struct esp_partition *esp_pt_find(const struct esp_partition_table *pt,
                                        int type, int subtype);
const struct esp_partition *esp_pt_find_label(const struct esp_partition_table *pt,
                                              const char *label);
/* Where a freshly written app boots from (what "app" files go to):
 * factory if present, else ota_0, else the app partition at the lowest offset. */
const struct esp_partition *esp_pt_boot_app(const struct esp_partition_table *pt);
/* The app partition at the lowest offset. */
const struct esp_partition *esp_pt_first_app(const struct esp_partition_table *pt);
const char *esp_pt_type_name(uint8_t type);                   /* "app", "data", ... */
const char *esp_pt_subtype_name(uint8_t type, uint8_t subtype); /* "ota_0", "nvs"; NULL unknown */

/* otadata (2 x 32-byte select entries, at 0 and 0x1000). */
struct esp_otadata {
	bool valid[2];            /* CRC over ota_seq matches */
	bool blank[2];            /* all 0xFF */
	uint32_t seq[2];
	int active;               /* 0/1 = entry with the highest valid seq, -1 none */
};
int esp_otadata_parse(const uint8_t *buf, size_t len, struct esp_otadata *od);

/* What the 2nd-stage bootloader makes of otadata (ESP-IDF
 * bootloader_common_get_active_otadata): an entry counts when its ota_seq
 * is neither 0xFFFFFFFF nor 0, its CRC matches and its ota_state is not
 * INVALID (3) or ABORTED (4); the higher ota_seq wins (entry 0 on a tie).
 * buf: the otadata partition (entries at 0 and 0x1000); shorter buffers
 * count as blank.  Returns the active entry (0/1), -1 when none. */
int esp_otadata_active(const uint8_t *buf, size_t len, uint32_t *seq);
/* The ota_seq that makes OTA slot `slot` (0 = ota_0) of n_ota boot,
 * (seq - 1) % n_ota == slot, after the active cur (0: none): the smallest
 * such value >= cur, as esp_ota_set_boot_partition and otatool compute
 * it.  0 when it would not fit in 32 bits (never a valid ota_seq). */
uint32_t esp_otadata_next_seq(uint32_t cur, int slot, int n_ota);
/* A select entry for seq: ota_seq, seq_label and ota_state left erased
 * (0xFF, "undefined" as otatool writes them), CRC-32 of ota_seq. */
void esp_otadata_entry(uint8_t e[32], uint32_t seq);

/* ---- classification ---- */
enum esp_image_kind {
	ESP_KIND_UNKNOWN = 0,
	ESP_KIND_FACTORY,          /* whole flash from 0 (merged image) */
	ESP_KIND_BOOTLOADER,
	ESP_KIND_PARTITION_TABLE,
	ESP_KIND_APP,
	ESP_KIND_OTADATA,
};
const char *esp_image_kind_name(enum esp_image_kind k); /* "factory", ... */

struct esp_image_class {
	enum esp_image_kind kind;
	esp_chip_id chip;          /* what it was built for; UNKNOWN if not told */
	uint32_t flash_offset;     /* where to write it */
	bool valid;                /* everything inside checks out */
	char reason[200];          /* why it is invalid / unknown; "" when fine */
	/* Parts found.  For FACTORY: boot at boot_off, pt at ESP_PT_OFFSET,
	 * app at app_off; for BOOTLOADER/APP: the one image at 0. */
	bool has_boot, has_app, has_pt;
	uint32_t boot_off, app_off;
	struct esp_image_info boot, app;
	struct esp_partition_table pt;
};

/* Tell what buf is.  device_pt (may be NULL) is the table already on the
 * device: an app goes to its boot app partition (else 0x10000).  Returns 0
 * when kind is known and valid, -EINVAL otherwise (reason says why; kind
 * may still be set, e.g. an app with a bad checksum).
 * FACTORY = anything meant for offset 0 with a bootloader at the chip's
 * bootloader offset (ESP32/S2: 4 KiB of 0xFF first) and, for the ESP8266,
 * Arduino's eboot + app.  Table and app may be absent (a partial
 * merge_bin, a flash dump with an erased app partition) but what is
 * present must be intact.  A C3/S3-style buffer with a bootloader at 0 and
 * no table at 0x8000 is a BOOTLOADER (same offset, 0). */
int esp_image_classify(const uint8_t *buf, size_t len,
                       const struct esp_partition_table *device_pt,
                       struct esp_image_class *out);

/* One line for humans: "factory image for ESP32-C3 (project-template
 * 2024.6.6, IDF 4.4.7), goes to 0x0" or "invalid app image for ESP32: ...". */
void esp_image_describe(const struct esp_image_class *c, char *out, size_t cap);

/* May these bytes be written to `target`'s flash at flash_offset?  buf is
 * the data from that offset on: a prefix (complete = false: the FUSE layer's
 * first write) or everything (complete = true).  Refuses, with -EINVAL and
 * a message: an image for another chip; an app where the bootloader belongs;
 * a bootloader anywhere else; an ESP32-family image at 0x0 on ESP32/S2; and
 * with complete = true a truncated or corrupt image.  Data that is not an
 * image (raw flash contents, file systems, NVS) is accepted.  Returns
 * -EAGAIN when !complete and more bytes are needed (never once len >=
 * ESP_IMAGE_CHECK_PREFIX).  device_pt may be NULL. */
/* The chip revision an image demands (its header's min_rev_full /
 * max_rev_full, or the legacy min_rev, as esptool decides; PROTOCOL.md
 * A17): -EINVAL with the reason in msg when a header in buf (the one at
 * its start, the ESP32 bootloader at 0x1000 of a merged image, the app at
 * 0x10000) wants a revision this chip (rev = major * 100 + minor) does not
 * have; 0 otherwise, also for data that is not an image. */
int esp_image_check_revision(esp_chip_id target, unsigned rev, uint32_t flash_offset,
                             const uint8_t *buf, size_t len, char *msg, size_t msglen);
int esp_image_check_write(esp_chip_id target, uint32_t flash_offset,
                          const uint8_t *buf, size_t len, bool complete,
                          const struct esp_partition_table *device_pt,
                          char *msg, size_t msglen);

/* Rewrite header bytes 2-3 (flash mode, size/freq) of the image at buf and
 * recompute its appended SHA-256 if it has one, as esptool does when it
 * writes a bootloader with --flash_mode/--flash_size.  -EINVAL when buf is
 * not a complete image. */
int esp_image_set_flash_params(uint8_t *buf, size_t len, uint8_t mode, uint8_t size_freq);

#endif
