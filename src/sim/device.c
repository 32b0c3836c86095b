/* The device object and its public interface: lifecycle, host bytes in
 * and out, lines, buttons, unplug, faults, inspection.  The engine parts
 * live in timeline.c (output), reset.c (resets, modes, USB identity),
 * loader.c (ROM and stub protocol), regs.c (registers), flash.c (NOR). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "sim_priv.h"
#include "sim_app_glue.h"

static uint64_t now_us_of(sim_device *d) { return esp_now_us(d->clock); }

/* ---- public API ---- */

static void fnv_mac(const char *key, const char *name, uint8_t out[3])
{
	uint32_t h = 2166136261u;
	for (const char *p = key; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ ':') * 16777619u;
	for (const char *p = name ? name : ""; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	out[0] = h >> 16;
	out[1] = h >> 8;
	out[2] = h;
}

static void derive_mac(const struct esp_chip_info *c, const char *name, uint8_t mac[6])
{
	static const struct { esp_chip_id id; uint8_t oui[3]; } ouis[] = {
		{ ESP_CHIP_ESP8266, { 0x5C, 0xCF, 0x7F } }, { ESP_CHIP_ESP32, { 0x24, 0x0A, 0xC4 } },
		{ ESP_CHIP_ESP32S2, { 0x7C, 0xDF, 0xA1 } }, { ESP_CHIP_ESP32S3, { 0xF4, 0x12, 0xFA } },
		{ ESP_CHIP_ESP32C3, { 0x58, 0xCF, 0x79 } }, { ESP_CHIP_ESP32C6, { 0x40, 0x4C, 0xCA } },
	};
	memcpy(mac, (const uint8_t[]){ 0x24, 0x0A, 0xC4 }, 3);
	for (size_t i = 0; i < sizeof ouis / sizeof ouis[0]; i++)
		if (ouis[i].id == c->id)
			memcpy(mac, ouis[i].oui, 3);
	fnv_mac(c->key, name, mac + 3);
}

static uint32_t jedec_for(uint32_t size)
{
	/* Winbond W25Qxx: manufacturer 0xEF, type 0x40, capacity log2(size) */
	unsigned cap = 0;
	while ((1u << cap) < size && cap < 31)
		cap++;
	return 0xEF | 0x40 << 8 | cap << 16;
}

sim_device *sim_device_new(const struct sim_config *cfg, char *err, size_t errlen)
{
	char dummy[8];
	if (!err) {
		err = dummy;
		errlen = sizeof dummy;
	}
	const struct esp_chip_info *chip = esp_chip_by_name(cfg->chip);
	if (!chip) {
		snprintf(err, errlen, "unknown chip '%s'", cfg->chip ? cfg->chip : "(null)");
		return NULL;
	}
	switch (chip->id) {
	case ESP_CHIP_ESP8266: case ESP_CHIP_ESP32: case ESP_CHIP_ESP32S2:
	case ESP_CHIP_ESP32S3: case ESP_CHIP_ESP32C3: case ESP_CHIP_ESP32C6:
		break;
	default:
		snprintf(err, errlen, "no simulator profile for %s", chip->name);
		return NULL;
	}
	if (cfg->native_usb && !chip->has_usb_jtag_serial && !chip->usb_otg_rom_pid) {
		snprintf(err, errlen, "%s has no native USB", chip->name);
		return NULL;
	}
	uint32_t size = cfg->flash_size ? cfg->flash_size : chip->default_flash_size;
	struct stat st;
	if (cfg->flash_file && stat(cfg->flash_file, &st) == 0 && st.st_size > 0) {
		/* an existing image keeps its size unless one is asked for;
		 * never cut a bigger image short */
		if (!cfg->flash_size)
			size = (uint32_t)(st.st_size > (off_t)(128u << 20) ? 0 : st.st_size);
		else if (st.st_size > (off_t)size) {
			snprintf(err, errlen, "%s holds %lld bytes, more than the flash size %u",
				 cfg->flash_file, (long long)st.st_size, size);
			return NULL;
		}
	}
	if (size < 256 * 1024 || size > (128u << 20) || size % SIM_BLOCK) {
		snprintf(err, errlen, "flash size %u: want a multiple of 64 KiB, 256 KiB .. 128 MB", size);
		return NULL;
	}
	sim_device *d = calloc(1, sizeof *d);
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->frame = malloc(SIM_MAX_FRAME);
	if (!d->frame || sim_flash_open(&d->flash, cfg->flash_file, size, err, errlen) < 0) {
		if (!d->frame)
			snprintf(err, errlen, "out of memory");
		free(d->frame);
		free(d);
		return NULL;
	}
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	d->cfg = *cfg;
	d->cfg.flash_file = NULL;
	d->name = cfg->name ? strdup(cfg->name) : NULL;
	d->cfg.name = d->name;
	d->cfg.chip = chip->key;
	d->cfg.mac = NULL;
	d->chip = chip;
	d->clock = cfg->clock ? cfg->clock : esp_clock_real();
	d->timing = cfg->timing;
	d->native_usb = cfg->native_usb;
	d->improv = cfg->improv;
	d->flash_size = size;
	d->jedec = jedec_for(size);
	if (cfg->mac)
		memcpy(d->mac, cfg->mac, 6);
	else
		derive_mac(chip, cfg->name, d->mac);
	d->host_baud = d->dev_baud = 115200;
	d->rng = 0x9E3779B97F4A7C15ull;
	slip_decoder_init(&d->dec, d->frame, SIM_MAX_FRAME);
	sim_loader_init(d, false);
	sim_regs_reset(d);
	d->plugged = true;
	d->generation = 1;
	d->last_usb_state = -1;
	uint64_t now = now_us_of(d);
	d->now_ns = now * 1000;
	if (cfg->app) {
		sim_boot_app(d, now, CAUSE_POWERON);
	} else {
		/* In download mode since power-on: on a UART board and over
		 * USB-OTG that means BOOT was held (straps latched low, a core
		 * reset comes back here); USB-JTAG chips are taken to have got
		 * here through the USB-JTAG reset, which latches nothing. */
		d->latched_download = !(d->native_usb && d->chip->has_usb_jtag_serial);
		sim_enter_rom(d, CAUSE_POWERON, now);
	}
	return d;
}

void sim_device_free(sim_device *d)
{
	if (!d)
		return;
	sim_app_glue_free(d);
	sim_loader_free(d);
	sim_flash_close(&d->flash);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	free(d->out);
	free(d->chunks);
	free(d->frame);
	free(d->name);
	free(d);
}

/* In ROM mode the loader re-measures the baud rate on every SYNC. */
static bool contains_sync(const uint8_t *b, size_t n)
{
	static const uint8_t pat[] = { 0x07, 0x07, 0x12, 0x20, 0x55, 0x55, 0x55, 0x55 };
	if (n < sizeof pat)
		return false;
	for (size_t i = 0; i + sizeof pat <= n; i++)
		if (memcmp(b + i, pat, sizeof pat) == 0)
			return true;
	return false;
}

void sim_host_write(sim_device *d, const uint8_t *buf, size_t n, uint64_t now_us)
{
	uint8_t *damaged = NULL;     /* a marginal link's copy of buf */
	pthread_mutex_lock(&d->lock);
	sim_advance(d, now_us);
	if (!d->plugged || d->en_low || d->strap_pending || d->mode == SIM_MODE_OFF || n == 0)
		goto out;
	uint64_t bt = sim_host_byte_ns(d);
	uint64_t start = d->now_ns > d->rx_free_ns ? d->now_ns : d->rx_free_ns;
	if (bt)
		d->rx_free_ns = start + n * bt;
	if (sim_baud_mismatch(d)) {
		if (d->mode == SIM_MODE_ROM && d->rom_autobaud && contains_sync(buf, n))
			d->dev_baud = d->host_baud;     /* auto-baud */
		else
			goto out;                       /* garbled: the UART sees noise */
	}
	if (sim_link_marginal(d, d->host_baud) && (damaged = malloc(n))) {
		memcpy(damaged, buf, n);
		for (size_t i = 0; i < n; i++)
			if (sim_rand(d) % 5 == 0)
				damaged[i] ^= (uint8_t)(1u << (sim_rand(d) % 8));
		buf = damaged;
	}
	if (d->mode == SIM_MODE_APP || d->mode == SIM_MODE_BOOT_LOOP) {
		if (d->app)
			sim_app_glue_input(d, buf, n, (start + n * bt) / 1000);
		goto out;
	}
	size_t pos = 0;
	while (pos < n) {
		size_t used = 0;
		int done = slip_decoder_feed(&d->dec, buf + pos, n - pos, &used);
		pos += used;
		if (done) {
			uint64_t t = start + pos * bt;
			unsigned gen = d->generation;
			sim_loader_frame(d, d->dec.buf, d->dec.len, t);
			if (gen != d->generation || !d->plugged || (d->mode != SIM_MODE_ROM && d->mode != SIM_MODE_STUB))
				break;   /* the device went away or left the loader */
		}
		if (used == 0)
			break;
	}
out:
	free(damaged);
	pthread_mutex_unlock(&d->lock);
}

size_t sim_host_read(sim_device *d, uint8_t *buf, size_t cap, uint64_t now_us)
{
	pthread_mutex_lock(&d->lock);
	sim_advance(d, now_us);
	size_t n = d->plugged ? sim_out_take(d, buf, cap, now_us * 1000) : 0;
	pthread_mutex_unlock(&d->lock);
	return n;
}

static uint64_t next_event_locked(sim_device *d)
{
	if (!d->plugged)
		return UINT64_MAX;
	uint64_t ns = sim_out_next_ns(d);
	uint64_t us = ns == UINT64_MAX ? UINT64_MAX : (ns + 999) / 1000;
	if (d->strap_pending && d->strap_at_us < us)
		us = d->strap_at_us;
	if (d->wdt_armed && d->wdt_at_us < us)
		us = d->wdt_at_us;
	if (d->app) {
		uint64_t a = sim_app_glue_next(d);
		if (a < us)
			us = a;
	}
	return us;
}

uint64_t sim_next_event_us(sim_device *d)
{
	pthread_mutex_lock(&d->lock);
	uint64_t us = next_event_locked(d);
	pthread_mutex_unlock(&d->lock);
	return us;
}

void sim_set_baud(sim_device *d, uint32_t baud)
{
	pthread_mutex_lock(&d->lock);
	sim_advance(d, now_us_of(d));
	if (baud)
		d->host_baud = baud;
	pthread_mutex_unlock(&d->lock);
}

void sim_set_lines(sim_device *d, int dtr, int rts)
{
	pthread_mutex_lock(&d->lock);
	uint64_t now = now_us_of(d);
	sim_advance(d, now);
	int rts_was = d->rts;
	if (dtr >= 0)
		d->dtr = dtr ? 1 : 0;
	if (rts >= 0)
		d->rts = rts ? 1 : 0;
	if (d->plugged) {
		if (d->native_usb && d->chip->has_usb_jtag_serial)
			sim_usb_jtag_lines(d, now);
		else if (!d->native_usb)
			sim_classic_lines(d, now);
		else if (d->mode == SIM_MODE_STUB && rts_was && !d->rts)
			/* USB-OTG: the ROM and TinyUSB apps ignore the lines; the
			 * stub (esp-flasher-stub) resets the chip when RTS toggles */
			sim_chip_reset(d, false, CAUSE_SW, now);
	}
	pthread_mutex_unlock(&d->lock);
}

void sim_button_boot(sim_device *d, bool pressed)
{
	pthread_mutex_lock(&d->lock);
	sim_advance(d, now_us_of(d));
	d->boot_btn = pressed;
	pthread_mutex_unlock(&d->lock);
}

void sim_button_reset(sim_device *d)
{
	pthread_mutex_lock(&d->lock);
	uint64_t now = now_us_of(d);
	sim_advance(d, now);
	if (d->plugged) {
		d->en_low = false;
		sim_out_cut_undue(d);
		sim_chip_reset(d, true, CAUSE_EN, now);
	}
	pthread_mutex_unlock(&d->lock);
}

void sim_unplug(sim_device *d)
{
	pthread_mutex_lock(&d->lock);
	sim_advance(d, now_us_of(d));
	sim_do_unplug(d);
	pthread_mutex_unlock(&d->lock);
}

void sim_replug(sim_device *d)
{
	pthread_mutex_lock(&d->lock);
	uint64_t now = now_us_of(d);
	sim_advance(d, now);
	if (!d->plugged) {
		d->plugged = true;
		d->generation++;
		d->usb_pid_now = 0;
		d->rx_free_ns = d->tx_free_ns = 0;
		d->last_usb_state = -1;
		d->usb_force_download = false;
		sim_chip_reset(d, true, CAUSE_POWERON, now);
		/* the lines may still hold EN low */
		if (!d->native_usb && d->rts && !d->dtr) {
			d->en_low = true;
			sim_app_glue_free(d);
		}
	}
	pthread_mutex_unlock(&d->lock);
}

void sim_set_faults(sim_device *d, const struct sim_faults *f)
{
	pthread_mutex_lock(&d->lock);
	if (f)
		d->faults = *f;
	else
		memset(&d->faults, 0, sizeof d->faults);
	d->rng = (d->faults.seed ? d->faults.seed : 1) * 0x9E3779B97F4A7C15ull;
	pthread_mutex_unlock(&d->lock);
}

sim_mode sim_get_mode(sim_device *d)
{
	pthread_mutex_lock(&d->lock);
	sim_advance(d, now_us_of(d));
	sim_mode m = d->mode;
	pthread_mutex_unlock(&d->lock);
	return m;
}

const struct esp_chip_info *sim_chip(sim_device *d) { return d->chip; }

void sim_get_mac(sim_device *d, uint8_t mac[6]) { memcpy(mac, d->mac, 6); }

uint32_t sim_flash_size(sim_device *d) { return d->flash_size; }

uint8_t *sim_flash_copy(sim_device *d, uint32_t offset, uint32_t len)
{
	uint8_t *b = malloc(len ? len : 1);
	if (!b)
		return NULL;
	pthread_mutex_lock(&d->lock);
	int r = sim_flash_read(&d->flash, offset, b, len);
	pthread_mutex_unlock(&d->lock);
	if (r < 0) {
		free(b);
		return NULL;
	}
	return b;
}

int sim_flash_load(sim_device *d, uint32_t offset, const uint8_t *data, size_t len)
{
	if (len > UINT32_MAX)
		return -EFBIG;
	pthread_mutex_lock(&d->lock);
	int r = sim_flash_poke(&d->flash, offset, data, (uint32_t)len);
	pthread_mutex_unlock(&d->lock);
	return r;
}

uint16_t sim_usb_pid(sim_device *d)
{
	pthread_mutex_lock(&d->lock);
	sim_advance(d, now_us_of(d));
	uint16_t p = d->usb_pid_now;
	pthread_mutex_unlock(&d->lock);
	return p;
}

uint16_t sim_usb_vid(sim_device *d)
{
	return d->native_usb ? SIM_VID_ESPRESSIF : SIM_VID_CP210X;
}

unsigned sim_port_generation(sim_device *d)
{
	pthread_mutex_lock(&d->lock);
	sim_advance(d, now_us_of(d));
	unsigned g = d->generation;
	pthread_mutex_unlock(&d->lock);
	return g;
}
