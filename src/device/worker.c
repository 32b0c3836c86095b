/* The worker thread of one device: the only code that touches its port.
 * It attaches (identity), then runs queued jobs in order and, once the
 * queue has been idle for a moment, resets the chip from the loader back
 * into its application so a flashed image starts. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "device_i.h"
#include "espfs/clock.h"
#include "espfs/log.h"

/* Long enough that the chunks of one cp/dd never see a reset in between. */
#define LOADER_IDLE_MS 700

static void fail_queue(esp_device *d, int rc)
{
	for (;;) {
		pthread_mutex_lock(&d->lock);
		struct dev_job *j = d->qhead;
		if (j) {
			d->qhead = j->next;
			if (!d->qhead)
				d->qtail = NULL;
		}
		pthread_mutex_unlock(&d->lock);
		if (!j)
			return;
		j->rc = rc;
		snprintf(j->err, sizeof j->err, "%s: device is gone", d->name);
		if (j->done)
			j->done(j);
	}
}

static void deadline_in(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Keep workers off one of the CPUs this process may use (when it may use
 * two or more).  Measured on 2 cores with 8 devices flashing: the workers'
 * CPU bursts (deflate of the next 256 KiB at each job boundary, and the
 * simulated devices' model) occupied both cores, and a nice value did not
 * help: a woken FUSE thread or the client blocked in stat() still waited
 * for the next scheduler tick, so metadata calls took 4, 8, 12 ms.  With
 * one core left to everything else they stay well under a millisecond;
 * the workers need far less than the rest of the cores. */
static void leave_a_cpu_free(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) < 0 || CPU_COUNT(&set) < 2)
		return;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set)) {
			CPU_CLR(c, &set);
			break;
		}
	if (sched_setaffinity(0, sizeof set, &set) < 0)
		LOGD("cannot set the worker's CPU affinity: %s", strerror(errno));
}

/* What a write or erase left in the flash.  A success covers its range
 * (it holds what was asked for now); a failure after the flash was
 * touched leaves a standing warning over the range whose content nobody
 * asked for (j->err says what is known of it); the journal follows. */
static void flash_outcome(esp_device *d, struct dev_job *j)
{
	uint32_t lo, hi;
	if (j->kind == DEV_JOB_WRITE) {
		lo = j->offset & ~(ESP_SECTOR - 1);
		uint64_t e = ((uint64_t)j->offset + j->len + ESP_SECTOR - 1) & ~(uint64_t)(ESP_SECTOR - 1);
		hi = e > UINT32_MAX ? UINT32_MAX : (uint32_t)e;
	} else if (j->kind == DEV_JOB_ERASE) {
		lo = j->len ? j->offset : 0;
		hi = j->len ? j->offset + j->len : device_flash_size(d);
	} else {
		return;
	}
	if (j->rc == 0)
		dev_flash_covered(d, lo, hi);
	else if (j->touched_flash && j->kind == DEV_JOB_ERASE)
		dev_erase_warn(d, lo, hi, j->err);
	else if (j->touched_flash)
		dev_flash_warn(d, lo, hi, "%s", j->err);
	else
		return;
	dev_journal_sync(d);
}

