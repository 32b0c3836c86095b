/* Device manager: one attached ESP (a real port or an in-process simulated
 * chip), its identity cache, its state line, and the worker thread that owns
 * its port and runs jobs one at a time.  The FUSE layer queues jobs with a
 * completion callback and never waits for device I/O on its own threads.
 *
 * Threading: every function here may be called from any thread.  Job
 * completion callbacks run on the device's worker thread. */
#ifndef ESPFS_DEVICE_H
#define ESPFS_DEVICE_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "espfs/chip.h"
#include "espfs/loader.h"

typedef struct esp_device esp_device;
typedef struct esp_devmgr esp_devmgr;

/* The first 64 KiB of flash (bootloader header, partition table at 0x8000)
 * are read once at attach and kept, so file managers sniffing flash.bin
 * never reach the chip. */
#define DEV_HEAD_SIZE 0x10000u
#define DEV_MAX_PARTS 32

struct dev_partition {
	char label[17];
	uint8_t type, subtype;
	uint32_t offset, size, flags;
};

/* Gathered once at attach; afterwards attributes come from here. */
struct dev_identity {
	bool known;                        /* attach succeeded */
	const struct esp_chip_info *chip;
	uint8_t mac[6];
	int revision;                      /* major * 100 + minor; -1 unknown */
	uint32_t flash_size, jedec;
	int n_parts;
	struct dev_partition parts[DEV_MAX_PARTS];
	unsigned parts_gen;                /* changes whenever parts[] is set anew */
	uint16_t usb_vid, usb_pid;
	char usb_serial[64], usb_product[96], usb_manufacturer[96], usb_path[128];
	char port[256];                    /* device path or "sim:CHIP" */
	bool is_sim;
};

enum dev_job_kind {
	DEV_JOB_READ,       /* offset,len -> buf (caller-allocated) */
	DEV_JOB_WRITE,      /* buf,len -> offset; any alignment (read-modify-write) */
	DEV_JOB_ERASE,      /* offset,len sector-aligned; len 0 = whole chip */
	DEV_JOB_PROVISION,  /* ssid/pass via Improv */
	DEV_JOB_RESET,      /* hard reset into the application */
	/* The app partition the bootloader picks (from otadata): its name
	 * ("ota_1", "factory") into slot; "" when the chip has no table. */
	DEV_JOB_BOOT_GET,
	/* Make slot ("ota_N", "factory" or an app partition's label) the one
	 * that boots: a new otadata entry as ESP-IDF writes it (the other
	 * entry kept as the fallback), or otadata erased for factory. */
	DEV_JOB_BOOT_SET,
};

struct dev_job {
	enum dev_job_kind kind;
	uint32_t offset, len;
	uint8_t *buf;
	char ssid[64], pass[72];
	char slot[24];                  /* DEV_JOB_BOOT_*: the app partition */
	char what[64];                  /* for the state line: "flash.bin" */
	/* Progress shown in state: this job covers [prog_base, prog_base+len)
	 * of an upload of prog_total bytes (0 = unknown). */
	uint64_t prog_base, prog_total;
	/* a piece of a stream whose end is not known yet (flash.bin): state
	 * shows the position and the bytes so far, prog_base before it */
	bool prog_stream;
	atomic_int cancel;
	atomic_int *group_cancel;       /* optional flag shared by a handle */
	int rc;                         /* result: 0 or -errno */
	bool touched_flash;             /* a write/erase job reached the chip's flash */
	char err[512];                  /* reason when rc < 0 */
	void (*done)(struct dev_job *j);
	/* optional: bytes of [offset, offset+len) the device has taken so
	 * far, called from the worker as a write or read advances */
	void (*progress)(struct dev_job *j, uint64_t done);
	void *ctx;
	struct dev_job *next;           /* internal */
};

/* DEV_EV_CONSOLE: the console has new bytes (from the worker thread). */
enum dev_event { DEV_EV_ADDED, DEV_EV_REMOVED, DEV_EV_STATE, DEV_EV_CONSOLE };
typedef void (*dev_event_fn)(void *ctx, esp_device *d, enum dev_event ev);

