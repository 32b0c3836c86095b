/* The device core: lifecycle, the output timeline, host input, reset
 * circuits and straps, USB identity, faults.  See sim_priv.h for the
 * model. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "sim_priv.h"
#include "sim_app_glue.h"

/* EN rises through an RC network: the straps are sampled this long after
 * EN is released (a few ms on DevKit boards: 10k + 1uF). */
#define EN_RC_DELAY_US 2000

enum { CAUSE_POWERON = 0, CAUSE_EN = 1, CAUSE_LINES = 2, CAUSE_WDT = 3, CAUSE_SW = 4, CAUSE_USB = 5 };

static uint64_t now_us_of(sim_device *d) { return esp_now_us(d->clock); }

uint64_t sim_rand(sim_device *d)
{
	/* xorshift64*: reproducible per seed */
	uint64_t x = d->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	d->rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

double sim_rand01(sim_device *d) { return (double)(sim_rand(d) >> 11) / 9007199254740992.0; }

uint64_t sim_byte_ns(const sim_device *d)
{
	if (!d->timing)
		return 0;
	if (d->native_usb)
		return 1000;                         /* ~1 MB/s over USB */
	return 10000000000ull / (d->dev_baud ? d->dev_baud : 115200); /* 10 bits a byte */
}

static uint64_t host_byte_ns(const sim_device *d)
{
	if (!d->timing)
		return 0;
	if (d->native_usb)
		return 1000;
	return 10000000000ull / (d->host_baud ? d->host_baud : 115200);
}

static bool baud_mismatch(const sim_device *d)
{
	return !d->native_usb && d->host_baud != d->dev_baud;
}

/* ---- output timeline ---- */

static int out_reserve(sim_device *d, size_t n)
{
	if (d->out_head > 0 && d->out_head + d->out_len + n > d->out_cap) {
		memmove(d->out, d->out + d->out_head, d->out_len);
		d->out_head = 0;
	}
	if (d->out_len + n > d->out_cap) {
		size_t cap = d->out_cap ? d->out_cap : 4096;
		while (cap < d->out_len + n)
			cap *= 2;
		uint8_t *b = realloc(d->out, cap);
		if (!b)
			return -ENOMEM;
		d->out = b;
		d->out_cap = cap;
	}
	if (d->ch_head > 0 && d->ch_head + d->ch_len == d->ch_cap) {
		memmove(d->chunks, d->chunks + d->ch_head, d->ch_len * sizeof *d->chunks);
		d->ch_head = 0;
	}
	if (d->ch_len == d->ch_cap) {
		size_t cap = d->ch_cap ? d->ch_cap * 2 : 64;
		struct out_chunk *c = realloc(d->chunks, cap * sizeof *c);
		if (!c)
			return -ENOMEM;
		d->chunks = c;
		d->ch_cap = cap;
	}
	return 0;
}

static void out_clear(sim_device *d)
{
	d->out_head = d->out_len = 0;
	d->ch_head = d->ch_len = 0;
}

void sim_emit_at(sim_device *d, const uint8_t *buf, size_t n, uint64_t t_ns)
{
	if (!d->plugged || d->en_low || n == 0 || d->faults.stall)
		return;
	if (out_reserve(d, n) < 0)
		return;
	uint8_t *dst = d->out + d->out_head + d->out_len;
	size_t k = 0;
	bool garble = baud_mismatch(d);
	for (size_t i = 0; i < n; i++) {
		uint8_t b = buf[i];
		if (d->faults.garbage || garble)
			b = (uint8_t)sim_rand(d);
		if (d->faults.drop_rate > 0 && sim_rand01(d) < d->faults.drop_rate)
			continue;
		if (d->faults.corrupt_rate > 0 && sim_rand01(d) < d->faults.corrupt_rate)
			b ^= (uint8_t)(1u << (sim_rand(d) % 8));
		dst[k++] = b;
	}
	if (k == 0)
		return;
	uint64_t bns = sim_byte_ns(d);
	uint64_t start = t_ns;
	if (bns && start < d->tx_free_ns)
		start = d->tx_free_ns;
	struct out_chunk *c = &d->chunks[d->ch_head + d->ch_len++];
	c->len = k;
	c->sent = 0;
	c->start_ns = start;
	c->byte_ns = bns;
	d->out_len += k;
	if (bns)
		d->tx_free_ns = start + k * bns;
	pthread_cond_broadcast(&d->cond);
}

void sim_reply(sim_device *d, uint8_t op, uint32_t value, const uint8_t *data, size_t n,
	       const uint8_t *status, size_t status_len, uint64_t t_ns)
{
	size_t plen = 8 + n + status_len;
	uint8_t stackbuf[128];
	uint8_t *pl = plen <= sizeof stackbuf ? stackbuf : malloc(plen);
	if (!pl)
		return;
	pl[0] = 0x01;
	pl[1] = op;
	pl[2] = (uint8_t)((n + status_len) & 0xFF);
	pl[3] = (uint8_t)((n + status_len) >> 8);
	pl[4] = (uint8_t)value;
	pl[5] = (uint8_t)(value >> 8);
	pl[6] = (uint8_t)(value >> 16);
	pl[7] = (uint8_t)(value >> 24);
	if (n)
		memcpy(pl + 8, data, n);
	memcpy(pl + 8 + n, status, status_len);
	sim_raw_frame(d, pl, plen, t_ns);
	if (pl != stackbuf)
		free(pl);
}

void sim_raw_frame(sim_device *d, const uint8_t *buf, size_t n, uint64_t t_ns)
{
	uint8_t *enc = malloc(SLIP_MAX_ENCODED(n));
	if (!enc)
		return;
	size_t m = slip_encode(buf, n, enc);
	sim_emit_at(d, enc, m, t_ns);
	free(enc);
}

void sim_emit_text(sim_device *d, const char *s, uint64_t t_ns)
{
	sim_emit_at(d, (const uint8_t *)s, strlen(s), t_ns);
}

/* Drop output not yet on the wire (the UART stops on reset). */
static void out_cut_undue(sim_device *d)
{
	uint64_t now = d->now_ns;
	size_t total = 0, i, kept = 0;
	for (i = 0; i < d->ch_len; i++) {
		struct out_chunk *c = &d->chunks[d->ch_head + i];
		size_t due;
		if (c->byte_ns == 0)
			due = c->start_ns <= now ? c->len : 0;
		else if (now < c->start_ns)
			due = 0;
		else {
			uint64_t k = (now - c->start_ns) / c->byte_ns;
			due = k < c->len ? (size_t)k : c->len;
		}
		if (due < c->sent)
			due = c->sent;
		bool cut = due < c->len;
		c->len = due;
		if (c->len > c->sent) {
			total += c->len - c->sent;
			kept = i + 1;
		}
		if (cut)
			break;
	}
	d->ch_len = kept;
	d->out_len = total;
	if (d->ch_len == 0)
		d->ch_head = 0;
	d->tx_free_ns = now;
}

static size_t out_take(sim_device *d, uint8_t *buf, size_t cap, uint64_t now)
{
	size_t got = 0;
	while (d->ch_len && got < cap) {
		struct out_chunk *c = &d->chunks[d->ch_head];
		size_t avail;
		if (c->byte_ns == 0)
			avail = c->start_ns <= now ? c->len - c->sent : 0;
		else if (now < c->start_ns + c->byte_ns)
			avail = 0;
		else {
			uint64_t k = (now - c->start_ns) / c->byte_ns;
			if (k > c->len)
				k = c->len;
			avail = (size_t)k - c->sent;
		}
		if (avail == 0)
			break;
		if (avail > cap - got)
			avail = cap - got;
		memcpy(buf + got, d->out + d->out_head, avail);
		d->out_head += avail;
		d->out_len -= avail;
		got += avail;
		c->sent += avail;
		if (c->sent == c->len) {
			d->ch_head++;
			d->ch_len--;
			if (d->ch_len == 0)
				d->ch_head = 0;
		}
	}
	if (d->out_len == 0)
		d->out_head = 0;
	return got;
}

static uint64_t out_next_ns(sim_device *d)
{
	if (!d->ch_len)
		return UINT64_MAX;
	struct out_chunk *c = &d->chunks[d->ch_head];
	return c->start_ns + (c->sent + 1) * c->byte_ns;
}

/* ---- USB identity ---- */

static uint16_t pid_for_mode(const sim_device *d, sim_mode m)
{
	if (!d->native_usb)
		return SIM_PID_CP210X;
	if (d->chip->has_usb_jtag_serial)
		return SIM_PID_USB_JTAG;
	/* USB-OTG: the ROM's own CDC, or TinyUSB in the app */
	return (m == SIM_MODE_ROM || m == SIM_MODE_STUB) ? d->chip->usb_otg_rom_pid : SIM_PID_TINYUSB;
}

/* Called after every mode change: an OTG device re-enumerates when it
 * switches between ROM and app, which ends every open port. */
static void usb_update(sim_device *d, sim_mode m)
{
	uint16_t pid = pid_for_mode(d, m);
	/* USB-OTG is driven by the chip's own software: any chip reset drops
	 * off the bus and comes back (USB-Serial/JTAG and bridges stay) */
	bool otg = d->native_usb && !d->chip->has_usb_jtag_serial;
	if (pid != d->usb_pid_now || (otg && d->usb_pid_now)) {
		d->usb_pid_now = pid;
		d->generation++;
		out_clear(d);
		pthread_cond_broadcast(&d->cond);
	}
}

/* ---- resets and modes ---- */

static const char *rom_banner(const sim_device *d, int cause, bool download)
{
	static char b[320];
	const char *rst;
	switch (d->chip->id) {
	case ESP_CHIP_ESP8266: {
		int c = cause == CAUSE_POWERON ? 1 : cause == CAUSE_WDT ? 4 : 2;
		snprintf(b, sizeof b, "\r\n ets Jan  8 2013,rst cause:%d, boot mode:(%d,7)\r\n\r\n", c, download ? 1 : 3);
		return b;
	}
	case ESP_CHIP_ESP32:
		rst = cause == CAUSE_WDT ? "rst:0x10 (RTCWDT_RTC_RESET)" :
		      cause == CAUSE_SW ? "rst:0xc (SW_CPU_RESET)" : "rst:0x1 (POWERON_RESET)";
		snprintf(b, sizeof b, "ets Jun  8 2016 00:22:57\r\n\r\n%s,boot:%s\r\n%s", rst,
			 download ? "0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))" : "0x13 (SPI_FAST_FLASH_BOOT)",
			 download ? "waiting for download\r\n" : "");
		return b;
	default: {
		const char *hdr, *dl;
		switch (d->chip->id) {
		case ESP_CHIP_ESP32S2: hdr = "ESP-ROM:esp32s2-rc4-20191025\r\nBuild:Oct 25 2019\r\n"; dl = "0x0 (DOWNLOAD(USB/UART0/1))"; break;
		case ESP_CHIP_ESP32S3: hdr = "ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\n"; dl = "0x0 (DOWNLOAD(USB/UART0))"; break;
		case ESP_CHIP_ESP32C3: hdr = "ESP-ROM:esp32c3-api1-20210207\r\nBuild:Feb  7 2021\r\n"; dl = "0x1 (DOWNLOAD(USB/UART0/1))"; break;
		case ESP_CHIP_ESP32C6: hdr = "ESP-ROM:esp32c6-20220919\r\nBuild:Sep 19 2022\r\n"; dl = "0x4 (DOWNLOAD(USB/UART/SDIO_FEI_FEO))"; break;
		default: hdr = "ESP-ROM\r\n"; dl = "0x0 (DOWNLOAD)"; break;
		}
		rst = cause == CAUSE_WDT ? "rst:0x10 (RTCWDT_RTC_RST)" :
		      cause == CAUSE_USB ? "rst:0x15 (USB_UART_CHIP_RESET)" :
		      cause == CAUSE_SW ? "rst:0x3 (RTC_SW_SYS_RST)" : "rst:0x1 (POWERON)";
		snprintf(b, sizeof b, "%s%s,boot:%s\r\n%s", hdr, rst, download ? dl : "0x8 (SPI_FAST_FLASH_BOOT)",
			 download ? "waiting for download\r\n" : "");
		return b;
	}
	}
}

static void stop_running(sim_device *d)
{
	sim_app_glue_free(d);
	sim_loader_init(d, false);
	sim_regs_reset(d);
	d->dev_baud = 115200;
	d->busy_ns = d->prog_done_ns = 0;
	slip_decoder_reset(&d->dec);
}

static void enter_rom(sim_device *d, int cause, uint64_t now_us)
{
	stop_running(d);
	d->mode = SIM_MODE_ROM;
	d->rom_autobaud = true;
	usb_update(d, SIM_MODE_ROM);
	uint64_t t = now_us * 1000;
	if (t < d->now_ns)
		t = d->now_ns;
	sim_emit_text(d, rom_banner(d, cause, true), t);
}

void sim_boot_app(sim_device *d, uint64_t now_us, int cause)
{
	stop_running(d);
	usb_update(d, SIM_MODE_APP);
	int app_cause = cause == CAUSE_POWERON ? 0 : cause == CAUSE_EN ? 1 : 2;
	uint64_t t = now_us * 1000 < d->now_ns ? d->now_ns : now_us * 1000;
	d->mode = sim_app_glue_boot(d, t / 1000, app_cause) ? SIM_MODE_APP : SIM_MODE_BOOT_LOOP;
}

static bool boot_strap_low(const sim_device *d)
{
	if (d->boot_btn)
		return true;
	/* classic circuit: IO0 low when DTR asserted and RTS released */
	return !d->native_usb && d->dtr && !d->rts;
}

void sim_chip_reset(sim_device *d, bool system, int cause, uint64_t now_us)
{
	d->en_low = false;
	d->strap_pending = false;
	d->wdt_armed = false;
	if (system)
		d->latched_download = boot_strap_low(d);
	bool download = d->latched_download || d->usb_force_download;
	d->usb_force_download = false;
	if (download)
		enter_rom(d, cause, now_us);
	else
		sim_boot_app(d, now_us, cause);
}

void sim_do_unplug(sim_device *d)
{
	if (!d->plugged)
		return;
	sim_app_glue_free(d);
	sim_loader_init(d, false);
	d->plugged = false;
	d->mode = SIM_MODE_OFF;
	d->generation++;
	d->usb_pid_now = 0;
	d->en_low = false;
	d->strap_pending = false;
	d->wdt_armed = false;
	out_clear(d);
	sim_flash_sync(&d->flash);
	pthread_cond_broadcast(&d->cond);
}

/* Let device time run up to now: strap sampling, watchdog, app output. */
static void advance(sim_device *d, uint64_t now_us)
{
	uint64_t ns = now_us * 1000;
	if (ns > d->now_ns)
		d->now_ns = ns;
	if (!d->plugged)
		return;
	if (d->strap_pending && now_us >= d->strap_at_us) {
		d->strap_pending = false;
		sim_chip_reset(d, true, d->pending_cause, d->strap_at_us);
	}
	if (d->wdt_armed && now_us >= d->wdt_at_us) {
		d->wdt_armed = false;
		sim_chip_reset(d, true, CAUSE_WDT, d->wdt_at_us);
	}
	if (d->app && !d->en_low)
		sim_app_glue_poll(d, now_us);
}

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
		enter_rom(d, CAUSE_POWERON, now);
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
	pthread_mutex_lock(&d->lock);
	advance(d, now_us);
	if (!d->plugged || d->en_low || d->strap_pending || d->mode == SIM_MODE_OFF || n == 0)
		goto out;
	uint64_t bt = host_byte_ns(d);
	uint64_t start = d->now_ns > d->rx_free_ns ? d->now_ns : d->rx_free_ns;
	if (bt)
		d->rx_free_ns = start + n * bt;
	if (baud_mismatch(d)) {
		if (d->mode == SIM_MODE_ROM && d->rom_autobaud && contains_sync(buf, n))
			d->dev_baud = d->host_baud;     /* auto-baud */
		else
			goto out;                       /* garbled: the UART sees noise */
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
	pthread_mutex_unlock(&d->lock);
}

size_t sim_host_read(sim_device *d, uint8_t *buf, size_t cap, uint64_t now_us)
{
	pthread_mutex_lock(&d->lock);
	advance(d, now_us);
	size_t n = d->plugged ? out_take(d, buf, cap, now_us * 1000) : 0;
	pthread_mutex_unlock(&d->lock);
	return n;
}

static uint64_t next_event_locked(sim_device *d)
{
	if (!d->plugged)
		return UINT64_MAX;
	uint64_t ns = out_next_ns(d);
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
	advance(d, now_us_of(d));
	if (baud)
		d->host_baud = baud;
	pthread_mutex_unlock(&d->lock);
}

/* USB-Serial/JTAG (C3, S3, C6): DTR=1,RTS=0 requests download mode, RTS=1,
 * DTR=0 holds the chip in reset; leaving that state is a core reset, which
 * does not re-sample the straps (ESP32-C3 TRM, USB Serial/JTAG "CDC-ACM"
 * reset; PROTOCOL.md A15). */
static void usb_jtag_lines(sim_device *d, uint64_t now)
{
	int st = (d->dtr ? 2 : 0) | (d->rts ? 1 : 0);
	if (st == d->last_usb_state)
		return;
	bool was_reset = d->last_usb_state == 1;
	d->last_usb_state = st;
	if (st == 2)
		d->usb_force_download = true;
	if (st == 1 && !d->en_low) {
		d->en_low = true;
		out_cut_undue(d);
		sim_app_glue_free(d);
	} else if (st != 1 && was_reset && d->en_low) {
		sim_chip_reset(d, false, CAUSE_USB, now);
	}
}

/* Classic auto-reset circuit of USB-UART boards: two transistors, so
 * RTS alone pulls EN low, DTR alone pulls IO0 low, both = no effect. */
static void classic_lines(sim_device *d, uint64_t now)
{
	bool en_low = d->rts && !d->dtr;
	if (en_low && !d->en_low) {
		d->en_low = true;
		d->strap_pending = false;
		d->wdt_armed = false;
		out_cut_undue(d);
		sim_app_glue_free(d);
	} else if (!en_low && d->en_low) {
		d->en_low = false;
		d->strap_pending = true;
		d->strap_at_us = now + EN_RC_DELAY_US;
		d->pending_cause = CAUSE_LINES;
	}
}

void sim_set_lines(sim_device *d, int dtr, int rts)
{
	pthread_mutex_lock(&d->lock);
	uint64_t now = now_us_of(d);
	advance(d, now);
	int rts_was = d->rts;
	if (dtr >= 0)
		d->dtr = dtr ? 1 : 0;
	if (rts >= 0)
		d->rts = rts ? 1 : 0;
	if (d->plugged) {
		if (d->native_usb && d->chip->has_usb_jtag_serial)
			usb_jtag_lines(d, now);
		else if (!d->native_usb)
			classic_lines(d, now);
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
	advance(d, now_us_of(d));
	d->boot_btn = pressed;
	pthread_mutex_unlock(&d->lock);
}

void sim_button_reset(sim_device *d)
{
	pthread_mutex_lock(&d->lock);
	uint64_t now = now_us_of(d);
	advance(d, now);
	if (d->plugged) {
		d->en_low = false;
		out_cut_undue(d);
		sim_chip_reset(d, true, CAUSE_EN, now);
	}
	pthread_mutex_unlock(&d->lock);
}

void sim_unplug(sim_device *d)
{
	pthread_mutex_lock(&d->lock);
	advance(d, now_us_of(d));
	sim_do_unplug(d);
	pthread_mutex_unlock(&d->lock);
}

void sim_replug(sim_device *d)
{
	pthread_mutex_lock(&d->lock);
	uint64_t now = now_us_of(d);
	advance(d, now);
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
	advance(d, now_us_of(d));
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
	advance(d, now_us_of(d));
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
	advance(d, now_us_of(d));
	unsigned g = d->generation;
	pthread_mutex_unlock(&d->lock);
	return g;
}
