/* Staging files: anything created in a device folder (gio's
 * .goutputstream-*, KIO's *.part, rsync's .flash.bin.XXXXXX, a firmware
 * file dropped into the folder) is kept in RAM and flashed as a whole:
 *  - a rename onto flash.bin commits it (the rename answers with the result);
 *  - a flush of a visible name (not starting with '.') commits it, so a
 *    dropped "app.bin" or KIO's "flash.bin.part" is flashed at close;
 *  - the offset comes from the content (factory 0, bootloader, partition
 *    table 0x8000, app -> the device's app partition), or NAME@0xOFF.bin.
 * Committed files vanish from the folder a couple of seconds later. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/log.h"
#include "vfs.h"

#define LINGER_MS 2000

struct stage_job {
	struct dev_job j;
	fuse_req_t req;
	uint64_t ino;
	bool rename;
};

void stage_free(struct stage *s)
{
	if (!s)
		return;
	vfs.staged_bytes -= s->cap;
	free(s->buf);
	free(s);
}

bool stage_expired(struct node *n)
{
	struct stage *s = n->stage;
	/* refused files go too: the reason is in state, the source is intact */
	return s && ((s->committed && !s->dirty) || s->failed) && !s->committing &&
	       s->opens == 0 && now_ms() - s->committed_at_ms > LINGER_MS;
}

static int grow(struct stage *s, size_t want, uint32_t limit)
{
	if (want > limit)
		return -EFBIG;
	if (want <= s->cap)
		return 0;
	size_t nc = s->cap ? s->cap : 65536;
	while (nc < want)
		nc *= 2;
	if (nc > limit)
		nc = limit;
	if (vfs.staged_bytes + (nc - s->cap) > STAGING_RAM_CAP)
		return -ENOSPC;
	uint8_t *nb = realloc(s->buf, nc);
	if (!nb)
		return -ENOMEM;
	vfs.staged_bytes += nc - s->cap;
	s->buf = nb;
	s->cap = nc;
	return 0;
}

void stage_write(struct node *n, fuse_req_t req, const char *buf, size_t size, off_t off)
{
	int err = 0;
	pthread_mutex_lock(&vfs.lock);
	struct stage *s = n->stage;
	if (s->committing) {
		err = EBUSY;
	} else {
		int rc = off < 0 ? -EINVAL : grow(s, (size_t)off + size, device_flash_size(n->dev));
		if (rc < 0) {
			err = -rc;
		} else {
			if ((size_t)off > s->len)
				memset(s->buf + s->len, 0xFF, (size_t)off - s->len);
			memcpy(s->buf + off, buf, size);
			if ((size_t)off + size > s->len)
				s->len = (size_t)off + size;
			s->dirty = true;
			clock_gettime(CLOCK_REALTIME, &n->mtime);
		}
	}
	pthread_mutex_unlock(&vfs.lock);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_write(req, size);
}

int stage_truncate(struct node *n, off_t size)
{
	struct stage *s = n->stage;
	if (s->committing)
		return -EBUSY;
	if (size < 0)
		return -EINVAL;
	int rc = grow(s, (size_t)size, device_flash_size(n->dev));
	if (rc < 0)
		return rc;
	if ((size_t)size > s->len)
		memset(s->buf + s->len, 0xFF, (size_t)size - s->len);
	s->len = (size_t)size;
	s->dirty = true;
	return 0;
}

static void on_interrupt(fuse_req_t req, void *data)
{
	(void)req;
	device_job_cancel(data);
}

static void commit_done(struct dev_job *j)
{
	struct stage_job *sj = (struct stage_job *)j;
	pthread_mutex_lock(&vfs.lock);
	struct node *n = node_get(sj->ino);
	uint64_t dir = n ? n->parent : 0;
	if (n && n->stage) {
		n->stage->committing = false;
		n->stage->failed = j->rc != 0;
		n->stage->committed_at_ms = now_ms();
		if (j->rc == 0) {
			n->stage->dirty = false;
			n->stage->committed = true;
			n->stage->committed_at_ms = now_ms();
		}
		if (j->rc == 0 && sj->rename)
			node_remove(n);
	}
	pthread_mutex_unlock(&vfs.lock);
	if (j->rc == -EINTR)
		device_set_error(j->ctx, EINTR, "%s incomplete: interrupted; the flash holds a "
				 "partial image, write it again", j->what);
	if (sj->rename && j->rc == 0 && dir)
		notify_inval_entry(dir, "flash.bin");
	fuse_req_interrupt_func(sj->req, NULL, NULL);
	/* a rename's EINVAL reads as "subdirectory of itself" (stage_rename) */
	fuse_reply_err(sj->req, sj->rename && j->rc == -EINVAL ? ENOEXEC : -j->rc);
	free(j->buf);
	free(sj);
}

