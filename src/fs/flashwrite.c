/* Writes to flash.bin: bytes stream to the device as they are written
 * (bounded buffering, so cp/pv progress is the truth), at any offset;
 * partial sectors are read-modify-written by the device job.  The commit
 * point is the first flush/fsync after data was written: it sends what is
 * still buffered and answers once every chunk is written and verified by
 * MD5.  Images for another chip, or an app where the bootloader belongs,
 * are refused in write() before anything is erased.  Ctrl-C (FUSE
 * interrupt) cancels between blocks; state then says the flash is
 * incomplete.  FUSE-NOTES.md parts 2b/2c and 3. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/log.h"
#include "vfs.h"

/* Each job is one esp_loader_write_flash: its skip-same probe, its
 * FLASH_DEFL_END barrier (the link idles while the last block programs)
 * and its MD5 check cost 40-90 ms at a job's end, which favours big jobs
 * (384 KiB made a C3 cp at 921600 1% faster than 256 KiB).  But
 * everything acknowledged to the writer is progress a pv or file manager
 * shows before the chip has it.  So one job runs while the next CHUNK
 * fills, and a writer's answer waits while what it was told is written
 * but the chip has not yet taken (the running job's rest plus the
 * buffer) is LEAD or more; the job's progress lets it go on.  A cp's
 * progress thus runs at most LEAD plus one write() (128 KiB) ahead of
 * the chip, ~3 s at 921600, and 8 devices flashing hold ~4 MiB. */
#define CHUNK (256u * 1024)
#define LEAD CHUNK
/* A writer may lead by LEAD plus one write(): cp's 128 KiB writes thus
 * fill the buffer to 384 KiB by the time a job ends, and the next job
 * takes all of it.  Smaller writes (dd bs=4k, curl's 4-16 KiB) get the
 * same room, LEAD + WRITE_ROOM - their size rounded up to whole erase
 * blocks (384 KiB), so their jobs are as big as cp's: with LEAD alone
 * they were ~260 KiB each, a job more per MB, and each job's start and
 * end cost 40-90 ms (dd bs=4k was 5% slower). */
#define WRITE_ROOM (128u * 1024)
/* A job that ends inside a 64 KiB block splits it between two jobs, and
 * the chip then erases that block as 16 sectors (the ROM and the stubs
 * erase a block in one command only where a job covers all of it): 16 x
 * 45 ms against 150 ms on a W25Q32JV.  curl's writes (16, 4, 12, 4, 12
 * KiB ...) made jobs end at 0x42000, 0x9f000, 0xff000: 10% slower than
 * cp, whose 128 KiB writes end jobs on blocks.  So a job in the middle of
 * a stream ends on a block boundary; the rest waits for the next job. */
#define ERASE_BLOCK 0x10000u
#define MAX_INFLIGHT 1
#define MAX_WAITERS 8
/* enough to judge an image at offset 0 (image.h: ESP_IMAGE_CHECK_PREFIX) */
#define ESP_IMAGE_CHECK_BYTES 0x1100u

struct flash_writer {
	pthread_mutex_t lock;
	esp_device *dev;
	/* the window written: [base, base+fsize) of the flash; offsets below
	 * (pend_off, first_off, next_contig) are relative to base */
	uint32_t base, fsize;
	char name[48];             /* "flash.bin", "partitions/nvs" */
	bool app_only;             /* an app partition: only an app may start it */
	uint8_t *pend;
	size_t pend_len, pend_cap;
	uint32_t pend_off;
	uint64_t dirty;            /* bytes written since the last commit */
	uint64_t sent;             /* bytes written and verified, this upload */
	uint64_t handed;           /* bytes handed to the device, this upload */
	uint64_t run_done;         /* of the running job: bytes the device took */
	bool flash_touched;        /* a job of this upload got as far as the flash */
	uint32_t first_off;
	uint64_t next_contig;      /* end of the last dispatch */
	bool have_next;
	bool stream_checked;       /* the start of this stream passed the image check */
	size_t wsize_max;          /* largest write() of this upload */
	bool short_tail;           /* the last write() was shorter and ended inside a
				    * sector: likely the file's end */
	int inflight;
	int sticky;                /* first error of this upload (positive errno) */
	atomic_int cancel;
	fuse_req_t wait_w[MAX_WAITERS];
	size_t wait_wsize[MAX_WAITERS];
	int n_wait_w;
	fuse_req_t wait_commit;
	bool released;
	/* an upload stopped with jobs still running: what to say once the
	 * last one is over (what the flash holds is known only then) */
	const char *stop_why;
	int stop_err;
};

