/* One device: lifetime, job queue, the state line and the cached identity.
 * Nothing here touches the port; that is the worker's (worker.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "device_i.h"
#include "espfs/text.h"
#include "espfs/clock.h"
#include "espfs/image.h"
#include "espfs/log.h"

esp_device *dev_alloc(esp_devmgr *m, const char *name, const struct dev_options *opt)
{
	esp_device *d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	atomic_init(&d->refs, 1);
	d->id.revision = -1;
	snprintf(d->name, sizeof d->name, "%s", name);
	d->opt = *opt;
	d->mgr = m;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	snprintf(d->mode, sizeof d->mode, "attaching");
	snprintf(d->wifi_status, sizeof d->wifi_status, "unknown");
	d->head = malloc(DEV_HEAD_SIZE);
	if (!d->head || dev_console_init(d) < 0) {
		free(d->head);
		free(d);
		return NULL;
	}
	return d;
}

void dev_start(esp_device *d)
{
	device_ref(d);  /* the worker's reference */
	if (pthread_create(&d->thread, NULL, dev_worker_main, d) == 0)
		d->thread_started = true;
	else
		device_unref(d);
}

void dev_stop_and_join(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	d->stop = true;
	if (d->current)  /* shutting down: stop a long flash between blocks */
		atomic_store(&d->current->cancel, 1);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (d->thread_started) {
		pthread_join(d->thread, NULL);
		d->thread_started = false;
	}
}

void device_ref(esp_device *d)
{
	atomic_fetch_add(&d->refs, 1);
}

void device_unref(esp_device *d)
{
	if (!d || atomic_fetch_sub(&d->refs, 1) != 1)
		return;
	if (d->ld)
		esp_loader_free(d->ld);
	esp_tr_close(d->tr);
	if (d->sim)
		sim_device_free(d->sim);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	dev_rcache_free(d);
	dev_console_free(d);
	free(d->head);
	free(d);
}

const char *device_name(const esp_device *d)
{
	return d->name;
}

bool device_gone(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	bool g = d->gone;
	pthread_mutex_unlock(&d->lock);
	return g;
}

void device_identity(esp_device *d, struct dev_identity *out)
{
	pthread_mutex_lock(&d->lock);
	*out = d->id;
	pthread_mutex_unlock(&d->lock);
}

bool device_attached(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	bool a = d->attached;
	pthread_mutex_unlock(&d->lock);
	return a;
}

bool device_identity_known(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	bool k = d->id.known;
	pthread_mutex_unlock(&d->lock);
	return k;
}

uint32_t device_flash_size(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	uint32_t s = d->id.flash_size;
	pthread_mutex_unlock(&d->lock);
	return s;
}

unsigned device_reset_count(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	unsigned r = d->resets;
	pthread_mutex_unlock(&d->lock);
	return r;
}

#define STABLE_MASK ((1u << (DEV_HEAD_STABLE / ESP_SECTOR)) - 1)

/* The head's copy of [off, off+len): fresh_only, only sectors known to
 * match the chip now (the ones the app may have changed since it ran are
 * not); else any sector it holds. */
