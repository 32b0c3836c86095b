/* What each job does on the wire, run on the device's worker thread:
 * entering/leaving the loader, reads, writes with read-modify-write of
 * partial sectors, erases in cancellable chunks, Improv provisioning. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "device_i.h"
#include "espfs/clock.h"
#include "espfs/log.h"

/* Erases go in steps of this much, cancellable between steps: 128 KiB is
 * two 64 KiB block erases, ~0.3 s on a typical NOR chip (tBE 150 ms), so
 * a Ctrl-C is answered well within a second.  A whole-chip erase is done
 * the same way rather than with one ERASE_FLASH (which cannot be stopped
 * and takes ~10 s per 4 MB): the same total time (64 KiB blocks are what
 * a chip erase costs too), but cancellable. */
#define ERASE_CHUNK 0x20000u
#define READ_CHUNK 0x10000u
#define DOWNLOAD_WAIT_DEFAULT_MS 60000u
#define DOWNLOAD_POLL_MS 250
/* what file managers read to sniff a file type (FUSE-NOTES.md) */
#define SNIFF_MAX 0x4000u
/* ESP Web Tools gives a freshly flashed app about 10 s to answer Improv. */
#define APP_BOOT_WAIT_MS 10000

static uint64_t now_ms(void)
{
	return esp_now_us(esp_clock_real()) / 1000;
}

static bool job_cancelled(struct dev_job *j)
{
	return atomic_load(&j->cancel) || (j->group_cancel && atomic_load(j->group_cancel));
}

struct prog_ctx {
	esp_device *d;
	struct dev_job *j;
	uint64_t base;
};

static int on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct prog_ctx *p = ctx;
	(void)total;
	uint64_t now = esp_now_us(esp_clock_real());
	bool notify = false;
	/* a write covers whole sectors; the file's own bytes are j->len, and
	 * state never shows more than 100% of them */
	uint64_t own = p->j->kind == DEV_JOB_WRITE && done > p->j->len ? p->j->len : done;
	pthread_mutex_lock(&p->d->lock);
	p->d->prog_done = p->base + own;
	if (now - p->d->last_progress_us > 250000) {
		p->d->last_progress_us = now;
		notify = true;
	}
	pthread_mutex_unlock(&p->d->lock);
	if (notify)
		dev_state_changed(p->d);
	if (p->j->progress)
		p->j->progress(p->j, done < p->j->len ? done : p->j->len);
	return job_cancelled(p->j);
}

static void set_reason(esp_device *d, char *err, size_t errlen, const char *what, int rc)
{
	const char *why = d->ld ? esp_loader_error(d->ld) : NULL;
	snprintf(err, errlen, "%s: %s", what, why && *why ? why : strerror(-rc));
}

static void ask_rom_port(esp_device *d, const struct esp_chip_info *chip);

