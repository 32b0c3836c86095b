/* What a simulated ESP does after reset when it boots from flash: the ROM
 * and 2nd-stage bootloader checks with their log lines, then the app's
 * console and (ESPHome builds, or when forced) Improv serial.  An image
 * that does not validate leaves the device in a boot loop that repeats
 * the ROM's complaint, as real chips do with erased flash.
 *
 * All output is queued with the sim time it becomes due and handed to
 * env->emit in whole lines / whole Improv packets, in time order. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "app_priv.h"
#include "profile.h"

#define MS 1000u
#define LOOP_PERIOD_US (1100 * MS)   /* ROM/RTC watchdog cycle of a boot loop */
#define CATCH_UP_US (3000 * MS)      /* after a long silence, skip older periodic output */

struct qitem {
	uint64_t due;
	struct qitem *next;
	size_t n;
	uint8_t buf[];
};

enum loop_cause { CAUSE_WDT = 100, CAUSE_SW_SYS = 101 };

struct sim_app {
	struct sim_app_env env;
	sim_app_wifi wifi[SIM_MAX_WIFI];
	uint8_t mac[6];
	const struct esp_chip_info *chip;
	bool esp8266;

	struct qitem *head;
	uint64_t cycle_t0;          /* reset time of the current boot attempt */

	bool running;
	char boot_error[160];
	uint32_t app_off;
	struct app_info info;
	bool have_info;
	int loop_cause;             /* reset cause of the next boot-loop cycle */
	uint64_t next_cycle_us;     /* boot loop: next reset */

	uint64_t next_periodic_us;  /* running: next console line */
	unsigned app_ms;            /* ms from reset to the app's start (IDF log stamps) */
	unsigned periodic_n;

	bool improv_on;
	uint64_t improv_ready_us;
	struct improv_dev *improv;
	char info_str[4][100];
	char url[2][96];
	char ip[16];
	char stored_ssid[256];
};

/* ---------------- output queue ---------------- */

static void enqueue(struct sim_app *a, uint64_t due, const uint8_t *buf, size_t n)
{
	struct qitem *it = malloc(sizeof *it + n);
	if (!it)
		return;
	it->due = due;
	it->n = n;
	it->next = NULL;
	memcpy(it->buf, buf, n);
	struct qitem **pp = &a->head;
	while (*pp && (*pp)->due <= due)   /* stable: equal times keep their order */
		pp = &(*pp)->next;
	it->next = *pp;
	*pp = it;
}

static void improv_out(void *ctx, uint64_t due, const uint8_t *buf, size_t n)
{
	enqueue(ctx, due, buf, n);
}

/* One console line at cycle_t0 + ms; "\r\n" appended. */
static void linef(struct sim_app *a, unsigned ms, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void linef(struct sim_app *a, unsigned ms, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof buf - 3)
		n = (int)sizeof buf - 3;
	buf[n++] = '\r';
	buf[n++] = '\n';
	enqueue(a, a->cycle_t0 + (uint64_t)ms * MS, (const uint8_t *)buf, (size_t)n);
}