static int head_copy(esp_device *d, uint32_t off, uint8_t *buf, size_t len, bool fresh_only)
{
	int rc = -ERANGE;
	pthread_mutex_lock(&d->lock);
	uint32_t usable = d->head_known & (fresh_only ? d->head_fresh | STABLE_MASK : 0xFFFFu);
	if (d->head_valid && (uint64_t)off + len <= DEV_HEAD_SIZE) {
		rc = 0;
		for (uint64_t s = off / ESP_SECTOR; len && s <= (off + len - 1) / ESP_SECTOR; s++)
			if (!(usable & (1u << s)))
				rc = -ESTALE;
		if (rc == 0)
			memcpy(buf, d->head + off, len);
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int device_head_read(esp_device *d, uint32_t off, uint8_t *buf, size_t len)
{
	return head_copy(d, off, buf, len, true);
}

int dev_head_peek(esp_device *d, uint32_t off, uint8_t *buf, size_t len)
{
	return head_copy(d, off, buf, len, false);
}

unsigned device_parts_gen(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	unsigned g = d->id.parts_gen;
	pthread_mutex_unlock(&d->lock);
	return g;
}

bool device_app_running(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	bool app = !strcmp(d->mode, "app");
	pthread_mutex_unlock(&d->lock);
	return app;
}

void dev_left_loader(esp_device *d)
{
	d->in_loader = false;
	pthread_mutex_lock(&d->lock);
	d->head_fresh &= STABLE_MASK;
	pthread_mutex_unlock(&d->lock);
	dev_rcache_demote(d);
}

void dev_flash_known(esp_device *d, uint32_t off, const uint8_t *buf, uint32_t len, bool erased)
{
	dev_head_update(d, off, buf, len, erased);
	dev_rcache_put(d, off, buf, len, erased);
}

void dev_flash_unknown(esp_device *d, uint32_t off, uint32_t len)
{
	pthread_mutex_lock(&d->lock);
	for (uint64_t s = off / ESP_SECTOR; len && s <= ((uint64_t)off + len - 1) / ESP_SECTOR &&
					    s < DEV_HEAD_SIZE / ESP_SECTOR; s++)
		d->head_known &= (uint16_t)~(1u << s);
	pthread_mutex_unlock(&d->lock);
	dev_rcache_forget(d, off, len);
}

void dev_head_update(esp_device *d, uint32_t off, const uint8_t *buf, size_t len, bool erased)
{
	pthread_mutex_lock(&d->lock);
	if (d->head_valid && off < DEV_HEAD_SIZE) {
		size_t n = len;
		if (off + n > DEV_HEAD_SIZE)
			n = DEV_HEAD_SIZE - off;
		if (erased)
			memset(d->head + off, 0xFF, n);
		else
			memcpy(d->head + off, buf, n);
		/* whole sectors now match the chip */
		for (uint32_t s = (off + ESP_SECTOR - 1) / ESP_SECTOR; (s + 1) * ESP_SECTOR <= off + n; s++) {
			d->head_fresh |= (uint16_t)(1u << s);
			d->head_known |= (uint16_t)(1u << s);
		}
		if (off < 0x9000 && off + n > 0x8000) {
			struct dev_identity tmp = d->id;
			dev_parse_partitions(d->head + 0x8000, 0xC00, &tmp);
			d->id.n_parts = tmp.n_parts;
			d->id.parts_gen = tmp.parts_gen;
			memcpy(d->id.parts, tmp.parts, sizeof tmp.parts);
		}
	} else if (!d->head_valid && off <= ESP_PT_OFFSET && (uint64_t)off + len >= ESP_PT_OFFSET + 0xC00) {
		/* No copy of the head (the C3 ROM cannot read flash), but this
		 * write holds the whole partition table: what it wrote is the
		 * table now (issue 10: info.json kept an empty list). */
		struct dev_identity tmp = d->id;
		if (erased) {
			tmp.n_parts = 0;
			tmp.parts_gen++;
		} else {
			dev_parse_partitions(buf + (ESP_PT_OFFSET - off), 0xC00, &tmp);
		}
		d->id.n_parts = tmp.n_parts;
		d->id.parts_gen = tmp.parts_gen;
		memcpy(d->id.parts, tmp.parts, sizeof tmp.parts);
	}
	pthread_mutex_unlock(&d->lock);
}

int device_submit(esp_device *d, struct dev_job *j)
{
	j->next = NULL;
	j->rc = 0;
	j->touched_flash = false;
	j->err[0] = 0;
	pthread_mutex_lock(&d->lock);
	if (d->gone || d->stop) {
		pthread_mutex_unlock(&d->lock);
		return -ENODEV;
	}
	if (d->qtail)
		d->qtail->next = j;
	else
		d->qhead = j;
	d->qtail = j;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void dev_event(esp_device *d, enum dev_event ev)
{
	if (d->mgr)
		devmgr_emit(d->mgr, d, ev);
}

void dev_state_changed(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	d->state_gen++;
	bool announced = d->announced;
	pthread_mutex_unlock(&d->lock);
	if (announced)
		dev_event(d, DEV_EV_STATE);
}

void dev_set_mode(esp_device *d, const char *mode)
{
	pthread_mutex_lock(&d->lock);
	bool same = strcmp(d->mode, mode) == 0;
	snprintf(d->mode, sizeof d->mode, "%s", mode);
	pthread_mutex_unlock(&d->lock);
	if (!same)
		dev_state_changed(d);
}

void dev_clear_error(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	d->err = 0;
	d->errmsg[0] = 0;
	d->err_from_read = false;
	d->saved_err = 0;
	pthread_mutex_unlock(&d->lock);
}

void dev_read_result(esp_device *d, struct dev_job *j, int rc)
{
	if (rc == -EINTR || rc == -ENODEV)  /* a cancel; the worker reports an unplug */
		return;
	pthread_mutex_lock(&d->lock);
	if (rc == 0 && d->err_from_read) {
		d->err = d->saved_err;
		snprintf(d->errmsg, sizeof d->errmsg, "%s", d->saved_err ? d->saved_errmsg : "");
		d->err_from_read = false;
		d->saved_err = 0;
	} else if (rc < 0) {
		if (!d->err_from_read && d->err) {
			/* an unresolved problem: back in state once reads work */
			d->saved_err = d->err;
			memcpy(d->saved_errmsg, d->errmsg, sizeof d->saved_errmsg);
		}
		d->err = -rc;
		d->err_from_read = true;
		snprintf(d->errmsg, sizeof d->errmsg, "%.32s: %.200s", j->what[0] ? j->what : "flash",
			 j->err[0] ? j->err : strerror(-rc));
	} else {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	pthread_mutex_unlock(&d->lock);
	dev_state_changed(d);
}

void dev_set_note(esp_device *d, const char *note)
{
	pthread_mutex_lock(&d->lock);
	bool same = !strcmp(d->note, note);
	snprintf(d->note, sizeof d->note, "%s", note);
	pthread_mutex_unlock(&d->lock);
	if (!same)
		dev_state_changed(d);
}

void dev_set_errorv(esp_device *d, int err, const char *fmt, va_list ap)
{
	pthread_mutex_lock(&d->lock);
	d->err_from_read = false;
	d->saved_err = 0;
	d->err = err < 0 ? -err : err;
	vsnprintf(d->errmsg, sizeof d->errmsg, fmt, ap);
	/* one line of valid UTF-8 whatever the reason quotes (bytes from a
	 * device, a file name): newlines become blanks, other control bytes
	 * and bytes that are not UTF-8 '?' */
	unsigned char *u = (unsigned char *)d->errmsg;
	for (size_t i = 0, n = strlen(d->errmsg); i < n;) {
		size_t k = esp_utf8_seq(u + i, n - i);
		if (k == 1 && (u[i] == '\n' || u[i] == '\r'))
			u[i] = ' ';
		else if (k == 0 || (k == 1 && (u[i] < 0x20 || u[i] == 0x7f)))
			u[i] = '?';
		i += k ? k : 1;
	}
	pthread_mutex_unlock(&d->lock);
	dev_state_changed(d);
}

/* Called with d->lock. */
static void drop_warn(esp_device *d, int i)
{
	memmove(&d->warns[i], &d->warns[i + 1], (size_t)(d->n_warns - i - 1) * sizeof d->warns[0]);
	d->n_warns--;
}

void dev_flash_warn(esp_device *d, uint32_t lo, uint32_t hi, const char *fmt, ...)
{
	va_list ap;
	if (hi <= lo)
		return;
	pthread_mutex_lock(&d->lock);
	/* a new account of a range replaces what was said about the ranges
	 * inside it (the upload's account of its failed job's range) */
	for (int i = d->n_warns - 1; i >= 0; i--)
		if (d->warns[i].lo >= lo && d->warns[i].hi <= hi)
			drop_warn(d, i);
	if (d->n_warns == DEV_MAX_WARNS) {
		/* no room to say each: one account of the two oldest, shorter */
		struct dev_warn *a = &d->warns[0], *b = &d->warns[1];
		uint32_t l = a->lo < b->lo ? a->lo : b->lo, h = a->hi > b->hi ? a->hi : b->hi;
		snprintf(a->text, sizeof a->text, "flash 0x%x-0x%x: unfinished writes or erases left "
			 "parts of it erased or partly written", l, h);
		a->lo = a->lo0 = l;
		a->hi = a->hi0 = h;
		a->erase = a->erase && b->erase;
		drop_warn(d, 1);
	}
	struct dev_warn *w = &d->warns[d->n_warns++];
	w->lo = w->lo0 = lo;
	w->hi = w->hi0 = hi;
	w->erase = false;
	va_start(ap, fmt);
	vsnprintf(w->text, sizeof w->text, fmt, ap);
	va_end(ap);
	for (char *p = w->text; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	pthread_mutex_unlock(&d->lock);
	dev_state_changed(d);
}

void dev_erase_warn(esp_device *d, uint32_t lo, uint32_t hi, const char *text)
{
	dev_flash_warn(d, lo, hi, "%s", text);
	pthread_mutex_lock(&d->lock);
	if (d->n_warns)
		d->warns[d->n_warns - 1].erase = true;
	pthread_mutex_unlock(&d->lock);
}

void dev_flash_covered(esp_device *d, uint32_t lo, uint32_t hi)
{
	bool changed = false;
	pthread_mutex_lock(&d->lock);
	for (int i = d->n_warns - 1; i >= 0; i--) {
		struct dev_warn *w = &d->warns[i];
		if (w->erase && lo < w->hi && hi > w->lo) {
			drop_warn(d, i);
			changed = true;
			continue;
		}
		/* a rewrite comes in pieces from the start (cp) or as a whole;
		 * a piece in the middle leaves the warning as it is */
		if (lo <= w->lo && hi > w->lo)
			w->lo = hi;
		if (hi >= w->hi && lo < w->hi)
			w->hi = lo;
		if (w->hi <= w->lo) {
			drop_warn(d, i);
			changed = true;
		}
	}
	/* the flash changed: what the last boot log said no longer holds */
	changed |= d->bootwarn[0] != 0;
	d->bootwarn[0] = 0;
	pthread_mutex_unlock(&d->lock);
	if (changed)
		dev_state_changed(d);
}

void device_flash_incomplete(esp_device *d, int err, uint32_t lo, uint32_t hi, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	dev_flash_warn(d, lo, hi, "%s", msg);
	device_set_error(d, err, "%s", msg);
	dev_journal_sync(d);
}

void device_flash_ack(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	d->n_warns = 0;
	d->bootwarn[0] = 0;
	pthread_mutex_unlock(&d->lock);
	dev_clear_error(d);
	dev_journal_sync(d);
	dev_state_changed(d);
}

uint32_t device_write_limit(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	uint32_t s = d->id.known && d->id.flash_size && !d->flash_size_guessed ? d->id.flash_size
										: UINT32_MAX;
	pthread_mutex_unlock(&d->lock);
	return s;
}

void device_set_error(esp_device *d, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	dev_set_errorv(d, err, fmt, ap);
	va_end(ap);
}

static const char *errno_name(int e)
{
	switch (e) {
	case ETIMEDOUT: return "ETIMEDOUT";
	case ENODEV: return "ENODEV";
	case EBUSY: return "EBUSY";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case EINVAL: return "EINVAL";
	case EIO: return "EIO";
	case EPROTO: return "EPROTO";
	case EACCES: return "EACCES";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EINTR: return "EINTR";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ENOMEM: return "ENOMEM";
	case EAGAIN: return "EAGAIN";
	default: return "error";
	}
}

static const char *job_verb(enum dev_job_kind k)
{
	switch (k) {
	case DEV_JOB_READ: return "reading";
	case DEV_JOB_WRITE: return "writing";
	case DEV_JOB_ERASE: return "erasing";
	case DEV_JOB_PROVISION: return "provisioning";
	case DEV_JOB_RESET: return "resetting";
	case DEV_JOB_BOOT_GET: return "reading";
	case DEV_JOB_BOOT_SET: return "switching";
	}
	return "busy";
}

/* "<mode> idle" | "<mode> <verb> <what> <progress>" | "<mode> error <ERRNO>: <reason>"
 * | "<mode> warning: <what the flash holds>".  A standing warning (an
 * unfinished write or erase, a boot loop) follows the error, or takes the
 * place of "idle": a later job's success does not make it untrue. */
size_t device_state_text(esp_device *d, char *buf, size_t cap)
{
	int n;
	pthread_mutex_lock(&d->lock);
	struct dev_job *j = d->current;
	/* the standing warnings, "; "-joined (each once: an error that is
	 * one of them is not repeated) */
	char warn[DEV_MAX_WARNS * (sizeof d->warns[0].text + 64)] = "";
	size_t wl = 0;
	for (int i = 0; i < d->n_warns; i++) {
		if (d->err && strstr(d->errmsg, d->warns[i].text))
			continue;
		const struct dev_warn *w = &d->warns[i];
		wl += (size_t)snprintf(warn + wl, sizeof warn - wl, "%s%s", wl ? "; " : "", w->text);
		if (w->lo != w->lo0 || w->hi != w->hi0)  /* written again in part since */
			wl += (size_t)snprintf(warn + wl, sizeof warn - wl,
					       " [0x%x-0x%x of it not yet written again]", w->lo, w->hi);
	}
	const char *boot = d->bootwarn;
	if (j && d->wait_download_until_ms) {
		uint64_t now = esp_now_us(esp_clock_real()) / 1000;
		unsigned left = now < d->wait_download_until_ms
					? (unsigned)((d->wait_download_until_ms - now + 999) / 1000) : 0;
		n = snprintf(buf, cap, "%s waiting for download mode: hold BOOT, press RESET "
			     "(%s %s, %u s left)\n", d->mode, job_verb(j->kind),
			     j->what[0] ? j->what : "flash", left);
	} else if (j && j->kind == DEV_JOB_PROVISION) {
		/* no SSID: state is readable by every user (docs/files.md) */
		n = snprintf(buf, cap, "%s provisioning wifi\n", d->mode);
	} else if (j && j->prog_stream) {
		n = snprintf(buf, cap, "%s %s %s at 0x%llx (%llu bytes so far)\n", d->mode,
			     job_verb(j->kind), j->what[0] ? j->what : "flash",
			     (unsigned long long)j->offset + d->prog_done,
			     (unsigned long long)(j->prog_base + d->prog_done));
	} else if (j) {
		uint64_t total = j->prog_total ? j->prog_total : j->len;
		uint64_t done = (j->prog_total ? j->prog_base : 0) + d->prog_done;
		if (total && j->kind != DEV_JOB_RESET)
			n = snprintf(buf, cap, "%s %s %s at 0x%x: %llu%% (%llu/%llu bytes)\n", d->mode,
				     job_verb(j->kind), j->what[0] ? j->what : "flash", j->offset,
				     (unsigned long long)(done * 100 / total), (unsigned long long)done,
				     (unsigned long long)total);
		else
			n = snprintf(buf, cap, "%s %s %s\n", d->mode, job_verb(j->kind),
				     j->what[0] ? j->what : "");
	} else if (d->err) {
		/* the error usually is the warning (set together): once */
		bool w = warn[0] != 0;
		bool b = boot[0] && !strstr(d->errmsg, boot);
		n = snprintf(buf, cap, "%s error %s: %s%s%s%s%s\n", d->mode, errno_name(d->err),
			     d->errmsg, w ? "; also: " : "", w ? warn : "", b ? "; also: " : "",
			     b ? boot : "");
	} else if (warn[0] || boot[0]) {
		n = snprintf(buf, cap, "%s warning: %s%s%s%s%s\n", d->mode, warn,
			     warn[0] && boot[0] ? "; " : "", boot, d->note[0] ? "; " : "", d->note);
	} else if (d->note[0]) {
		n = snprintf(buf, cap, "%s %s\n", d->mode, d->note);
	} else {
		n = snprintf(buf, cap, "%s idle\n", d->mode);
	}
	pthread_mutex_unlock(&d->lock);
	if (n < 0)
		n = 0;
	if ((size_t)n >= cap && cap) {
		buf[cap - 2 < cap ? cap - 2 : 0] = '\n';
		n = (int)cap - 1;
	}
	return (size_t)n;
}

unsigned device_state_gen(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	unsigned g = d->state_gen;
	pthread_mutex_unlock(&d->lock);
	return g;
}

size_t device_wifi_text(esp_device *d, char *buf, size_t cap)
{
	int n;
	pthread_mutex_lock(&d->lock);
	char ssid[4 * sizeof d->wifi_ssid];  /* an SSID may hold any bytes */
	esp_text_escape(ssid, sizeof ssid, d->wifi_ssid, strlen(d->wifi_ssid));
	if (ssid[0])
		n = snprintf(buf, cap, "%s %s\n", d->wifi_status, ssid);
	else
		n = snprintf(buf, cap, "%s\n", d->wifi_status);
	pthread_mutex_unlock(&d->lock);
	if (n < 0)
		n = 0;
	return (size_t)n < cap ? (size_t)n : cap ? cap - 1 : 0;
}

int device_sim_unplug(esp_device *d)
{
	if (!d->sim)
		return -EOPNOTSUPP;
	sim_unplug(d->sim);
	pthread_mutex_lock(&d->lock);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

int device_sim_replug(esp_device *d)
{
	if (!d->sim)
		return -EOPNOTSUPP;
	if (sim_get_mode(d->sim) != SIM_MODE_OFF)
		return -EINVAL;
	struct sim_faults none;
	memset(&none, 0, sizeof none);
	sim_set_faults(d->sim, &none);
	pthread_mutex_lock(&d->lock);
	d->sim_socket++;  /* another socket: a new physical path */
	pthread_mutex_unlock(&d->lock);
	sim_replug(d->sim);
	return 0;
}

int device_sim_unplug_at(esp_device *d, int pct)
{
	if (!d->sim)
		return -EOPNOTSUPP;
	if (pct < 1 || pct > 100)
		return -EINVAL;
	struct sim_faults f;
	memset(&f, 0, sizeof f);
	f.unplug_at_percent = pct;
	sim_set_faults(d->sim, &f);
	return 0;
}

int device_sim_fault(esp_device *d, const char *name)
{
	if (!d->sim)
		return -EOPNOTSUPP;
	struct sim_faults f;
	memset(&f, 0, sizeof f);
	if (!strcmp(name, "stall"))
		f.stall = true;
	else if (!strcmp(name, "program-fail"))
		f.flash_program_fail = true;
	else if (!strcmp(name, "garbage"))
		f.garbage = true;
	else if (strcmp(name, "none"))
		return -EINVAL;
	sim_set_faults(d->sim, &f);
	return 0;
}

int device_sim_corrupt(esp_device *d, double rate)
{
	if (!d->sim)
		return -EOPNOTSUPP;
	if (!(rate >= 0 && rate <= 1))
		return -EINVAL;
	struct sim_faults f;
	memset(&f, 0, sizeof f);
	f.corrupt_rate = rate;
	f.seed = 1;
	sim_set_faults(d->sim, &f);
	return 0;
}

int device_sim_buttons(esp_device *d, int boot, bool press_reset)
{
	if (!d->sim)
		return -EOPNOTSUPP;
	if (boot >= 0)
		sim_button_boot(d->sim, boot);
	if (press_reset)
		sim_button_reset(d->sim);
	return 0;
}

int device_sim_download(esp_device *d)
{
	if (!d->sim)
		return -EOPNOTSUPP;
	sim_button_boot(d->sim, true);
	sim_button_reset(d->sim);
	sim_button_boot(d->sim, false);
	return 0;
}