void *dev_worker_main(void *arg)
{
	esp_device *d = arg;

	/* Workers compress and (for simulated devices) run the device model;
	 * with many devices busy on few cores they must not crowd out the
	 * FUSE threads that answer stat/cat in milliseconds.  Linux applies
	 * a thread id's nice value and affinity (pid 0) to that thread alone. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), 5) < 0)
		LOGD("%s: cannot lower the worker's priority", d->name);
	leave_a_cpu_free();

	dev_attach(d);
	pthread_mutex_lock(&d->lock);
	d->attached = true;
	pthread_mutex_unlock(&d->lock);
	if (d->mgr)
		devmgr_device_ready(d->mgr, d);

	for (;;) {
		pthread_mutex_lock(&d->lock);
		while (!d->qhead && !d->stop && !d->gone) {
			if (d->replugged) {
				/* the port is back (debounced hotplug): same folder,
				 * fresh look at what is plugged in */
				d->replugged = false;
				pthread_mutex_unlock(&d->lock);
				dev_reattach(d);
				pthread_mutex_lock(&d->lock);
			} else if (d->port_missing) {
				pthread_cond_wait(&d->cond, &d->lock);
			} else if (d->port_busy) {
				/* another program has the port: look again each
				 * second; state names the holder meanwhile */
				struct timespec ts;
				deadline_in(&ts, 1000);
				if (pthread_cond_timedwait(&d->cond, &d->lock, &ts) == ETIMEDOUT &&
				    !d->qhead && !d->stop && !d->gone) {
					pthread_mutex_unlock(&d->lock);
					if (dev_attach(d) == 0) {
						dev_clear_error(d);  /* the holder's name is history */
						LOGI("%s: the port is free now", d->name);
						dev_event(d, DEV_EV_ADDED);
					}
					dev_state_changed(d);
					pthread_mutex_lock(&d->lock);
				}
			} else if (d->reset_pending) {
				struct timespec ts;
				deadline_in(&ts, LOADER_IDLE_MS);
				if (pthread_cond_timedwait(&d->cond, &d->lock, &ts) == ETIMEDOUT &&
				    !d->qhead && !d->stop) {
					d->reset_pending = false;
					pthread_mutex_unlock(&d->lock);
					dev_leave_loader(d);
					pthread_mutex_lock(&d->lock);
				}
			} else if (d->waiting_download) {
				struct timespec ts;
				deadline_in(&ts, 1000);
				if (pthread_cond_timedwait(&d->cond, &d->lock, &ts) == ETIMEDOUT &&
				    !d->qhead && !d->stop && !d->gone) {
					pthread_mutex_unlock(&d->lock);
					int rr = dev_reprobe(d);
					if (rr == 0)
						dev_event(d, DEV_EV_ADDED);  /* identity: by-mac link */
					else if (rr == -ENODEV && !d->hotplug)
						dev_mark_gone(d);
					pthread_mutex_lock(&d->lock);
				}
			} else if (d->tr && !d->in_loader && dev_console_live(d)) {
				/* the application has the port: its output goes to
				 * the console, typed input to it; a queued job ends
				 * the wait within PUMP_WAIT_MS */
				pthread_mutex_unlock(&d->lock);
				dev_console_pump(d);
				pthread_mutex_lock(&d->lock);
			} else {
				pthread_cond_wait(&d->cond, &d->lock);
			}
		}
		if (d->stop || d->gone) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		struct dev_job *j = d->qhead;
		d->qhead = j->next;
		if (!d->qhead)
			d->qtail = NULL;
		d->current = j;
		d->prog_done = 0;
		pthread_mutex_unlock(&d->lock);
		dev_state_changed(d);
		dev_console_pause(d, j->what[0] ? j->what : NULL);

		int rc;
		pthread_mutex_lock(&d->lock);
		bool lost = d->port_missing;
		pthread_mutex_unlock(&d->lock);
		if (d->port_busy) {
			/* not ours to use: say who has it, keep the folder */
			rc = -EBUSY;
			snprintf(j->err, sizeof j->err, "%s", d->busy_msg);
		} else if (lost) {
			/* unplugged, folder kept for the debounce window: fail
			 * fast and keep the state line of the first failure */
			rc = -ENODEV;
			snprintf(j->err, sizeof j->err, "%s: device unplugged", d->name);
		} else if (atomic_load(&j->cancel) || (j->group_cancel && atomic_load(j->group_cancel))) {
			rc = -EINTR;
			snprintf(j->err, sizeof j->err, "cancelled");
		} else {
			rc = dev_run_job(d, j);
			/* the port re-enumerated (native USB switching modes): once
			 * more on the new port; jobs are idempotent */
			if (rc == -ENODEV && dev_reopen(d) == 0) {
				j->err[0] = 0;
				rc = dev_run_job(d, j);
			}
		}
		j->rc = rc;
		flash_outcome(d, j);

		pthread_mutex_lock(&d->lock);
		d->current = NULL;
		pthread_mutex_unlock(&d->lock);
		bool boot = d->in_loader && dev_can_leave_loader(d) && dev_has_bootloader(d);
		LOGD("%s: job done (%d); %s", d->name, rc,
		     boot ? "reset into the application when idle" : "no reset pending");
		pthread_mutex_lock(&d->lock);
		d->reset_pending = boot;
		pthread_mutex_unlock(&d->lock);
		/* a job that left the chip in its application (provisioning,
		 * one that never reached the loader) gives the console back;
		 * otherwise the reset into the application does */
		if (!d->in_loader && d->tr && rc != -ENODEV && !d->waiting_download)
			dev_console_resume(d);
		if (rc == -ENODEV && d->hotplug) {
			/* the registry decides, after its debounce window, whether
			 * this was an unplug; until then the folder says so, and
			 * the port coming back re-attaches it */
			if (!lost) {
				pthread_mutex_lock(&d->lock);
				d->port_missing = true;
				d->reset_pending = false;
				pthread_mutex_unlock(&d->lock);
				dev_set_mode(d, "unplugged");
				device_set_error(d, rc, "%s", j->err[0] ? j->err : strerror(-rc));
			}
		} else if (rc == -ENODEV) {
			dev_mark_gone(d);
		}
		else if (rc < 0 && j->kind != DEV_JOB_READ)
			/* a cancel too: a cancelled erase says what it erased (the
			 * writers of flash.bin and staged files then say what the
			 * whole upload left) */
			device_set_error(d, rc, "%s", j->err[0] ? j->err : strerror(-rc));
		else if (rc == 0 && j->kind != DEV_JOB_READ)
			dev_clear_error(d);
		dev_state_changed(d);
		if (j->done)
			j->done(j);
	}
	fail_queue(d, -ENODEV);
	device_unref(d);
	return NULL;
}

void dev_mark_gone(esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	bool was = d->gone;
	d->gone = true;
	snprintf(d->mode, sizeof d->mode, "unplugged");
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (!was) {
		LOGI("%s: device gone", d->name);
		dev_event(d, DEV_EV_REMOVED);
	}
}
