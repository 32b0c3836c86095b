/* Private to src/fs: the inode table, open handles, and the pieces of the
 * FUSE layer (fsops.c glue, flashwrite.c, staging.c, attrs.c, notify.c).
 *
 * Locking: one mutex (vfs.lock) guards the node table and handle lists;
 * no device I/O and no FUSE reply that may block happens under it, except
 * replies of data already in memory. */
#ifndef ESPFS_VFS_H
#define ESPFS_VFS_H
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "espfs/device.h"
#include "parse.h"

enum node_kind {
	N_ROOT, N_BYMAC, N_LINK, N_DEVDIR, N_PARTDIR,
	/* files from here on (node_is_file) */
	N_CHIP, N_MAC, N_FLASH, N_ERASE, N_WIFI, N_STATE, N_INFO, N_CONSOLE,
	N_STAGE,
	N_PART,     /* partitions/LABEL: that range of flash.bin */
	N_PTCSV,    /* partitions/table.csv */
	N_BOOT,     /* boot: the app partition that boots */
};

/* N_PART: where the partition is (from the table at the time the node
 * was made or last updated) */
struct part_ref {
	uint32_t offset, size;
	uint8_t type, subtype;
};

struct stage {
	uint8_t *buf;
	size_t len, cap;
	bool dirty;               /* written since the last commit */
	bool committing;
	bool committed;
	bool failed;              /* last commit refused or failed */
	bool discarded;           /* unlinked or replaced: never flashed, memory freed */
	bool leftover;            /* its writer closed it uncommitted: only a rename flashes it */
	bool interrupted;         /* its writer's copy ended early: never flashed until rewritten */
	int opens;
	uint64_t committed_at_ms;
	/* a rename that arrived while a commit ran: answered with its result */
	fuse_req_t wait_rename;
	char wait_name[256];
};

struct flash_writer;

struct node {
	uint64_t ino;
	enum node_kind kind;
	uint64_t nlookup;
	uint64_t parent;
	char name[256];
	esp_device *dev;          /* referenced; NULL for root, by-mac */
	struct node *dir;         /* the device directory of a device file */
	bool removed;
	char target[300];         /* N_LINK */
	struct stage *stage;      /* N_STAGE */
	struct part_ref part;     /* N_PART */
	/* N_PARTDIR: the device's parts_gen its files were made from */
	unsigned parts_gen;
	bool parts_made;
	struct flash_writer *writer; /* N_DEVDIR: the open flash.bin writer */
	int commits;              /* N_DEVDIR: staging commits running */
	int erasing;              /* N_DEVDIR: erase jobs running */
	struct timespec mtime;
	struct node *next;
};

struct handle {
	struct node *node;
	esp_device *dev;          /* referenced */
	int flags;
	char *snap;               /* text files: value as of the last read at 0 */
	size_t snap_len;
	unsigned seen_gen;        /* state: generation last read */
	struct fuse_pollhandle *ph;
	struct flash_writer *fw;
	bool wrote;               /* staging: this handle wrote data (a writer) */
	struct handle *next_state;
	bool owner;               /* opened by the mount's owner (or root) */
	/* boot reads: jobs still to answer that keep their result here; a
	 * handle released meanwhile is freed by the last of them */
	int jobs;
	bool released;
	struct con_reader *con;   /* console: fs_console.c */
	/* flash.bin reads: where this handle's sequential run of reads
	 * began and where its next read would follow on (state shows the
	 * progress of the whole run, not of one 128 KiB request) */
	uint64_t rd_start, rd_next;
};

struct vfs {
	pthread_mutex_t lock;
	struct node *nodes;
	uint64_t next_ino;
	struct fuse_session *se;
	esp_devmgr *mgr;
	uid_t uid;
	gid_t gid;
	struct timespec start;
	struct handle *state_handles;
	size_t staged_bytes;      /* RAM held by staging files */
};

extern struct vfs vfs;
extern const struct fuse_lowlevel_ops espfs_ops;

#define ROOT_INO 1
#define BYMAC_INO 2
#define STAGING_RAM_CAP (96u << 20)

/* nodes.c (callers hold vfs.lock) */
void nodes_init(void);
struct node *node_get(uint64_t ino);
struct node *node_child(uint64_t parent, const char *name);
struct node *node_new(enum node_kind kind, uint64_t parent, const char *name, esp_device *dev);
void node_forget(struct node *n, uint64_t count);
void node_remove(struct node *n);
void node_fill_attr(struct node *n, struct stat *st);
bool node_is_file(const struct node *n);
/* N_PART: the bytes of its partition the chip has (a table that claims
 * more than the flash ends at its end); its size and where reads end. */