int dev_enter_loader(esp_device *d, char *err, size_t errlen)
{
	int rc;
	if (d->in_loader)
		return 0;
	if (!d->ld) {
		snprintf(err, errlen, "port is not open");
		return -ENODEV;
	}
	/* A remote link the server closed while we were idle: connect again
	 * first, so the reset below goes out on a live link (a reset that
	 * fails on a dead one would look like a re-enumeration). */
	if (d->remote && dev_remote_alive(d) < 0 && dev_reopen(d) < 0) {
		snprintf(err, errlen, "remote link lost: the server closed the connection and does "
			 "not take a new one");
		return -ENODEV;
	}
	/* Waiting for the user to put the chip into download mode: sync
	 * only, never reset again (that would undo the button press). */
	bool waiting = d->waiting_download;
	rc = esp_loader_connect(d->ld, waiting ? ESP_RESET_NONE : d->opt.reset, waiting ? 1 : 0);
	/* Native USB may drop off the bus while the reset is under way (the
	 * chip is then on its way into the loader): reopen the port, as
	 * esptool does up to 3 times, and only SYNC on it (A15). */
	for (int k = 0; rc == -ENODEV && !waiting && d->opt.reset != ESP_RESET_NONE && k < 3; k++) {
		if (d->sim && sim_get_mode(d->sim) == SIM_MODE_OFF)
			break;
		if (dev_reopen(d) < 0)
			break;
		LOGI("%s: port re-enumerated during the reset; connecting on %s", d->name, d->tr->name);
		rc = esp_loader_connect(d->ld, ESP_RESET_NONE, 1);
	}
	if (!waiting && d->opt.reset != ESP_RESET_NONE) {
		pthread_mutex_lock(&d->lock);
		d->resets++;
		if (rc == 0)  /* the strategy esp_loader_connect picks for this port (A15) */
			snprintf(d->reset_in, sizeof d->reset_in, "%s",
				 d->tr->usb_vid == 0x303a && d->tr->usb_pid == 0x1001 ? "usb-jtag" : "classic");
		pthread_mutex_unlock(&d->lock);
	} else if (!waiting && rc == 0) {
		pthread_mutex_lock(&d->lock);
		snprintf(d->reset_in, sizeof d->reset_in, "none");
		pthread_mutex_unlock(&d->lock);
	}
	if (rc < 0) {
		/* the BOOT hint only when the chip was silent, not when it
		 * stopped taking data (that is what failed, and is said) */
		if (rc == -ETIMEDOUT && d->opt.reset == ESP_RESET_NONE && !esp_loader_send_stalled(d->ld))
			snprintf(err, errlen, "no answer from the loader: "
				 "put the chip in download mode (hold BOOT, press RESET)");
		else
			set_reason(d, err, errlen, "connect", rc);
		return rc;
	}
	const struct esp_chip_info *chip = NULL;
	rc = esp_loader_detect_chip(d->ld, &chip);
	if (rc < 0) {
		set_reason(d, err, errlen, "chip detection", rc);
		return rc;
	}
	ask_rom_port(d, chip);
	if (!esp_loader_is_stub(d->ld) && !d->opt.no_stub) {
		char path[512];
		esp_stub stub;
		char serr[200];
		const char *status = "not found", *what = path;
		if (esp_stub_find(chip, d->opt.stub_dir, path, sizeof path) == 0) {
			if (esp_stub_load_file(path, &stub, serr, sizeof serr) == 0) {
				int src = esp_loader_run_stub(d->ld, &stub);
				esp_stub_free(&stub);
				status = src < 0 ? "failed" : "loaded";
				if (src < 0 && !esp_loader_synced(d->ld)) {
					/* the ROM jumped to a stub that never ran: nothing answers */
					pthread_mutex_lock(&d->lock);
					snprintf(d->stub_status, sizeof d->stub_status, "%s", status);
					snprintf(d->stub_file, sizeof d->stub_file, "%s", what);
					pthread_mutex_unlock(&d->lock);
					set_reason(d, err, errlen, "stub", src);
					return src;
				}
				if (src < 0)
					LOGW("%s: stub did not start (%s); using the ROM loader", d->name,
					     esp_loader_error(d->ld));
			} else {
				status = "failed";
				LOGW("%s: stub %s: %s; using the ROM loader", d->name, path, serr);
			}
		} else {
			/* where esp_stub_find looked (src/proto/stub.c) */
			what = d->opt.stub_dir ? d->opt.stub_dir :
			       "$ESPFS_STUB_DIR, /usr/share/espfs/stubs, /usr/local/share/espfs/stubs, "
			       "esptool's targets/stub_flasher/{2,1} under /usr/lib, /usr/local/lib "
			       "and ~/.local/lib python3*/{dist,site}-packages";
			pthread_mutex_lock(&d->lock);
			bool said = !strcmp(d->stub_status, "not found");
			pthread_mutex_unlock(&d->lock);
			if (!said)
				LOGW("%s: no stub flasher for %s (searched %s): using the ROM loader, "
				     "which is slower%s", d->name, chip->name, what,
				     chip->id == ESP_CHIP_ESP32 ? "" : " and cannot read this chip's flash");
		}
		pthread_mutex_lock(&d->lock);
		snprintf(d->stub_status, sizeof d->stub_status, "%s", status);
		snprintf(d->stub_file, sizeof d->stub_file, "%s", what);
		pthread_mutex_unlock(&d->lock);
	} else if (d->opt.no_stub) {
		pthread_mutex_lock(&d->lock);
		snprintf(d->stub_status, sizeof d->stub_status, "not used");
		d->stub_file[0] = 0;
		pthread_mutex_unlock(&d->lock);
	}
	if (d->opt.baud && d->opt.baud != d->tr->baud) {
		/* the fastest rate up to the wanted one the link carries (a
		 * marginal link falls back; native USB keeps its rate) */
		rc = esp_loader_negotiate_baud(d->ld, d->opt.baud);
		if (rc < 0) {
			set_reason(d, err, errlen, "baud rate", rc);
			return rc;
		}
		if ((uint32_t)rc != d->opt.baud && !(d->tr->flags & ESP_TR_NATIVE_USB))
			LOGW("%s: link runs at %d baud (asked for %u)", d->name, rc, d->opt.baud);
	}
	uint32_t jedec = 0, size = 0;
	rc = esp_loader_flash_id(d->ld, &jedec, &size);
	if (rc < 0) {
		set_reason(d, err, errlen, "flash id", rc);
		return rc;
	}
	if (size)
		esp_loader_spi_set_params(d->ld, size);
	dev_left_loader(d);        /* the chip may have run its app since */
	d->in_loader = true;
	pthread_mutex_lock(&d->lock);
	d->id.jedec = jedec;
	if (size && (!d->id.flash_size || d->flash_size_guessed)) {
		d->id.flash_size = size;
		d->flash_size_guessed = false;
	}
	pthread_mutex_unlock(&d->lock);
	dev_set_mode(d, esp_loader_is_stub(d->ld) ? "stub" : "rom");
	return 0;
}

/* On a USB-OTG port (ESP32-S2/S3 ROM CDC or a TinyUSB app) the modem
 * lines reach no reset circuit: only the chip's own software resets it. */
bool dev_on_usb_otg(esp_device *d)
{
	uint16_t vid, pid;
	pthread_mutex_lock(&d->lock);
	vid = d->id.usb_vid;
	pid = d->id.usb_pid;
	pthread_mutex_unlock(&d->lock);
	if (d->tr && d->tr->usb_vid) {
		vid = d->tr->usb_vid;
		pid = d->tr->usb_pid;
	}
	pthread_mutex_lock(&d->lock);
	bool rom_says = d->otg_by_rom;
	pthread_mutex_unlock(&d->lock);
	return (vid == 0x303a && pid != 0x1001) || rom_says;
}

