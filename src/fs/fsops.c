/* libfuse low-level glue: each operation answers from memory, or queues a
 * job on the device's worker and returns; the worker replies.  Metadata
 * (lookup, getattr, readdir, statfs) never touches a device.  FUSE
 * interrupts cancel queued/running jobs between blocks (EINTR). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "espfs/log.h"
#include "vfs.h"

#define ENTRY_TIMEOUT 1.0
#define SNIFF_BYTES (16u * 1024)  /* what file managers read to guess a type */
#define MAX_STAGES_PER_DIR 32

struct req_job {
	struct dev_job j;
	fuse_req_t req;
	size_t wsize;        /* write-type jobs: the byte count to acknowledge */
	uint64_t erase_dir;  /* erase: the device folder whose `erasing` it holds */
	/* read on a flash.bin writer's own handle: what it wrote and the
	 * device does not hold yet, laid over the bytes read */
	uint8_t *ov;
	uint32_t ov_off;
	size_t ov_len;
	/* boot reads: the handle that keeps the answer, the read's size */
	struct handle *h;
	size_t rsize;
};

static bool volatile_attr(const struct node *n)
{
	return n->kind == N_STATE || n->kind == N_WIFI || n->kind == N_INFO || n->kind == N_STAGE ||
	       n->kind == N_CONSOLE || n->kind == N_PTCSV || n->kind == N_BOOT;
}

static void fill_entry(struct node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof *e);
	e->ino = n->ino;
	e->generation = 1;
	node_fill_attr(n, &e->attr);
	e->attr_timeout = volatile_attr(n) ? 0.0 : ENTRY_TIMEOUT;
	e->entry_timeout = ENTRY_TIMEOUT;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* writes arrive as the application makes them: no page cache */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

/* vfs.lock held: partitions/ follows the table before it is looked into
 * (the device's state event that also does it comes a moment later, from
 * the notifier: a `cp` onto flash.bin followed by `ls partitions` must
 * see the new table). */
static void sync_partdir(fuse_ino_t ino)
{
	struct node *d = node_get(ino);
	if (d && d->kind == N_PARTDIR && !d->removed)
		parts_sync(d->dev);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int nrc = check_name(name);
	if (nrc < 0) {
		fuse_reply_err(req, nrc == -ENAMETOOLONG ? ENAMETOOLONG : ENOENT);
		return;
	}
	pthread_mutex_lock(&vfs.lock);
	sync_partdir(parent);
	struct node *n = node_child(parent, name);
	if (!n) {
		pthread_mutex_unlock(&vfs.lock);
		fuse_reply_err(req, ENOENT);
		return;
	}
	n->nlookup++;
	fill_entry(n, &e);
	pthread_mutex_unlock(&vfs.lock);
	fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	pthread_mutex_lock(&vfs.lock);
	struct node *n = node_get(ino);
	if (n)
		node_forget(n, nlookup);
	pthread_mutex_unlock(&vfs.lock);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	pthread_mutex_lock(&vfs.lock);
	for (size_t i = 0; i < count; i++) {
		struct node *n = node_get(f[i].ino);
		if (n)
			node_forget(n, f[i].nlookup);
	}
	pthread_mutex_unlock(&vfs.lock);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct stat st;
	pthread_mutex_lock(&vfs.lock);
	struct node *n = node_get(ino);
	if (!n) {
		pthread_mutex_unlock(&vfs.lock);
		fuse_reply_err(req, ENOENT);
		return;
	}
	node_fill_attr(n, &st);
	double t = volatile_attr(n) ? 0.0 : ENTRY_TIMEOUT;
	pthread_mutex_unlock(&vfs.lock);
	fuse_reply_attr(req, &st, t);
}

