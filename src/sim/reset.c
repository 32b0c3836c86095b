/* Resets and modes: USB identity (and USB-OTG re-enumeration), the ROM
 * boot line, system vs core resets and strap latching, the classic DTR/RTS
 * auto-reset circuit and the USB-Serial/JTAG reset logic, and the passage
 * of device time (straps sampled after EN rises, RTC watchdog, app). */
#include <stdio.h>
#include <string.h>
#include "sim_priv.h"
#include "sim_app_glue.h"

/* EN rises through an RC network: the straps are sampled this long after
 * EN is released (a few ms on DevKit boards: 10k + 1uF). */
#define EN_RC_DELAY_US 2000

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
	bool jtag_drop = d->native_usb && d->chip->has_usb_jtag_serial && d->cfg.usb_jtag_reenumerate &&
			 d->resetting;
	if (pid != d->usb_pid_now || ((otg || jtag_drop) && d->usb_pid_now)) {
		d->usb_pid_now = pid;
		d->generation++;
		sim_out_clear(d);
		pthread_cond_broadcast(&d->cond);
	}
}

/* ---- resets and modes ---- */

static const char *rom_banner(const sim_device *d, int cause, bool download, char *b, size_t cap)
{
	const char *rst;
	switch (d->chip->id) {
	case ESP_CHIP_ESP8266: {
		int c = cause == CAUSE_POWERON ? 1 : cause == CAUSE_WDT ? 4 : 2;
		snprintf(b, cap, "\r\n ets Jan  8 2013,rst cause:%d, boot mode:(%d,7)\r\n\r\n", c, download ? 1 : 3);
		return b;
	}
	case ESP_CHIP_ESP32:
		rst = cause == CAUSE_WDT ? "rst:0x10 (RTCWDT_RTC_RESET)" :
		      cause == CAUSE_SW ? "rst:0xc (SW_CPU_RESET)" : "rst:0x1 (POWERON_RESET)";
		snprintf(b, cap, "ets Jul 29 2019 12:21:46\r\n\r\n%s,boot:%s\r\n%s", rst,
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
		snprintf(b, cap, "%s%s,boot:%s\r\n%s", hdr, rst, download ? dl : "0x8 (SPI_FAST_FLASH_BOOT)",
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

void sim_enter_rom(sim_device *d, int cause, uint64_t now_us)
{
	stop_running(d);
	d->mode = SIM_MODE_ROM;
	d->rom_autobaud = true;
	usb_update(d, SIM_MODE_ROM);
	uint64_t t = now_us * 1000;
	if (t < d->now_ns)
		t = d->now_ns;
	char banner[320];
	sim_emit_text(d, rom_banner(d, cause, true, banner, sizeof banner), t);
}

void sim_boot_app(sim_device *d, uint64_t now_us, int cause)
{
	stop_running(d);
	usb_update(d, SIM_MODE_APP);
	/* the app's ROM line: a watchdog reset is RTCWDT_RTC_RST (0x10) as
	 * on silicon, not a software CPU reset */
	int app_cause = cause == CAUSE_POWERON ? 0 : cause == CAUSE_EN ? 1 : cause == CAUSE_WDT ? 3 : 2;
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
	d->resetting = true;
	if (download)
		sim_enter_rom(d, cause, now_us);
	else
		sim_boot_app(d, now_us, cause);
	d->resetting = false;
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
	sim_out_clear(d);
	sim_flash_sync(&d->flash);
	pthread_cond_broadcast(&d->cond);
}

/* Let device time run up to now: strap sampling, watchdog, app output. */
void sim_advance(sim_device *d, uint64_t now_us)
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

/* USB-Serial/JTAG (C3, S3, C6): DTR=1,RTS=0 requests download mode, RTS=1,
 * DTR=0 holds the chip in reset; leaving that state is a core reset, which
 * does not re-sample the straps (ESP32-C3 TRM, USB Serial/JTAG "CDC-ACM"
 * reset; PROTOCOL.md A15). */
void sim_usb_jtag_lines(sim_device *d, uint64_t now)
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
		sim_out_cut_undue(d);
		sim_app_glue_free(d);
	} else if (st != 1 && was_reset && d->en_low) {
		sim_chip_reset(d, false, CAUSE_USB, now);
	}
}

/* Classic auto-reset circuit of USB-UART boards: two transistors, so
 * RTS alone pulls EN low, DTR alone pulls IO0 low, both = no effect. */
void sim_classic_lines(sim_device *d, uint64_t now)
{
	bool en_low = d->rts && !d->dtr;
	if (en_low && !d->en_low) {
		d->en_low = true;
		d->strap_pending = false;
		d->wdt_armed = false;
		sim_out_cut_undue(d);
		sim_app_glue_free(d);
	} else if (!en_low && d->en_low) {
		d->en_low = false;
		d->strap_pending = true;
		d->strap_at_us = now + EN_RC_DELAY_US;
		d->pending_cause = CAUSE_LINES;
	}
}