/* Which port the ROM's loader talks on, as esptool asks it: the byte at
 * UARTDEV_BUF_NO (S2/S3).  Asked once per connection, before the stub
 * runs (the byte is the ROM's; a stub's RAM may lie over it); a chip in
 * Secure Download Mode refuses READ_REG there and is taken as not OTG. */
static void ask_rom_port(esp_device *d, const struct esp_chip_info *chip)
{
	uint32_t v = 0;
	if (!chip || !chip->uartdev_buf_no || esp_loader_is_stub(d->ld))
		return;
	bool otg = esp_loader_read_reg(d->ld, chip->uartdev_buf_no, &v) == 0 &&
		   (v & 0xFF) == chip->uartdev_usb_otg;
	pthread_mutex_lock(&d->lock);
	bool was = d->otg_by_rom;
	d->otg_by_rom = otg;
	pthread_mutex_unlock(&d->lock);
	if (otg && !was)
		LOGI("%s: the %s ROM talks USB-OTG (UARTDEV_BUF_NO %u): resets into the app by its "
		     "watchdog", d->name, chip->name, v & 0xFF);
}

bool dev_can_leave_loader(esp_device *d)
{
	if (d->opt.reset == ESP_RESET_NONE)
		return false;
	if (!d->manual_download)
		return true;
	/* After the buttons, a UART or USB-JTAG chip would only be put back
	 * into the loader (or core-reset without re-reading the straps) by
	 * the lines; the RTC watchdog of a USB-OTG chip is a system reset
	 * that reads them again, with BOOT released by now (PROTOCOL.md A15). */
	const struct esp_chip_info *chip = d->ld ? esp_loader_chip(d->ld) : NULL;
	return chip && chip->wdt_config0 && dev_on_usb_otg(d);
}

int dev_leave_loader(esp_device *d)
{
	if (!d->in_loader || !d->ld)
		return 0;
	if (d->opt.reset == ESP_RESET_NONE)
		return 0;
	const struct esp_chip_info *chip = esp_loader_chip(d->ld);
	bool otg = dev_on_usb_otg(d);
	bool native = otg || (d->tr && (d->tr->flags & ESP_TR_NATIVE_USB));
	const char *how = "hard";
	int rc;
	if (otg && chip && chip->wdt_config0) {
		how = "watchdog";
		rc = esp_loader_watchdog_reset(d->ld);
	} else {
		rc = esp_loader_hard_reset(d->ld);
		if (rc == -ENOTTY && chip && chip->wdt_config0) {
			how = "watchdog";
			rc = esp_loader_watchdog_reset(d->ld);
		}
	}
	dev_left_loader(d);
	/* The application's console (and Improv) talks at its own rate
	 * (115200 unless --console-baud), whatever the loader negotiated;
	 * from here what the chip prints is the console's */
	if (rc == 0)
		dev_console_resume(d);
	pthread_mutex_lock(&d->lock);
	d->resets++;
	if (rc == 0) {
		snprintf(d->reset_out, sizeof d->reset_out, "%s", how);
		d->app_reset_ms = now_ms();
	}
	pthread_mutex_unlock(&d->lock);
	if (rc < 0) {
		dev_set_mode(d, "unknown");
		LOGW("%s: reset into the application failed: %s", d->name, esp_loader_error(d->ld));
		return rc;
	}
	if (native) {
		/* The chip may drop off the bus and come back as whatever it
		 * booted (always on USB-OTG, on some USB-Serial/JTAG boards):
		 * follow the port and say honestly where it is. */
		if (dev_reopen(d) == 0 && otg && chip && d->tr->usb_pid &&
		    d->tr->usb_pid == chip->usb_otg_rom_pid) {
			dev_left_loader(d);
			pthread_mutex_lock(&d->lock);
			d->follow_port = true;  /* the user's RESET re-enumerates it */
			pthread_mutex_unlock(&d->lock);
			dev_set_mode(d, "rom");
			device_set_error(d, EAGAIN, "still in download mode after the %s reset: "
					 "release BOOT and press RESET to start the application", how);
			return 0;
		}
	}
	d->manual_download = false;
	dev_set_mode(d, "app");
	return 0;
}

/* Manual download mode, the last link of the reset chain: nothing we can
 * do on the lines reaches the loader (a USB-OTG chip running its app, a
 * board without the auto-reset circuit, --reset none).  The job waits,
 * bounded and cancellable, for the user's BOOT+RESET and for the ROM to
 * answer on whatever port the device has by then (USB-OTG re-enumerates),
 * then carries on.  Only SYNC is sent meanwhile: a reset would undo the
 * button press. */