/* chmod, chown, utimens are accepted and ignored (cp -p, gio, KIO set them
 * after copying); a size change only shapes a staging file: truncating
 * flash.bin never erases. */
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)fi;
	struct stat st;
	int rc = 0;
	pthread_mutex_lock(&vfs.lock);
	struct node *n = node_get(ino);
	if (!n) {
		pthread_mutex_unlock(&vfs.lock);
		fuse_reply_err(req, ENOENT);
		return;
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && n->kind == N_STAGE)
		rc = stage_truncate(n, attr->st_size);
	node_fill_attr(n, &st);
	pthread_mutex_unlock(&vfs.lock);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, 0.0);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char target[300];
	pthread_mutex_lock(&vfs.lock);
	struct node *n = node_get(ino);
	bool ok = n && n->kind == N_LINK;
	if (ok)
		snprintf(target, sizeof target, "%s", n->target);
	pthread_mutex_unlock(&vfs.lock);
	if (ok)
		fuse_reply_readlink(req, target);
	else
		fuse_reply_err(req, EINVAL);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	char *buf = calloc(1, size);
	size_t used = 0;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&vfs.lock);
	sync_partdir(ino);
	struct node *dir = node_get(ino);
	if (!dir || node_is_file(dir) || dir->kind == N_LINK) {
		pthread_mutex_unlock(&vfs.lock);
		free(buf);
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	/* entries in creation order: collect (the list is newest first) */
	size_t cap = 16, n = 0;
	struct node **v = malloc(cap * sizeof *v);
	for (struct node *c = vfs.nodes; v && c; c = c->next) {
		if (c->parent != ino || c->removed)
			continue;
		if (c->kind == N_STAGE && stage_expired(c))
			continue;
		if (n == cap) {
			cap *= 2;
			struct node **nv = realloc(v, cap * sizeof *nv);
			if (!nv)
				break;
			v = nv;
		}
		v[n++] = c;
	}
	off_t idx = 0;
	struct stat st;
	memset(&st, 0, sizeof st);
	for (int k = 0; k < 2; k++, idx++) {
		if (idx < off)
			continue;
		st.st_ino = k == 0 ? ino : (dir->parent ? dir->parent : ino);
		st.st_mode = S_IFDIR;
		size_t need = fuse_add_direntry(req, buf + used, size - used, k ? ".." : ".", &st, idx + 1);
		if (need > size - used)
			goto full;
		used += need;
	}
	for (size_t i = n; i-- > 0; idx++) {
		if (idx < off)
			continue;
		node_fill_attr(v[i], &st);
		size_t need = fuse_add_direntry(req, buf + used, size - used, v[i]->name, &st, idx + 1);
		if (need > size - used)
			break;
		used += need;
	}
full:
	pthread_mutex_unlock(&vfs.lock);
	free(v);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int err = 0;
	int acc = fi->flags & O_ACCMODE;
	struct handle *h = NULL;
	pthread_mutex_lock(&vfs.lock);
	struct node *n = node_get(ino);
	if (!n || n->removed) {
		err = n && n->dev ? ENODEV : ENOENT;
		goto out;
	}
	if (!node_is_file(n)) {
		err = EISDIR;
		goto out;
	}
	if (device_gone(n->dev)) {
		err = ENODEV;
		goto out;
	}
	/* before anything that touches the device: another user's read of
	 * flash.bin must not even reset the running app */
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	err = node_permission(n, ctx->uid, ctx->gid,
			      acc == O_RDONLY ? R_OK : acc == O_WRONLY ? W_OK : R_OK | W_OK);
	if (err)
		goto out;
	switch (n->kind) {
	case N_CHIP: case N_MAC: case N_INFO: case N_PTCSV:
		if (acc != O_RDONLY)
			err = EACCES;
		break;
	case N_ERASE:
		if (acc == O_RDONLY)
			err = EACCES;
		break;
	default:
		break;
	}
	if (err)
		goto out;
	h = calloc(1, sizeof *h);
	if (!h) {
		err = ENOMEM;
		goto out;
	}
	h->node = n;
	h->dev = n->dev;
	device_ref(h->dev);
	h->flags = fi->flags;
	h->owner = ctx->uid == 0 || ctx->uid == vfs.uid;
	if ((n->kind == N_FLASH || n->kind == N_PART) && acc != O_RDONLY) {
		char name[300];
		snprintf(name, sizeof name, "%s%s", n->kind == N_PART ? "partitions/" : "", n->name);
		/* one writer at a time: two uploads interleaved make no image */
		if (n->dir->writer) {
			err = EBUSY;
			device_set_error(n->dev, EBUSY, "%s: another program has flash.bin or a "
					 "partition open for writing; one writer at a time", name);
			goto out;
		}
		if (n->dir->commits || n->dir->erasing) {
			err = -dir_writer_busy(n->dir, name);
			goto out;
		}
		h->fw = n->kind == N_FLASH ? fw_open(n->dev)
			: fw_open_range(n->dev, n->part.offset, n->part.size, name,
					n->part.type == 0x00 /* app */);
		if (!h->fw) {
			err = ENOMEM;
			goto out;
		}
		n->dir->writer = h->fw;
	}
	if (n->kind == N_STAGE) {
		n->stage->opens++;
		if ((fi->flags & O_TRUNC) && acc != O_RDONLY && !n->stage->committing)
			stage_truncate(n, 0);
	}
	if (n->kind == N_STATE) {
		h->next_state = vfs.state_handles;
		vfs.state_handles = h;
	}
	if (n->kind == N_CONSOLE && console_open(h) < 0) {
		err = ENOMEM;
		goto out;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = n->kind != N_STAGE;
	fi->keep_cache = 0;
	/* A read-only open of an attribute has nothing to commit: skip the
	 * FLUSH round trip on close (one request fewer for every cat). */
	if (acc == O_RDONLY && n->kind != N_FLASH && n->kind != N_STAGE && n->kind != N_PART)
		fi->noflush = 1;
out:
	if (err && h) {
		device_unref(h->dev);
		free(h);
		h = NULL;
	}
	pthread_mutex_unlock(&vfs.lock);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	if (fuse_reply_open(req, fi) == -ENOENT) {
		/* interrupted open: no release will follow */
		struct fuse_file_info tmp = *fi;
		espfs_release_handle(&tmp);
	}
}

/* Lay a writer's not-yet-sent bytes over what was read at off. */
static void overlay(uint8_t *buf, uint32_t off, const uint8_t *ov, uint32_t ov_off, size_t ov_len)
{
	if (ov)
		memcpy(buf + (ov_off - off), ov, ov_len);
}

/* An erase request is over (done, or never submitted): its folder no
 * longer counts it (one writer at a time, see write_erase). */
static void erase_over(struct req_job *r)
{
	if (!r->erase_dir)
		return;
	pthread_mutex_lock(&vfs.lock);
	struct node *dir = node_get(r->erase_dir);
	if (dir && dir->erasing > 0)
		dir->erasing--;
	pthread_mutex_unlock(&vfs.lock);
}

static void handle_free(struct handle *h);

/* A boot read's job is over: a reader killed meanwhile may have released
 * its handle, which the last such job frees then (not used after this). */
static void boot_job_over(struct req_job *r)
{
	if (!r->h)
		return;
	pthread_mutex_lock(&vfs.lock);
	bool dead = --r->h->jobs == 0 && r->h->released;
	pthread_mutex_unlock(&vfs.lock);
	if (dead)
		handle_free(r->h);
	r->h = NULL;
}

static void rj_done(struct dev_job *j)
{
	struct req_job *r = (struct req_job *)j;
	erase_over(r);
	fuse_req_interrupt_func(r->req, NULL, NULL);
	if (j->rc < 0) {
		fuse_reply_err(r->req, -j->rc);
	} else if (j->kind == DEV_JOB_READ) {
		overlay(j->buf, j->offset, r->ov, r->ov_off, r->ov_len);
		fuse_reply_buf(r->req, (const char *)j->buf, j->len);
	} else if (j->kind == DEV_JOB_BOOT_GET) {
		/* the answer, for this reply and (a copy) for the handle's
		 * reads past offset 0 (not when it was released already) */
		char t[sizeof j->slot + 2];
		size_t n = (size_t)snprintf(t, sizeof t, j->slot[0] ? "%s\n" : "%s", j->slot);
		pthread_mutex_lock(&vfs.lock);
		char *keep = r->h->released ? NULL : malloc(n + 1);
		if (keep) {
			memcpy(keep, t, n + 1);
			free(r->h->snap);
			r->h->snap = keep;
			r->h->snap_len = n;
		}
		pthread_mutex_unlock(&vfs.lock);
		fuse_reply_buf(r->req, t, n < r->rsize ? n : r->rsize);
	} else {
		fuse_reply_write(r->req, r->wsize);
	}
	boot_job_over(r);
	explicit_bzero(j->pass, sizeof j->pass);
	free(j->buf);
	free(r->ov);
	free(r);
}

static void rj_interrupt(fuse_req_t req, void *data)
{
	(void)req;
	device_job_cancel(data);
}

/* A job that will answer req (ENOMEM answered here when there is no
 * memory: NULL). */
static struct req_job *req_job_new(fuse_req_t req, enum dev_job_kind kind, const char *what, size_t wsize)
{
	struct req_job *r = calloc(1, sizeof *r);
	if (!r) {
		fuse_reply_err(req, ENOMEM);
		return NULL;
	}
	r->req = req;
	r->wsize = wsize;
	r->j.kind = kind;
	snprintf(r->j.what, sizeof r->j.what, "%s", what);
	return r;
}

/* Queue a job that answers req when done. */
static void submit_req_job(esp_device *d, struct req_job *r)
{
	r->j.done = rj_done;
	atomic_init(&r->j.cancel, 0);
	fuse_req_interrupt_func(r->req, rj_interrupt, &r->j);
	int rc = device_submit(d, &r->j);
	if (rc < 0) {
		fuse_req_interrupt_func(r->req, NULL, NULL);
		erase_over(r);
		boot_job_over(r);
		fuse_reply_err(r->req, -rc);
		explicit_bzero(r->j.pass, sizeof r->j.pass);
		free(r->j.buf);
		free(r->ov);
		free(r);
	}
}

/* A private copy of [off, off+size) of src, clipped to len, so the reply
 * can be sent after the lock is dropped.  Returns its length (0 on
 * allocation failure or past the end). */
static size_t copy_range(const char *src, size_t len, off_t off, size_t size, char **out)
{
	*out = NULL;
	if (off < 0 || (size_t)off >= len)
		return 0;
	size_t n = len - (size_t)off < size ? len - (size_t)off : size;
	*out = malloc(n);
	if (!*out)
		return 0;
	memcpy(*out, src + off, n);
	return n;
}

static void read_text(fuse_req_t req, struct handle *h, size_t size, off_t off)
{
	pthread_mutex_lock(&vfs.lock);
	if (off == 0 || !h->snap) {
		free(h->snap);
		h->seen_gen = device_state_gen(h->dev);
		h->snap = attr_text(h->node, &h->snap_len, h->owner);
	}
	char *copy = NULL;
	size_t n = h->snap ? copy_range(h->snap, h->snap_len, off, size, &copy) : 0;
	pthread_mutex_unlock(&vfs.lock);
	fuse_reply_buf(req, copy, n);
	free(copy);
}

/* flash.bin, or a partition's window of it: [base, base+fsize). */
static void read_flash(fuse_req_t req, struct handle *h, size_t size, off_t off)
{
	uint32_t base = 0, fsize = device_flash_size(h->dev);
	const char *what = "flash.bin";
	char pname[64];
	pthread_mutex_lock(&vfs.lock);
	if (h->node->kind == N_PART) {
		base = h->node->part.offset;
		fsize = part_extent(h->node);
		snprintf(pname, sizeof pname, "partitions/%.40s", h->node->name);
		what = pname;
	}
	pthread_mutex_unlock(&vfs.lock);
	if (off < 0 || (uint64_t)off >= fsize) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if ((uint64_t)off + size > fsize)
		size = fsize - (size_t)off;
	uint32_t at = base + (uint32_t)off;
	pthread_mutex_lock(&vfs.lock);
	struct flash_writer *w = h->node->dir->writer;
	bool busy = w && w != h->fw && fw_busy(w);
	if ((uint64_t)off != h->rd_next)
		h->rd_start = (uint64_t)off;  /* not where the last read ended: a new run */
	h->rd_next = (uint64_t)off + size;
	uint64_t run_base = (uint64_t)off - h->rd_start, run_total = fsize - h->rd_start;
	pthread_mutex_unlock(&vfs.lock);
	if (busy) {
		fuse_reply_err(req, EBUSY);
		return;
	}
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* the writer's own handle reads what it wrote (read-modify-write on
	 * one O_RDWR descriptor), not what the chip held before */
	uint8_t *ov = NULL;
	uint32_t ov_off = 0;
	size_t ov_len = 0;
	bool queued = h->fw && fw_read_overlay(h->fw, (uint32_t)off, size, &ov, &ov_off, &ov_len);
	ov_off += base;  /* the overlay's offset in flash, like the job's */
	if (!queued && device_head_read(h->dev, at, buf, size) == 0) {
		overlay(buf, at, ov, ov_off, ov_len);
		fuse_reply_buf(req, (const char *)buf, size);
		free(buf);
		free(ov);
		return;
	}
	/* A file manager listing partitions/ sniffs the first KiB of every
	 * file without a telling extension, opened O_NOATIME (FUSE-NOTES part
	 * 1.5): that must not reset a running app.  Such a read is EAGAIN;
	 * cp, dd and the rest open without O_NOATIME and get the chip. */
	if (h->node->kind == N_PART && (h->flags & O_NOATIME) && off < SNIFF_BYTES && !ov &&
	    device_app_running(h->dev)) {
		free(buf);
		fuse_reply_err(req, EAGAIN);
		return;
	}
	struct req_job *r = req_job_new(req, DEV_JOB_READ, what, 0);
	if (!r) {
		free(buf);
		free(ov);
		return;
	}
	r->ov = ov;
	r->ov_off = ov_off;
	r->ov_len = ov_len;
	r->j.offset = at;
	r->j.len = (uint32_t)size;
	r->j.buf = buf;
	/* state: "reading flash.bin at 0x120000: 28% (1179648/4194304 bytes)"
	 * for a reader going through to the end, as cp, dd and cmp do */
	r->j.prog_base = run_base;
	r->j.prog_total = run_total;
	submit_req_job(h->dev, r);
}

