/* Staging files: anything created in a device folder (gio's
 * .goutputstream-*, KIO's *.part, rsync's .NAME.XXXXXX, a firmware file
 * dropped into the folder) is kept in RAM and flashed as a whole, at the
 * offset its content implies (factory 0, bootloader, partition table
 * 0x8000, app -> the device's app partition) or NAME@0xOFF.bin.
 *
 * Who commits (FUSE-NOTES.md part 3): only the writer.
 *  - the close (flush) of a handle that wrote, by a writer that closes it
 *    because its copy is done: rsync's temp file is judged by the NAME
 *    inside ".NAME.XXXXXX", KIO's "x.part" as "x", anything else by its
 *    own name.  Not when the copy ended early (closer.h): the kernel's
 *    close of a killed writer, rsync's close in its exit cleanup (then it
 *    deletes the file, or with --partial renames it to NAME): raw data
 *    cannot show it is cut, so that file is never flashed, state says so,
 *    and no rename flashes it later;
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/log.h"
#include "closer.h"
#include "vfs.h"

#define LINGER_MS 2000
/* a file its writer left uncommitted (a killed copy; rsync --partial
 * keeps a cut file for its next run to resume from) */
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
		/* the writer went away without a commit (a cut copy, gio's
		 * temp file killed before its fsync): no reader flashes it, a
		 * rename does unless the copy was cut, and it goes away after a
		 * while */
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
			s->interrupted = false;  /* rewritten: its writer's close decides */
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

/* Why this close or fsync of what a writer wrote does not end its copy
 * (false: it does).  Reads /proc: call without vfs.lock. */
static bool cut_short(fuse_req_t req, bool rsync_temp, char *why, size_t cap)
{
	struct closer c;
	pid_t pid = fuse_req_ctx(req)->pid;
	closer_read(pid, &c);
	if (c.fate == CLOSER_KILLED) {
		const char *sig = sigabbrev_np(c.sig);
		snprintf(why, cap, "%s (pid %d) was killed by SIG%s before it closed the file",
			 c.comm, (int)pid, sig ? sig : "?");
		return true;
	}
	if (c.fate == CLOSER_FAILED) {
		snprintf(why, cap, "%s (pid %d) exited with status %d before it closed the file",
			 c.comm, (int)pid, c.status);
		return true;
	}
	if (c.fate == CLOSER_UNSEEN) {
		snprintf(why, cap, "%s (pid %d) exited before it closed the file, and only its user "
			 "may see whether it finished", c.comm, (int)pid);
		return true;
	}
	if (rsync_temp && closer_rsync_cleanup(&c)) {
		snprintf(why, cap, "rsync (pid %d) stopped before the end of the file (a signal, a "
			 "lost connection or an error)", (int)pid);
		return true;
	}
	/* the kernel sends a killed writer's close an interrupt too; /proc
	 * above says more, when it can be read */
	if (fuse_req_interrupted(req)) {
		snprintf(why, cap, "the close was interrupted");
		return true;
	}
	return false;
}

/* The writer's close or fsync: commit what it wrote.
 *  - a copy that ended early (cut_short): never, and state says so;
 *  - fsync: always (gio fsyncs only a complete copy), unless it is a gio
 *    temp file whose target is not known (it may replace a dropped file
 *    still listed): its rename says, and state names no temp file;
 *  - close of gio's temp file: never (gio closes it after its rename,
 *    and on a cancelled copy before deleting it);
 *  - close of rsync's temp file: commit, images and raw data alike, so
 *    the rename that follows has nothing left to wait for (the kernel
 *    holds the folder's lock during a rename); a wrong chip fails rsync
 *    here, so --remove-source-files keeps the source;
 *  - close of any other name (cp, KIO's .part): commit. */
static void writer_commit(struct handle *h, fuse_req_t req, bool fsync)
{
	struct node *n = h->node;
	char why[200];
	bool cut = false;
	pthread_mutex_lock(&vfs.lock);
	bool rsync_temp = is_rsync_temp(n);
	bool judge = h->wrote && n->stage->dirty;
	pthread_mutex_unlock(&vfs.lock);
	if (judge)
		cut = cut_short(req, rsync_temp, why, sizeof why);
	pthread_mutex_lock(&vfs.lock);
	struct stage *s = n->stage;
	int rc = 0;
	if (h->wrote && s->dirty && !s->committing && !s->discarded) {
		char target[256];
		bool known = target_name(n, target, sizeof target);
		if (cut) {
			/* a partial upload is never flashed, not by a rename either */
			rc = -EINTR;
			s->interrupted = true;
			device_set_error(n->dev, EINTR, "%s: interrupted, nothing was flashed: %s",
					 known ? target : "gio's copy", why);
			LOGI("%s: %s: interrupted, not flashed: %s", device_name(n->dev),
			     known ? target : "gio's copy", why);
		} else if (!fsync && is_gio_temp(n)) {
			rc = 0;
		} else if (known) {
			rc = commit(n, req, target, THEN_ANSWER, NULL);
			if (rc == 0) {
				pthread_mutex_unlock(&vfs.lock);
				return;
			}
		}
		if (rc < 0 && !s->interrupted) {
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
	if (s->interrupted) {
		/* rsync --partial keeps its cut temp file as NAME for its next
		 * run to resume from: it may, but the chip never gets it */
		if (onto_flash_bin) {
			device_set_error(n->dev, EINTR, "flash.bin: interrupted, nothing was flashed: "
					 "a cut copy is not put onto flash.bin");
			rc = -ECANCELED;
			goto out;
		}
		device_set_error(n->dev, EINTR, "%s: interrupted, nothing was flashed: the cut copy "
				 "stays in the folder under this name for %d s (rsync --partial resumes "
				 "from it)", newname, LEFTOVER_MS / 1000);
		rename_node(n, newname);
	} else if (on_chip || (!has_data && !onto_flash_bin)) {
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