static int wait_download_mode(esp_device *d, struct dev_job *j)
{
	unsigned wait = d->opt.download_wait_ms ? d->opt.download_wait_ms : DOWNLOAD_WAIT_DEFAULT_MS;
	uint64_t deadline = now_ms() + wait;
	bool known = device_identity_known(d);
	int rc;
	pthread_mutex_lock(&d->lock);
	d->wait_download_until_ms = deadline;
	pthread_mutex_unlock(&d->lock);
	dev_state_changed(d);
	LOGI("%s: waiting up to %u s for download mode (hold BOOT, press RESET)", d->name, wait / 1000);
	d->waiting_download = true;
	for (;;) {
		if (job_cancelled(j)) {
			snprintf(j->err, sizeof j->err, "cancelled while waiting for download mode");
			rc = -EINTR;
			break;
		}
		char err[240];
		err[0] = 0;
		dev_left_loader(d);
		rc = known ? dev_enter_loader(d, err, sizeof err) : dev_reprobe(d);
		if (rc == -ENODEV && dev_reopen(d) == 0)  /* the port re-enumerated */
			rc = known ? dev_enter_loader(d, err, sizeof err) : dev_reprobe(d);
		if (rc == 0)
			break;
		if (d->sim && sim_get_mode(d->sim) == SIM_MODE_OFF) {
			snprintf(j->err, sizeof j->err, "unplugged while waiting for download mode");
			rc = -ENODEV;
			break;
		}
		if (now_ms() >= deadline) {
			if (d->ld && esp_loader_send_stalled(d->ld))  /* say what really failed */
				snprintf(j->err, sizeof j->err, "no download mode within %u s: %s", wait / 1000,
					 esp_loader_error(d->ld));
			else
				snprintf(j->err, sizeof j->err, "no download mode within %u s: hold BOOT, "
					 "press RESET, release BOOT, then try again", wait / 1000);
			rc = -ETIMEDOUT;
			break;
		}
		esp_sleep_ms(esp_clock_real(), DOWNLOAD_POLL_MS);
	}
	d->waiting_download = false;
	pthread_mutex_lock(&d->lock);
	d->wait_download_until_ms = 0;
	if (rc == 0)
		snprintf(d->reset_in, sizeof d->reset_in, "manual");
	pthread_mutex_unlock(&d->lock);
	if (rc == 0) {
		d->manual_download = true;
		if (!known)
			dev_event(d, DEV_EV_ADDED);  /* identity now known: by-mac link */
		LOGI("%s: in download mode after the buttons", d->name);
	}
	dev_state_changed(d);
	return rc;
}

/* Into the loader for a job: the reset chain first, the buttons last. */
static int job_enter_loader(esp_device *d, struct dev_job *j)
{
	if (d->in_loader)
		return 0;
	pthread_mutex_lock(&d->lock);
	bool manual = !strcmp(d->reset_in, "manual");
	pthread_mutex_unlock(&d->lock);
	/* unidentified, or only the buttons ever worked: straight to them;
	 * --no-probe put off the identification until a job needs the chip */
	bool known = device_identity_known(d);
	int rc = manual ? -ETIMEDOUT
		 : known ? dev_enter_loader(d, j->err, sizeof j->err)
		 : d->opt.no_probe ? dev_identify(d, j->err, sizeof j->err) : -ETIMEDOUT;
	if (rc == -ENODEV && dev_reopen(d) == 0)
		rc = dev_enter_loader(d, j->err, sizeof j->err);
	/* A small read at the start of an unidentified chip's flash is a
	 * file manager sniffing flash.bin: it must not hang for a minute. */
	bool sniff = j->kind == DEV_JOB_READ && !device_identity_known(d) &&
		     (uint64_t)j->offset + j->len <= DEV_HEAD_SIZE && j->len <= SNIFF_MAX;
	if (rc == -ETIMEDOUT && sniff) {
		snprintf(j->err, sizeof j->err, "the chip is not identified yet: a write, or a "
			 "read of more than %u bytes, waits for download mode", SNIFF_MAX);
		return rc;
	}
	if (rc == -ETIMEDOUT && !d->opt.no_probe) {
		j->err[0] = 0;
		rc = wait_download_mode(d, j);
	}
	return rc;
}

/* Progress of a chip read that fetches whole sectors around what the
 * job asked for: only the asked-for part counts. */
struct read_prog {
	struct prog_ctx pc;
	uint32_t lead, want;    /* bytes before the asked-for part; its length */
};

static int on_read_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct read_prog *rp = ctx;
	uint64_t k = done > rp->lead ? done - rp->lead : 0;
	return on_progress(&rp->pc, k < rp->want ? k : rp->want, total);
}

/* [off, off+len) from whatever knows it: the head kept since attach,
 * the read cache (any range it holds, whole or in part), and the chip
 * for the rest, fetched in whole sectors (the cache's unit) and at most
 * READ_CHUNK at a time, so a cancel waits for one such piece. */