struct fw_job {
	struct dev_job j;
	struct flash_writer *fw;
};

/* The commit answered: the next write starts a new upload. */
static void upload_done(struct flash_writer *fw)
{
	fw->sticky = 0;
	fw->dirty = 0;
	fw->sent = 0;
	fw->handed = 0;
	fw->run_done = 0;
	fw->flash_touched = false;
	fw->have_next = false;
	fw->wsize_max = 0;
	fw->short_tail = false;
}

static void fw_free(struct flash_writer *fw)
{
	pthread_mutex_destroy(&fw->lock);
	device_unref(fw->dev);
	free(fw->pend);
	free(fw);
}

struct flash_writer *fw_open_range(esp_device *d, uint32_t base, uint32_t size, const char *name,
				   bool app_only)
{
	struct flash_writer *fw = calloc(1, sizeof *fw);
	if (!fw)
		return NULL;
	pthread_mutex_init(&fw->lock, NULL);
	device_ref(d);
	fw->dev = d;
	fw->base = base;
	fw->fsize = size;
	fw->app_only = app_only;
	snprintf(fw->name, sizeof fw->name, "%s", name);
	atomic_init(&fw->cancel, 0);
	return fw;
}

struct flash_writer *fw_open(esp_device *d)
{
	return fw_open_range(d, 0, device_write_limit(d), "flash.bin", false);
}

bool fw_busy(struct flash_writer *fw)
{
	pthread_mutex_lock(&fw->lock);
	bool b = fw->pend_len || fw->inflight;
	pthread_mutex_unlock(&fw->lock);
	return b;
}

bool fw_active(struct flash_writer *fw)
{
	pthread_mutex_lock(&fw->lock);
	bool b = fw->dirty || fw->pend_len || fw->inflight;
	pthread_mutex_unlock(&fw->lock);
	return b;
}

bool fw_read_overlay(struct flash_writer *fw, uint32_t off, size_t len, uint8_t **ov,
		     uint32_t *ov_off, size_t *ov_len)
{
	*ov = NULL;
	*ov_off = 0;
	*ov_len = 0;
	pthread_mutex_lock(&fw->lock);
	uint64_t a = off > fw->pend_off ? off : fw->pend_off;
	uint64_t b = (uint64_t)off + len;
	uint64_t pend_end = (uint64_t)fw->pend_off + fw->pend_len;
	if (pend_end < b)
		b = pend_end;
	if (fw->pend_len && a < b) {
		*ov = malloc(b - a);
		if (*ov) {
			memcpy(*ov, fw->pend + (a - fw->pend_off), b - a);
			*ov_off = (uint32_t)a;
			*ov_len = b - a;
		}
	}
	/* bytes handed to the device are on the chip once its queued jobs
	 * ran: a read job queues behind them (the cached head may be older) */
	bool queued = fw->inflight > 0;
	pthread_mutex_unlock(&fw->lock);
	return queued;
}

static void on_interrupt(fuse_req_t req, void *data)
{
	struct flash_writer *fw = data;
	(void)req;
	atomic_store(&fw->cancel, 1);
}

static void reply_detached(fuse_req_t req, int err, size_t wsize)
{
	fuse_req_interrupt_func(req, NULL, NULL);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_write(req, wsize);
}