/* boot: asked of the chip's otadata when read from the start (an app
 * may have switched slots by OTA since attach); the rest of the read
 * comes from that answer. */
static void read_boot(fuse_req_t req, struct handle *h, size_t size, off_t off)
{
	if (off > 0) {
		read_text(req, h, size, off);  /* h->snap from the read at 0 */
		return;
	}
	struct req_job *r = req_job_new(req, DEV_JOB_BOOT_GET, "boot", 0);
	if (!r)
		return;
	r->h = h;
	r->rsize = size;
	pthread_mutex_lock(&vfs.lock);
	h->jobs++;
	pthread_mutex_unlock(&vfs.lock);
	submit_req_job(h->dev, r);
}

static void read_stage(fuse_req_t req, struct handle *h, size_t size, off_t off)
{
	pthread_mutex_lock(&vfs.lock);
	struct stage *s = h->node->stage;
	char *copy = NULL;
	size_t n = s->buf ? copy_range((const char *)s->buf, s->len, off, size, &copy) : 0;
	pthread_mutex_unlock(&vfs.lock);
	fuse_reply_buf(req, copy, n);
	free(copy);
}

/* A handle on an unplugged device is stale (ENODEV); staging files live
 * in memory and outlive the device. */
static bool handle_stale(const struct handle *h)
{
	return h->node->kind != N_STAGE && device_gone(h->dev);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)ino;
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	if (handle_stale(h)) {
		fuse_reply_err(req, ENODEV);
		return;
	}
	switch (h->node->kind) {
	case N_FLASH:
	case N_PART:
		read_flash(req, h, size, off);
		break;
	case N_BOOT:
		read_boot(req, h, size, off);
		break;
	case N_STAGE:
		read_stage(req, h, size, off);
		break;
	case N_CONSOLE:
		console_read(req, h, size, off, fi->flags);
		break;
	case N_ERASE:
		fuse_reply_err(req, EACCES);
		break;
	default:
		read_text(req, h, size, off);
	}
}

