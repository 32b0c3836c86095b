/* partitions/: one file per partition of the table the device holds (read
 * at attach, re-read whenever a write covers 0x8000), named by its label,
 * links by subtype name to the app slots, and table.csv.  The files themselves are windows onto flash.bin
 * (fsops.c, flashwrite.c); here the folder follows the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "espfs/log.h"
#include "vfs.h"

#define CSV_NAME "table.csv"

static struct node *find_dir(esp_device *d, enum node_kind kind, uint64_t parent)
{
	for (struct node *n = vfs.nodes; n; n = n->next)
		if (n->kind == kind && n->dev == d && !n->removed && (!parent || n->parent == parent))
			return n;
	return NULL;
}

/* A label that cannot be a file name here ("", ".", "..", one with a '/',
 * or "table.csv") or repeats an earlier one gets no file: gen_esp32part
 * refuses such tables, so only a hand-made one has them. */
static bool usable(const struct dev_identity *id, int i)
{
	const char *l = id->parts[i].label;
	if (!l[0] || !strcmp(l, ".") || !strcmp(l, "..") || strchr(l, '/') || !strcmp(l, CSV_NAME))
		return false;
	for (int k = 0; k < i; k++)
		if (!strcmp(id->parts[k].label, l))
			return false;
	return true;
}

/* The app partitions also answer to their subtype names (ota_0, ota_1,
 * factory) where no label takes them: ESPHome and Arduino label their
 * slots app0/app1, ESP-IDF's defaults ota_0/ota_1, and `boot` speaks of
 * ota_N.  A symlink to the label's file, so `ls -l` shows which is which
 * and `cp app.bin partitions/ota_1` works on either layout. */
static bool alias_of(const struct dev_identity *id, int i, char *out, size_t cap)
{
	const struct dev_partition *p = &id->parts[i];
	if (p->type != 0x00 || !usable(id, i))
		return false;
	if (p->subtype == 0x00)
		snprintf(out, cap, "factory");
	else if (p->subtype >= 0x10 && p->subtype <= 0x1F)
		snprintf(out, cap, "ota_%d", p->subtype - 0x10);
	else
		return false;
	for (int k = 0; k < id->n_parts; k++) {
		if (!strcmp(id->parts[k].label, out))
			return false;  /* a label of that name is the file */
		if (k < i && id->parts[k].type == 0x00 && id->parts[k].subtype == p->subtype)
			return false;  /* the first of two with one subtype has it */
	}
	return true;
}

void parts_sync(esp_device *d)
{
	struct node *dev = find_dir(d, N_DEVDIR, ROOT_INO);
	struct node *pd = dev ? find_dir(d, N_PARTDIR, dev->ino) : NULL;
	if (!pd)
		return;
	/* state events come many times a second during a flash; the table
	 * itself changes only when a write covers it */
	unsigned gen = device_parts_gen(d);
	if (pd->parts_made && pd->parts_gen == gen)
		return;
	struct dev_identity *id = malloc(sizeof *id);
	if (!id)
		return;
	device_identity(d, id);
	pd->parts_gen = id->parts_gen;
	pd->parts_made = true;
	bool changed = false;
	/* files whose partition left the table (or moved) go first */
	for (struct node *n = vfs.nodes, *next; n; n = next) {
		next = n->next;
		if (n->parent != pd->ino || n->removed)
			continue;
		int keep = -1;
		if (n->kind == N_PART) {
			for (int i = 0; i < id->n_parts && keep < 0; i++)
				if (!strcmp(id->parts[i].label, n->name) && usable(id, i))
					keep = i;
		} else if (n->kind == N_PTCSV && id->n_parts) {
			keep = 0;
		} else if (n->kind == N_LINK) {
			char al[16];
			for (int i = 0; i < id->n_parts && keep < 0; i++)
				if (alias_of(id, i, al, sizeof al) && !strcmp(al, n->name) &&
				    !strcmp(n->target, id->parts[i].label))
					keep = i;
		}
		if (keep < 0) {
			if (n->nlookup)
				notify_delete(pd->ino, n->ino, n->name);
			node_remove(n);
			changed = true;
			continue;
		}
		if (n->kind != N_PART)
			continue;
		const struct dev_partition *p = &id->parts[keep];
		if (n->part.offset != p->offset || n->part.size != p->size || n->part.type != p->type ||
		    n->part.subtype != p->subtype) {
			/* same label, another place: the open handles keep the
			 * window they opened (a writer goes on where it began) */
			n->part = (struct part_ref){ p->offset, p->size, p->type, p->subtype };
			clock_gettime(CLOCK_REALTIME, &n->mtime);
			notify_inval_inode(n->ino);
		}
	}
	for (int i = 0; i < id->n_parts; i++) {
		if (!usable(id, i) || node_child(pd->ino, id->parts[i].label))
			continue;
		const struct dev_partition *p = &id->parts[i];
		struct node *n = node_new(N_PART, pd->ino, p->label, d);
		if (!n)
			break;
		n->dir = dev;
		n->part = (struct part_ref){ p->offset, p->size, p->type, p->subtype };
		notify_inval_entry(pd->ino, p->label);
		changed = true;
	}
	for (int i = 0; i < id->n_parts; i++) {
		char al[16];
		if (!alias_of(id, i, al, sizeof al) || node_child(pd->ino, al))
			continue;
		struct node *n = node_new(N_LINK, pd->ino, al, d);
		if (!n)
			break;
		n->dir = dev;
		snprintf(n->target, sizeof n->target, "%s", id->parts[i].label);
		notify_inval_entry(pd->ino, al);
		changed = true;
	}
	if (id->n_parts && !node_child(pd->ino, CSV_NAME)) {
		struct node *n = node_new(N_PTCSV, pd->ino, CSV_NAME, d);
		if (n)
			n->dir = dev;
		notify_inval_entry(pd->ino, CSV_NAME);
		changed = true;
	}
	if (changed) {
		clock_gettime(CLOCK_REALTIME, &pd->mtime);
		notify_inval_inode(pd->ino);
	}
	free(id);
}
