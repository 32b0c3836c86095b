/* Staging files: anything created in a device folder (gio's
 * .goutputstream-*, KIO's *.part, rsync's .NAME.XXXXXX, a firmware file
 * dropped into the folder) is kept in RAM and flashed as a whole, at the
 * offset its content implies (factory 0, bootloader, partition table
 * 0x8000, app -> the device's app partition) or NAME@0xOFF.bin.
 *
 * Who commits (FUSE-NOTES.md part 3): only the writer.
 *  - the close (flush) of a handle that wrote: rsync's temp file is judged
 *    by the NAME inside ".NAME.XXXXXX", KIO's "x.part" as "x", anything
 *    else by its own name;
 *  - the first fsync after data (gio fsyncs before its rename), so the
 *    rename has nothing left to wait for: the kernel holds the folder's
 *    lock during a rename and `ls` of the folder would hang for the flash;
 *  - a rename of data nobody committed yet commits it and answers with
 *    the result (the fallback; the folder's listing waits meanwhile).
 * A reader's close never commits; a file unlinked or replaced is dropped,
 * never flashed.  A leftover whose writer went away without a commit is
 * never flashed either (a file manager's sniff or a `head` of it cannot
 * flash it).  Committed and refused files vanish from the folder a couple
 * of seconds later (time for chmod/utimens after the copy), and their
 * memory goes back to the pool. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/log.h"
#include "vfs.h"

#define LINGER_MS 2000
/* a file its writer left uncommitted (rsync renames right after its
 * close; --delay-updates at the end of the run) */
#define LEFTOVER_MS 60000

/* What a commit does once the chip holds the file. */
enum then { THEN_ANSWER, THEN_REMOVE, THEN_RENAME };

struct stage_job {
	struct dev_job j;
	fuse_req_t req;
	uint64_t ino, dir_ino;
	enum then then;
	char newname[256];
};

void stage_free(struct stage *s)
{
	if (!s)
		return;
	vfs.staged_bytes -= s->cap;
	free(s->buf);
	free(s);
}

static void drop_data(struct stage *s)
{
	vfs.staged_bytes -= s->cap;
	free(s->buf);
	s->buf = NULL;
	s->len = s->cap = 0;
	s->dirty = false;
}

void stage_discard(struct node *n)
{
	struct stage *s = n->stage;
	if (s) {
		drop_data(s);
		s->discarded = true;
	}
	node_remove(n);
}

bool stage_expired(struct node *n)
{
	struct stage *s = n->stage;
	/* refused files go too: the reason is in state, the source is intact */
	if (!s || s->committing || s->opens)
		return false;
	uint64_t age = now_ms() - s->committed_at_ms;
	if ((s->committed && !s->dirty) || s->failed)
		return age > LINGER_MS;
	return s->leftover && age > LEFTOVER_MS;
}

int stage_sweep(uint64_t parent)
{
	int live = 0;
	for (struct node *c = vfs.nodes, *next; c; c = next) {
		next = c->next;
		if (c->kind != N_STAGE || !c->stage)
			continue;
		struct stage *s = c->stage;
		if (c->removed) {
			/* removed while the kernel still knows the inode: its
			 * memory need not wait for the forget */
			if (!s->discarded && !s->committing && s->opens == 0) {
				drop_data(s);
				s->discarded = true;
			}
			continue;
		}
		if (stage_expired(c)) {
			stage_discard(c);
			continue;
		}
		if (c->parent == parent)
			live++;
	}
	return live;
}

void stage_closed(struct node *n)
{
	struct stage *s = n->stage;
	bool on_chip = s->committed && !s->dirty;
	if (s->opens == 0 && !on_chip && !s->committing && !s->discarded && !s->failed) {
		/* the writer went away without a commit (rsync's raw data
		 * waiting for its rename, a killed gio): no reader flashes it,
		 * a rename still does, and it goes away after a while */
		s->leftover = true;
		s->committed_at_ms = now_ms();
	}
}