static void write_wifi(fuse_req_t req, struct handle *h, const char *buf, size_t size, off_t off)
{
	char why[200];
	struct req_job *r = req_job_new(req, DEV_JOB_PROVISION, "wifi", size);
	if (!r)
		return;
	int rc = 0;
	if (off != 0 || size > 4096) {
		snprintf(why, sizeof why, "wifi: write the whole \"ssid:password\" at once (at most 4 KiB)");
		rc = -EINVAL;
	} else {
		rc = parse_wifi(buf, size, r->j.ssid, sizeof r->j.ssid, r->j.pass, sizeof r->j.pass, why,
				sizeof why);
	}
	/* The request buffer is libfuse's heap memory, reused for later
	 * requests: do not leave the password in it (const only in type). */
	explicit_bzero((void *)(uintptr_t)buf, size);
	if (rc < 0) {
		device_set_error(h->dev, rc, "%s", why);
		explicit_bzero(r->j.pass, sizeof r->j.pass);
		free(r);
		fuse_reply_err(req, -rc);
		return;
	}
	submit_req_job(h->dev, r);
}

/* One writer at a time: an erase or a boot switch queued between a cp's
 * blocks would leave a mixed image while the cp still succeeds.  r holds
 * the folder's `erasing` count until it is over (erase_over). */