struct dev_options {
	esp_reset_mode reset;
	uint32_t baud;                  /* 0: keep 115200 */
	const char *stub_dir;           /* NULL: standard locations */
	bool no_probe;                  /* do not enter the loader at attach */
	bool no_stub;
	/* How long a job waits for the user to put a chip into download mode
	 * when no reset strategy reaches the loader (0: 60 s). */
	unsigned download_wait_ms;
	/* The application's UART rate for the console (0: 115200); native
	 * USB has none. */
	uint32_t console_baud;
};

/* Lifetime: reference counted; the manager holds one reference while the
 * device is attached. */
void device_ref(esp_device *d);
void device_unref(esp_device *d);

const char *device_name(const esp_device *d);
bool device_gone(esp_device *d);
/* A consistent copy of the identity. */
void device_identity(esp_device *d, struct dev_identity *out);
uint32_t device_flash_size(esp_device *d);
/* id.parts_gen without copying the identity (partitions/ asks often). */
unsigned device_parts_gen(esp_device *d);
/* The chip runs its application (reading flash would reset it). */
bool device_app_running(esp_device *d);
/* Copy [off, off+len) from the cached first 64 KiB; -ERANGE if the range
 * is not entirely cached. */
int device_head_read(esp_device *d, uint32_t off, uint8_t *buf, size_t len);

/* Queue a job.  Returns 0 (done() will be called exactly once, from the
 * worker) or -ENODEV (device gone; done() is not called). */
int device_submit(esp_device *d, struct dev_job *j);
static inline void device_job_cancel(struct dev_job *j) { atomic_store(&j->cancel, 1); }

/* The state line (one line, '\n'-terminated) and a generation number that
 * changes whenever the line does. */
size_t device_state_text(esp_device *d, char *buf, size_t cap);
unsigned device_state_gen(esp_device *d);
/* Record a refusal or failure decided above the device (e.g. a wrong-chip
 * image refused in write()): it shows in state until the next job. */