/* why: the failed job's reason (it says what the flash holds in its range)
 * or what stopped the upload between jobs.  The range from the start of
 * the upload to the end of what was handed to the chip holds part of the
 * new data: a standing warning (device_flash_incomplete) until it is
 * written again. */
static void mark_incomplete(struct flash_writer *fw, int err, const char *why)
{
	if (fw->handed && (fw->sent || fw->flash_touched)) {
		uint64_t end = fw->base + (fw->have_next && fw->next_contig > fw->first_off
					? fw->next_contig : (uint64_t)fw->first_off + fw->handed);
		uint32_t lo = fw->base + fw->first_off;
		end = (end + ESP_SECTOR - 1) & ~(uint64_t)(ESP_SECTOR - 1);
		device_flash_incomplete(fw->dev, err, lo, end > UINT32_MAX ? UINT32_MAX : (uint32_t)end,
				 "%s incomplete: %s; %llu bytes from 0x%x were written and "
				 "verified before that; the flash holds a partial image, write it "
				 "again (or \"ack\" to state)",
				 fw->name, why, (unsigned long long)fw->sent, lo);
	} else
		device_set_error(fw->dev, err, "%s: %s; nothing was written", fw->name, why);
}

static void job_done(struct dev_job *j);
static void job_progress(struct dev_job *j, uint64_t done);

/* Bounded buffering: a writer waits while the device has a job running
 * and the bytes accepted but not yet taken by the chip reach LEAD, or
 * more than one job is queued (writes at scattered offsets each dispatch
 * what was pending).  Called with fw->lock. */
static bool must_wait(const struct flash_writer *fw)
{
	uint64_t ahead = fw->handed - fw->sent - fw->run_done + fw->pend_len;
	uint64_t room = LEAD + (fw->wsize_max < WRITE_ROOM ? WRITE_ROOM - fw->wsize_max : 0);
	/* whole blocks, as a job takes whole blocks (dispatch_ready): 16 KiB
	 * writes held at 368 KiB made jobs of 320 KiB, one job more than
	 * cp's 384 KiB ones per image */
	room = (room + ERASE_BLOCK - 1) & ~(uint64_t)(ERASE_BLOCK - 1);
	return fw->inflight > MAX_INFLIGHT || (fw->inflight && ahead >= room);
}

/* Hand the first n pending bytes to the device.  Called with fw->lock. */
static int dispatch(struct flash_writer *fw, size_t n)
{
	struct fw_job *fj = calloc(1, sizeof *fj);
	size_t rest = fw->pend_len - n;
	uint8_t *tail = rest ? malloc(rest) : NULL;
	if (!fj || (rest && !tail)) {
		free(fj);
		free(tail);
		return -ENOMEM;
	}
	/* the job takes the buffer itself: no second copy of a CHUNK */
	uint8_t *data = fw->pend;
	if (rest)
		memcpy(tail, data + n, rest);
	fw->pend = tail;
	fw->pend_cap = rest;
	fj->fw = fw;
	fj->j.kind = DEV_JOB_WRITE;
	fj->j.offset = fw->base + fw->pend_off;
	fj->j.len = (uint32_t)n;
	fj->j.buf = data;
	fj->j.prog_stream = true;
	fj->j.prog_base = fw->handed;
	fj->j.group_cancel = &fw->cancel;
	fj->j.done = job_done;
	fj->j.progress = job_progress;
	snprintf(fj->j.what, sizeof fj->j.what, "%s", fw->name);
	atomic_init(&fj->j.cancel, 0);
	if (!fw->handed)
		fw->first_off = fw->pend_off;
	fw->handed += n;
	fw->next_contig = (uint64_t)fw->pend_off + n;
	fw->have_next = true;
	fw->pend_len = rest;
	fw->pend_off += (uint32_t)n;
	fw->inflight++;
	int rc = device_submit(fw->dev, &fj->j);
	if (rc < 0) {
		fw->inflight--;
		free(data);
		free(fj);
	}
	return rc;
}