static int claim_dir(struct handle *h, struct req_job *r, const char *who)
{
	pthread_mutex_lock(&vfs.lock);
	struct node *dir = h->node->dir;
	int rc = dir_writer_busy(dir, who);
	if (rc == 0 && dir) {
		dir->erasing++;
		r->erase_dir = dir->ino;
	}
	pthread_mutex_unlock(&vfs.lock);
	return rc;
}

/* A partition of the device's table by label: its range, or -ENOENT. */
static int part_range(esp_device *d, const char *label, uint32_t *off, uint32_t *len)
{
	struct dev_identity *id = malloc(sizeof *id);
	int rc = -ENOENT;
	if (!id)
		return -ENOMEM;
	device_identity(d, id);
	for (int i = 0; i < id->n_parts; i++)
		if (!strcmp(id->parts[i].label, label)) {
			*off = id->parts[i].offset;
			*len = id->parts[i].size;
			rc = 0;
			break;
		}
	free(id);
	return rc;
}

/* "1"/"all", "OFFSET LENGTH", or a partition's label (docs/files.md):
 * the numeric forms come first, so a table cannot change what "1" means. */
static void write_erase(fuse_req_t req, struct handle *h, const char *buf, size_t size)
{
	char why[200], why2[200], word[PART_WORD_MAX + 1], what[64] = "";
	uint32_t off = 0, len = 0;
	int rc = parse_erase(buf, size, device_write_limit(h->dev), &off, &len, why, sizeof why);
	if (rc == -EINVAL && parse_part_word(buf, size, word, sizeof word, why2, sizeof why2) == 0 &&
	    (word[0] < '0' || word[0] > '9')) {
		rc = part_range(h->dev, word, &off, &len);
		if (rc == -ENOENT) {
			snprintf(why, sizeof why, "erase: no partition \"%s\" in the chip's table (see "
				 "partitions/table.csv); nothing erased", word);
			rc = -EINVAL;
		} else if (rc == 0 && (off % 0x1000 || len % 0x1000 || !len)) {
			snprintf(why, sizeof why, "erase: partition %s (0x%x+0x%x) is not whole 4 KiB "
				 "sectors; nothing erased", word, off, len);
			rc = -EINVAL;
		}
		snprintf(what, sizeof what, "partitions/%s", word);
	}
	if (rc < 0) {
		device_set_error(h->dev, rc, "%s", why);
		fuse_reply_err(req, -rc);
		return;
	}
	struct req_job *r = req_job_new(req, DEV_JOB_ERASE, what[0] ? what : len ? "region" : "whole flash",
					size);
	if (!r)
		return;
	rc = claim_dir(h, r, "erase");
	if (rc < 0) {
		free(r);
		fuse_reply_err(req, -rc);
		return;
	}
	r->j.offset = off;
	r->j.len = len;
	submit_req_job(h->dev, r);
}