int dev_read_range(esp_device *d, struct dev_job *j, uint32_t off, uint8_t *buf, uint32_t len,
		   bool progress)
{
	if (device_head_read(d, off, buf, len) == 0)
		return 0;
	int rc = job_enter_loader(d, j);
	if (rc < 0)
		return rc;
	uint32_t fsize = device_flash_size(d);
	uint8_t *tmp = NULL;
	for (uint32_t done = 0; done < len;) {
		uint32_t a = off + done, rest = len - done;
		struct prog_ctx pc = { d, j, done };
		if (job_cancelled(j)) {
			snprintf(j->err, sizeof j->err, "read cancelled");
			rc = -EINTR;
			break;
		}
		/* the head, as far as this range reaches into it */
		uint32_t k = 0;
		if (a < DEV_HEAD_SIZE) {
			uint32_t h = DEV_HEAD_SIZE - a < rest ? DEV_HEAD_SIZE - a : rest;
			if (device_head_read(d, a, buf + done, h) == 0)
				k = h;
		}
		rc = k ? (int)k : dev_rcache_get(d, a, buf + done, rest);
		if (rc > 0) {
			done += (uint32_t)rc;
			rc = progress && on_progress(&pc, rc, rest) ? -EINTR : 0;
			if (rc < 0)
				break;
			continue;
		}
		if (rc == 0) {
			/* what the cache lacks from a, in whole sectors */
			uint32_t miss = dev_rcache_missing(d, a, rest);
			if (!miss)
				miss = rest;
			uint32_t s0 = a & ~(ESP_SECTOR - 1);
			uint64_t s1 = ((uint64_t)a + miss + ESP_SECTOR - 1) & ~(uint64_t)(ESP_SECTOR - 1);
			uint64_t cap = ((uint64_t)s0 / READ_CHUNK + 1) * READ_CHUNK;
			if (s1 > cap)
				s1 = cap;
			if (s1 > fsize)
				s1 = fsize;
			uint32_t n = (uint32_t)(s1 - s0), use = n - (a - s0) < rest ? n - (a - s0) : rest;
			uint8_t *dst = buf + done;
			if (s0 != a || n > rest) {
				if (!tmp && !(tmp = malloc(READ_CHUNK))) {
					rc = -ENOMEM;
					break;
				}
				dst = tmp;
			}
			struct read_prog rp = { pc, a - s0, use };
			rc = esp_loader_read_flash(d->ld, s0, dst, n, progress ? on_read_progress : NULL, &rp);
			if (rc == 0) {
				dev_flash_known(d, s0, dst, n, false);
				if (dst != buf + done)
					memcpy(buf + done, dst + (a - s0), use);
				done += use;
			}
		}
		if (rc < 0) {
			char what[64];
			snprintf(what, sizeof what, "read at 0x%x", a);
			set_reason(d, j->err, sizeof j->err, what, rc);
			break;
		}
	}
	free(tmp);
	return rc < 0 ? rc : 0;
}

static int job_read(esp_device *d, struct dev_job *j)
{
	int rc = dev_read_range(d, j, j->offset, j->buf, j->len, true);
	dev_read_result(d, j, rc);
	return rc;
}

/* The old bytes around a write that does not cover whole sectors (the
 * chip erases whole ones): from the head or the read cache when they
 * hold them; after an image the rest of its last sector is nearly always
 * erased, and one MD5 (~1 ms) says so instead of reading it back (~40 ms
 * for 4 KiB at 921600).  -EOPNOTSUPP when none of that knows them and
 * the chip cannot read (a ROM other than the ESP32's, without a stub):
 * job_write decides what then. */
static int keep_around(esp_device *d, struct dev_job *j, uint32_t off, uint8_t *buf, uint32_t len)
{
	if (device_head_read(d, off, buf, len) == 0)
		return 0;
	int rc = job_enter_loader(d, j);
	if (rc < 0)
		return rc;
	rc = dev_rcache_get(d, off, buf, len);
	if (rc < 0 || (uint32_t)rc == len)
		return rc < 0 ? rc : 0;
	memset(buf, 0xFF, len);
	if (esp_loader_can_md5(d->ld)) {
		rc = esp_loader_flash_holds(d->ld, off, buf, len);
		if (rc != 0)
			return rc < 0 ? rc : 0;
	}
	if (!esp_loader_can_read(d->ld))
		return -EOPNOTSUPP;
	return dev_read_range(d, j, off, buf, len, false);
}

/* The flash size, from the chip when it was never identified (attach
 * failed, --no-probe): the job enters the loader first (waiting for
 * download mode if need be) instead of judging against a size of 0. */
static int known_flash_size(esp_device *d, struct dev_job *j, uint32_t *fsize)
{
	pthread_mutex_lock(&d->lock);
	bool sure = d->id.known && d->id.flash_size && !d->flash_size_guessed;
	pthread_mutex_unlock(&d->lock);
	if (!sure) {
		int rc = job_enter_loader(d, j);
		if (rc < 0)
			return rc;
	}
	*fsize = device_flash_size(d);
	if (!*fsize) {
		snprintf(j->err, sizeof j->err, "the flash size is unknown: the chip did not answer "
			 "the flash ID command");
		return -EIO;
	}
	return 0;
}

static const char *chip_name(esp_device *d)
{
	const struct esp_chip_info *c = d->ld ? esp_loader_chip(d->ld) : NULL;
	return c ? c->name : "chip's";
}

/* What a successful write leaves in state besides "idle": that it could
 * not be verified (the ESP8266 ROM has no MD5), or that the end of its
 * last sector was padded with 0xFF.  A write that needs neither clears
 * what an earlier one left. */