uint32_t part_extent(const struct node *n);
/* Who may do what (docs/files.md "Who may read what"): the mount's owner
 * and root everything the modes allow; other users (-o allow_other) only
 * the world-readable files.  0 or EACCES; mask as for access(2). */
int node_permission(const struct node *n, uid_t uid, gid_t gid, int mask);
void nodes_free_all(void);
void vfs_device_event(void *ctx, esp_device *d, enum dev_event ev);

/* notify.c: notifications from a thread of their own (never from inside a
 * request handler, per libfuse). */
int notify_start(struct fuse_session *se);
void notify_stop(void);
void notify_inval_inode(uint64_t ino);
void notify_inval_entry(uint64_t parent, const char *name);
void notify_delete(uint64_t parent, uint64_t child, const char *name);
void notify_poll(struct fuse_pollhandle *ph);  /* takes ownership */
/* A device's state changed: invalidate its volatile files and wake
 * pollers, later, from the notifier thread.  Device events may come from
 * code that holds our locks (a refusal decided in write()), so the work
 * that takes vfs.lock never runs in the caller. */
void notify_device_state(esp_device *d);
void nodes_device_state(esp_device *d);  /* nodes.c; takes vfs.lock */

/* attrs.c: the text of read-only files (malloc'd); the parsers of the
 * write-only ones are in parse.h.  secrets false: for a reader other than
 * the mount's owner (info.json leaves out the SSID). */
char *attr_text(struct node *n, size_t *len, bool secrets);

/* flashwrite.c: flash.bin writes, streamed to the device.  fw_open_range:
 * a window [base, base+size) of the flash (a partition) named `name` in
 * messages; app_only: only an app image for this chip may start there. */
struct flash_writer *fw_open(esp_device *d);
struct flash_writer *fw_open_range(esp_device *d, uint32_t base, uint32_t size, const char *name,
				   bool app_only);
void fw_write(struct flash_writer *fw, fuse_req_t req, const char *buf, size_t size, off_t off);
void fw_commit(struct flash_writer *fw, fuse_req_t req);
void fw_release(struct flash_writer *fw);
bool fw_busy(struct flash_writer *fw);
/* data written and not yet committed (a stream in progress) */
bool fw_active(struct flash_writer *fw);
/* A read on the writer's own handle sees what it wrote: the part of
 * [off, off+len) still buffered (not yet handed to the device) is copied
 * into *ov (malloc'd, NULL when none) at *ov_off; returns true when jobs
 * of this writer are queued or running, so the read must queue behind
 * them instead of using a cache. */
bool fw_read_overlay(struct flash_writer *fw, uint32_t off, size_t len, uint8_t **ov,
		     uint32_t *ov_off, size_t *ov_len);

/* staging.c */
void stage_write(struct handle *h, fuse_req_t req, const char *buf, size_t size, off_t off);
int stage_truncate(struct node *n, off_t size);
void stage_flush(struct handle *h, fuse_req_t req);
void stage_fsync(struct handle *h, fuse_req_t req);
void stage_rename(uint64_t parent, const char *name, fuse_req_t req, const char *newname);
void stage_free(struct stage *s);
bool stage_expired(struct node *n);
/* vfs.lock held: forget n's data (never flashed) and remove the node */
void stage_discard(struct node *n);
/* vfs.lock held: the last handle closed (leftovers never flash) */
void stage_closed(struct node *n);
/* vfs.lock held: free expired and removed staging files; returns how
 * many live ones parent holds */
int stage_sweep(uint64_t parent);
/* vfs.lock held: why dir's device cannot take another writer now
 * (-EBUSY, reason in state) or 0 */
int dir_writer_busy(struct node *dir, const char *who);

/* fs_console.c: the console stream (see there).  console_wake() is called
 * for DEV_EV_CONSOLE and DEV_EV_REMOVED, from any thread but with no lock
 * of ours held. */
struct con_reader;
int console_open(struct handle *h);
void console_release(struct handle *h);
void console_read(fuse_req_t req, struct handle *h, size_t size, off_t off, int flags);
void console_write(fuse_req_t req, struct handle *h, const char *buf, size_t size);
unsigned console_poll(struct handle *h, struct fuse_pollhandle *ph);
void console_wake(esp_device *d);
void console_shutdown(void);

/* partitions.c: the partitions/ folder follows the device's table (called
 * with vfs.lock held, on attach and on every state change of d) */
void parts_sync(esp_device *d);

/* fsops.c: free an open handle (release, or an open the kernel dropped). */
void espfs_release_handle(struct fuse_file_info *fi);

/* Reply helpers for deferred requests (fsops.c): detach the interrupt
 * callback first, so it can never run on freed job memory. */
uint64_t now_ms(void);

#endif