/* boot: "ota_1", "factory" or an app partition's label. */
static void write_boot(fuse_req_t req, struct handle *h, const char *buf, size_t size)
{
	char why[200];
	struct req_job *r = req_job_new(req, DEV_JOB_BOOT_SET, "boot", size);
	if (!r)
		return;
	int rc = parse_part_word(buf, size, r->j.slot, sizeof r->j.slot, why, sizeof why);
	if (rc < 0) {
		device_set_error(h->dev, rc, "boot: %s (ota_0, ota_1, ..., factory)", why);
		free(r);
		fuse_reply_err(req, -rc);
		return;
	}
	rc = claim_dir(h, r, "boot");
	if (rc < 0) {
		free(r);
		fuse_reply_err(req, -rc);
		return;
	}
	submit_req_job(h->dev, r);
}

/* state accepts commands, sysfs-style: "reset" restarts the application;
 * "ack" drops the standing warning about what the flash holds;
 * simulated devices also take test hooks: "unplug", "replug" (into another
 * USB socket, within the hotplug debounce window), "unplug-at N" (pull the
 * cable when a flash write reaches N%), "corrupt RATE" (flip that share of
 * the bits the chip sends, from a fixed seed), "buttons" (hold BOOT, press
 * RESET, release BOOT) and the same one by one: "hold-boot", "press-reset",
 * "release-boot"; "fault stall|program-fail|garbage|none" (simulated
 * device faults from now on). */