static void fail(struct sim_app *a, int next_cause, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct sim_app *a, int next_cause, const char *fmt, ...)
{
	if (!a->boot_error[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(a->boot_error, sizeof a->boot_error, fmt, ap);
		va_end(ap);
	}
	a->running = false;
	a->loop_cause = next_cause;
}

/* ---------------- chip facts the boot log needs ---------------- */

static const char *mode_name(uint8_t m)
{
	static const char *n[] = { "QIO", "QOUT", "DIO", "DOUT" };
	return m < 4 ? n[m] : "DIO";
}

static const char *freq_name(uint8_t sf)
{
	switch (sf & 0x0F) {
	case 0x0: return "40MHz";
	case 0x1: return "26.7MHz";
	case 0x2: return "20MHz";
	case 0xF: return "80MHz";
	default: return "40MHz";
	}
}

static const char *size_name(uint8_t sf)
{
	static const char *n[] = { "1MB", "2MB", "4MB", "8MB", "16MB", "32MB", "64MB", "128MB" };
	return (sf >> 4) < 8 ? n[sf >> 4] : "4MB";
}

struct rom_facts {
	esp_chip_id id;
	const char *rom, *build;    /* newer chips' two-line banner; ESP32 uses rom only */
	unsigned boot;              /* strap value printed as boot:0x.. */
};
static const struct rom_facts roms[] = {
	{ ESP_CHIP_ESP32, "ets Jul 29 2019 12:21:46", NULL, 0x13 },   /* the v3 ROM (QEMU) */
	{ ESP_CHIP_ESP32S2, "ESP-ROM:esp32s2-rc4-20191025", "Build:Oct 25 2019", 0x8 },
	{ ESP_CHIP_ESP32S3, "ESP-ROM:esp32s3-20210327", "Build:Mar 27 2021", 0x8 },
	{ ESP_CHIP_ESP32C2, "ESP-ROM:esp32c2-20220101", "Build:Jan  1 2022", 0xc },
	{ ESP_CHIP_ESP32C3, "ESP-ROM:esp32c3-api1-20210207", "Build:Feb  7 2021", 0xc },
	{ ESP_CHIP_ESP32C6, "ESP-ROM:esp32c6-20220919", "Build:Sep 19 2022", 0x6c },
	{ ESP_CHIP_ESP32H2, "ESP-ROM:esp32h2-20221101", "Build:Nov  1 2022", 0xc },
};

static const struct rom_facts *rom_of(const struct esp_chip_info *c)
{
	for (size_t i = 0; i < sizeof roms / sizeof roms[0]; i++)
		if (roms[i].id == c->id)
			return &roms[i];
	return &roms[4];
}

static bool flash_mapped(const struct esp_chip_info *c, uint32_t addr)
{
	switch (c->id) {
	case ESP_CHIP_ESP32:
		return (addr >= 0x3F400000u && addr < 0x3F800000u) || (addr >= 0x400C2000u && addr < 0x40C00000u);
	case ESP_CHIP_ESP32S2:
		return (addr >= 0x3F000000u && addr < 0x3FF80000u) || (addr >= 0x40080000u && addr < 0x40800000u);
	default:
		return (addr >= 0x3C000000u && addr < 0x3E000000u) || (addr >= 0x42000000u && addr < 0x44000000u);
	}
}

static void rom_banner(struct sim_app *a, int cause)
{
	const struct rom_facts *r = rom_of(a->chip);
	const char *rst;
	if (a->chip->id == ESP_CHIP_ESP32) {
		rst = cause == 2 ? "0xc (SW_CPU_RESET)" : cause == CAUSE_WDT || cause == 3 ? "0x10 (RTCWDT_RTC_RESET)" :
		      cause == CAUSE_SW_SYS ? "0x3 (SW_RESET)" : "0x1 (POWERON_RESET)";
		linef(a, 0, "%s", r->rom);
		linef(a, 0, "%s", "");
		linef(a, 0, "rst:%s,boot:0x%x (SPI_FAST_FLASH_BOOT)", rst, r->boot);
	} else {
		rst = cause == 2 ? "0xc (RTC_SW_CPU_RST)" : cause == CAUSE_WDT || cause == 3 ? "0x10 (RTCWDT_RTC_RST)" :
		      cause == CAUSE_SW_SYS ? "0x3 (RTC_SW_SYS_RST)" : "0x1 (POWERON)";
		linef(a, 0, "%s", r->rom);
		linef(a, 0, "%s", r->build);
		linef(a, 0, "rst:%s,boot:0x%x (SPI_FAST_FLASH_BOOT)", rst, r->boot);
	}
}

/* ---------------- ESP32 family boot ---------------- */

static void hex32(char *out, const uint8_t *d)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* ROM stage: load and check the 2nd-stage bootloader.  Returns the time
 * (ms) reached, or -1 on a boot loop. */
static int rom_stage(struct sim_app *a, int cause, struct appimg *bl)
{
	const struct esp_chip_info *c = a->chip;
	bool esp32 = c->id == ESP_CHIP_ESP32;
	uint32_t off = c->bootloader_offset;
	rom_banner(a, cause);
	int r = appimg_read(&a->env, off, false, 0, 0, bl);
	if (r != APPIMG_OK) {
		/* What real chips print with erased flash, over and over until
		 * the RTC watchdog resets them. */
		uint32_t w = appimg_word(&a->env, off);
		for (unsigned i = 0; i < 10; i++)
			linef(a, 2 + 100 * i, "invalid header: 0x%08x", w);
		fail(a, CAUSE_WDT, "invalid header: 0x%08x at 0x%x", w, off);
		return -1;
	}
	if (esp32) {
		linef(a, 1, "configsip: 0, SPIWP:0xee");
		linef(a, 1, "clk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00");
		linef(a, 1, "mode:%s, clock div:%d", mode_name(bl->mode), (bl->size_freq & 0xF) == 0xF ? 1 : 2);
	} else {
		linef(a, 1, "SPIWP:0xee");
		linef(a, 1, "mode:%s, clock div:1", mode_name(bl->mode));
	}
	unsigned ms = 2;
	for (int i = 0; i < bl->nseg; i++, ms++) {
		if (esp32)
			linef(a, ms, "load:0x%08x,len:%u", bl->seg[i].addr, bl->seg[i].len);
		else
			linef(a, ms, "load:0x%08x,len:0x%x", bl->seg[i].addr, bl->seg[i].len);
	}
	if (!bl->csum_ok) {
		if (esp32) {
			linef(a, ms, "csum err:0x%02x!=0x%02x", bl->csum_calc, bl->csum_stored);
			linef(a, ms, "ets_main.c 371 ");
		} else {
			linef(a, ms, "Checksum failure. Calculated 0x%02x stored 0x%02x", bl->csum_calc, bl->csum_stored);
			linef(a, ms, "ets_loader.c 78 ");
		}
		fail(a, CAUSE_WDT, "bootloader checksum 0x%02x != 0x%02x", bl->csum_calc, bl->csum_stored);
		return -1;
	}
	/* The ESP32 ROM ignores the appended digest; later ROMs check it but,
	 * without secure boot, only complain and boot anyway. */
	if (!bl->sha_ok && !esp32) {
		struct appsha s;
		uint8_t d[32];
		char calc[65], exp[65];
		appsha_init(&s);
		appsha_update(&s, bl->data, bl->len - 32);
		appsha_final(&s, d);
		hex32(calc, d);
		hex32(exp, bl->data + bl->len - 32);
		linef(a, ms, "SHA-256 comparison failed:");
		linef(a, ms, "Calculated: %s", calc);
		linef(a, ms, "Expected: %s", exp);
		linef(a, ms, "Attempting to boot anyway...");
	}
	if (bl->chip_id != c->image_chip_id) {
		/* Code for another CPU: it faults at once and the watchdog resets. */
		linef(a, ms, "entry 0x%08x", bl->entry);
		linef(a, ms + 1, "%s", esp32 ? "ets_main.c 371 " : "ets_loader.c 78 ");
		fail(a, CAUSE_WDT, "bootloader is for chip id %d, this is %s (%d)", bl->chip_id, c->name, c->image_chip_id);
		return -1;
	}
	linef(a, ms, "entry 0x%08x", bl->entry);
	return (int)ms + 20;
}

static const char *part_usage(const struct app_part *p)
{
	if (p->type == 0)
		return p->subtype == 0 ? "factory app" : p->subtype >= 0x10 && p->subtype < 0x20 ? "OTA app" : "test app";
	if (p->type == 1) {
		switch (p->subtype) {
		case 0x00: return "OTA data";
		case 0x01: return "RF data";
		case 0x02: return "WiFi data";
		case 0x03: return "coredump";
		case 0x04: return "NVS keys";
		case 0x05: return "efuse";
		default: return "Unknown data";
		}
	}
	return "unknown";
}

/* Checks an app the way esp_image_verify() does; logs the complaint. */
static bool check_app(struct sim_app *a, unsigned *ms, const struct app_part *p, struct appimg *img)
{
	unsigned t = (*ms)++;
	int r = appimg_read(&a->env, p->offset, false, 0, 0, img);
	if (r == APPIMG_BAD_MAGIC || r == APPIMG_IO) {
		linef(a, t, "E (%u) esp_image: image at 0x%x has invalid magic byte (nothing flashed here?)",
		      t, p->offset);
		return false;
	}
	if (r != APPIMG_OK || img->len > p->size) {
		linef(a, t, "E (%u) esp_image: image at 0x%x is truncated or has a bad segment table", t, p->offset);
		appimg_free(img);
		return false;
	}
	if (img->chip_id != a->chip->image_chip_id) {
		linef(a, t, "E (%u) esp_image: mismatch chip ID, expected %d, found %d", t,
		      a->chip->image_chip_id, img->chip_id);
		appimg_free(img);
		return false;
	}
	if (!img->csum_ok) {
		linef(a, t, "E (%u) esp_image: Checksum failed. Calculated 0x%x read 0x%x", t,
		      img->csum_calc, img->csum_stored);
		appimg_free(img);
		return false;
	}
	if (!img->sha_ok) {
		linef(a, t, "E (%u) esp_image: Image hash failed - image is corrupt", t);
		appimg_free(img);
		return false;
	}
	return true;
}

static void app_segments_log(struct sim_app *a, unsigned *ms, const struct appimg *img)
{
	for (int i = 0; i < img->nseg; i++) {
		const struct appimg_seg *s = &img->seg[i];
		linef(a, *ms, "I (%u) esp_image: segment %d: paddr=%08x vaddr=%08x size=%05xh (%6u) %s", *ms, i,
		      img->flash_off + s->data_off, s->addr, s->len, s->len, flash_mapped(a->chip, s->addr) ? "map" : "load");
		*ms += 1 + s->len / 20000;  /* roughly what the flash read costs */
	}
}

static bool boot_esp32(struct sim_app *a, int cause, struct appimg *app)
{
	struct appimg bl;
	int r = rom_stage(a, cause, &bl);
	if (r < 0) {
		appimg_free(&bl);
		return false;
	}
	unsigned ms = (unsigned)r;
	const char *k = a->chip->key;
	const char *idf = a->info.idf_ver[0] ? a->info.idf_ver : "v4.4.7";
	linef(a, ms, "I (%u) boot: ESP-IDF %s%s 2nd stage bootloader", ms, idf[0] == 'v' ? "" : "v", idf);
	linef(a, ms, "I (%u) boot: compile time %s", ms, a->info.time[0] ? a->info.time : "00:00:00");
	struct sim_rev rev = sim_chip_rev(a->chip);   /* what the eFuse words say */
	linef(a, ms, "I (%u) boot: chip revision: v%u.%u", ms, rev.major, rev.minor);
	ms += 4;
	linef(a, ms, "I (%u) boot.%s: SPI Speed      : %s", ms, k, freq_name(bl.size_freq));
	linef(a, ms + 4, "I (%u) boot.%s: SPI Mode       : %s", ms + 4, k, mode_name(bl.mode));
	linef(a, ms + 9, "I (%u) boot.%s: SPI Flash Size : %s", ms + 9, k, size_name(bl.size_freq));
	ms += 14;
	appimg_free(&bl);
	linef(a, ms, "I (%u) boot: Enabling RNG early entropy source...", ms);
	ms += 5;

	struct app_ptable pt;
	uint16_t magic = 0;
	int pr = app_ptable_read(&a->env, &pt, &magic);
	if (pr != APP_PT_OK) {
		if (pr == APP_PT_BAD_MD5)
			linef(a, ms, "E (%u) flash_parts: Partition table MD5 mismatch", ms);
		else
			linef(a, ms, "E (%u) flash_parts: partition 0 invalid magic number 0x%x", ms, magic);
		linef(a, ms, "E (%u) boot: Failed to verify partition table", ms);
		linef(a, ms, "E (%u) boot: load partition table error!", ms);
		fail(a, CAUSE_SW_SYS, pr == APP_PT_BAD_MD5 ? "partition table MD5 mismatch" :
		     "no partition table at 0x8000 (magic 0x%04x)", magic);
		return false;
	}
	linef(a, ms, "I (%u) boot: Partition Table:", ms);
	linef(a, ms, "I (%u) boot: ## Label            Usage          Type ST Offset   Length", ms);
	int factory = -1, ota[16], n_ota = 0, otadata = -1;
	for (int i = 0; i < pt.n; i++) {
		const struct app_part *p = &pt.p[i];
		linef(a, ms, "I (%u) boot: %2d %-16s %-14s %02x %02x %08x %08x", ms, i, p->label, part_usage(p),
		      p->type, p->subtype, p->offset, p->size);
		ms += 1;
		if (p->type == 0 && p->subtype == 0 && factory < 0)
			factory = i;
		if (p->type == 0 && p->subtype >= 0x10 && p->subtype < 0x20 && n_ota < 16)
			ota[n_ota++] = i;
		if (p->type == 1 && p->subtype == 0 && otadata < 0)
			otadata = i;
	}
	linef(a, ms, "I (%u) boot: End of partition table", ms);
	ms += 4;

	/* Order of attempts: what otadata selects, else factory, else ota_0;
	 * then every other app partition (bootloader_utility's fallback). */
	int order[17], n_order = 0;
	int slot = otadata >= 0 ? app_otadata_slot(&a->env, pt.p[otadata].offset, n_ota) : -1;
	if (slot >= 0 && slot < n_ota)
		order[n_order++] = ota[slot];
	else if (factory >= 0)
		order[n_order++] = factory;
	else if (n_ota > 0) {
		linef(a, ms, "I (%u) boot: No factory image, trying OTA 0", ms);
		order[n_order++] = ota[0];
	}
	if (factory >= 0 && (n_order == 0 || order[0] != factory))
		order[n_order++] = factory;
	for (int i = 0; i < n_ota; i++)
		if (n_order == 0 || order[0] != ota[i])
			order[n_order++] = ota[i];

	for (int i = 0; i < n_order; i++) {
		const struct app_part *p = &pt.p[order[i]];
		if (check_app(a, &ms, p, app)) {
			app_segments_log(a, &ms, app);
			linef(a, ms, "I (%u) boot: Loaded app from partition at offset 0x%x", ms, p->offset);
			linef(a, ms, "I (%u) boot: Disabling RNG early entropy source...", ms);
			a->app_off = p->offset;
			a->app_ms = ms + 5;
			a->cycle_t0 += (uint64_t)a->app_ms * MS;   /* app output is timed from here */
			return true;
		}
		if (p->subtype == 0)
			linef(a, ms, "E (%u) boot: Factory app partition is not bootable", ms);
		else
			linef(a, ms, "E (%u) boot: OTA app partition slot %d is not bootable", ms, p->subtype - 0x10);
	}
	linef(a, ms, "E (%u) boot: No bootable app partitions in the partition table", ms);
	fail(a, CAUSE_SW_SYS, "no bootable app partition");
	return false;
}

/* ---------------- ESP8266 boot ---------------- */

static void rom8266_loads(struct sim_app *a, unsigned ms, const struct appimg *img)
{
	/* The ROM reads flash in 16-byte lines; "room" is what is left of the
	 * current line when a segment starts, "tail" the remainder. */
	uint8_t cs = 0xEF;
	for (int i = 0; i < img->nseg; i++) {
		const struct appimg_seg *s = &img->seg[i];
		unsigned room = 16 - s->data_off % 16;
		linef(a, ms, "load 0x%08x, len %u, room %u ", s->addr, s->len, room);
		linef(a, ms, "tail %u", s->len >= room ? (s->len - room) % 16 : 0);
		for (uint32_t k = 0; k < s->len; k++)
			cs ^= img->data[s->data_off + k];
		linef(a, ms, "chksum 0x%02x", cs);
	}
	linef(a, ms, "csum 0x%02x", img->csum_stored);
}

static bool boot_esp8266(struct sim_app *a, int cause, struct appimg *app)
{
	int rc = cause == CAUSE_WDT || cause == 3 ? 4 : cause == 1 || cause == 2 ? 2 : 1;
	linef(a, 0, "%s", "");
	linef(a, 0, " ets Jan  8 2013,rst cause:%d, boot mode:(3,6)", rc);
	linef(a, 0, "%s", "");
	struct appimg first;
	int r = appimg_read(&a->env, 0, true, 0, 0, &first);
	if (r != APPIMG_OK) {
		linef(a, 1, "ets_main.c ");
		fail(a, CAUSE_WDT, "no valid image at 0x0 (first word 0x%08x)", appimg_word(&a->env, 0));
		return false;
	}
	rom8266_loads(a, 2, &first);
	if (!first.csum_ok) {
		linef(a, 3, "ets_main.c ");
		fail(a, CAUSE_WDT, "image at 0x0: checksum 0x%02x != 0x%02x", first.csum_calc, first.csum_stored);
		appimg_free(&first);
		return false;
	}
	/* Arduino/ESPHome layout: eboot (< 4 KiB) at 0, the app at 0x1000.  eboot
	 * prints the word at 0x1010 as its "version" ('~' = no OTA command,
	 * "ld" = loading the app). */
	uint32_t app_at = 0;
	if (first.len <= 0x1000 && appimg_word(&a->env, 0x1000) != 0xFFFFFFFFu &&
	    (appimg_word(&a->env, 0x1000) & 0xFF) == 0xE9) {
		app_at = 0x1000;
		linef(a, 3, "v%08x", appimg_word(&a->env, 0x1010));
		linef(a, 3, "~ld");
	}
	if (app_at == 0) {
		*app = first;
		a->app_off = 0;
		a->app_ms = 60;
		a->cycle_t0 += 60 * MS;
		return true;
	}
	appimg_free(&first);
	/* elf2bin.py wrote the XOR checksum first and then stored (length,
	 * CRC-32) of the whole file in the first 8 bytes of the irom segment
	 * (flash 0x1010..0x1017); the checksum therefore covers zeros there. */
	struct appimg probe;
	uint32_t zf = 0, zl = 0;
	if (appimg_read(&a->env, app_at, true, 0, 0, &probe) == APPIMG_OK) {
		if (probe.nseg && probe.seg[0].data_off == 0x10 && probe.seg[0].addr >= 0x40200000u && probe.seg[0].len >= 8) {
			zf = 0x10;
			zl = 8;
		}
		appimg_free(&probe);
	}
	r = appimg_read(&a->env, app_at, true, zf, zl, app);
	if (r != APPIMG_OK || !app->csum_ok) {
		/* eboot jumps into whatever it loaded; the CPU faults. */
		linef(a, 5, "Fatal exception 0(IllegalInstructionCause):");
		linef(a, 5, "epc1=0x40100000, epc2=0x00000000, epc3=0x00000000, excvaddr=0x00000000, depc=0x00000000");
		if (r == APPIMG_OK)
			fail(a, CAUSE_WDT, "app at 0x1000: checksum 0x%02x != 0x%02x", app->csum_calc, app->csum_stored);
		else
			fail(a, CAUSE_WDT, "no valid app image at 0x1000");
		appimg_free(app);
		return false;
	}
	a->app_off = app_at;
	a->app_ms = 80;
	a->cycle_t0 += 80 * MS;
	return true;
}

/* ---------------- the running app ---------------- */

static void mac_str(const uint8_t *m, char *out)
{
	sprintf(out, "%02X:%02X:%02X:%02X:%02X:%02X", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* ESPHome >= 2024.9 (esphome#7248) reports `esphome: project:` instead of
 * "ESPHome" + its version when a project is set. */
static bool reports_project(const struct app_info *i)
{
	int y = 0, m = 0;
	if (!i->project_name[0] || sscanf(i->esphome_version, "%d.%d", &y, &m) != 2)
		return false;
	return y > 2024 || (y == 2024 && m >= 9);
}

static void setup_improv(struct sim_app *a)
{
	const struct app_info *i = &a->info;
	bool esphome = a->have_info && i->esphome;
	if (esphome && reports_project(i)) {
		snprintf(a->info_str[0], sizeof a->info_str[0], "%s", i->project_name);
		snprintf(a->info_str[1], sizeof a->info_str[1], "%s", i->project_version);
	} else if (esphome) {
		snprintf(a->info_str[0], sizeof a->info_str[0], "ESPHome");
		snprintf(a->info_str[1], sizeof a->info_str[1], "%s", i->esphome_version);
	} else {
		snprintf(a->info_str[0], sizeof a->info_str[0], "%s", a->have_info && i->project[0] ? i->project : "firmware");
		snprintf(a->info_str[1], sizeof a->info_str[1], "%s", a->have_info && i->version[0] ? i->version : "unknown");
	}
	snprintf(a->info_str[2], sizeof a->info_str[2], "%s", a->chip->name);
	snprintf(a->info_str[3], sizeof a->info_str[3], "%s",
		 esphome ? i->device_name : a->have_info && i->project[0] ? i->project : a->chip->key);
	/* ESPHome's URL list: next_url (none configured in these builds) and
	 * http://<ip>:<port> when web_server is in; a bare http://<ip> stands
	 * in when the list would be empty so a client always has a target. */
	struct improv_hooks h = {
		.ctx = a, .out = improv_out,
		.info = { a->info_str[0], a->info_str[1], a->info_str[2], a->info_str[3] },
		.wifi = a->wifi, .n_wifi = a->env.n_wifi,
		.n_url = 1, .esphome_logs = esphome,
	};
	if (esphome && i->web_server)
		snprintf(a->url[0], sizeof a->url[0], "http://%s:80", a->ip);
	else
		snprintf(a->url[0], sizeof a->url[0], "http://%s", a->ip);
	h.url[0] = a->url[0];
	int stored = -1;
	if (a->env.stored_ssid)
		for (int k = 0; k < a->env.n_wifi; k++)
			if (strcmp(a->wifi[k].ssid, a->env.stored_ssid) == 0)
				stored = k;
	a->improv = improv_dev_new(&h, stored);
}

static void app_start_log(struct sim_app *a)
{
	const struct app_info *i = &a->info;
	char mac[18];
	mac_str(a->mac, mac);
	if (!a->esp8266) {
		bool dual = a->chip->id == ESP_CHIP_ESP32 || a->chip->id == ESP_CHIP_ESP32S3;
		unsigned b = a->app_ms + 150;   /* ms since reset, as IDF stamps them */
		linef(a, 150, "I (%u) cpu_start: %s", b, dual ? "Multicore app" : "Unicore app");
		linef(a, 151, "I (%u) cpu_start: Pro cpu start user code", b + 1);
		linef(a, 152, "I (%u) cpu_start: Application information:", b + 2);
		linef(a, 152, "I (%u) cpu_start: Project name:     %s", b + 2, i->project[0] ? i->project : "app");
		linef(a, 152, "I (%u) cpu_start: App version:      %s", b + 2, i->version[0] ? i->version : "1");
		linef(a, 152, "I (%u) cpu_start: Compile time:     %s %s", b + 2, i->date, i->time);
		linef(a, 152, "I (%u) cpu_start: ESP-IDF:          %s", b + 2, i->idf_ver[0] ? i->idf_ver : "unknown");
		linef(a, 155, "I (%u) cpu_start: Starting scheduler on PRO CPU.", b + 5);
	}
	if (i->esphome) {
		linef(a, 170, "[I][logger:034]: Log initialized");
		linef(a, 180, "[I][app:029]: Running through setup()...");
		linef(a, 190, "[C][wifi:048]: Setting up WiFi...");
		linef(a, 195, "[C][wifi:061]: Starting WiFi...");
		linef(a, 195, "[C][wifi:062]:   Local MAC: %s", mac);
		if (a->improv_on)
			linef(a, 210, "[C][improv_serial:030]: Setting up Improv Serial...");
		linef(a, 600, "[I][app:062]: setup() finished successfully!");
		linef(a, 610, "[I][app:100]: ESPHome version %s compiled on %s", i->esphome_version,
		      i->compiled[0] ? i->compiled : "Jan  1 2024, 00:00:00");
		if (i->project_name[0])
			linef(a, 610, "[I][app:102]: Project %s version %s", i->project_name, i->project_version);
	} else if (strcmp(i->project, "blink") == 0) {
		linef(a, 160, "I (%u) example: Example configured to blink GPIO LED!", a->app_ms + 160);
	} else if (!a->esp8266) {
		linef(a, 160, "I (%u) main_task: Calling app_main()", a->app_ms + 160);
	}
}

static void periodic_line(struct sim_app *a, uint64_t at)
{
	unsigned ms = (unsigned)((at - a->cycle_t0) / MS) + a->app_ms;   /* since reset */
	char buf[200];
	int n;
	const struct app_info *i = &a->info;
	if (i->esphome)
		n = snprintf(buf, sizeof buf, "[D][sensor:094]: 'Uptime': Sending state %u.%03u00 s with 0 decimals of accuracy\r\n",
			     ms / 1000, ms % 1000);
	else if (strcmp(i->project, "blink") == 0)
		n = snprintf(buf, sizeof buf, "I (%u) example: Turning the LED %s!\r\n", ms, a->periodic_n % 2 ? "OFF" : "ON");
	else if (a->esp8266)
		n = snprintf(buf, sizeof buf, "uptime %u s\r\n", ms / 1000);
	else
		n = snprintf(buf, sizeof buf, "I (%u) %s: running\r\n", ms, i->project[0] ? i->project : "main");
	enqueue(a, at, (const uint8_t *)buf, (size_t)n);
	a->periodic_n++;
}

static uint64_t periodic_gap(const struct sim_app *a)
{
	if (a->info.esphome)
		return 1500 * MS;
	return strcmp(a->info.project, "blink") == 0 ? 1000 * MS : 2000 * MS;
}

/* ---------------- one boot attempt ---------------- */

static void boot_once(struct sim_app *a, uint64_t t0, int cause)
{
	a->cycle_t0 = t0;
	a->running = true;
	a->app_off = 0;
	struct appimg app = { 0 };
	bool ok;
	/* The bootloader banner prints the IDF version of the app it is about
	 * to load; peek at it first (a real bootloader carries its own). */
	if (!a->have_info && !a->esp8266) {
		struct app_ptable pt;
		if (app_ptable_read(&a->env, &pt, NULL) == APP_PT_OK)
			for (int i = 0; i < pt.n; i++)
				if (pt.p[i].type == 0) {
					struct appimg pk;
					if (appimg_read(&a->env, pt.p[i].offset, false, 0, 0, &pk) == APPIMG_OK) {
						app_info_scan(&pk, &a->info);
						appimg_free(&pk);
					}
					break;
				}
	}
	ok = a->esp8266 ? boot_esp8266(a, cause, &app) : boot_esp32(a, cause, &app);
	if (!ok) {
		a->running = false;
		a->next_cycle_us = t0 + LOOP_PERIOD_US;
		appimg_free(&app);
		return;
	}
	app_info_scan(&app, &a->info);
	a->have_info = true;
	appimg_free(&app);
	a->boot_error[0] = 0;
	a->improv_on = (a->info.esphome && a->info.improv_serial) || a->env.improv_forced;
	app_start_log(a);
	if (a->improv_on) {
		a->improv_ready_us = a->cycle_t0 + 620 * MS;
		setup_improv(a);
	}
	a->next_periodic_us = a->cycle_t0 + (a->info.esphome ? 2000 : 300) * MS;
}

/* ---------------- public interface ---------------- */

struct sim_app *sim_app_boot(const struct sim_app_env *env)
{
	struct sim_app *a = calloc(1, sizeof *a);
	if (!a)
		return NULL;
	a->env = *env;
	a->chip = env->chip ? env->chip : esp_chip_get(ESP_CHIP_ESP32);
	a->env.chip = a->chip;
	a->esp8266 = a->chip->id == ESP_CHIP_ESP8266;
	int nw = env->n_wifi < 0 ? 0 : env->n_wifi > SIM_MAX_WIFI ? SIM_MAX_WIFI : env->n_wifi;
	if (env->wifi && nw)
		memcpy(a->wifi, env->wifi, sizeof a->wifi[0] * (size_t)nw);
	a->env.n_wifi = nw;
	a->env.wifi = a->wifi;
	if (env->mac)
		memcpy(a->mac, env->mac, 6);
	a->env.mac = a->mac;
	if (env->stored_ssid) {
		snprintf(a->stored_ssid, sizeof a->stored_ssid, "%s", env->stored_ssid);
		a->env.stored_ssid = a->stored_ssid;
	}
	snprintf(a->ip, sizeof a->ip, "192.168.1.%u", 20u + a->mac[5] % 200u);
	boot_once(a, env->now_us, env->reset_cause);
	sim_app_poll(a, env->now_us);
	return a;
}

static void generate(struct sim_app *a, uint64_t now_us)
{
	if (a->improv)
		improv_dev_poll(a->improv, now_us);
	if (a->running) {
		if (now_us > CATCH_UP_US && a->next_periodic_us + CATCH_UP_US < now_us) {
			uint64_t gap = periodic_gap(a);
			uint64_t skip = (now_us - CATCH_UP_US - a->next_periodic_us) / gap + 1;
			a->next_periodic_us += skip * gap;
			a->periodic_n += (unsigned)skip;
		}
		while (a->next_periodic_us <= now_us) {
			periodic_line(a, a->next_periodic_us);
			a->next_periodic_us += periodic_gap(a);
		}
	} else {
		if (now_us > CATCH_UP_US && a->next_cycle_us + CATCH_UP_US < now_us)
			a->next_cycle_us += (now_us - CATCH_UP_US - a->next_cycle_us) / LOOP_PERIOD_US * LOOP_PERIOD_US;
		while (!a->running && a->next_cycle_us <= now_us)
			boot_once(a, a->next_cycle_us, a->loop_cause);
	}
}

void sim_app_poll(struct sim_app *a, uint64_t now_us)
{
	generate(a, now_us);
	while (a->head && a->head->due <= now_us) {
		struct qitem *it = a->head;
		a->head = it->next;
		if (a->env.emit)
			a->env.emit(a->env.emit_ctx, it->buf, it->n);
		free(it);
	}
}

void sim_app_input(struct sim_app *a, const uint8_t *buf, size_t n, uint64_t now_us)
{
	sim_app_poll(a, now_us);
	/* Until the component's setup() ran nobody reads the UART for Improv. */
	if (a->running && a->improv && now_us >= a->improv_ready_us)
		improv_dev_input(a->improv, buf, n, now_us);
	/* echo mode: a REPL's line input comes back (an Improv request never
	 * starts with anything but its "IMPROV" header) */
	if (a->running && a->env.echo && !(n >= 6 && memcmp(buf, "IMPROV", 6) == 0))
		enqueue(a, now_us, buf, n);
	sim_app_poll(a, now_us);
}

uint64_t sim_app_next_event_us(struct sim_app *a)
{
	uint64_t t = a->head ? a->head->due : UINT64_MAX;
	uint64_t g = a->running ? a->next_periodic_us : a->next_cycle_us;
	if (g < t)
		t = g;
	if (a->improv && improv_dev_next_event_us(a->improv) < t)
		t = improv_dev_next_event_us(a->improv);
	return t;
}

bool sim_app_running(const struct sim_app *a)
{
	return a->running;
}

void sim_app_free(struct sim_app *a)
{
	if (!a)
		return;
	while (a->head) {
		struct qitem *it = a->head;
		a->head = it->next;
		free(it);
	}
	improv_dev_free(a->improv);
	free(a);
}

const char *sim_app_project_name(const struct sim_app *a)
{
	if (!a->running)
		return NULL;
	if (a->info.esphome)
		return a->info.device_name;
	return a->info.project[0] ? a->info.project : NULL;
}

const char *sim_app_version(const struct sim_app *a)
{
	if (!a->running)
		return NULL;
	if (a->info.esphome)
		return a->info.esphome_version;
	return a->info.version[0] ? a->info.version : NULL;
}

bool sim_app_is_esphome(const struct sim_app *a)
{
	return a->running && a->info.esphome;
}

bool sim_app_speaks_improv(const struct sim_app *a)
{
	return a->running && a->improv != NULL;
}

uint8_t sim_app_improv_state(const struct sim_app *a)
{
	return a->running && a->improv ? improv_dev_state(a->improv) : 0;
}

const char *sim_app_boot_error(const struct sim_app *a)
{
	return a->running ? "" : a->boot_error;
}

uint32_t sim_app_boot_offset(const struct sim_app *a)
{
	return a->running ? a->app_off : 0;
}

const char *sim_app_stored_ssid(const struct sim_app *a)
{
	int k = a->improv ? improv_dev_provisioned_wifi(a->improv) : -1;
	if (k >= 0)
		return a->wifi[k].ssid;
	return a->running ? NULL : a->env.stored_ssid;
}
