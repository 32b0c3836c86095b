/* The inode table: root, by-mac/, one directory per device with its fixed
 * files, staging files.  Inode numbers are never reused; a node lives until
 * it is removed and the kernel forgot it (nlookup 0).  Device events
 * (attach, unplug, state change) arrive here and become notifications. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "vfs.h"

struct vfs vfs = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const struct {
	const char *name;
	enum node_kind kind;
} dev_files[] = {
	{ "chip", N_CHIP }, { "mac", N_MAC }, { "flash.bin", N_FLASH }, { "erase", N_ERASE },
	{ "wifi", N_WIFI }, { "state", N_STATE }, { "info.json", N_INFO },
	{ "console", N_CONSOLE }, { "boot", N_BOOT },
};

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct node *node_new(enum node_kind kind, uint64_t parent, const char *name, esp_device *dev)
{
	struct node *n = calloc(1, sizeof *n);
	if (!n)
		return NULL;
	n->ino = vfs.next_ino++;
	n->kind = kind;
	n->parent = parent;
	snprintf(n->name, sizeof n->name, "%s", name);
	n->dev = dev;
	if (dev)
		device_ref(dev);
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	n->next = vfs.nodes;
	vfs.nodes = n;
	return n;
}

void nodes_init(void)
{
	vfs.next_ino = ROOT_INO;
	vfs.uid = getuid();
	vfs.gid = getgid();
	clock_gettime(CLOCK_REALTIME, &vfs.start);
	node_new(N_ROOT, 0, "", NULL);
	node_new(N_BYMAC, ROOT_INO, "by-mac", NULL);
}

struct node *node_get(uint64_t ino)
{
	for (struct node *n = vfs.nodes; n; n = n->next)
		if (n->ino == ino)
			return n;
	return NULL;
}

struct node *node_child(uint64_t parent, const char *name)
{
	/* next is taken before the body: node_remove() may free n */
	for (struct node *n = vfs.nodes, *next; n; n = next) {
		next = n->next;
		if (n->parent == parent && !n->removed && !strcmp(n->name, name)) {
			if (n->kind == N_STAGE && stage_expired(n)) {
				node_remove(n);
				continue;
			}
			return n;
		}
	}
	return NULL;
}

uint32_t part_extent(const struct node *n)
{
	uint32_t fl = device_flash_size(n->dev);
	if (!fl)
		return n->part.size;  /* not known yet: as the table says */
	if (n->part.offset >= fl)
		return 0;
	return fl - n->part.offset < n->part.size ? fl - n->part.offset : n->part.size;
}

bool node_is_file(const struct node *n)
{
	return n->kind >= N_CHIP;
}

/* The same answer as the kernel's default_permissions check on the modes
 * node_fill_attr gives, made here too so that the policy holds even if a
 * mount option changes: never rely on one layer for the secrets. */
int node_permission(const struct node *n, uid_t uid, gid_t gid, int mask)
{
	struct stat st;
	if (uid == 0)
		return 0;  /* root reads the block device anyway */
	node_fill_attr((struct node *)n, &st);
	unsigned bits = uid == vfs.uid ? (st.st_mode >> 6) & 7 : gid == vfs.gid ? (st.st_mode >> 3) & 7
										  : st.st_mode & 7;
	unsigned want = (mask & R_OK ? 4u : 0) | (mask & W_OK ? 2u : 0) | (mask & X_OK ? 1u : 0);
	return (bits & want) == want ? 0 : EACCES;
}

static void node_free(struct node *victim)
{
	for (struct node **pp = &vfs.nodes; *pp; pp = &(*pp)->next)
		if (*pp == victim) {
			*pp = victim->next;
			break;
		}
	if (victim->stage)
		stage_free(victim->stage);
	if (victim->dev)
		device_unref(victim->dev);
	free(victim);
}

void node_remove(struct node *n)
{
	n->removed = true;
	if (n->nlookup == 0 && n->ino > BYMAC_INO)
		node_free(n);
}

void node_forget(struct node *n, uint64_t count)
{
	n->nlookup = count > n->nlookup ? 0 : n->nlookup - count;
	if (n->nlookup == 0 && n->removed && n->ino > BYMAC_INO)
		node_free(n);
}

void nodes_free_all(void)
{
	while (vfs.nodes) {
		struct node *n = vfs.nodes;
		vfs.nodes = n->next;
		if (n->stage)
			stage_free(n->stage);
		if (n->dev)
			device_unref(n->dev);
		free(n);
	}
}

