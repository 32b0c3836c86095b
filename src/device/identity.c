/* Attach: open the port, enter the loader once to learn chip, MAC, flash
 * size and JEDEC ID and to read the first 64 KiB (bootloader header and
 * partition table), then reset the chip back into its application and ask
 * the application for its Improv identity.  After this, attributes never
 * touch the device. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "device_i.h"
#include "espfs/clock.h"
#include "espfs/image.h"
#include "espfs/log.h"
#include "espfs/net.h"

/* The partition table at 0x8000, through the image module's parser.  A
 * table it calls invalid (bad MD5 row, overlap) still lists the rows read
 * before the fault: they are what a user needs to see what is wrong. */
void dev_parse_partitions(const uint8_t *tbl, size_t len, struct dev_identity *id)
{
	struct esp_partition_table *pt = malloc(sizeof *pt);
	char msg[160];
	id->n_parts = 0;
	id->parts_gen++;
	if (!pt)
		return;
	if (esp_pt_parse(tbl, len < ESP_PT_MAX_LEN ? len : ESP_PT_MAX_LEN, pt, msg, sizeof msg) < 0 &&
	    pt->n)
		LOGD("partition table at 0x8000: %s", msg);
	for (int i = 0; i < pt->n && id->n_parts < DEV_MAX_PARTS; i++) {
		struct dev_partition *p = &id->parts[id->n_parts++];
		p->type = pt->p[i].type;
		p->subtype = pt->p[i].subtype;
		p->offset = pt->p[i].offset;
		p->size = pt->p[i].size;
		p->flags = pt->p[i].flags;
		snprintf(p->label, sizeof p->label, "%s", pt->p[i].label);
	}
	free(pt);
}

static int wrap_port(esp_device *d, char *err, size_t errlen);

static int open_port(esp_device *d, char *err, size_t errlen)
{
	int rc;
	char path[256];
	pthread_mutex_lock(&d->lock);  /* the registry may move it (re-enumeration) */
	snprintf(path, sizeof path, "%s", d->path);
	pthread_mutex_unlock(&d->lock);
	if (d->sim)
		rc = sim_transport_open(d->sim, &d->tr);
	else if (d->remote)
		return esp_net_open(path, 115200, esp_clock_real(), &d->tr, err, errlen) < 0 ? -ENODEV
			: wrap_port(d, err, errlen);
	else
		rc = esp_serial_open(path, 115200, esp_clock_real(), &d->tr);
	if (rc < 0) {
		char who[400] = "";
		if (rc == -EBUSY && !d->sim && esp_port_holders(path, who, sizeof who) <= 0)
			who[0] = 0;
		/* a port that is not there: brltty may have taken its adapter */
		if (rc == -ENOENT && !d->sim && dev_ttyless_bridges("/sys", "/proc", who, sizeof who) <= 0)
			who[0] = 0;
		snprintf(err, errlen, "cannot open %.120s: %s%s%s", d->sim ? "simulator" : path,
			 rc == -EBUSY ? "held by another program" : strerror(-rc),
			 who[0] ? ": " : "", who);
		return rc;
	}
	return wrap_port(d, err, errlen);
}