int dir_writer_busy(struct node *dir, const char *who)
{
	const char *why = NULL;
	if (!dir)
		return 0;
	if (dir->writer && fw_active(dir->writer))
		why = "flash.bin is being written";
	else if (dir->commits)
		why = "a file dropped into the folder is being flashed";
	else if (dir->erasing)
		why = "an erase is running";
	if (!why)
		return 0;
	device_set_error(dir->dev, EBUSY, "%s refused: %s; one writer at a time, try again when "
			 "it is done", who, why);
	return -EBUSY;
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

void stage_write(struct handle *h, fuse_req_t req, const char *buf, size_t size, off_t off)
{
	int err = 0;
	struct node *n = h->node;
	pthread_mutex_lock(&vfs.lock);
	struct stage *s = n->stage;
	if (s->discarded) {
		/* unlinked while open: writes go nowhere, as on any file system */
	} else if (s->committing) {
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
			s->failed = false;
			s->leftover = false;
			h->wrote = true;
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
	if (s->discarded)
		return 0;
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

/* The name the file is meant to get, to judge it by (and to name it in
 * state): rsync's ".NAME.XXXXXX" -> NAME; KIO's "NAME.part" -> NAME;
 * gio's ".goutputstream-XXXXXX" replaces an existing file: flash.bin,
 * unless a visible staging file could be the one replaced (then false:
 * not known before the rename).  Called with vfs.lock. */
static bool is_gio_temp(const struct node *n)
{
	return !strncmp(n->name, ".goutputstream-", 15);
}

static bool is_rsync_temp(const struct node *n)
{
	const char *name = n->name;
	size_t l = strlen(name);
	bool rsync = name[0] == '.' && l > 8 && name[l - 7] == '.';
	for (size_t i = l - 6; rsync && i < l; i++)
		rsync = isalnum((unsigned char)name[i]);
	return rsync;
}

static bool target_name(struct node *n, char *out, size_t cap)
{
	const char *name = n->name;
	size_t l = strlen(name);
	if (is_gio_temp(n)) {
		for (struct node *c = vfs.nodes; c; c = c->next)
			if (c->parent == n->parent && c->kind == N_STAGE && !c->removed &&
			    c->name[0] != '.')
				return false;
		snprintf(out, cap, "flash.bin");
		return true;
	}
	if (is_rsync_temp(n)) {
		snprintf(out, cap, "%.*s", (int)(l - 8), name + 1);
		return true;
	}
	snprintf(out, cap, "%s", name);
	l = strlen(out);
	if (l > 5 && !strcmp(out + l - 5, ".part"))
		out[l - 5] = 0;  /* KIO: judge "x.bin.part" as "x.bin" */
	return true;
}

static void on_interrupt(fuse_req_t req, void *data)
{
	(void)req;
	device_job_cancel(data);
}

/* Give n the name newname in its folder, replacing a staging file of
 * that name.  Called with vfs.lock; the caller checked newname is free or
 * a staging file. */
static void rename_node(struct node *n, const char *newname)
{
	struct node *old = node_child(n->parent, newname);
	if (old && old != n && old->kind == N_STAGE)
		stage_discard(old);
	snprintf(n->name, sizeof n->name, "%s", newname);
}

/* A rename's last step once the file is on the chip.  vfs.lock held. */
static void finish_rename(struct node *n, const char *newname)
{
	if (!strcmp(newname, "flash.bin"))
		stage_discard(n);  /* flash.bin itself now holds it */
	else
		rename_node(n, newname);
}

static void commit_done(struct dev_job *j)
{
	struct stage_job *sj = (struct stage_job *)j;
	fuse_req_t wreq = NULL;
	int wrc = j->rc;
	bool onto_flash_bin = sj->then == THEN_REMOVE;
	pthread_mutex_lock(&vfs.lock);
	struct node *dir = node_get(sj->dir_ino);
	if (dir && dir->commits > 0)
		dir->commits--;
	struct node *n = node_get(sj->ino);
	if (n && n->stage) {
		struct stage *s = n->stage;
		s->committing = false;
		s->failed = j->rc != 0;
		s->committed_at_ms = now_ms();
		if (j->rc == 0) {
			s->dirty = false;
			s->committed = true;
		}
		if (j->rc == 0 && !n->removed) {
			if (sj->then == THEN_REMOVE)
				stage_discard(n);
			else if (sj->then == THEN_RENAME)
				rename_node(n, sj->newname);
		}
		wreq = s->wait_rename;
		s->wait_rename = NULL;
		if (wreq && j->rc == 0 && !n->removed) {
			onto_flash_bin |= !strcmp(s->wait_name, "flash.bin");
			finish_rename(n, s->wait_name);
		} else if (wreq && j->rc == 0) {
			wrc = -ENOENT;  /* unlinked meanwhile */
		}
	}
	pthread_mutex_unlock(&vfs.lock);
	if (j->rc == -EINTR && j->touched_flash)
		device_flash_incomplete(j->ctx, EINTR, j->offset, j->offset + j->len,
					"%s incomplete: %s; write it again (or \"ack\" to state)",
					j->what, j->err);
	else if (j->rc == -EINTR)
		device_set_error(j->ctx, EINTR, "%s: interrupted; nothing was written", j->what);
	if (onto_flash_bin && j->rc == 0)
		notify_inval_entry(sj->dir_ino, "flash.bin");
	fuse_req_interrupt_func(sj->req, NULL, NULL);
	/* a rename's EINVAL reads as "subdirectory of itself" (stage_rename) */
	fuse_reply_err(sj->req, sj->then != THEN_ANSWER && j->rc == -EINVAL ? ENOEXEC : -j->rc);
	if (wreq)
		fuse_reply_err(wreq, wrc == -EINVAL ? ENOEXEC : -wrc);
	free(j->buf);
	free(sj);
}

/* Content that cannot prove it is complete: raw bytes (NAME@0xOFF.bin,
 * a flash dump).  An image's own structure shows a truncated copy. */
static bool raw_content(struct node *n, const char *target)
{
	char why[240];
	uint32_t off;
	const char *at = strrchr(target, '@');
	if (at && strstr(at, ".bin"))
		return true;
	return device_image_target(n->dev, n->stage->buf, n->stage->len, target, false, &off, why,
				   sizeof why) < 0 &&
	       device_image_target(n->dev, n->stage->buf, n->stage->len, target, true, &off, why,
				   sizeof why) == 0;
}

/* Start flashing n's content, judged as the file `target` (what the user
 * copied; state names it).  `then` says what happens to the node once the
 * chip holds it.  Called with vfs.lock held; returns 0 (req will be
 * answered) or -errno. */
static int commit(struct node *n, fuse_req_t req, const char *target, enum then then,
		  const char *newname)
{
	struct stage *s = n->stage;
	char why[240], label[256];
	uint32_t off = 0;
	bool onto_flash_bin = !strcmp(target, "flash.bin");
	snprintf(label, sizeof label, "%s", target);
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
	rc = dir_writer_busy(n->dir, label);
	if (rc < 0)
		return rc;
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
	sj->dir_ino = n->parent;
	sj->then = then;
	if (newname)
		snprintf(sj->newname, sizeof sj->newname, "%s", newname);
	sj->j.kind = DEV_JOB_WRITE;
	sj->j.offset = off;
	sj->j.len = (uint32_t)s->len;
	sj->j.buf = copy;
	sj->j.prog_total = s->len;
	sj->j.done = commit_done;
	sj->j.ctx = n->dev;
	atomic_init(&sj->j.cancel, 0);
	/* state names what the user copied, not the temp file */
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
	if (n->dir)
		n->dir->commits++;
	return 0;
}

/* The writer's close or fsync: commit what it wrote.
 *  - fsync: always (gio fsyncs only a complete copy), unless it is a gio
 *    temp file whose target is not known (it may replace a dropped file
 *    still listed): its rename says, and state names no temp file;
 *  - close of gio's temp file: never (gio closes it after its rename,
 *    and on a cancelled copy before deleting it);
 *  - close of rsync's temp file: an image (its structure shows a cut
 *    copy; a wrong chip fails rsync here, so --remove-source-files keeps
 *    the source); raw data waits for the rename: an interrupted rsync
 *    closes its temp file too, then deletes it;
 *  - close of any other name (cp, KIO's .part): commit. */
static void writer_commit(struct handle *h, fuse_req_t req, bool fsync)
{
	struct node *n = h->node;
	pthread_mutex_lock(&vfs.lock);
	struct stage *s = n->stage;
	int rc = 0;
	if (h->wrote && s->dirty && !s->committing && !s->discarded) {
		char target[256];
		bool known = target_name(n, target, sizeof target);
		bool wait_rename = !fsync && (is_gio_temp(n) ||
					      (is_rsync_temp(n) && raw_content(n, target)));
		if (fuse_req_interrupted(req)) {
			rc = -EINTR;  /* a killed writer: never flash a partial upload */
		} else if (wait_rename) {
			rc = 0;
		} else if (known) {
			rc = commit(n, req, target, THEN_ANSWER, NULL);
			if (rc == 0) {
				pthread_mutex_unlock(&vfs.lock);
				return;
			}
		}
		if (rc < 0) {
			s->failed = true;
			s->committed_at_ms = now_ms();
		}
	}
	pthread_mutex_unlock(&vfs.lock);
	fuse_reply_err(req, -rc);
}

void stage_flush(struct handle *h, fuse_req_t req)
{
	writer_commit(h, req, false);
}

void stage_fsync(struct handle *h, fuse_req_t req)
{
	writer_commit(h, req, true);
}

void stage_rename(uint64_t parent, const char *name, fuse_req_t req, const char *newname)
{
	int rc = 0;
	pthread_mutex_lock(&vfs.lock);
	struct node *n = node_child(parent, name);
	struct node *old = node_child(parent, newname);
	bool onto_flash_bin = !strcmp(newname, "flash.bin");
	if (!n) {
		rc = -ENOENT;
		goto out;
	}
	if (n->kind != N_STAGE || (old && old->kind != N_STAGE && !onto_flash_bin)) {
		/* the device's own files cannot move or be replaced */
		device_set_error(n->dev, EPERM, "%s cannot be renamed onto \"%s\": the device's "
				 "files stay; copy onto flash.bin instead", name, newname);
		rc = -EPERM;
		goto out;
	}
	if (n == old)
		goto out;
	struct stage *s = n->stage;
	if (s->committing) {
		if (s->wait_rename) {
			rc = -EBUSY;
			goto out;
		}
		s->wait_rename = req;  /* answered with the commit's result */
		snprintf(s->wait_name, sizeof s->wait_name, "%s", newname);
		pthread_mutex_unlock(&vfs.lock);
		return;
	}
	bool on_chip = s->committed && !s->dirty;
	bool has_data = s->dirty || s->failed;
	if (on_chip || (!has_data && !onto_flash_bin)) {
		/* nothing left to flash (KIO: flash.bin.part was flashed at
		 * close; rsync: flashed at its close), or nothing written */
		finish_rename(n, newname);
	} else {
		rc = commit(n, req, newname, onto_flash_bin ? THEN_REMOVE : THEN_RENAME, newname);
		if (rc == 0) {
			pthread_mutex_unlock(&vfs.lock);
			return;
		}
		s->failed = true;
		s->committed_at_ms = now_ms();
	}
out:
	pthread_mutex_unlock(&vfs.lock);
	if (rc == 0 && onto_flash_bin)
		notify_inval_entry(parent, "flash.bin");
	/* rename(2) has no "bad image": its EINVAL means "a directory into
	 * itself" and mv says so.  A refused image answers ENOEXEC ("Exec
	 * format error"), as execve does for a binary it cannot run. */
	fuse_reply_err(req, rc == -EINVAL ? ENOEXEC : -rc);
}
