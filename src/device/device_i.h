/* Private to src/device: the device object shared by device.c (lifetime,
 * state line, queue), worker.c (the thread), jobs.c (what each job does on
 * the wire), identity.c (attach) and registry.c (the device set). */
#ifndef ESPFS_DEVICE_I_H
#define ESPFS_DEVICE_I_H
#include <pthread.h>
#include <stdarg.h>
#include "espfs/device.h"
#include "espfs/loader.h"
#include "espfs/sim.h"
#include "espfs/transport.h"

#define DEV_MAX_WARNS 4

struct dev_improv_info {
	bool known;
	int state;                     /* Improv state at attach (-1 unknown) */
	char firmware[64], version[64], chip[32], name[64];
	/* The console said the chip does not start (ROM "invalid header",
	 * bootloader "E (..) boot:"/"esp_image:" lines): the first such line,
	 * else "". */
	char bootfail[160];
};

struct esp_device {
	atomic_int refs;
	char name[64];
	struct dev_options opt;
	esp_devmgr *mgr;

	pthread_mutex_t lock;          /* everything below except the port */
	pthread_cond_t cond;
	pthread_t thread;
	bool thread_started;
	struct dev_job *qhead, *qtail;
	bool stop;
	bool gone;
	bool attached;                 /* attach finished (success or not) */
	bool announced;                /* DEV_EV_ADDED sent */
	struct dev_job *current;
	uint64_t prog_done;            /* bytes of the current job done */
	uint64_t last_progress_us;

	struct dev_identity id;
	uint8_t *head;                 /* DEV_HEAD_SIZE bytes once head_valid */
	bool head_valid;
	/* Sectors of head known to match the chip (bit i: 0x1000 * i).  Those
	 * below DEV_HEAD_STABLE (bootloader, partition table) stay valid; an
	 * application writes the ones above (NVS at 0x9000, otadata), so
	 * they count only from a read or write in the current loader session
	 * until the chip is let go to run again. */
	uint16_t head_fresh;
	uint16_t head_known;           /* sectors of head not lost to a failed write */
	struct dev_rcache *rcache;     /* readcache.c; worker thread only */
	bool rcache_failed;

	char mode[16];                 /* "attaching", "app", "rom", "stub", "unplugged" */
	int err;                       /* last error (positive errno) or 0 */
	char errmsg[1024];
	/* What the flash holds that nobody asked for: writes or erases that
	 * did not finish left these ranges erased, partly written or half
	 * old, half new.  Each is shown in state until a successful write or
	 * erase covers its range or the user says "ack" to state; kept in a
	 * journal (journal.c) so a restart of espfs still says it. */
	struct dev_warn {
		uint32_t lo, hi;
		uint32_t lo0, hi0;     /* the range the text speaks of */
		/* an erase that stopped: nothing half written, only less
		 * erased than asked; any later write or erase into the
		 * range means the user has taken it in hand */
		bool erase;
		char text[700];
	} warns[DEV_MAX_WARNS];
	int n_warns;
	/* The application does not start: its boot log (seen at attach) */
	char bootwarn[200];
	/* The error shown is a failed read of flash.bin: a later good read
	 * ends it, and brings back the problem it covered (saved_err). */
	bool err_from_read;
	int saved_err;
	char saved_errmsg[1024];
	/* What a successful job leaves to say when idle ("written but not
	 * verified"); shown instead of "idle", under any error. */
	char note[240];
	unsigned state_gen;
	unsigned resets;
	char wifi_status[32];
	char wifi_ssid[64];
	struct dev_improv_info improv;

	/* Owned by the worker thread only. */
	char path[256];
	sim_device *sim;               /* in-process simulator (owned) */
	esp_transport *tr;
	esp_loader *ld;
	bool in_loader;
	bool flash_attached;
	bool reset_pending;
	bool waiting_download;         /* attach failed: polling for the ROM loader */
	bool port_busy;                /* another program holds the port: retry */
	/* The stub flasher at the last loader entry (info.json): "loaded",
	 * "not found", "failed", "not used" (--no-stub), "" not tried yet;
	 * stub_file is the JSON loaded or the places searched.  Under lock. */
	char stub_status[16];
	char stub_file[520];
	char busy_msg[200];
	bool manual_download;          /* only the buttons get it into the loader:
					* never reset it out again by ourselves */
	uint64_t loader_idle_since;
	/* wire_count.c: a wait for the device was cut short by a cancel (the
	 * loader may be out of step); no_cancel_wait: let the command
	 * running now finish (an erase step) */
	bool wait_cancelled, no_cancel_wait;

