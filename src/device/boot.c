/* Which app partition boots: the `boot` file.  Read: what ESP-IDF's
 * 2nd-stage bootloader picks from otadata (the valid entry with the
 * higher ota_seq selects OTA slot (seq - 1) % n; none: factory, else
 * ota_0).  Write: a new select entry as esp_ota_set_boot_partition() and
 * otatool write it (ota_seq the smallest value >= the active one that
 * selects the slot, CRC-32 of it, state "undefined"), into the entry that
 * is NOT active, so an interrupted switch leaves the old choice in force;
 * "factory" erases otadata (ESP-IDF does the same).  PROTOCOL.md A18. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "device_i.h"
#include "espfs/image.h"
#include "espfs/log.h"

struct boot_layout {
	struct dev_identity id;
	int otadata;          /* index in id.parts, -1 none */
	int factory;
	int ota[16];          /* by slot number: index in id.parts, -1 none */
	int n_ota;            /* OTA app partitions (the bootloader's app_count) */
};

static void layout(esp_device *d, struct boot_layout *b)
{
	device_identity(d, &b->id);
	b->otadata = b->factory = -1;
	b->n_ota = 0;
	for (int i = 0; i < 16; i++)
		b->ota[i] = -1;
	for (int i = 0; i < b->id.n_parts; i++) {
		const struct dev_partition *p = &b->id.parts[i];
		if (p->type == ESP_PT_TYPE_DATA && p->subtype == ESP_PT_DATA_OTA && b->otadata < 0)
			b->otadata = i;
		else if (p->type == ESP_PT_TYPE_APP && p->subtype == ESP_PT_APP_FACTORY && b->factory < 0)
			b->factory = i;
		else if (p->type == ESP_PT_TYPE_APP && p->subtype >= ESP_PT_APP_OTA0 &&
			 p->subtype <= ESP_PT_APP_OTA15 && b->ota[p->subtype - ESP_PT_APP_OTA0] < 0) {
			b->ota[p->subtype - ESP_PT_APP_OTA0] = i;
			b->n_ota++;
		}
	}
}

/* The otadata partition's two entries (0x2000 bytes from the chip, the
 * head or the read cache). */
static int read_otadata(esp_device *d, struct dev_job *j, const struct boot_layout *b, uint8_t *buf)
{
	const struct dev_partition *p = &b->id.parts[b->otadata];
	if (p->size < ESP_OTADATA_LEN) {
		snprintf(j->err, sizeof j->err, "otadata partition '%s' is 0x%x bytes, less than the "
			 "two sectors it needs", p->label, p->size);
		return -EINVAL;
	}
	return dev_read_range(d, j, p->offset, buf, ESP_OTADATA_LEN, false);
}

/* The bootloader's choice, as the index of the partition in id.parts. */
static int selected(const struct boot_layout *b, const uint8_t *otadata)
{
	uint32_t seq = 0;
	if (otadata && b->n_ota && esp_otadata_active(otadata, ESP_OTADATA_LEN, &seq) >= 0) {
		int slot = (int)((seq - 1) % (uint32_t)b->n_ota);
		if (b->ota[slot] >= 0)
			return b->ota[slot];
	}
	if (b->factory >= 0)
		return b->factory;
	return b->ota[0];
}

static const char *part_name(const struct dev_partition *p)
{
	const char *s = esp_pt_subtype_name(p->type, p->subtype);
	return s ? s : p->label;
}

int dev_job_boot_get(esp_device *d, struct dev_job *j)
{
	struct boot_layout *b = malloc(sizeof *b);
	uint8_t *od = malloc(ESP_OTADATA_LEN);
	int rc = 0;
	j->slot[0] = 0;
	if (!b || !od) {
		rc = -ENOMEM;
		goto out;
	}
	layout(d, b);
	if (b->factory < 0 && b->n_ota == 0)
		goto out;  /* no table, or no app partition: nothing to say */
	if (b->otadata >= 0) {
		/* A running app is not reset to answer a read (files.md: reading
		 * a file never resets a chip): what espfs last read or wrote
		 * there answers; an OTA the app made since shows once the chip
		 * is next in the loader. */
		const struct dev_partition *p = &b->id.parts[b->otadata];
		if (d->in_loader || p->size < ESP_OTADATA_LEN ||
		    dev_head_peek(d, p->offset, od, ESP_OTADATA_LEN) < 0)
			rc = read_otadata(d, j, b, od);
		if (rc < 0)
			goto out;
	}
	int sel = selected(b, b->otadata >= 0 ? od : NULL);
	if (sel >= 0)
		snprintf(j->slot, sizeof j->slot, "%s", part_name(&b->id.parts[sel]));
out:
	free(b);
	free(od);
	return rc;
}