/* Refuse images that do not belong where they are written, before the
 * first byte of a new stream reaches the chip; final: what is pending is
 * all the stream will hold (an app partition's check may otherwise wait
 * for more bytes).  Called with fw->lock. */
static int check_pending(struct flash_writer *fw, bool final)
{
	char why[240];
	if (fw->stream_checked)
		return 0;
	uint32_t at = fw->base + fw->pend_off;
	int rc = fw->app_only ? device_app_check(fw->dev, at, fw->pend, fw->pend_len, final, why, sizeof why)
			      : device_image_check(fw->dev, at, fw->pend, fw->pend_len, why, sizeof why);
	if (rc == -EAGAIN)
		return 0;
	fw->stream_checked = rc == 0;
	if (rc < 0) {
		device_set_error(fw->dev, rc, "%s: refused: %s", fw->name, why);
		LOGW("%s: %s write refused: %s", device_name(fw->dev), fw->name, why);
	}
	return rc;
}

/* A CHUNK is waiting and the device is free: hand it over.  Whole erase
 * blocks only (ERASE_BLOCK), keeping the rest for the next job, unless
 * the last write looks like the file's end (cp's and dd's last): then it
 * is all of the data, and the upload ends without a separate job for its
 * last sectors.  Called with fw->lock. */
static int dispatch_ready(struct flash_writer *fw)
{
	if (fw->pend_len < CHUNK || fw->inflight >= MAX_INFLIGHT || fw->sticky)
		return 0;
	/* blocks of the flash, not of the window (a partition may start
	 * inside one: nvs at 0x9000) */
	uint64_t start = (uint64_t)fw->base + fw->pend_off, end = start + fw->pend_len;
	if (!fw->short_tail)
		end &= ~(uint64_t)(ERASE_BLOCK - 1);
	size_t n = end > start ? (size_t)(end - start) : 0;
	int rc = check_pending(fw, false);
	if (rc == 0 && n)
		rc = dispatch(fw, n);
	return rc;
}

/* The writers held back, to be answered once fw->lock is released.
 * Called with fw->lock. */
static int take_waiters(struct flash_writer *fw, fuse_req_t wreq[MAX_WAITERS], size_t wsize[MAX_WAITERS])
{
	int nw = fw->n_wait_w;
	memcpy(wreq, fw->wait_w, nw * sizeof *wreq);
	memcpy(wsize, fw->wait_wsize, nw * sizeof *wsize);
	fw->n_wait_w = 0;
	return nw;
}

/* Writers held back by LEAD go on as the chip takes the data. */
static void job_progress(struct dev_job *j, uint64_t done)
{
	struct flash_writer *fw = ((struct fw_job *)j)->fw;
	fuse_req_t wreq[MAX_WAITERS];
	size_t wsize[MAX_WAITERS];
	int nw = 0;
	pthread_mutex_lock(&fw->lock);
	fw->run_done = done;
	if (!must_wait(fw))
		nw = take_waiters(fw, wreq, wsize);
	pthread_mutex_unlock(&fw->lock);
	for (int i = 0; i < nw; i++)
		reply_detached(wreq[i], 0, wsize[i]);
}