	/* Wire traffic through this device's ports (wire_count.c). */
	_Atomic uint64_t tx_bytes, rx_bytes, flash_data_packets;
	/* A job waiting for the user to put the chip in download mode:
	 * non-zero is the deadline (ms, real clock), shown in state. */
	uint64_t wait_download_until_ms;
	/* Last reset into the application (ms, real clock; 0 = never): a
	 * provisioning job soon after waits for the app to answer. */
	uint64_t app_reset_ms;
	/* What worked to get into the loader ("classic", "usb-jtag",
	 * "manual", "none") and out of it ("hard", "watchdog", "none"). */
	char reset_in[16], reset_out[16];
	bool flash_size_guessed;
	/* Hotplug (registry.c): enumerated devices survive a short absence of
	 * their port; the worker re-attaches when it is back. */
	bool hotplug;
	bool port_missing;
	bool replugged;
	bool follow_port;              /* re-attach when the port next moves */
	struct dev_console *con;       /* console.c */
	/* A remote port (rfc2217://, socket://): a dropped link is like an
	 * unplug whose port never gets removed; the worker reconnects with
	 * backoff (retry_ms) and re-attaches when the link is back. */
	bool remote;
	unsigned retry_ms;
	/* The ROM said it talks USB-OTG (UARTDEV_BUF_NO, read in the loader):
	 * where no USB IDs are seen (a remote link) this is how espfs knows
	 * that only a watchdog reset starts the app. */
	bool otg_by_rom;
	char journal_file[300];        /* journal.c: a simulated chip's, next to its flash file */
	int sim_socket;                /* simulated bus: which socket it is in */       /* the chip's default, until the loader says */
};

/* device.c */
esp_device *dev_alloc(esp_devmgr *m, const char *name, const struct dev_options *opt);
void dev_start(esp_device *d);
void dev_stop_and_join(esp_device *d);
void dev_mark_gone(esp_device *d);
void dev_event(esp_device *d, enum dev_event ev);
void dev_state_changed(esp_device *d);
void dev_set_mode(esp_device *d, const char *mode);
void dev_clear_error(esp_device *d);
void dev_set_errorv(esp_device *d, int err, const char *fmt, va_list ap);
/* A read of flash.bin ended (jobs.c): a failure shows in state with its
 * errno; a success ends an earlier read failure only. */
void dev_read_result(esp_device *d, struct dev_job *j, int rc);
/* The note shown instead of "idle" ("" none). */
void dev_set_note(esp_device *d, const char *note);
/* The head as last read or written, also after the app has run since
 * (it may have changed that flash): -ERANGE/-ESTALE when not held. */
int dev_head_peek(esp_device *d, uint32_t off, uint8_t *buf, size_t len);
void dev_head_update(esp_device *d, uint32_t off, const uint8_t *buf, size_t len, bool erased);
/* The chip leaves the loader (or may have run its app meanwhile): the
 * application-writable part of head is no longer known. */
void dev_left_loader(esp_device *d);
#define DEV_HEAD_STABLE 0x9000u
/* The flash holds buf (or 0xFF: erased) at [off, off+len), known in this
 * loader session; or nothing is known of it any more (a failed write or
 * erase).  Updates the head and the read cache. */
void dev_flash_known(esp_device *d, uint32_t off, const uint8_t *buf, uint32_t len, bool erased);
void dev_flash_unknown(esp_device *d, uint32_t off, uint32_t len);
/* readcache.c */
void dev_rcache_put(esp_device *d, uint32_t off, const uint8_t *buf, uint32_t len, bool erased);
void dev_rcache_forget(esp_device *d, uint32_t off, uint32_t len);
void dev_rcache_demote(esp_device *d);
/* What the cache holds of [off, off+len) from off on, checked by MD5
 * when the chip has run since (in the loader): the number of bytes copied
 * to buf (0: not held at off), or <0 error. */
int dev_rcache_get(esp_device *d, uint32_t off, uint8_t *buf, uint32_t len);
/* How many bytes from off (at most len) the cache cannot serve now: the
 * run a read must fetch from the chip. */
uint32_t dev_rcache_missing(esp_device *d, uint32_t off, uint32_t len);
void dev_rcache_free(esp_device *d);

/* console.c: the worker pauses the console while a job holds the port and
 * resumes it once the application runs; when idle it pumps (input out, a
 * short wait for output); the counting transport feeds what it reads. */
int dev_console_init(esp_device *d);
void dev_console_free(esp_device *d);
void dev_console_feed(esp_device *d, const uint8_t *b, size_t n);
void dev_console_pause(esp_device *d, const char *what);
void dev_console_resume(esp_device *d);
bool dev_console_live(esp_device *d);
void dev_console_pump(esp_device *d);
uint32_t dev_console_baud(esp_device *d);
/* identity.c: a remote port whose link is down: connect again; when the
 * link answers, attach as a replugged port does (0), else <0 with the
 * reason in state. */
int dev_remote_reconnect(esp_device *d);
/* identity.c: whether a remote port's link is still up (0) or was closed
 * by the far end (-ENODEV); reads and drops what input is pending. */
int dev_remote_alive(esp_device *d);
/* identity.c: state says the remote link is lost, and why */
void dev_remote_lost(esp_device *d, const char *why);

