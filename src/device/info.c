/* info.json: every attribute of a device in one object, for scripts.
 * Built from the cached identity and state; never touches the device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "device_i.h"
#include "espfs/image.h"
#include "espfs/text.h"

static const char *sim_mode_name(sim_mode m)
{
	switch (m) {
	case SIM_MODE_OFF: return "off";
	case SIM_MODE_ROM: return "rom";
	case SIM_MODE_STUB: return "stub";
	case SIM_MODE_APP: return "app";
	case SIM_MODE_BOOT_LOOP: return "boot-loop";
	}
	return "unknown";
}

/* Every string goes in escaped (espfs/text.h): SSIDs, Improv strings,
 * partition labels and USB descriptors come from outside and may hold any
 * bytes; cJSON copies them raw, and one invalid UTF-8 byte would make the
 * whole file invalid JSON. */
static void add_str(cJSON *o, const char *k, const char *v)
{
	char b[1024];
	esp_text_escape(b, sizeof b, v, strlen(v));
	cJSON_AddStringToObject(o, k, b);
}

static void add_hex(cJSON *o, const char *k, uint32_t v)
{
	char b[16];
	snprintf(b, sizeof b, "0x%x", v);
	add_str(o, k, b);
}

char *device_info_json(esp_device *d, bool secrets)
{
	struct dev_identity id;
	char state[4096], wifi[160], mac[20];
	device_identity(d, &id);
	device_state_text(d, state, sizeof state);
	state[strcspn(state, "\n")] = 0;
	device_wifi_text(d, wifi, sizeof wifi);
	wifi[strcspn(wifi, "\n")] = 0;

	cJSON *o = cJSON_CreateObject();
	add_str(o, "name", d->name);
	add_str(o, "port", id.port);
	add_str(o, "chip", id.chip ? id.chip->name : "unknown");
	if (id.chip)
		add_str(o, "chip_key", id.chip->key);
	if (id.known) {
		snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", id.mac[0], id.mac[1],
			 id.mac[2], id.mac[3], id.mac[4], id.mac[5]);
		add_str(o, "mac", mac);
	}
	if (id.known && id.revision >= 0) {
		char rev[16];
		snprintf(rev, sizeof rev, "v%d.%d", id.revision / 100, id.revision % 100);
		add_str(o, "revision", rev);
	}
	pthread_mutex_lock(&d->lock);
	bool guessed = d->flash_size_guessed;
	pthread_mutex_unlock(&d->lock);
	/* only what the chip told us is a fact: a size that is the chip's
	 * usual one (Improv named the chip, the flash ID gave no size) is
	 * null with "flash_size_source": "default" ("flash_size_default" has
	 * the guess); nothing known at all is null, "unknown" */
	const char *src = !id.flash_size ? "unknown" : guessed ? "default" : "detected";
	if (!id.flash_size || guessed)
		cJSON_AddNullToObject(o, "flash_size");
	else
		cJSON_AddNumberToObject(o, "flash_size", id.flash_size);
	add_str(o, "flash_size_source", src);
	if (guessed && id.flash_size)
		cJSON_AddNumberToObject(o, "flash_size_default", id.flash_size);
	if (id.jedec)
		add_hex(o, "flash_jedec_id", id.jedec);
	else
		cJSON_AddNullToObject(o, "flash_jedec_id");
	pthread_mutex_lock(&d->lock);
	add_str(o, "mode", d->mode);
	cJSON_AddNumberToObject(o, "resets", d->resets);
	/* what got it into the loader and back out, remembered */
	cJSON *rs = cJSON_AddObjectToObject(o, "reset");
	add_str(rs, "enter", d->reset_in[0] ? d->reset_in : "unknown");
	add_str(rs, "leave", d->reset_out[0] ? d->reset_out : "unknown");
	if (d->stub_status[0]) {
		/* which stub flasher runs, or where none was found */
		cJSON *sb = cJSON_AddObjectToObject(o, "stub");
		add_str(sb, "status", d->stub_status);
		if (!strcmp(d->stub_status, "not found"))
			add_str(sb, "searched", d->stub_file);
		else if (d->stub_file[0])
			add_str(sb, "file", d->stub_file);
	}
	if (d->n_warns) {
		/* the standing warnings: what the flash holds that nobody asked for */
		cJSON *a = cJSON_AddArrayToObject(o, "flash_warnings");
		for (int i = 0; i < d->n_warns; i++) {
			cJSON *fw = cJSON_CreateObject();
			add_hex(fw, "from", d->warns[i].lo);
			add_hex(fw, "to", d->warns[i].hi);
			add_str(fw, "reason", d->warns[i].text);
			cJSON_AddItemToArray(a, fw);
		}
	}
	if (d->bootwarn[0])
		add_str(o, "boot_warning", d->bootwarn);
	if (d->err) {
		cJSON *e = cJSON_AddObjectToObject(o, "last_error");
		cJSON_AddNumberToObject(e, "errno", d->err);
		add_str(e, "reason", d->errmsg);
	}
	struct dev_improv_info imp = d->improv;
	char wstatus[32], wssid[64];
	snprintf(wstatus, sizeof wstatus, "%s", d->wifi_status);
	snprintf(wssid, sizeof wssid, "%s", d->wifi_ssid);
	pthread_mutex_unlock(&d->lock);
	add_str(o, "state", state);
	cJSON *w = cJSON_AddObjectToObject(o, "wifi");
	add_str(w, "status", wstatus);
	/* the SSID names the owner's network: not for other users (-o
	 * allow_other; docs/files.md "Who may read what") */
	if (wssid[0] && secrets)
		add_str(w, "ssid", wssid);
	if (imp.known) {
		cJSON *i = cJSON_AddObjectToObject(o, "improv");
		add_str(i, "firmware", imp.firmware);
		add_str(i, "version", imp.version);
		add_str(i, "chip", imp.chip);
		add_str(i, "device_name", imp.name);
		cJSON_AddNumberToObject(i, "state_at_attach", imp.state);
	}
	cJSON *parts = cJSON_AddArrayToObject(o, "partitions");
	for (int i = 0; i < id.n_parts; i++) {
		cJSON *p = cJSON_CreateObject();
		add_str(p, "label", id.parts[i].label);
		cJSON_AddNumberToObject(p, "type", id.parts[i].type);
		cJSON_AddNumberToObject(p, "subtype", id.parts[i].subtype);
		add_hex(p, "offset", id.parts[i].offset);
		add_hex(p, "size", id.parts[i].size);
		cJSON_AddItemToArray(parts, p);
	}
	if (id.usb_vid || id.usb_serial[0]) {
		cJSON *u = cJSON_AddObjectToObject(o, "usb");
		char b[8];
		snprintf(b, sizeof b, "%04x", id.usb_vid);
		add_str(u, "vid", b);
		snprintf(b, sizeof b, "%04x", id.usb_pid);
		add_str(u, "pid", b);
		if (id.usb_serial[0])
			add_str(u, "serial", id.usb_serial);
		if (id.usb_manufacturer[0])
			add_str(u, "manufacturer", id.usb_manufacturer);
		if (id.usb_product[0])
			add_str(u, "product", id.usb_product);
		if (id.usb_path[0])
			add_str(u, "location", id.usb_path);
	}
	cJSON *con = cJSON_AddObjectToObject(o, "console");
	cJSON_AddNumberToObject(con, "baud", device_console_baud(d));
	cJSON_AddNumberToObject(con, "bytes", (double)device_console_size(d));
	cJSON *wire = cJSON_AddObjectToObject(o, "wire");
	cJSON_AddNumberToObject(wire, "tx_bytes", (double)atomic_load(&d->tx_bytes));
	cJSON_AddNumberToObject(wire, "rx_bytes", (double)atomic_load(&d->rx_bytes));
	cJSON_AddNumberToObject(wire, "flash_data_packets", (double)atomic_load(&d->flash_data_packets));
	if (d->sim) {
		/* The simulator's own view, for tests: never sent to a chip. */
		cJSON *s = cJSON_AddObjectToObject(o, "sim");
		add_str(s, "mode", sim_mode_name(sim_get_mode(d->sim)));
	}
	char *txt = cJSON_Print(o);
	cJSON_Delete(o);
	if (!txt)
		return NULL;
	size_t n = strlen(txt);
	char *out = realloc(txt, n + 2);
	if (!out) {
		free(txt);
		return NULL;
	}
	out[n] = '\n';
	out[n + 1] = 0;
	return out;
}