/* The app partition a name means: "factory", "ota_N", or a label. */
static int resolve(const struct boot_layout *b, const char *name)
{
	if (!strcmp(name, "factory"))
		return b->factory;
	for (int s = 0; s < 16; s++) {
		char n[8];
		snprintf(n, sizeof n, "ota_%d", s);
		if (!strcmp(name, n))
			return b->ota[s];
	}
	for (int i = 0; i < b->id.n_parts; i++)
		if (b->id.parts[i].type == ESP_PT_TYPE_APP && !strcmp(b->id.parts[i].label, name))
			return (b->id.parts[i].subtype == ESP_PT_APP_FACTORY ||
				(b->id.parts[i].subtype >= ESP_PT_APP_OTA0 &&
				 b->id.parts[i].subtype <= ESP_PT_APP_OTA15)) ? i : -1;
	return -1;
}

/* The slot must hold an app for this chip, or the bootloader would pass
 * over it (and boot another one) at the next reset: its header is read
 * and judged as a write of it would be.  A chip that cannot read (a ROM
 * without the stub) is not checked, and the note says so. */
static int check_slot(esp_device *d, struct dev_job *j, const struct dev_partition *p, bool *checked)
{
	*checked = false;
	uint8_t *hdr = malloc(ESP_IMAGE_CHECK_PREFIX);
	if (!hdr)
		return -ENOMEM;
	int rc = dev_read_range(d, j, p->offset, hdr, ESP_IMAGE_CHECK_PREFIX, false);
	if (rc == -EOPNOTSUPP || (rc < 0 && d->ld && !esp_loader_can_read(d->ld))) {
		j->err[0] = 0;
		free(hdr);
		return 0;
	}
	if (rc == 0) {
		char why[240];
		*checked = true;
		if (hdr[0] == 0xFF && !memcmp(hdr, hdr + 1, 255)) {
			snprintf(j->err, sizeof j->err, "boot: %s (%s at 0x%x) is empty; copy an app "
				 "into partitions/%s first", part_name(p), p->label, p->offset, p->label);
			rc = -ENOENT;
		} else if (device_app_check(d, p->offset, hdr, ESP_IMAGE_CHECK_PREFIX, false, why,
					    sizeof why) < 0) {
			snprintf(j->err, sizeof j->err, "boot: %s (%s at 0x%x) does not hold a bootable "
				 "app: %s", part_name(p), p->label, p->offset, why);
			rc = -ENOEXEC;
		}
	}
	free(hdr);
	return rc;
}

/* Write one 4 KiB otadata sector (or erase the partition: buf NULL)
 * through the ordinary write/erase path: verified, journalled, cached. */
static int put_sector(esp_device *d, struct dev_job *j, uint32_t off, uint8_t *buf, uint32_t len)
{
	uint32_t o = j->offset, l = j->len;
	uint8_t *b = j->buf;
	j->offset = off;
	j->len = len;
	j->buf = buf;
	int rc = buf ? dev_job_write(d, j) : dev_job_erase(d, j);
	j->offset = o;
	j->len = l;
	j->buf = b;
	return rc;
}