static void write_state(fuse_req_t req, struct handle *h, const char *buf, size_t size)
{
	char why[200];
	struct state_req q;
	int rc = parse_state_cmd(buf, size, &q, why, sizeof why);
	if (rc < 0) {
		device_set_error(h->dev, rc, "%s", why);
		fuse_reply_err(req, -rc);
		return;
	}
	if (q.cmd == STATE_CMD_CONSOLE_BAUD) {
		/* this device's console rate (console.c); no job, no reset */
		rc = device_console_set_baud(h->dev, q.baud);
		if (rc < 0) {
			device_set_error(h->dev, rc, "state: console-baud %u: %s", q.baud, strerror(-rc));
			fuse_reply_err(req, -rc);
		} else {
			fuse_reply_write(req, size);
		}
		return;
	}
	if (q.cmd == STATE_CMD_ACK) {
		/* the user has seen the standing warning (an unfinished write,
		 * a boot loop) and takes it from here */
		device_flash_ack(h->dev);
		fuse_reply_write(req, size);
		return;
	}
	if (q.cmd != STATE_CMD_RESET) {
		rc = q.cmd == STATE_CMD_UNPLUG         ? device_sim_unplug(h->dev)
		     : q.cmd == STATE_CMD_REPLUG       ? device_sim_replug(h->dev)
		     : q.cmd == STATE_CMD_BUTTONS      ? device_sim_download(h->dev)
		     : q.cmd == STATE_CMD_HOLD_BOOT    ? device_sim_buttons(h->dev, 1, false)
		     : q.cmd == STATE_CMD_RELEASE_BOOT ? device_sim_buttons(h->dev, 0, false)
		     : q.cmd == STATE_CMD_PRESS_RESET  ? device_sim_buttons(h->dev, -1, true)
		     : q.cmd == STATE_CMD_CORRUPT      ? device_sim_corrupt(h->dev, q.rate)
		     : q.cmd == STATE_CMD_FAULT        ? device_sim_fault(h->dev, q.fault)
						       : device_sim_unplug_at(h->dev, q.pct);
		if (rc < 0)
			fuse_reply_err(req, -rc);
		else
			fuse_reply_write(req, size);
		return;
	}
	struct req_job *r = req_job_new(req, DEV_JOB_RESET, "chip", size);
	if (r)
		submit_req_job(h->dev, r);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)ino;
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	if (handle_stale(h)) {
		fuse_reply_err(req, ENODEV);
		return;
	}
	switch (h->node->kind) {
	case N_WIFI:
		write_wifi(req, h, buf, size, off);
		break;
	case N_ERASE:
		write_erase(req, h, buf, size);
		break;
	case N_STATE:
		write_state(req, h, buf, size);
		break;
	case N_FLASH:
	case N_PART:
		if (h->fw)
			fw_write(h->fw, req, buf, size, off);
		else
			fuse_reply_err(req, EBADF);
		break;
	case N_BOOT:
		write_boot(req, h, buf, size);
		break;
	case N_STAGE:
		stage_write(h, req, buf, size, off);
		break;
	case N_CONSOLE:
		console_write(req, h, buf, size);
		break;
	default:
		fuse_reply_err(req, EACCES);
	}
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	if ((h->node->kind == N_FLASH || h->node->kind == N_PART) && h->fw)
		fw_commit(h->fw, req);
	else if (h->node->kind == N_STAGE)
		stage_flush(h, req);  /* commits only if this handle wrote */
	else
		fuse_reply_err(req, 0);  /* wifi/erase acted in write() */
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	if ((h->node->kind == N_FLASH || h->node->kind == N_PART) && h->fw)
		fw_commit(h->fw, req);
	else if (h->node->kind == N_STAGE)
		stage_fsync(h, req);  /* gio: so its rename has nothing left to wait for */
	else
		fuse_reply_err(req, 0);
}

static void handle_free(struct handle *h)
{
	device_unref(h->dev);
	free(h->snap);
	free(h);
}

