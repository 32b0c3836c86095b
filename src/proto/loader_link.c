/* Getting into the loader and out of it: reset sequences, SYNC, the baud
 * rate, hard and watchdog resets (PROTOCOL.md A5, A14, A15). */
#include <errno.h>
#include <string.h>
#include "espfs/log.h"
#include "loader_priv.h"

#define SYNC_TRIES_PER_RESET 5

static void forget_session(esp_loader *l)
{
	l->stub = l->synced = l->attached = l->params_set = false;
	l->rom_clk_num = l->rom_clk_den = 0;
}

/* Drive DTR/RTS; -ENOTTY when the port has none. */
static int lines(esp_loader *l, int dtr, int rts)
{
	return esp_tr_set_lines(l->t, dtr, rts);
}

#define LINES(d, r) do { int _rc = lines(l, (d), (r)); if (_rc < 0) return _rc; } while (0)

static int reset_classic(esp_loader *l, uint32_t delay_ms)
{
	const esp_clock *c = l->t->clock;
	LINES(0, 1);           /* EN low */
	esp_sleep_ms(c, 100);
	LINES(1, -1);          /* IO0 low */
	LINES(-1, 0);          /* EN high: boots into download mode */
	esp_sleep_ms(c, delay_ms);
	LINES(0, -1);
	return 0;
}

/* Both lines change in one ioctl, so no glitch resets the chip early. */
static int reset_unix_tight(esp_loader *l, uint32_t delay_ms)
{
	const esp_clock *c = l->t->clock;
	LINES(0, 0);
	LINES(1, 1);
	LINES(0, 1);
	esp_sleep_ms(c, 100);
	LINES(1, 0);
	esp_sleep_ms(c, delay_ms);
	LINES(0, 0);
	LINES(0, -1);
	return 0;
}

static int reset_usb_jtag(esp_loader *l)
{
	const esp_clock *c = l->t->clock;
	LINES(0, 0);
	esp_sleep_ms(c, 100);
	LINES(1, 0);
	esp_sleep_ms(c, 100);
	LINES(0, 1);
	esp_sleep_ms(c, 100);
	LINES(0, 0);
	return 0;
}

bool esp__is_usb_jtag(const esp_transport *t)
{
	return t->usb_vid == ESP_ESPRESSIF_VID && t->usb_pid == ESP_USB_JTAG_SERIAL_PID;
}

static int do_reset(esp_loader *l, esp_reset_mode mode, int attempt)
{
	uint32_t delay = attempt % 2 ? 550 : 50;
	switch (mode) {
	case ESP_RESET_NONE:
		return 0;
	case ESP_RESET_CLASSIC:
		return reset_classic(l, delay);
	case ESP_RESET_USB_JTAG:
		return reset_usb_jtag(l);
	case ESP_RESET_AUTO:
	default:
		if (esp__is_usb_jtag(l->t))
			return reset_usb_jtag(l);
		/* esptool's POSIX order: tight 50, tight 550, classic 50, classic 550 */
		return (attempt / 2) % 2 ? reset_classic(l, delay) : reset_unix_tight(l, delay);
	}
}

static const uint8_t sync_payload[36] = {
	0x07, 0x07, 0x12, 0x20,
	0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
	0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
};

/* One SYNC; on success drain the other replies (8 in all, A5) and tell a
 * running stub (value 0) from the ROM (non-zero). */
static int sync_once(esp_loader *l)
{
	uint32_t v = 0;
	int rc = esp_loader_command(l, ESP_SYNC, sync_payload, sizeof sync_payload, 0,
				    ESP_TMO_SYNC_MS, &v, NULL, 0, 0);
	if (rc < 0)
		return rc;
	bool all_zero = v == 0;
	for (int i = 0; i < 7; i++) {
		uint32_t v2 = 0;
		if (esp__recv(l, ESP_SYNC, ESP_TMO_SYNC_MS, &v2, NULL, 0, 0) < 0)
			break;
		if (v2 != 0)
			all_zero = false;
	}
	l->stub = all_zero;
	l->synced = true;
	return 0;
}

int esp_loader_connect(esp_loader *l, esp_reset_mode mode, int attempts)
{
	if (attempts <= 0)
		attempts = 4;
	forget_session(l);
	l->rd.dec.text_len = 0;
	l->rd.dec.text[0] = 0;
	bool have_lines = !(l->t->flags & ESP_TR_NO_LINES);
	int last = -ETIMEDOUT;
	for (int a = 0; a < attempts; a++) {
		if (have_lines && mode != ESP_RESET_NONE) {
			int rc = do_reset(l, mode, a);
			if (rc == -ENOTTY || rc == -EINVAL) {
				have_lines = false; /* a pty or socket: SYNC only */
				LOGD("%s: no modem lines, connecting without reset", l->t->name);
			} else if (rc == -ENODEV) {
				esp__err(l, "port went away during reset");
				return rc;
			}
		}
		for (int s = 0; s < SYNC_TRIES_PER_RESET; s++) {
			int rc = sync_once(l);
			if (rc == 0) {
				LOGD("%s: in sync with the %s", l->t->name, esp__who(l));
				return 0;
			}
			last = rc;
			if (rc == -ENODEV || rc == -EINTR)  /* gone, or the job was cancelled */
				return rc;
			esp_sleep_ms(l->t->clock, 50);
		}
	}
	const char *text = l->rd.dec.text;
	if (l->send_stalled)
		esp__err(l, "the port does not take data: the chip is not reading its UART "
			 "(a SYNC could not be sent within its deadline)");
	else if (strstr(text, "waiting for download"))
		esp__err(l, "chip is in download mode but does not answer SYNC");
	else if (strstr(text, "boot:"))
		esp__err(l, "chip booted normally instead of entering download mode (hold BOOT and press RESET)");
	else if (l->rd.dec.noise)
		esp__err(l, "no SYNC reply after %d attempts; the port carries other data", attempts);
	else
		esp__err(l, "no SYNC reply after %d attempts (is the chip in download mode?)", attempts);
	return last == -EPROTO ? -EPROTO : -ETIMEDOUT;
}