void device_set_error(esp_device *d, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The flash at [lo, hi) holds something nobody asked for (a write that
 * did not finish): text goes into state as an error now, and stays there
 * as a standing warning until a successful write or erase covers the
 * range or device_flash_ack(); also kept in the device's journal, so the
 * next espfs run says it too. */
void device_flash_incomplete(esp_device *d, int err, uint32_t lo, uint32_t hi, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* The user acknowledged ("ack" written to state): drop the standing
 * warnings (flash incomplete, boot loop) and the journal. */
void device_flash_ack(esp_device *d);
/* Largest end offset a writer may accept before the chip is reached:
 * the flash size once known; before the chip was ever identified (attach
 * failed, --no-probe) the largest flash a chip addresses, so the write is
 * queued, waits for download mode and is then checked against the real
 * size (EFBIG) instead of being refused against a size of 0. */
uint32_t device_write_limit(esp_device *d);
/* wifi file text: "<status> <ssid>\n" or "<status>\n"; never a password;
 * the SSID escaped to one line of UTF-8 (espfs/text.h). */
size_t device_wifi_text(esp_device *d, char *buf, size_t cap);
/* info.json contents (malloc'd, '\n'-terminated, always valid JSON);
 * secrets false leaves out the SSID (a reader other than the owner). */
char *device_info_json(esp_device *d, bool secrets);
/* The partition table as ESP-IDF's gen_esp32part.py prints it (CSV:
 * name, type, subtype, offset, size, flags), malloc'd. */
char *device_partitions_csv(esp_device *d, size_t *len);
/* Test hook for simulated devices: pull the cable (-EOPNOTSUPP otherwise).
 * The device goes away like an unplugged USB port. */
int device_sim_unplug(esp_device *d);
/* Test hook: hold BOOT, press RESET, release BOOT (ROM download mode). */
int device_sim_download(esp_device *d);
/* Test hook: the buttons one by one: boot 1 hold, 0 release, -1 leave as
 * is; then an EN pulse when press_reset. */
int device_sim_buttons(esp_device *d, int boot, bool press_reset);
/* Test hook: plug a simulated device back in, into another USB socket
 * (its physical path changes, its MAC does not). */
int device_sim_replug(esp_device *d);
/* Test hook: pull the cable when a flash write reaches pct percent. */
int device_sim_unplug_at(esp_device *d, int pct);
/* Test hook: a fault of the simulated device from now on: "stall" (it
 * stops answering), "program-fail" (flash programming fails),
 * "garbage" (it answers random bytes), "none". */
int device_sim_fault(esp_device *d, const char *name);
/* Test hook: from now on flip bits in what the chip sends, each byte
 * with probability rate (0 stops it), from a fixed seed. */
int device_sim_corrupt(esp_device *d, double rate);
/* Times the chip was reset (into the loader or back into the app). */
unsigned device_reset_count(esp_device *d);

/* The console (console.c): what the application printed, as a stream.
 * Bytes are numbered from 0 since the device appeared; the last 64 KiB
 * are kept.  device_console_size() is the number of the next byte;
 * device_console_read() copies from *pos (moved up to the oldest byte
 * kept) and advances it; 0 when nothing new.  device_console_write()
 * queues input for the application (sent when no job holds the port):
 * 0, -EBUSY (16 KiB already waiting), -ENODEV. */
uint64_t device_console_size(esp_device *d);
size_t device_console_read(esp_device *d, uint64_t *pos, uint8_t *buf, size_t cap);
int device_console_write(esp_device *d, const uint8_t *buf, size_t n);
/* This device's console rate from now on (state "console-baud N"; native
 * USB ignores it): 0, or -EINVAL outside 300..5000000. */
int device_console_set_baud(esp_device *d, uint32_t baud);
/* The rate the console uses for this device. */
uint32_t device_console_baud(esp_device *d);

/* Device set: creation from the command line, USB enumeration with
 * hotplug polling, attach (identity) on each device's worker. */
esp_devmgr *devmgr_new(const struct dev_options *opt, dev_event_fn fn, void *ctx);
/* SPEC = CHIP[,flash=FILE][,name=NAME][,app][,improv][,wifi=SSID:PASS][,timing][,size=BYTES]
 *        [,usb][,reenum] */
int devmgr_add_sim(esp_devmgr *m, const char *spec, char *err, size_t errlen);
int devmgr_add_port(esp_devmgr *m, const char *path, char *err, size_t errlen);
/* Start attaching; scan: enumerate USB serial ports now and every second. */
int devmgr_start(esp_devmgr *m, bool scan);
/* Wait until every device known so far finished attaching (or timeout). */
void devmgr_wait_attached(esp_devmgr *m, unsigned timeout_ms);
/* Snapshot of attached devices (each referenced; free with devmgr_list_free). */
size_t devmgr_list(esp_devmgr *m, esp_device ***out);
void devmgr_list_free(esp_device **v, size_t n);
void devmgr_free(esp_devmgr *m);

/* Synthetic, bootable images for the demo and tests: kind "factory"
 * (bootloader + partition table + app, to be written at 0), "bootloader",
 * "ptable" or "app"; "ota-factory" and "ota-ptable": the same with the
 * two-slot table (nvs, otadata, app0/app1, spiffs) instead of one factory
 * app.  *out is malloc'd. */
int device_synth_image(const char *chip_key, const char *kind, const char *project,
		       uint8_t **out, size_t *len);

/* Images (adapter over the image module): where a whole file dropped into
 * a device folder belongs.  name may force the offset ("x@0x10000.bin");
 * onto_flash_bin: the file replaces flash.bin (unknown content goes to 0).
 * -EINVAL with the reason in why. */
int device_image_target(esp_device *d, const uint8_t *buf, size_t len, const char *name,
			bool onto_flash_bin, uint32_t *offset, char *why, size_t whylen);
/* Would writing buf at off put an image where it does not belong (wrong
 * chip, an app at the bootloader offset)?  0 or -EINVAL with the reason. */
int device_image_check(esp_device *d, uint32_t off, const uint8_t *buf, size_t len,
		       char *why, size_t whylen);
/* The same for an app partition at off, which takes only an app built
 * for this chip: -EINVAL (why) for anything else, -EAGAIN while buf is
 * too short to tell and complete is false. */
int device_app_check(esp_device *d, uint32_t off, const uint8_t *buf, size_t len, bool complete,
		     char *why, size_t whylen);

#endif