static void job_done(struct dev_job *j)
{
	struct fw_job *fj = (struct fw_job *)j;
	struct flash_writer *fw = fj->fw;
	fuse_req_t wreq[MAX_WAITERS];
	size_t wsize[MAX_WAITERS];
	int nw = 0, werr = 0, cerr = 0;
	fuse_req_t creq = NULL;

	pthread_mutex_lock(&fw->lock);
	fw->inflight--;
	fw->run_done = 0;
	fw->flash_touched |= j->touched_flash;
	if (j->rc == 0) {
		fw->sent += j->len;
	} else if (!fw->sticky) {
		fw->sticky = -j->rc;
		if (j->rc == -EINTR && !j->touched_flash)
			mark_incomplete(fw, EINTR, "interrupted");
		else  /* incl. ENODEV: a replugged device shows where it stopped */
			mark_incomplete(fw, -j->rc, j->err);
	}
	/* A CHUNK waiting and no writer held back (it went on to flush, or
	 * is reading its next block): start it now rather than at the next
	 * write().  A writer held back gets its answer instead, and its next
	 * write dispatches the CHUNK with that write in it: fewer, bigger
	 * jobs (each one costs a flash session's start and end). */
	if (!fw->wait_commit && !fw->n_wait_w && !atomic_load(&fw->cancel)) {
		int rc = dispatch_ready(fw);
		if (rc < 0 && !fw->sticky) {
			fw->pend_len = 0;
			fw->sticky = -rc;
		}
	}
	if (!must_wait(fw) || fw->sticky) {
		nw = take_waiters(fw, wreq, wsize);
		werr = fw->sticky;
	}
	if (fw->inflight == 0 && fw->stop_why) {
		mark_incomplete(fw, fw->stop_err, fw->stop_why);
		fw->stop_why = NULL;
	}
	if (fw->inflight == 0 && fw->wait_commit) {
		creq = fw->wait_commit;
		fw->wait_commit = NULL;
		cerr = fw->sticky;
		upload_done(fw);
		atomic_store(&fw->cancel, 0);
	}
	bool free_it = fw->released && fw->inflight == 0;
	pthread_mutex_unlock(&fw->lock);

	for (int i = 0; i < nw; i++)
		reply_detached(wreq[i], werr, wsize[i]);
	if (creq) {
		fuse_req_interrupt_func(creq, NULL, NULL);
		fuse_reply_err(creq, cerr);
	}
	free(j->buf);
	free(fj);
	if (free_it)
		fw_free(fw);
}

void fw_write(struct flash_writer *fw, fuse_req_t req, const char *buf, size_t size, off_t off)
{
	int err = 0;
	pthread_mutex_lock(&fw->lock);
	if (fw->sticky) {
		err = fw->sticky;
		goto out;
	}
	if (off < 0 || (uint64_t)off + size > fw->fsize) {
		device_set_error(fw->dev, EFBIG,
				 "%s: write of %zu bytes at 0x%llx ends past the end of the "
				 "%u-byte %s", fw->name, size, (unsigned long long)off, fw->fsize,
				 fw->base || fw->app_only ? "partition" : "flash");
		if (fw->handed || fw->pend_len) {
			/* the file is bigger than the window: what was handed
			 * on is the start of something that does not fit.  Stop
			 * the upload, and say what the flash holds once the
			 * running job is over (its commit then fails too). */
			fw->pend_len = 0;
			fw->sticky = EFBIG;
			atomic_store(&fw->cancel, 1);
			if (fw->inflight) {
				fw->stop_why = "the data runs past its end";
				fw->stop_err = EFBIG;
			} else
				mark_incomplete(fw, EFBIG, "the data runs past its end");
		}
		err = EFBIG;
		goto out;
	}
	if (fw->pend_len && (uint64_t)off != (uint64_t)fw->pend_off + fw->pend_len) {
		int rc = check_pending(fw, true);
		if (rc == 0)
			rc = dispatch(fw, fw->pend_len);
		if (rc < 0) {
			fw->pend_len = 0;
			err = -rc;
			goto out;
		}
	}
	if (!fw->pend_len) {
		if (!fw->have_next || fw->next_contig != (uint64_t)off)
			fw->stream_checked = false;  /* a new stream: judge its start */
		fw->pend_off = (uint32_t)off;
	}
	if (fw->pend_len + size > fw->pend_cap) {
		size_t nc = fw->pend_len + size + CHUNK;
		uint8_t *np = realloc(fw->pend, nc);
		if (!np) {
			err = ENOMEM;
			goto out;
		}
		fw->pend = np;
		fw->pend_cap = nc;
	}
	memcpy(fw->pend + fw->pend_len, buf, size);
	fw->pend_len += size;
	fw->dirty += size;
	if (size > fw->wsize_max)
		fw->wsize_max = size;
	/* a stream's middle is whole sectors in every tool's writes (cp 128
	 * KiB, dd bs=4k, curl 4-16 KiB, which alternate in size); a file's
	 * end rarely is */
	fw->short_tail = size < fw->wsize_max && ((uint64_t)off + size) % ESP_SECTOR;
	/* refuse in write(), where every tool reports it best */
	int rc = !fw->stream_checked && fw->pend_len >= ESP_IMAGE_CHECK_BYTES ? check_pending(fw, false) : 0;
	if (rc == 0)
		rc = dispatch_ready(fw);
	if (rc < 0) {
		fw->pend_len = 0;
		fw->dirty = 0;
		err = -rc;
		goto out;
	}
	if (must_wait(fw) && fw->n_wait_w < MAX_WAITERS) {
		/* bounded buffering: answer when the device caught up.  The
		 * interrupt callback only sets an atomic, so registering it
		 * under our lock cannot deadlock. */
		fuse_req_interrupt_func(req, on_interrupt, fw);
		fw->wait_w[fw->n_wait_w] = req;
		fw->wait_wsize[fw->n_wait_w] = size;
		fw->n_wait_w++;
		pthread_mutex_unlock(&fw->lock);
		return;
	}
out:
	pthread_mutex_unlock(&fw->lock);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_write(req, size);
}