/* The port is open: count its traffic, put a loader on it. */
static int wrap_port(esp_device *d, char *err, size_t errlen)
{
	esp_transport *ct = dev_counting_transport(d, d->tr);
	if (ct)
		d->tr = ct;
	d->ld = esp_loader_new(d->tr);
	if (!d->ld) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_lock(&d->lock);
	if (d->tr->usb_vid) {  /* the port now (native USB changes PID with mode) */
		d->id.usb_vid = d->tr->usb_vid;
		d->id.usb_pid = d->tr->usb_pid;
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* Drop the loader and the port; the next job opens and connects anew. */
static void close_port(esp_device *d)
{
	if (d->ld)
		esp_loader_free(d->ld);
	d->ld = NULL;
	esp_tr_close(d->tr);
	d->tr = NULL;
	dev_left_loader(d);
}

/* The port went away under us: a native-USB chip re-enumerates when it
 * switches between its app and the ROM loader (DESIGN.md section 3).  The
 * device keeps its folder and handles; only the port is opened again,
 * once it is back.  -ENODEV when it does not come back. */
int dev_reopen(esp_device *d)
{
	char err[240];
	if (d->sim && sim_get_mode(d->sim) == SIM_MODE_OFF)
		return -ENODEV;
	close_port(d);
	uint64_t t0 = esp_now_us(esp_clock_real());
	for (int i = 0; i < 30; i++) {  /* a USB re-enumeration takes ~1-2 s */
		if (open_port(d, err, sizeof err) == 0) {
			LOGI("%s: port reopened", d->name);
			return 0;
		}
		/* a remote server that lost its port (re-enumeration behind
		 * it) takes as long; a connect may take its timeout */
		if (d->sim || (d->remote && esp_now_us(esp_clock_real()) - t0 > 4000000))
			break;
		esp_sleep_ms(esp_clock_real(), 100);
	}
	LOGD("%s: reopen failed: %s", d->name, err);
	return -ENODEV;
}

static int probe(esp_device *d, char *err, size_t errlen)
{
	int rc = dev_enter_loader(d, err, errlen);
	if (rc < 0)
		return rc;
	const struct esp_chip_info *chip = esp_loader_chip(d->ld);
	uint8_t mac[6] = { 0 };
	rc = esp_loader_read_mac(d->ld, mac);
	if (rc < 0) {
		snprintf(err, errlen, "read MAC: %s", esp_loader_error(d->ld));
		return rc;
	}
	unsigned rev = 0;
	int rrc = esp_loader_read_revision(d->ld, &rev);
	if (rrc == -ENODEV)
		return rrc;
	if (rrc < 0 && rrc != -EOPNOTSUPP)
		LOGW("%s: cannot read the chip revision: %s", d->name, esp_loader_error(d->ld));
	pthread_mutex_lock(&d->lock);
	if (d->id.known && memcmp(d->id.mac, mac, 6) != 0) {
		/* another chip on this port: the warnings were about the old one */
		d->n_warns = 0;
		d->bootwarn[0] = 0;
	}
	d->id.chip = chip;
	d->id.revision = rrc < 0 ? -1 : (int)rev;
	memcpy(d->id.mac, mac, 6);
	if (!d->id.flash_size) {
		/* the flash ID gave no size: the chip's usual one, marked as a
		 * guess (info.json "flash_size_source": "default") */
		d->id.flash_size = chip ? chip->default_flash_size : 0x400000;
		d->flash_size_guessed = true;
	}
	uint32_t fsize = d->id.flash_size;
	pthread_mutex_unlock(&d->lock);

	uint32_t n = fsize < DEV_HEAD_SIZE ? fsize : DEV_HEAD_SIZE;
	uint8_t *head = malloc(DEV_HEAD_SIZE);
	if (!head)
		return -ENOMEM;
	memset(head, 0xFF, DEV_HEAD_SIZE);
	rc = esp_loader_read_flash(d->ld, 0, head, n, NULL, NULL);
	if (rc < 0)  /* e.g. a ROM without READ_FLASH and no stub: identity still holds */
		LOGW("%s: cannot read the flash header (%s); flash.bin reads will go to the chip",
		     d->name, esp_loader_error(d->ld));
	pthread_mutex_lock(&d->lock);
	if (rc == 0) {
		memcpy(d->head, head, DEV_HEAD_SIZE);
		d->head_valid = true;
		d->head_fresh = 0xFFFF;
		d->head_known = 0xFFFF;
		dev_parse_partitions(d->head + 0x8000, 0xC00, &d->id);
	}
	d->id.known = true;
	pthread_mutex_unlock(&d->lock);
	/* an unfinished write from an earlier espfs run on this chip */
	dev_journal_load(d);
	/* a new attach: what an earlier one read may belong to another chip */
	dev_rcache_free(d);
	if (rc == 0)
		dev_rcache_put(d, 0, head, n, false);
	free(head);
	return 0;
}

int dev_identify(esp_device *d, char *err, size_t errlen)
{
	int rc = probe(d, err, errlen);
	if (rc == 0)
		dev_event(d, DEV_EV_ADDED);  /* identity now known: by-mac link */
	return rc;
}

bool dev_has_bootloader(esp_device *d)
{
	uint8_t magic = 0;
	struct dev_identity id;
	device_identity(d, &id);
	if (!id.chip)
		return false;
	if (device_head_read(d, id.chip->bootloader_offset, &magic, 1) < 0)
		return true;  /* unknown: assume there is something to run */
	return magic == 0xE9;
}

static int finish_attach(esp_device *d);

/* The loader is out of reach (a USB-OTG chip's app ignores the lines): an
 * application that speaks Improv still names its chip, which is enough
 * for a folder that takes an image; the MAC and the real flash size come
 * when a job gets the chip into download mode (the buttons). */
static int identify_app(esp_device *d)
{
	struct dev_improv_info info;
	char ierr[160];
	memset(&info, 0, sizeof info);
	dev_left_loader(d);
	if (dev_improv_get_info(d, &info, ierr, sizeof ierr) < 0) {
		LOGD("%s: no Improv answer either: %s", d->name, ierr);
		return -ENODEV;
	}
	const struct esp_chip_info *chip = esp_chip_by_name(info.chip);
	dev_improv_apply(d, &info);
	dev_clear_error(d);
	dev_set_mode(d, "app");
	dev_console_resume(d);
	LOGI("%s: application running (%s %s on %s); the loader needs the buttons", d->name,
	     info.firmware, info.version, chip ? chip->name : info.chip);
	return 0;
}

int dev_attach(esp_device *d)
{
	char err[240] = "";
	int rc = d->tr ? 0 : open_port(d, err, sizeof err);  /* open: a remote reconnect */
	if (rc == 0 && !d->opt.no_probe)
		rc = probe(d, err, sizeof err);
	/* a native-USB app may answer the reset lines by re-enumerating as
	 * the ROM's port (TinyUSB apps that honour esptool's sequence) */
	if (rc == -ENODEV && !d->opt.no_probe && dev_reopen(d) == 0)
		rc = probe(d, err, sizeof err);
	if (rc < 0 && d->remote && (rc == -ENODEV || !d->tr)) {
		/* the link is down (or went down): not this chip's fault */
		close_port(d);
		dev_remote_lost(d, err);
		return rc;
	}
	bool was_busy = d->port_busy;
	d->port_busy = rc == -EBUSY && !d->tr;
	if (d->port_busy)
		snprintf(d->busy_msg, sizeof d->busy_msg, "%s", err);
	if (rc < 0) {
		if (was_busy && d->port_busy)
			LOGD("%s: attach failed: %s", d->name, err);  /* said once already */
		else
			LOGW("%s: attach failed: %s", d->name, err);
		dev_set_mode(d, "unknown");
		if (d->ld && rc != -ENODEV && identify_app(d) == 0)
			return 0;
		if (d->ld && rc != -ENODEV && esp_loader_synced(d->ld)) {
			/* the loader answered: the chip is in download mode and
			 * what failed after that is the news, not BOOT+RESET */
			device_set_error(d, rc, "attach: %s", err);
		} else if (d->ld && rc != -ENODEV) {
			/* e.g. a native-USB chip whose app ignores the reset lines */
			d->waiting_download = true;
			device_set_error(d, rc, "waiting for download mode: hold BOOT, press RESET "
					 "(attach: %s)", err);
		} else {
			device_set_error(d, rc, "attach: %s", err);
		}
		return rc;
	}
	return finish_attach(d);
}

/* The port came back after a short absence: attach again from scratch on
 * whatever port it has now; a different MAC means another board took the
 * socket, which is said in the log (the folder follows the port). */
int dev_reattach(esp_device *d)
{
	uint8_t old_mac[6];
	pthread_mutex_lock(&d->lock);
	bool had = d->id.known;
	memcpy(old_mac, d->id.mac, 6);
	pthread_mutex_unlock(&d->lock);
	if (!d->remote)  /* a remote reconnect comes with its link open */
		close_port(d);
	d->waiting_download = false;
	d->manual_download = false;
	d->reset_pending = false;
	pthread_mutex_lock(&d->lock);
	d->follow_port = false;
	pthread_mutex_unlock(&d->lock);
	dev_clear_error(d);
	dev_set_mode(d, "attaching");
	/* a known chip that only the buttons get into its loader: no futile
	 * reset attempts, just see whether its application answers */
	pthread_mutex_lock(&d->lock);
	bool manual = had && !strcmp(d->reset_in, "manual");
	pthread_mutex_unlock(&d->lock);
	char err[240];
	int rc = -1;
	if (manual && (d->tr || open_port(d, err, sizeof err) == 0)) {
		rc = identify_app(d);
		if (rc < 0) {
			esp_loader_free(d->ld);
			d->ld = NULL;
			esp_tr_close(d->tr);
			d->tr = NULL;
		}
	}
	if (rc < 0)
		rc = dev_attach(d);
	pthread_mutex_lock(&d->lock);
	bool other = had && d->id.known && memcmp(old_mac, d->id.mac, 6) != 0;
	pthread_mutex_unlock(&d->lock);
	if (other)
		LOGW("%s: a different chip is on this port now", d->name);
	dev_event(d, DEV_EV_ADDED);  /* identity may have changed: by-mac */
	return rc;
}

int dev_reprobe(esp_device *d)
{
	char err[240] = "";
	dev_left_loader(d);
	int rc = probe(d, err, sizeof err);
	if (rc == -ENODEV && dev_reopen(d) == 0)
		rc = probe(d, err, sizeof err);
	if (rc < 0) {
		LOGD("%s: still no loader: %s", d->name, err);
		return rc;
	}
	d->waiting_download = false;
	d->manual_download = true;
	LOGI("%s: found in download mode; it stays in the loader", d->name);
	dev_clear_error(d);
	rc = finish_attach(d);
	dev_state_changed(d);
	return rc;
}

static int finish_attach(esp_device *d)
{
	if (d->opt.no_probe) {
		dev_set_mode(d, "unknown");
		dev_console_resume(d);  /* most likely its application runs */
		return 0;
	}
	if (d->manual_download)
		return 0;
	if (!dev_has_bootloader(d)) {
		/* nothing to boot: stay in the loader rather than boot-loop */
		LOGI("%s: no bootloader in flash; staying in the loader", d->name);
		return 0;
	}
	dev_leave_loader(d);
	if (d->opt.reset == ESP_RESET_NONE)
		return 0;
	struct dev_improv_info info;
	char ierr[160];
	memset(&info, 0, sizeof info);
	info.state = -1;
	if (dev_improv_get_info(d, &info, ierr, sizeof ierr) == 0) {
		dev_improv_apply(d, &info);
	} else if (info.bootfail[0]) {
		/* no app answered, and the console says why: a half-flashed
		 * chip that loops must not show as "app idle" */
		pthread_mutex_lock(&d->lock);
		snprintf(d->bootwarn, sizeof d->bootwarn, "boot-looping: %s", info.bootfail);
		pthread_mutex_unlock(&d->lock);
		LOGW("%s: the chip does not start: %s", d->name, info.bootfail);
		dev_state_changed(d);
	} else {
		LOGD("%s: no Improv answer: %s", d->name, ierr);
	}
	char mac[20];
	struct dev_identity id;
	device_identity(d, &id);
	snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", id.mac[0], id.mac[1], id.mac[2],
		 id.mac[3], id.mac[4], id.mac[5]);
	LOGI("%s: %s, MAC %s, %u-byte flash", d->name, id.chip ? id.chip->name : "?", mac,
	     id.flash_size);
	return 0;
}

void dev_remote_lost(esp_device *d, const char *why)
{
	pthread_mutex_lock(&d->lock);
	bool was = d->port_missing;
	d->port_missing = true;
	d->reset_pending = false;
	if (!d->retry_ms)
		d->retry_ms = 500;
	pthread_mutex_unlock(&d->lock);
	dev_set_mode(d, "unplugged");
	if (was)  /* keep the first story (a partial write) until it is back */
		return;
	LOGW("%s: remote link lost: %s", d->name, why);
	device_set_error(d, -ENODEV, "remote link lost: %s", why);
}

int dev_remote_reconnect(esp_device *d)
{
	char err[240] = "";
	close_port(d);
	int rc = open_port(d, err, sizeof err);
	if (rc < 0) {
		LOGD("%s: reconnect: %s", d->name, err);
		dev_remote_lost(d, err);
		return rc;
	}
	LOGI("%s: remote link back", d->name);
	pthread_mutex_lock(&d->lock);
	d->port_missing = false;
	d->retry_ms = 0;
	pthread_mutex_unlock(&d->lock);
	return dev_reattach(d);
}

int dev_remote_alive(esp_device *d)
{
	uint8_t junk[512];
	if (!d->tr)
		return -ENODEV;
	/* what the chip said meanwhile (an app's log) is of no use: a job
	 * flushes input before its first command anyway */
	for (int i = 0; i < 64; i++) {
		int rc = esp_tr_read(d->tr, junk, sizeof junk, 0);
		if (rc == -ETIMEDOUT)
			return 0;
		if (rc == -ENODEV)
			return rc;
	}
	return 0;
}