static void write_note(esp_device *d, struct dev_job *j, uint32_t a0, uint32_t alen, uint32_t pad_lo,
		       uint32_t pad_hi)
{
	char note[240];
	int n = 0;
	const char *what = j->what[0] ? j->what : "flash";
	if (!esp_loader_last_write_verified(d->ld))
		n = snprintf(note, sizeof note, "%s written up to 0x%x, not verified: %s", what,
			     a0 + alen, esp_loader_secure_download(d->ld)
					? "Secure Download Mode forbids MD5"
					: "the ROM has no MD5 (the stub would verify)");
	if (pad_hi > pad_lo && n >= 0 && (size_t)n < sizeof note)
		n += snprintf(note + n, sizeof note - (size_t)n, "%s0x%x-0x%x after the data set to 0xFF: "
			      "the %s ROM erases it and cannot read it to keep it (esptool does the same)",
			      n ? "; " : "", pad_lo, pad_hi, chip_name(d));
	if (n > 0)
		LOGW("%s: %s", d->name, note);
	dev_set_note(d, n > 0 ? note : "");
}

int dev_job_write(esp_device *d, struct dev_job *j)
{
	uint32_t fsize;
	uint64_t end = (uint64_t)j->offset + j->len;
	int rc = known_flash_size(d, j, &fsize);
	if (rc < 0)
		return rc;
	if (end > fsize) {
		snprintf(j->err, sizeof j->err, "write ends at 0x%llx, past the end of the %u-byte flash",
			 (unsigned long long)end, fsize);
		return -EFBIG;
	}
	uint32_t a0 = j->offset & ~(ESP_SECTOR - 1);
	uint64_t a1 = (end + ESP_SECTOR - 1) & ~(uint64_t)(ESP_SECTOR - 1);
	if (a1 > fsize)
		a1 = fsize;
	uint8_t *buf = j->buf;
	bool own = false;
	uint32_t pad_lo = 0, pad_hi = 0;  /* set to 0xFF for want of the old bytes */
	rc = job_enter_loader(d, j);
	if (rc < 0)
		return rc;
	/* The ESP8266 ROM erases an even number of sectors inside a 64 KiB
	 * block: an odd count takes the next sector with it, which is then
	 * written back too (known from the cache, else left erased and said). */
	uint64_t a2 = a1;
	const struct esp_chip_info *chip = esp_loader_chip(d->ld);
	if (!esp_loader_is_stub(d->ld) && chip && chip->id == ESP_CHIP_ESP8266 && a1 > a0) {
		/* the longer write may be erased differently: until it is exact */
		for (int k = 0; k < 4; k++) {
			uint64_t e = a0 + (uint64_t)esp_esp8266_rom_erases(a0, (uint32_t)(a2 - a0));
			e = e > fsize ? fsize : e;
			if (e <= a2)
				break;
			a2 = e;
		}
	}
	uint32_t alen = (uint32_t)(a2 - a0);
	if (a0 != j->offset || a2 != end) {
		buf = malloc(alen);
		if (!buf)
			return -ENOMEM;
		own = true;
		if (a0 < j->offset) {
			rc = keep_around(d, j, a0, buf, j->offset - a0);
			if (rc == -EOPNOTSUPP) {
				/* nothing is erased yet: refuse rather than lose them */
				snprintf(j->err, sizeof j->err, "write at 0x%x starts inside a sector; the "
					 "%.16s ROM cannot read the 0x%x bytes before it to keep them: start "
					 "at a multiple of 4096 or use the stub",
					 j->offset, chip_name(d), j->offset - a0);
				goto out;
			}
		}
		if (rc == 0 && a1 > end) {
			rc = keep_around(d, j, (uint32_t)end, buf + (end - a0), (uint32_t)(a1 - end));
			if (rc == -EOPNOTSUPP) {
				/* The end of a piece of the user's data (a stream's last
				 * job, or the end of a write that is followed by one at
				 * another offset), and no way to learn what follows it
				 * in its sector: pad with 0xFF, as esptool does, and say
				 * so.  Refusing here would come after earlier jobs of the
				 * same copy were written, and every retry the same. */
				memset(buf + (end - a0), 0xFF, (size_t)(a1 - end));
				pad_lo = (uint32_t)end;
				pad_hi = (uint32_t)a1;
				rc = 0;
			}
		}
		if (rc == 0 && a2 > a1) {
			uint32_t k = (uint32_t)(a2 - a1);
			rc = dev_rcache_get(d, (uint32_t)a1, buf + (a1 - a0), k);
			if (rc >= 0 && (uint32_t)rc != k) {
				memset(buf + (a1 - a0), 0xFF, k);
				pad_lo = pad_hi ? pad_lo : (uint32_t)a1;
				pad_hi = (uint32_t)a2;
			}
			rc = rc < 0 ? rc : 0;
		}
		if (rc < 0)
			goto out;
		memcpy(buf + (j->offset - a0), j->buf, j->len);
	}
	if (job_cancelled(j)) {
		snprintf(j->err, sizeof j->err, "write cancelled");
		rc = -EINTR;
		goto out;
	}
	struct prog_ctx pc = { d, j, 0 };
	j->touched_flash = true;
	dev_journal_begin(d, a0, a0 + alen, j->what[0] ? j->what : "flash");
	rc = esp_loader_write_flash(d->ld, a0, buf, alen, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME,
				   on_progress, &pc);
	if (rc < 0) {
		char what[96];
		dev_flash_unknown(d, a0, alen);
		pthread_mutex_lock(&d->lock);
		uint64_t done = d->prog_done;
		pthread_mutex_unlock(&d->lock);
		/* What the flash holds now, for the state line.  The progress
		 * counts blocks the chip acknowledged (a stub acknowledges a
		 * block before programming it), none of it verified, and the
		 * chip erases ahead of what it programs: the whole range may
		 * be erased or half written, whatever reached it. */
		snprintf(what, sizeof what, "write of 0x%x-0x%x %s at 0x%llx (%llu%%)", a0, a0 + alen,
			 rc == -EINTR ? "cancelled" : "stopped", (unsigned long long)(a0 + done),
			 (unsigned long long)(alen ? done * 100 / alen : 0));
		if (rc == -EINTR)
			snprintf(j->err, sizeof j->err, "%s", what);
		else
			set_reason(d, j->err, sizeof j->err, what, rc);
		size_t l = strlen(j->err);
		snprintf(j->err + l, sizeof j->err - l, "; flash 0x%x-0x%x may be erased or partly "
			 "written (the chip took %llu of its %u bytes, unverified)", a0, a0 + alen,
			 (unsigned long long)done, alen);
		goto out;
	}
	dev_flash_known(d, a0, buf, alen, false);
	write_note(d, j, a0, alen, pad_lo, pad_hi);
out:
	if (own)
		free(buf);
	return rc;
}

