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

#define ERASE_CHUNK 0x40000u
#define READ_CHUNK 0x10000u

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
	pthread_mutex_lock(&p->d->lock);
	p->d->prog_done = p->base + done;
	if (now - p->d->last_progress_us > 250000) {
		p->d->last_progress_us = now;
		notify = true;
	}
	pthread_mutex_unlock(&p->d->lock);
	if (notify)
		dev_state_changed(p->d);
	return job_cancelled(p->j);
}

static void set_reason(esp_device *d, char *err, size_t errlen, const char *what, int rc)
{
	const char *why = d->ld ? esp_loader_error(d->ld) : NULL;
	snprintf(err, errlen, "%s: %s", what, why && *why ? why : strerror(-rc));
}

int dev_enter_loader(esp_device *d, char *err, size_t errlen)
{
	int rc;
	if (d->in_loader)
		return 0;
	if (!d->ld) {
		snprintf(err, errlen, "port is not open");
		return -ENODEV;
	}
	/* Waiting for the user to put the chip into download mode: sync
	 * only, never reset again (that would undo the button press). */
	bool waiting = d->waiting_download;
	rc = esp_loader_connect(d->ld, waiting ? ESP_RESET_NONE : d->opt.reset, waiting ? 1 : 0);
	if (!waiting && d->opt.reset != ESP_RESET_NONE) {
		pthread_mutex_lock(&d->lock);
		d->resets++;
		pthread_mutex_unlock(&d->lock);
	}
	if (rc < 0) {
		if (rc == -ETIMEDOUT && d->opt.reset == ESP_RESET_NONE)
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
	if (!esp_loader_is_stub(d->ld) && !d->opt.no_stub) {
		char path[512];
		esp_stub stub;
		char serr[200];
		if (esp_stub_find(chip, d->opt.stub_dir, path, sizeof path) == 0 &&
		    esp_stub_load_file(path, &stub, serr, sizeof serr) == 0) {
			int src = esp_loader_run_stub(d->ld, &stub);
			esp_stub_free(&stub);
			if (src < 0)
				LOGW("%s: stub did not start (%s); using the ROM loader", d->name,
				     esp_loader_error(d->ld));
		}
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
	d->in_loader = true;
	pthread_mutex_lock(&d->lock);
	d->id.jedec = jedec;
	if (size && !d->id.flash_size)
		d->id.flash_size = size;
	pthread_mutex_unlock(&d->lock);
	dev_set_mode(d, esp_loader_is_stub(d->ld) ? "stub" : "rom");
	return 0;
}

int dev_leave_loader(esp_device *d)
{
	if (!d->in_loader || !d->ld)
		return 0;
	if (d->opt.reset == ESP_RESET_NONE)
		return 0;
	const struct esp_chip_info *chip = esp_loader_chip(d->ld);
	int rc = esp_loader_hard_reset(d->ld);
	if (rc == -ENOTTY && chip && chip->wdt_config0)
		rc = esp_loader_watchdog_reset(d->ld);
	d->in_loader = false;
	pthread_mutex_lock(&d->lock);
	d->resets++;
	pthread_mutex_unlock(&d->lock);
	dev_set_mode(d, rc < 0 ? "unknown" : "app");
	if (rc < 0)
		LOGW("%s: reset into the application failed: %s", d->name, esp_loader_error(d->ld));
	return rc;
}

static int read_range(esp_device *d, struct dev_job *j, uint32_t off, uint8_t *buf, uint32_t len,
		      bool progress)
{
	if (device_head_read(d, off, buf, len) == 0)
		return 0;
	int rc = dev_enter_loader(d, j->err, sizeof j->err);
	if (rc < 0)
		return rc;
	for (uint32_t done = 0; done < len;) {
		uint32_t n = len - done < READ_CHUNK ? len - done : READ_CHUNK;
		struct prog_ctx pc = { d, j, done };
		if (job_cancelled(j)) {
			snprintf(j->err, sizeof j->err, "read cancelled");
			return -EINTR;
		}
		rc = esp_loader_read_flash(d->ld, off + done, buf + done, n,
					   progress ? on_progress : NULL, &pc);
		if (rc < 0) {
			char what[64];
			snprintf(what, sizeof what, "read at 0x%x", off + done);
			set_reason(d, j->err, sizeof j->err, what, rc);
			return rc;
		}
		done += n;
	}
	return 0;
}

static int job_read(esp_device *d, struct dev_job *j)
{
	return read_range(d, j, j->offset, j->buf, j->len, true);
}

static int job_write(esp_device *d, struct dev_job *j)
{
	uint32_t fsize = device_flash_size(d);
	uint64_t end = (uint64_t)j->offset + j->len;
	if (end > fsize) {
		snprintf(j->err, sizeof j->err, "write ends at 0x%llx, past the end of the %u-byte flash",
			 (unsigned long long)end, fsize);
		return -EFBIG;
	}
	uint32_t a0 = j->offset & ~(ESP_SECTOR - 1);
	uint64_t a1 = (end + ESP_SECTOR - 1) & ~(uint64_t)(ESP_SECTOR - 1);
	if (a1 > fsize)
		a1 = fsize;
	uint32_t alen = (uint32_t)(a1 - a0);
	uint8_t *buf = j->buf;
	bool own = false;
	int rc = dev_enter_loader(d, j->err, sizeof j->err);
	if (rc < 0)
		return rc;
	if (a0 != j->offset || a1 != end) {
		buf = malloc(alen);
		if (!buf)
			return -ENOMEM;
		own = true;
		if (a0 < j->offset)
			rc = read_range(d, j, a0, buf, j->offset - a0, false);
		if (rc == 0 && a1 > end)
			rc = read_range(d, j, (uint32_t)end, buf + (end - a0), (uint32_t)(a1 - end), false);
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
	rc = esp_loader_write_flash(d->ld, a0, buf, alen, ESP_WRITE_COMPRESS | ESP_WRITE_SKIP_SAME,
				   on_progress, &pc);
	if (rc < 0) {
		char what[64];
		snprintf(what, sizeof what, "write at 0x%x", a0);
		set_reason(d, j->err, sizeof j->err, what, rc);
		goto out;
	}
	dev_head_update(d, a0, buf, alen, false);
out:
	if (own)
		free(buf);
	return rc;
}

static int job_erase(esp_device *d, struct dev_job *j)
{
	int rc = dev_enter_loader(d, j->err, sizeof j->err);
	if (rc < 0)
		return rc;
	uint32_t fsize = device_flash_size(d);
	if (j->len == 0) {
		rc = esp_loader_erase_all(d->ld);
		if (rc < 0) {
			set_reason(d, j->err, sizeof j->err, "erase", rc);
			return rc;
		}
		dev_head_update(d, 0, NULL, fsize, true);
		return 0;
	}
	for (uint32_t done = 0; done < j->len;) {
		uint32_t n = j->len - done < ERASE_CHUNK ? j->len - done : ERASE_CHUNK;
		if (job_cancelled(j)) {
			snprintf(j->err, sizeof j->err, "erase cancelled after 0x%x bytes", done);
			return -EINTR;
		}
		rc = esp_loader_erase_region(d->ld, j->offset + done, n);
		if (rc < 0) {
			char what[64];
			snprintf(what, sizeof what, "erase at 0x%x", j->offset + done);
			set_reason(d, j->err, sizeof j->err, what, rc);
			return rc;
		}
		dev_head_update(d, j->offset + done, NULL, n, true);
		done += n;
		pthread_mutex_lock(&d->lock);
		d->prog_done = done;
		pthread_mutex_unlock(&d->lock);
		dev_state_changed(d);
	}
	return 0;
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
	int rc = dev_improv_provision(d, j->ssid, j->pass, &j->cancel, j->err, sizeof j->err);
	pthread_mutex_lock(&d->lock);
	snprintf(d->wifi_status, sizeof d->wifi_status, "%s", rc == 0 ? "connected" : "failed");
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int dev_run_job(esp_device *d, struct dev_job *j)
{
	int rc;
	struct dev_identity id;
	device_identity(d, &id);
	if (!id.known && !d->opt.no_probe &&
	    (j->kind == DEV_JOB_READ || j->kind == DEV_JOB_WRITE || j->kind == DEV_JOB_ERASE)) {
		snprintf(j->err, sizeof j->err, "the chip is not identified yet: waiting for "
			 "download mode (hold BOOT and press RESET)");
		return -ETIMEDOUT;
	}
	switch (j->kind) {
	case DEV_JOB_READ:
		rc = job_read(d, j);
		break;
	case DEV_JOB_WRITE:
		rc = job_write(d, j);
		break;
	case DEV_JOB_ERASE:
		rc = job_erase(d, j);
		break;
	case DEV_JOB_PROVISION:
		rc = job_provision(d, j);
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
	/* A loader that lost sync is re-entered from scratch next time. */
	if (rc < 0 && rc != -EINTR && rc != -EINVAL && rc != -EFBIG)
		d->in_loader = false;
	return rc;
}