void node_fill_attr(struct node *n, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = n->ino;
	st->st_uid = vfs.uid;
	st->st_gid = vfs.gid;
	st->st_atim = vfs.start;
	st->st_mtim = n->mtime;
	st->st_ctim = n->mtime;
	st->st_nlink = 1;
	st->st_blksize = 4096;
	size_t len = 0;
	switch (n->kind) {
	case N_ROOT:
	case N_BYMAC:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		break;
	case N_DEVDIR:
		/* writable so files can be dropped in (staging) */
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 3;
		break;
	case N_PARTDIR:
		st->st_mode = S_IFDIR | 0555;  /* the table decides what is in it */
		st->st_nlink = 2;
		break;
	case N_PART:
		/* NVS holds the Wi-Fi password: like flash.bin */
		st->st_mode = S_IFREG | 0600;
		st->st_size = part_extent(n);
		break;
	case N_PTCSV: {
		char *t = device_partitions_csv(n->dev, &len);
		free(t);
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)len;
		break;
	}
	case N_BOOT:
		/* read from the chip on open: the size is not known before */
		st->st_mode = S_IFREG | 0644;
		break;
	case N_LINK:
		st->st_mode = S_IFLNK | 0777;
		st->st_size = (off_t)strlen(n->target);
		break;
	case N_FLASH:
		/* the whole flash: NVS holds the Wi-Fi password on real devices */
		st->st_mode = S_IFREG | 0600;
		st->st_size = device_flash_size(n->dev);
		break;
	case N_ERASE:
		st->st_mode = S_IFREG | 0200;
		break;
	case N_WIFI:
	case N_CHIP:
	case N_MAC:
	case N_STATE:
	case N_INFO: {
		char *t = attr_text(n, &len, true);
		free(t);
		st->st_mode = S_IFREG | (n->kind == N_WIFI ? 0600 : n->kind == N_STATE ? 0644 : 0444);
		st->st_size = (off_t)len;
		break;
	}
	case N_STAGE:
		st->st_mode = S_IFREG | 0600;  /* an image on its way to flash */
		st->st_size = (off_t)n->stage->len;
		break;
	case N_CONSOLE:
		/* the bytes printed so far: tail -f sees it grow */
		st->st_mode = S_IFREG | 0600;
		st->st_size = (off_t)device_console_size(n->dev);
		break;
	}
	st->st_blocks = (st->st_size + 511) / 512;
}

static void mac_name(esp_device *d, char *out, size_t cap)
{
	struct dev_identity id;
	device_identity(d, &id);
	if (!id.known) {
		out[0] = 0;
		return;
	}
	snprintf(out, cap, "%02x:%02x:%02x:%02x:%02x:%02x", id.mac[0], id.mac[1], id.mac[2],
		 id.mac[3], id.mac[4], id.mac[5]);
}

static void device_added(esp_device *d)
{
	char mac[20];
	mac_name(d, mac, sizeof mac);
	pthread_mutex_lock(&vfs.lock);
	struct node *dir = node_child(ROOT_INO, device_name(d));
	bool fresh = !dir;
	if (dir && dir->dev != d) {
		pthread_mutex_unlock(&vfs.lock);
		return;
	}
	if (!dir)
		dir = node_new(N_DEVDIR, ROOT_INO, device_name(d), d);
	if (dir && fresh) {
		for (size_t i = 0; i < sizeof dev_files / sizeof dev_files[0]; i++) {
			struct node *f = node_new(dev_files[i].kind, dir->ino, dev_files[i].name, d);
			if (f)
				f->dir = dir;
		}
		struct node *pd = node_new(N_PARTDIR, dir->ino, "partitions", d);
		if (pd)
			pd->dir = dir;
	}
	if (dir)
		parts_sync(d);
	if (dir && mac[0] && !node_child(BYMAC_INO, mac)) {
		struct node *l = node_new(N_LINK, BYMAC_INO, mac, d);
		if (l)
			snprintf(l->target, sizeof l->target, "../%s", device_name(d));
	}
	pthread_mutex_unlock(&vfs.lock);
	notify_inval_entry(ROOT_INO, device_name(d));
	notify_inval_inode(ROOT_INO);
	if (mac[0])
		notify_inval_entry(BYMAC_INO, mac);
}

static void device_removed(esp_device *d)
{
	pthread_mutex_lock(&vfs.lock);
	struct node *dir = NULL;
	for (struct node *n = vfs.nodes; n; n = n->next)
		if (n->kind == N_DEVDIR && n->dev == d && !n->removed)
			dir = n;
	if (!dir) {
		pthread_mutex_unlock(&vfs.lock);
		return;
	}
	uint64_t dino = dir->ino;
	char dname[256];
	snprintf(dname, sizeof dname, "%s", dir->name);
	for (struct node *n = vfs.nodes, *next; n; n = next) {
		next = n->next;
		if (n->removed || n->dev != d || n == dir)
			continue;
		if (n->nlookup)
			notify_delete(n->parent, n->ino, n->name);
		node_remove(n);
	}
	/* wake pollers so they see the end */
	for (struct handle *h = vfs.state_handles; h; h = h->next_state)
		if (h->dev == d && h->ph) {
			notify_poll(h->ph);
			h->ph = NULL;
		}
	notify_delete(ROOT_INO, dino, dname);
	node_remove(dir);
	pthread_mutex_unlock(&vfs.lock);
	notify_inval_inode(ROOT_INO);
}

void nodes_device_state(esp_device *d)
{
	pthread_mutex_lock(&vfs.lock);
	parts_sync(d);  /* a write over 0x8000 may have changed the table */
	for (struct node *n = vfs.nodes; n; n = n->next)
		if (n->dev == d && !n->removed && n->nlookup &&
		    (n->kind == N_STATE || n->kind == N_WIFI || n->kind == N_INFO ||
		     n->kind == N_PTCSV))
			notify_inval_inode(n->ino);
	for (struct handle *h = vfs.state_handles; h; h = h->next_state)
		if (h->dev == d && h->ph) {
			notify_poll(h->ph);
			h->ph = NULL;
		}
	pthread_mutex_unlock(&vfs.lock);
}

void vfs_device_event(void *ctx, esp_device *d, enum dev_event ev)
{
	(void)ctx;
	switch (ev) {
	case DEV_EV_ADDED:
		device_added(d);
		break;
	case DEV_EV_REMOVED:
		device_removed(d);
		console_wake(d);  /* waiting readers learn it is gone */
		break;
	case DEV_EV_STATE:
		notify_device_state(d);
		break;
	case DEV_EV_CONSOLE:
		console_wake(d);
		break;
	}
}