/* The whole range is checked before the first erase command, whatever
 * the caller parsed: a region that wraps, runs past the flash or is not
 * whole sectors erases nothing.  fsize 0: not known yet (checked again
 * once the loader has answered). */
static int erase_range_ok(struct dev_job *j, uint32_t fsize)
{
	if (j->len == 0)
		return 0;
	if (j->offset % ESP_SECTOR || j->len % ESP_SECTOR) {
		snprintf(j->err, sizeof j->err, "erase: 0x%x+0x%x is not whole 4 KiB sectors; "
			 "nothing erased", j->offset, j->len);
		return -EINVAL;
	}
	if ((uint64_t)j->offset + j->len > (fsize ? fsize : UINT32_MAX)) {
		snprintf(j->err, sizeof j->err, "erase: 0x%x+0x%x is past the end of the %u-byte "
			 "flash; nothing erased", j->offset, j->len, fsize);
		return -EFBIG;
	}
	return 0;
}

int dev_job_erase(esp_device *d, struct dev_job *j)
{
	uint32_t fsize;
	/* a range that wraps or is not whole sectors is refused before
	 * anything reaches the chip (not even a reset) */
	int rc = erase_range_ok(j, 0);
	if (rc < 0)
		return rc;
	rc = known_flash_size(d, j, &fsize);
	if (rc < 0)
		return rc;
	rc = erase_range_ok(j, fsize);
	if (rc < 0)
		return rc;
	rc = job_enter_loader(d, j);
	if (rc < 0)
		return rc;
	uint32_t off = j->len ? j->offset : 0, len = j->len ? j->len : fsize;
	if ((uint64_t)off + len > fsize) {
		snprintf(j->err, sizeof j->err, "erase of 0x%x-0x%llx ends past the end of the "
			 "%u-byte flash; nothing erased", off, (unsigned long long)off + len, fsize);
		return -EFBIG;
	}
	if (job_cancelled(j)) {
		snprintf(j->err, sizeof j->err, "erase cancelled; nothing was erased");
		return -EINTR;
	}
	/* The ESP8266 ROM erases sectors in pairs inside a 64 KiB block: an
	 * odd count there would take the next sector too (A9; the plan of
	 * esp_esp8266_rom_erases).  Refuse before anything is erased. */
	const struct esp_chip_info *chip = esp_loader_chip(d->ld);
	if (!esp_loader_is_stub(d->ld) && chip && chip->id == ESP_CHIP_ESP8266) {
		for (uint32_t done = 0; done < len;) {
			uint32_t n = len - done < ERASE_CHUNK ? len - done : ERASE_CHUNK;
			if (esp_esp8266_rom_erases(off + done, n) != n) {
				snprintf(j->err, sizeof j->err, "erase of 0x%x-0x%x refused, nothing erased: "
					 "the ESP8266 ROM erases sectors in pairs inside a 64 KiB block, so "
					 "0x%x+0x%x would also erase the sector after it; erase an even "
					 "number of sectors there, or use the stub", off, off + len,
					 off + done, n);
				return -EOPNOTSUPP;
			}
			done += n;
		}
	}
	dev_journal_begin(d, off, off + len, "erase");
	/* each step runs to its end: a cancel is seen between steps */
	d->no_cancel_wait = true;
	for (uint32_t done = 0; done < len;) {
		uint32_t n = len - done < ERASE_CHUNK ? len - done : ERASE_CHUNK;
		if (job_cancelled(j)) {
			snprintf(j->err, sizeof j->err, "erase of 0x%x-0x%x cancelled: flash "
				 "0x%x-0x%x is erased, 0x%x-0x%x untouched", off, off + len, off,
				 off + done, off + done, off + len);
			rc = -EINTR;
			break;
		}
		j->touched_flash = true;
		rc = esp_loader_erase_region(d->ld, off + done, n);
		if (rc < 0) {
			char what[160];
			dev_flash_unknown(d, off + done, n);
			snprintf(what, sizeof what, "erase of 0x%x-0x%x failed at 0x%x (flash 0x%x-0x%x "
				 "is erased, 0x%x-0x%x may be partly erased)", off, off + len, off + done,
				 off, off + done, off + done, off + n + done);
			set_reason(d, j->err, sizeof j->err, what, rc);
			break;
		}
		dev_flash_known(d, off + done, NULL, n, true);
		done += n;
		pthread_mutex_lock(&d->lock);
		d->prog_done = done;
		pthread_mutex_unlock(&d->lock);
		dev_state_changed(d);
	}
	d->no_cancel_wait = false;
	return rc;
}