/* worker.c */
void *dev_worker_main(void *arg);

/* jobs.c */
int dev_run_job(esp_device *d, struct dev_job *j);
/* jobs.c: the pieces jobs are made of.  dev_read_range: [off, off+len)
 * from the head, the read cache and the chip; dev_job_write/erase: the
 * write (any alignment, verified) or erase that j describes. */
int dev_read_range(esp_device *d, struct dev_job *j, uint32_t off, uint8_t *buf, uint32_t len,
		   bool progress);
int dev_job_write(esp_device *d, struct dev_job *j);
int dev_job_erase(esp_device *d, struct dev_job *j);
/* boot.c: DEV_JOB_BOOT_GET / DEV_JOB_BOOT_SET */
int dev_job_boot_get(esp_device *d, struct dev_job *j);
int dev_job_boot_set(esp_device *d, struct dev_job *j);
int dev_enter_loader(esp_device *d, char *err, size_t errlen);
int dev_leave_loader(esp_device *d);
bool dev_on_usb_otg(esp_device *d);
/* Would a reset out of the loader start the application? */
bool dev_can_leave_loader(esp_device *d);
/* device.c: the standing warning (warn_lo/hi above) */
void dev_flash_warn(esp_device *d, uint32_t lo, uint32_t hi, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* dev_flash_warn for an erase that stopped part way */
void dev_erase_warn(esp_device *d, uint32_t lo, uint32_t hi, const char *text);
/* A successful write or erase of [lo, hi): what it covered of the warning
 * range is what the user asked for now. */
void dev_flash_covered(esp_device *d, uint32_t lo, uint32_t hi);

/* journal.c: a per-device record of an unfinished write or erase that
 * outlives espfs (kill -9, crash, power cut of the host).  Keyed by MAC
 * in $XDG_STATE_HOME/espfs, else /var/lib/espfs (root), else
 * $TMPDIR/espfs-state; a simulated chip with a flash file keeps it next
 * to that file (FILE.espfs-journal).  No-ops while the MAC is unknown. */
/* A write or erase of [lo, hi) is about to touch the flash. */
void dev_journal_begin(esp_device *d, uint32_t lo, uint32_t hi, const char *what);
/* The job ended: the journal now holds the standing warning, if any,
 * else it is removed. */
void dev_journal_sync(esp_device *d);
/* At attach, once the MAC is known: an unfinished write from an earlier
 * run becomes the standing warning. */
void dev_journal_load(esp_device *d);

/* device.c */
bool device_identity_known(esp_device *d);
bool device_attached(esp_device *d);

/* identity.c */
int dev_attach(esp_device *d);
bool dev_has_bootloader(esp_device *d);
/* Identify the chip now (--no-probe: when a job first needs it); it stays
 * in the loader.  0 or -errno with the reason in err. */
int dev_identify(esp_device *d, char *err, size_t errlen);
/* Attach failed: try again (sync only).  0 once identified. */
int dev_reprobe(esp_device *d);
int dev_reopen(esp_device *d);
int dev_reattach(esp_device *d);
void dev_parse_partitions(const uint8_t *tbl, size_t len, struct dev_identity *id);

/* wire_count.c: wrap a transport so its bytes are counted. */
esp_transport *dev_counting_transport(esp_device *d, esp_transport *inner);

/* usb_path.c: "1-1.2" for a tty under sysroot ("/sys"); -errno if none. */
int dev_usb_physical_path(const char *sysroot, const char *dev, char *out, size_t cap);

/* brltty.c: USB serial bridges present without a tty (brltty took them,
 * or no driver): a message per bridge in out, how many.  The note logs
 * it once when it changes (the USB scan calls it). */
int dev_ttyless_bridges(const char *sysroot, const char *proc, char *out, size_t cap);
void dev_note_ttyless_bridges(void);

/* registry.c */
void devmgr_device_ready(esp_devmgr *m, esp_device *d);
void devmgr_emit(esp_devmgr *m, esp_device *d, enum dev_event ev);

/* dev_improv.c: adapter to the Improv client. */
int dev_improv_get_info(esp_device *d, struct dev_improv_info *out, char *err, size_t errlen);
/* cancel: non-zero stops the exchange within ~100 ms (-EINTR).  info:
 * the Improv state the app answered (-1 none), its device info when
 * identify (for a device whose identity came late), and, when no app
 * answered, what its console said about not starting (bootfail). */
int dev_improv_provision(esp_device *d, const char *ssid, const char *pass,
			 atomic_int *cancel, struct dev_improv_info *info, bool identify,
			 char *err, size_t errlen);
/* Fold an Improv answer into the identity: the improv block, the wifi
 * status, and the chip (and its default flash size, marked guessed) when
 * the loader never told us. */
void dev_improv_apply(esp_device *d, const struct dev_improv_info *info);

#endif