/* ---- baud rate ---- */

uint32_t esp__baud_word(esp_loader *l, uint32_t baud)
{
	/* A14: the ESP32 ROM runs its UART from an 8 MHz clock it calibrated
	 * itself and gets the divider slightly wrong; esptool asks it for a
	 * rate scaled by (the ROM's crystal estimate / the true crystal) so
	 * the line ends up at the rate we want.  The factor is read once, at
	 * a rate that works, and kept for changes made on a doubtful link. */
	if (l->stub || !l->chip || l->chip->id != ESP_CHIP_ESP32)
		return baud;
	if (!l->rom_clk_den) {
		uint32_t cali = 0, ck8m = 0;
		if (esp_loader_read_reg(l, ESP32_RTC_CALI_REG, &cali) == 0 &&
		    esp_loader_read_reg(l, ESP32_EFUSE_WORD4, &ck8m) == 0) {
			uint64_t rom_hz = (uint64_t)((cali >> 7) & 0x1FFFFFF) * 15625u * (ck8m & 0xFF) / 40;
			l->rom_clk_num = rom_hz ? rom_hz : 1;
			l->rom_clk_den = rom_hz ? (rom_hz > 33000000u ? 40000000u : 26000000u) : 1;
		}
	}
	if (!l->rom_clk_den)
		return baud;
	return (uint32_t)((uint64_t)baud * l->rom_clk_num / l->rom_clk_den);
}

int esp_loader_change_baud(esp_loader *l, uint32_t baud)
{
	int rc = esp__need_chip(l);
	if (rc < 0)
		return rc;
	if (!l->stub && !l->chip->rom_has_change_baud) {
		esp__err(l, "the %s ROM cannot change the baud rate (load the stub first)", l->chip->name);
		return -EOPNOTSUPP;
	}
	uint32_t ask = esp__baud_word(l, baud);
	/* the stub needs the old rate to compute its divider; the ROM 0 */
	uint8_t p[8];
	esp__put32(p, ask);
	esp__put32(p + 4, l->stub ? l->t->baud : 0);
	rc = esp_loader_command(l, ESP_CHANGE_BAUDRATE, p, 8, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	if (rc < 0) {
		esp__err_prefix(l, "changing baud rate to %u", baud);
		return rc;
	}
	rc = esp_tr_set_baud(l->t, baud);
	if (rc < 0) {
		esp__err(l, "port cannot use %u baud: %s", baud, strerror(-rc));
		return rc;
	}
	esp_sleep_ms(l->t->clock, 50);
	slip_reader_flush(&l->rd);
	return 0;
}


/* ---- leaving the loader ---- */

int esp_loader_hard_reset(esp_loader *l)
{
	uint32_t hold = l->t->flags & ESP_TR_NATIVE_USB ? 200 : 100;
	int rc = lines(l, 0, 1); /* IO0 released, EN low */
	if (rc == 0) {
		esp_sleep_ms(l->t->clock, hold);
		rc = lines(l, 0, 0);
		if (rc == 0 && (l->t->flags & ESP_TR_NATIVE_USB))
			esp_sleep_ms(l->t->clock, 200);
	}
	if (rc == -ENOTTY || rc == -EINVAL) {
		esp__err(l, "port %s has no DTR/RTS lines to reset the chip", l->t->name);
		return -EOPNOTSUPP;
	}
	if (rc < 0) {
		esp__err(l, "reset failed: %s", strerror(-rc));
		return rc;
	}
	forget_session(l);
	return 0;
}

int esp_loader_watchdog_reset(esp_loader *l)
{
	int rc = esp__need_chip(l);
	if (rc < 0)
		return rc;
	const struct esp_chip_info *c = l->chip;
	if (!c->wdt_config0) {
		esp__err(l, "%s has no usable RTC watchdog reset", c->name);
		return -EOPNOTSUPP;
	}
	/* A15: unlock, 2000 slow-clock cycles, system reset stage, lock */
	if ((rc = esp__wreg(l, c->wdt_wprotect, ESP_WDT_WKEY)) < 0 ||
	    (rc = esp__wreg(l, c->wdt_config1, 2000)) < 0 ||
	    (rc = esp__wreg(l, c->wdt_config0, 1u << 31 | 5u << 28 | 1u << 8 | 2)) < 0 ||
	    (rc = esp__wreg(l, c->wdt_wprotect, 0)) < 0) {
		esp__err_prefix(l, "watchdog reset");
		return rc;
	}
	esp_sleep_ms(l->t->clock, 500);
	forget_session(l);
	return 0;
}