/* gen_esp32part's to_csv: names for known types and subtypes (decimal
 * otherwise), the offset in hex, the size in M or K where it divides,
 * flags colon-separated. */
static int csv_size(char *o, size_t cap, uint32_t v)
{
	if (v && v % 0x100000 == 0)
		return snprintf(o, cap, "%uM", v / 0x100000);
	if (v && v % 0x400 == 0)
		return snprintf(o, cap, "%uK", v / 0x400);
	return snprintf(o, cap, "0x%x", v);
}

char *device_partitions_csv(esp_device *d, size_t *len)
{
	struct dev_identity *id = malloc(sizeof *id);
	size_t cap = 128 + (size_t)DEV_MAX_PARTS * 128, l = 0;
	char *out = malloc(cap);
	*len = 0;
	if (!id || !out) {
		free(id);
		free(out);
		return NULL;
	}
	device_identity(d, id);
	l += (size_t)snprintf(out + l, cap - l, "# ESP-IDF Partition Table\n"
			      "# Name, Type, SubType, Offset, Size, Flags\n");
	for (int i = 0; i < id->n_parts; i++) {
		const struct dev_partition *p = &id->parts[i];
		char type[8], sub[8], size[16];
		const char *tn = p->type <= ESP_PT_TYPE_PT ? esp_pt_type_name(p->type) : NULL;
		const char *sn = esp_pt_subtype_name(p->type, p->subtype);
		snprintf(type, sizeof type, "%u", p->type);
		snprintf(sub, sizeof sub, "%u", p->subtype);
		csv_size(size, sizeof size, p->size);
		const char *fl = (p->flags & 3) == 3 ? "encrypted:readonly"
				 : p->flags & ESP_PT_FLAG_ENCRYPTED ? "encrypted"
				 : p->flags & ESP_PT_FLAG_READONLY ? "readonly" : "";
		l += (size_t)snprintf(out + l, cap - l, "%s,%s,%s,0x%x,%s,%s\n", p->label, tn ? tn : type,
				      sn ? sn : sub, p->offset, size, fl);
	}
	free(id);
	*len = l;
	return out;
}