void espfs_release_handle(struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	struct flash_writer *fw = NULL;
	pthread_mutex_lock(&vfs.lock);
	struct node *n = h->node;
	if (h->fw) {
		if (n->dir && n->dir->writer == h->fw)
			n->dir->writer = NULL;
		fw = h->fw;
	}
	if (n->kind == N_STAGE && n->stage) {
		n->stage->opens--;
		stage_closed(n);
	}
	if (n->kind == N_STATE) {
		for (struct handle **pp = &vfs.state_handles; *pp; pp = &(*pp)->next_state)
			if (*pp == h) {
				*pp = h->next_state;
				break;
			}
		if (h->ph)
			fuse_pollhandle_destroy(h->ph);
	}
	pthread_mutex_unlock(&vfs.lock);
	if (fw)
		fw_release(fw);
	console_release(h);
	pthread_mutex_lock(&vfs.lock);
	bool later = h->jobs > 0;  /* a boot read's job still holds it */
	h->released = true;
	pthread_mutex_unlock(&vfs.lock);
	if (!later)
		handle_free(h);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	espfs_release_handle(fi);
	fuse_reply_err(req, 0);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	(void)mode;
	struct fuse_entry_param e;
	int err = 0;
	struct handle *h = NULL;
	/* a name is never cut: "x" and a 300-byte name are different files */
	err = -check_name(name);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	pthread_mutex_lock(&vfs.lock);
	struct node *dir = node_get(parent);
	if (!dir || dir->kind != N_DEVDIR || dir->removed) {
		err = dir && dir->removed ? ENODEV : EACCES;
		goto out;
	}
	if (device_gone(dir->dev)) {
		err = ENODEV;
		goto out;
	}
	err = node_permission(dir, fuse_req_ctx(req)->uid, fuse_req_ctx(req)->gid, W_OK);
	if (err)
		goto out;
	/* flashed, refused and removed files give their memory back first */
	int count = stage_sweep(parent);
	if (node_child(parent, name)) {
		err = EEXIST;
		goto out;
	}
	if (count >= MAX_STAGES_PER_DIR) {
		err = ENOSPC;
		device_set_error(dir->dev, ENOSPC, "%s: %d files are waiting in the folder; remove "
				 "some", name, count);
		goto out;
	}
	h = calloc(1, sizeof *h);
	struct stage *s = calloc(1, sizeof *s);
	struct node *n = h && s ? node_new(N_STAGE, parent, name, dir->dev) : NULL;
	if (!n) {
		free(h);
		free(s);
		h = NULL;
		err = ENOMEM;
		goto out;
	}
	n->stage = s;
	n->dir = dir;
	s->opens = 1;
	n->nlookup++;
	h->node = n;
	h->dev = n->dev;
	device_ref(h->dev);
	h->flags = fi->flags;
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 0;
	fill_entry(n, &e);
out:
	pthread_mutex_unlock(&vfs.lock);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		espfs_release_handle(fi);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int err = 0;
	if (check_name(name) == -ENAMETOOLONG) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	pthread_mutex_lock(&vfs.lock);
	struct node *n = node_child(parent, name);
	if (!n) {
		err = ENOENT;
	} else if (n->kind != N_STAGE) {
		/* install, tar -x, mv and gio move remove the target first:
		 * the device's files stay, and state says what to do instead */
		err = EPERM;
		if (n->dev)
			device_set_error(n->dev, EPERM, "%s cannot be removed (a tool that deletes "
					 "the target first: install, tar -x, mv, gio move); copy "
					 "onto it instead: cp FILE %s", name, name);
	} else {
		stage_discard(n);  /* dropped, never flashed (also if still open) */
	}
	pthread_mutex_unlock(&vfs.lock);
	fuse_reply_err(req, err);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (check_name(newname) == -ENAMETOOLONG || check_name(name) == -ENAMETOOLONG) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	if (newparent != parent) {
		fuse_reply_err(req, EXDEV);
		return;
	}
	stage_rename(parent, name, req, newname);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	uint64_t size = 0;
	memset(&st, 0, sizeof st);
	pthread_mutex_lock(&vfs.lock);
	struct node *n = node_get(ino);
	if (n && n->dev)
		size = device_flash_size(n->dev);
	pthread_mutex_unlock(&vfs.lock);
	if (!size)
		size = 16u << 20;
	/* free >= any image that fits, so file managers do not refuse a copy */
	st.f_bsize = 4096;
	st.f_frsize = 4096;
	st.f_blocks = size / 4096;
	st.f_bfree = st.f_blocks;
	st.f_bavail = st.f_blocks;
	st.f_files = 1024;
	st.f_ffree = 1024;
	st.f_namemax = 255;
	fuse_reply_statfs(req, &st);
}

static void op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    struct fuse_pollhandle *ph)
{
	(void)ino;
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	unsigned revents = POLLIN | POLLRDNORM;
	if (h->node->kind == N_STATE) {
		pthread_mutex_lock(&vfs.lock);
		bool changed = device_state_gen(h->dev) != h->seen_gen || device_gone(h->dev);
		revents = changed ? POLLIN | POLLRDNORM | POLLPRI : 0;
		if (ph && !changed) {
			if (h->ph)
				fuse_pollhandle_destroy(h->ph);
			h->ph = ph;
			ph = NULL;
		}
		pthread_mutex_unlock(&vfs.lock);
	} else if (h->node->kind == N_CONSOLE) {
		revents = console_poll(h, ph);
		ph = NULL;
	} else if (h->node->kind == N_FLASH || h->node->kind == N_STAGE || h->node->kind == N_ERASE ||
		   h->node->kind == N_WIFI || h->node->kind == N_PART || h->node->kind == N_BOOT) {
		revents |= POLLOUT | POLLWRNORM;
	}
	if (ph)
		fuse_pollhandle_destroy(ph);
	fuse_reply_poll(req, revents);
}

static void op_no_xattr(fuse_req_t req)
{
	/* ENOSYS once and the kernel stops asking for the rest of the mount */
	fuse_reply_err(req, ENOSYS);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	(void)ino;
	(void)name;
	(void)size;
	op_no_xattr(req);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	(void)ino;
	(void)size;
	op_no_xattr(req);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	(void)ino;
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	op_no_xattr(req);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino;
	(void)name;
	op_no_xattr(req);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent;
	(void)name;
	(void)mode;
	fuse_reply_err(req, EPERM);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	pthread_mutex_lock(&vfs.lock);
	struct node *n = node_get(ino);
	int err = !n ? ENOENT : mask == F_OK ? 0 : node_permission(n, ctx->uid, ctx->gid, mask);
	pthread_mutex_unlock(&vfs.lock);
	fuse_reply_err(req, err);
}

const struct fuse_lowlevel_ops espfs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rename = op_rename,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.readdir = op_readdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.access = op_access,
	.create = op_create,
	.poll = op_poll,
};