static int job_provision(esp_device *d, struct dev_job *j)
{
	if (d->in_loader) {
		if (d->opt.reset == ESP_RESET_NONE) {
			snprintf(j->err, sizeof j->err,
				 "the chip is in its loader; press RESET to start the application");
			return -EBUSY;
		}
		dev_leave_loader(d);
	}
	pthread_mutex_lock(&d->lock);
	snprintf(d->wifi_status, sizeof d->wifi_status, "provisioning");
	snprintf(d->wifi_ssid, sizeof d->wifi_ssid, "%s", j->ssid);
	pthread_mutex_unlock(&d->lock);
	int rc;
	struct dev_improv_info info;
	memset(&info, 0, sizeof info);
	info.state = -1;
	pthread_mutex_lock(&d->lock);
	bool ask = !d->improv.known;  /* identity that comes late */
	pthread_mutex_unlock(&d->lock);
	for (;;) {
		rc = d->tr ? dev_improv_provision(d, j->ssid, j->pass, &j->cancel, &info, ask,
						  j->err, sizeof j->err)
			   : -ENODEV;
		if (rc == 0 || (rc != -ETIMEDOUT && rc != -ENODEV) || job_cancelled(j))
			break;
		/* a freshly reset app: its port may still be re-enumerating
		 * and the firmware booting (ESP Web Tools waits ~10 s) */
		pthread_mutex_lock(&d->lock);
		uint64_t since = d->app_reset_ms;
		pthread_mutex_unlock(&d->lock);
		if (!since || now_ms() > since + APP_BOOT_WAIT_MS)
			break;
		if (d->sim && sim_get_mode(d->sim) == SIM_MODE_OFF)
			break;
		if (rc == -ENODEV || !d->tr)
			dev_reopen(d);
		esp_sleep_ms(esp_clock_real(), 200);
	}
	if (rc == -ENODEV && !d->tr)
		snprintf(j->err, sizeof j->err, "the application's port did not come back");
	if (info.bootfail[0] && !info.known && info.state < 0) {
		pthread_mutex_lock(&d->lock);
		snprintf(d->bootwarn, sizeof d->bootwarn, "boot-looping: %s", info.bootfail);
		pthread_mutex_unlock(&d->lock);
	}
	if (info.known || info.state >= 0) {
		/* the application answered: it runs, whatever attach saw */
		dev_improv_apply(d, &info);
		pthread_mutex_lock(&d->lock);
		bool stale = d->err == ETIMEDOUT || d->err == ENODEV;
		pthread_mutex_unlock(&d->lock);
		if (stale)  /* "waiting for download mode" from attach */
			dev_clear_error(d);
		dev_set_mode(d, "app");
	}
	pthread_mutex_lock(&d->lock);
	snprintf(d->wifi_status, sizeof d->wifi_status, "%s",
		 rc == 0 ? "connected" : rc == -EINTR ? "unknown" : "failed");
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int dev_run_job(esp_device *d, struct dev_job *j)
{
	int rc;
	switch (j->kind) {
	case DEV_JOB_READ:
		rc = job_read(d, j);
		break;
	case DEV_JOB_WRITE:
		rc = dev_job_write(d, j);
		break;
	case DEV_JOB_ERASE:
		rc = dev_job_erase(d, j);
		break;
	case DEV_JOB_PROVISION:
		rc = job_provision(d, j);
		break;
	case DEV_JOB_BOOT_GET:
		rc = dev_job_boot_get(d, j);
		break;
	case DEV_JOB_BOOT_SET:
		rc = dev_job_boot_set(d, j);
		break;
	case DEV_JOB_RESET:
		if (d->opt.reset == ESP_RESET_NONE) {
			snprintf(j->err, sizeof j->err, "--reset none: press RESET on the board");
			rc = -EOPNOTSUPP;
			break;
		}
		if (d->in_loader) {
			rc = dev_leave_loader(d);
		} else {
			rc = esp_loader_hard_reset(d->ld);
			pthread_mutex_lock(&d->lock);
			d->resets++;
			pthread_mutex_unlock(&d->lock);
		}
		if (rc < 0)
			set_reason(d, j->err, sizeof j->err, "reset", rc);
		break;
	default:
		rc = -EINVAL;
	}
	if (rc < 0 && !j->err[0])
		snprintf(j->err, sizeof j->err, "%s", strerror(-rc));
	/* A loader that lost sync is re-entered from scratch next time: after
	 * an error, or a cancel that cut a wait for an answer short. */
	if (d->wait_cancelled && d->in_loader && dev_can_leave_loader(d))
		/* the chip may still be busy with the command cut short: reset
		 * it (into its application, where the next job expects it
		 * unless it needs the loader, which it then enters anew) */
		dev_leave_loader(d);
	else if ((rc < 0 && rc != -EINTR && rc != -EINVAL && rc != -EFBIG) || d->wait_cancelled)
		dev_left_loader(d);
	d->wait_cancelled = false;
	return rc;
}