/* Start flashing n's content; replies to req when done.  Called with
 * vfs.lock held; returns 0 (req will be answered) or -errno. */
static int commit(struct node *n, fuse_req_t req, bool onto_flash_bin)
{
	struct stage *s = n->stage;
	char why[240], label[256];
	uint32_t off = 0;
	snprintf(label, sizeof label, "%s", n->name);
	size_t l = strlen(label);
	if (l > 5 && !strcmp(label + l - 5, ".part"))
		label[l - 5] = 0;  /* KIO: judge "x.bin.part" as "x.bin" */
	if (!strcmp(label, "flash.bin"))
		onto_flash_bin = true;
	if (s->len == 0) {
		device_set_error(n->dev, EINVAL, "%s: empty file, nothing flashed", label);
		return -EINVAL;
	}
	int rc = device_image_target(n->dev, s->buf, s->len, label, onto_flash_bin, &off, why,
				     sizeof why);
	if (rc < 0) {
		device_set_error(n->dev, rc, "refused: %s", why);
		LOGW("%s: %s refused: %s", device_name(n->dev), label, why);
		return rc;
	}
	struct stage_job *sj = calloc(1, sizeof *sj);
	uint8_t *copy = malloc(s->len);
	if (!sj || !copy) {
		free(sj);
		free(copy);
		return -ENOMEM;
	}
	memcpy(copy, s->buf, s->len);
	sj->req = req;
	sj->ino = n->ino;
	sj->rename = onto_flash_bin && strcmp(n->name, "flash.bin.part") != 0;
	sj->j.kind = DEV_JOB_WRITE;
	sj->j.offset = off;
	sj->j.len = (uint32_t)s->len;
	sj->j.buf = copy;
	sj->j.prog_total = s->len;
	sj->j.done = commit_done;
	sj->j.ctx = n->dev;
	atomic_init(&sj->j.cancel, 0);
	snprintf(sj->j.what, sizeof sj->j.what, "%.63s", label);
	fuse_req_interrupt_func(req, on_interrupt, &sj->j);
	s->committing = true;
	rc = device_submit(n->dev, &sj->j);
	if (rc < 0) {
		s->committing = false;
		fuse_req_interrupt_func(req, NULL, NULL);
		free(copy);
		free(sj);
		return rc;
	}
	return 0;
}

void stage_flush(struct node *n, fuse_req_t req)
{
	pthread_mutex_lock(&vfs.lock);
	struct stage *s = n->stage;
	int rc = 0;
	bool deferred = false;
	if (s->dirty && !s->committing && n->name[0] != '.') {
		if (fuse_req_interrupted(req)) {
			rc = -EINTR;
		} else {
			rc = commit(n, req, false);
			deferred = rc == 0;
		}
		if (rc < 0) {
			s->failed = true;
			s->committed_at_ms = now_ms();
		}
	}
	pthread_mutex_unlock(&vfs.lock);
	if (!deferred)
		fuse_reply_err(req, -rc);
}

void stage_rename(uint64_t parent, const char *name, fuse_req_t req, const char *newname)
{
	int rc = 0;
	pthread_mutex_lock(&vfs.lock);
	struct node *n = node_child(parent, name);
	if (!n) {
		rc = -ENOENT;
		goto out;
	}
	if (n->kind != N_STAGE) {
		rc = -EPERM;  /* the device's own files cannot move */
		goto out;
	}
	struct stage *s = n->stage;
	if (!strcmp(newname, "flash.bin")) {
		if (s->committing) {
			rc = -EBUSY;
		} else if (!s->dirty && s->committed) {
			node_remove(n);  /* KIO: flash.bin.part was flashed at close */
		} else {
			rc = commit(n, req, true);
			if (rc == 0) {
				pthread_mutex_unlock(&vfs.lock);
				return;
			}
		}
	} else {
		struct node *old = node_child(n->parent, newname);
		if (old && old->kind != N_STAGE) {
			rc = -EPERM;
		} else {
			if (old && old != n)
				node_remove(old);
			snprintf(n->name, sizeof n->name, "%s", newname);
		}
	}
out:
	pthread_mutex_unlock(&vfs.lock);
	/* rename(2) has no "bad image": its EINVAL means "a directory into
	 * itself" and mv says so.  A refused image answers ENOEXEC ("Exec
	 * format error"), as execve does for a binary it cannot run. */
	fuse_reply_err(req, rc == -EINVAL ? ENOEXEC : -rc);
}