int dev_job_boot_set(esp_device *d, struct dev_job *j)
{
	struct boot_layout *b = malloc(sizeof *b);
	uint8_t *od = malloc(ESP_OTADATA_LEN);
	int rc = 0;
	if (!b || !od) {
		rc = -ENOMEM;
		goto out;
	}
	layout(d, b);
	if (b->factory < 0 && b->n_ota == 0) {
		snprintf(j->err, sizeof j->err, "boot: the chip has no partition table with an app "
			 "partition");
		rc = -EOPNOTSUPP;
		goto out;
	}
	int want = resolve(b, j->slot);
	if (want < 0) {
		snprintf(j->err, sizeof j->err, "boot: no app partition \"%s\" (factory, ota_N or "
			 "an app partition's label; see partitions/table.csv)", j->slot);
		rc = -EINVAL;
		goto out;
	}
	const struct dev_partition *p = &b->id.parts[want];
	if (b->otadata < 0) {
		/* without otadata the bootloader boots factory (else ota_0) */
		if (want == selected(b, NULL))
			goto out;
		snprintf(j->err, sizeof j->err, "boot: the table has no otadata partition, so the "
			 "bootloader always starts %s", part_name(&b->id.parts[selected(b, NULL)]));
		rc = -EOPNOTSUPP;
		goto out;
	}
	bool checked = false;
	rc = check_slot(d, j, p, &checked);
	if (rc < 0)
		goto out;
	const struct dev_partition *odp = &b->id.parts[b->otadata];
	if (p->subtype == ESP_PT_APP_FACTORY) {
		rc = put_sector(d, j, odp->offset, NULL, ESP_OTADATA_LEN);
		if (rc == 0)
			LOGI("%s: boot: otadata erased, factory boots", d->name);
		goto out;
	}
	int slot = p->subtype - ESP_PT_APP_OTA0;
	if (slot >= b->n_ota) {
		/* the bootloader counts OTA partitions and takes (seq-1) % count:
		 * with a gap in the numbering it can never pick this one */
		snprintf(j->err, sizeof j->err, "boot: %s cannot be selected: the table has %d OTA "
			 "app partitions and the bootloader numbers them 0..%d", part_name(p), b->n_ota,
			 b->n_ota - 1);
		rc = -EINVAL;
		goto out;
	}
	uint32_t cur = 0;
	int active = -1;
	rc = read_otadata(d, j, b, od);
	if (rc == 0) {
		active = esp_otadata_active(od, ESP_OTADATA_LEN, &cur);
	} else if (d->ld && !esp_loader_can_read(d->ld)) {
		/* a ROM that cannot read: write the whole partition, the new
		 * entry first and the second one erased, as otatool does */
		j->err[0] = 0;
		memset(od, 0xFF, ESP_OTADATA_LEN);
		esp_otadata_entry(od, (uint32_t)slot + 1);
		rc = put_sector(d, j, odp->offset, od, ESP_OTADATA_LEN);
		if (rc == 0)
			LOGI("%s: boot: %s selected (ota_seq %d, otadata rewritten)", d->name, part_name(p),
			     slot + 1);
		goto out;
	} else {
		goto out;
	}
	uint32_t seq = esp_otadata_next_seq(cur, slot, b->n_ota);
	if (!seq) {
		snprintf(j->err, sizeof j->err, "boot: otadata's sequence number 0x%x has no room "
			 "left; write factory first", cur);
		rc = -EOVERFLOW;
		goto out;
	}
	int next = active < 0 ? 0 : !active;
	uint8_t *sec = od + 0x1000u * (unsigned)next;
	memset(sec, 0xFF, 0x1000);
	esp_otadata_entry(sec, seq);
	rc = put_sector(d, j, odp->offset + 0x1000u * (unsigned)next, sec, 0x1000);
	if (rc == 0) {
		LOGI("%s: boot: %s (%s) selected: otadata entry %d, ota_seq %u%s", d->name,
		     part_name(p), p->label, next, seq, checked ? "" : " (its app was not checked: "
		     "the chip cannot read)");
		if (!checked) {
			char note[200];
			snprintf(note, sizeof note, "boot: %s selected; the %s ROM cannot read, so the app "
				 "in it was not checked", part_name(p),
				 esp_loader_chip(d->ld) ? esp_loader_chip(d->ld)->name : "chip's");
			dev_set_note(d, note);
		}
	}
out:
	free(b);
	free(od);
	return rc;
}