void fw_commit(struct flash_writer *fw, fuse_req_t req)
{
	int err = 0;
	pthread_mutex_lock(&fw->lock);
	if (!fw->dirty && !fw->pend_len && !fw->inflight) {
		/* a flush with nothing written (bash/dd before the first write,
		 * `: > flash.bin`): never a commit */
		err = fw->sticky;
		fw->sticky = 0;
		goto out;
	}
	if (fuse_req_interrupted(req) || atomic_load(&fw->cancel)) {
		/* a killed writer: never flash what is still buffered */
		fw->pend_len = 0;
		atomic_store(&fw->cancel, 1);
		if (!fw->inflight) {
			if (!fw->sticky)  /* a failed job already said what it left */
				mark_incomplete(fw, EINTR, "interrupted");
			err = fw->sticky ? fw->sticky : EINTR;
			upload_done(fw);
			atomic_store(&fw->cancel, 0);
			goto out;
		}
	}
	if (fw->pend_len) {
		int rc = check_pending(fw, true);
		if (rc == 0)
			rc = dispatch(fw, fw->pend_len);
		if (rc < 0) {
			fw->pend_len = 0;
			if (!fw->inflight) {
				fw->dirty = 0;
				fw->sent = 0;
				fw->handed = 0;
				fw->flash_touched = false;
				err = -rc;
				goto out;
			}
			fw->sticky = fw->sticky ? fw->sticky : -rc;
		}
	}
	if (fw->inflight == 0) {
		err = fw->sticky;
		upload_done(fw);
		goto out;
	}
	fuse_req_interrupt_func(req, on_interrupt, fw);
	fw->wait_commit = req;
	pthread_mutex_unlock(&fw->lock);
	return;
out:
	pthread_mutex_unlock(&fw->lock);
	fuse_reply_err(req, err);
}

void fw_release(struct flash_writer *fw)
{
	pthread_mutex_lock(&fw->lock);
	fw->released = true;
	if (fw->pend_len || fw->inflight) {
		/* closed without a successful commit (killed writer) */
		if (fw->pend_len && !fw->inflight)
			mark_incomplete(fw, EINTR, "the writer went away");
		fw->pend_len = 0;
		atomic_store(&fw->cancel, 1);
	}
	bool free_now = fw->inflight == 0;
	pthread_mutex_unlock(&fw->lock);
	if (free_now)
		fw_free(fw);
}
