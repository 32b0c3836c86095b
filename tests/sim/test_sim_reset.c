/* Resets and modes: the classic DTR/RTS circuit, the USB-Serial/JTAG
 * sequence, BOOT/RESET buttons, the RTC watchdog, USB-OTG re-enumeration
 * of the ESP32-S2, unplug/replug, baud changes and the link timing model
 * (PROTOCOL.md A14-A16, REFCLIENTS.md). */
#include "t.h"
#include "simtest.h"

static bool in_app(sim_device *d)
{
	sim_mode m = sim_get_mode(d);
	return m == SIM_MODE_APP || m == SIM_MODE_BOOT_LOOP;
}

static void wait_ms(struct st *s, uint32_t ms) { esp_sleep_ms(&s->fc.clock, ms); }

static bool answers_sync(struct st *s)
{
	st_flush(s);
	return st_sync(s, NULL) == 0;
}

static void classic_circuit_truth_table(void)
{
	struct st s;
	struct sim_config cfg = { .chip = "esp32", .app = true };
	if (st_open_cfg(&s, &cfg) < 0) {
		CHECK(0);
		return;
	}
	CHECK(in_app(s.d));
	/* RTS alone: EN low, the chip is held in reset and silent */
	esp_tr_set_lines(s.t, 0, 1);
	wait_ms(&s, 100);
	st_flush(&s);
	CHECK(!answers_sync(&s));
	/* release with IO0 high: boots the firmware */
	esp_tr_set_lines(s.t, 0, 0);
	wait_ms(&s, 50);
	CHECK(in_app(s.d));

	/* esptool ClassicReset: D0 R1 W0.1 D1 R0 W0.05 D0 */
	esp_tr_set_lines(s.t, 0, -1);
	esp_tr_set_lines(s.t, -1, 1);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, 1, -1);   /* both asserted: EN released, IO0 still high */
	esp_tr_set_lines(s.t, -1, 0);   /* IO0 low while EN rises */
	wait_ms(&s, 50);
	esp_tr_set_lines(s.t, 0, -1);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	CHECK(answers_sync(&s));

	/* both asserted from rest: no reset, the loader keeps running */
	uint32_t gen = sim_port_generation(s.d);
	esp_tr_set_lines(s.t, 1, 1);
	wait_ms(&s, 50);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	CHECK(answers_sync(&s));
	esp_tr_set_lines(s.t, 0, 0);
	CHECK_EQ(sim_port_generation(s.d), gen);

	/* hard reset (RTS pulse, DTR released): the firmware again */
	esp_tr_set_lines(s.t, 0, 1);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, 0, 0);
	wait_ms(&s, 50);
	CHECK(in_app(s.d));

	/* esptool UnixTightReset: (0,0) (1,1) (0,1) W0.1 (1,0) W0.05 (0,0) */
	esp_tr_set_lines(s.t, 0, 0);
	esp_tr_set_lines(s.t, 1, 1);
	esp_tr_set_lines(s.t, 0, 1);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, 1, 0);
	wait_ms(&s, 50);
	esp_tr_set_lines(s.t, 0, 0);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	CHECK(answers_sync(&s));
	st_close(&s);
}

static void rom_banner_before_frames(void)
{
	struct st s;
	struct sim_config cfg = { .chip = "esp32s3", .app = true };
	if (st_open_cfg(&s, &cfg) < 0) {
		CHECK(0);
		return;
	}
	st_flush(&s);
	sim_button_boot(s.d, true);
	sim_button_reset(s.d);
	sim_button_boot(s.d, false);
	uint8_t buf[512];
	size_t n = st_drain_raw(&s, buf, sizeof buf - 1, 20);
	buf[n] = 0;
	CHECK(strstr((char *)buf, "boot:0x") && strstr((char *)buf, "waiting for download"));
	CHECK(memchr(buf, 0xC0, n) == NULL);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	/* RESET without BOOT: the firmware */
	sim_button_reset(s.d);
	CHECK(in_app(s.d));
	st_close(&s);
}

static void usb_jtag_serial_reset(void)
{
	struct st s;
	struct sim_config cfg = { .chip = "esp32c3", .app = true, .native_usb = true };
	if (st_open_cfg(&s, &cfg) < 0) {
		CHECK(0);
		return;
	}
	CHECK(s.t->flags & ESP_TR_NATIVE_USB);
	CHECK_EQ(s.t->usb_vid, 0x303A);
	CHECK_EQ(s.t->usb_pid, 0x1001);
	uint32_t gen = sim_port_generation(s.d);
	/* esptool USBJTAGSerialReset */
	esp_tr_set_lines(s.t, 0, 0);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, 1, 0);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, -1, 1);
	esp_tr_set_lines(s.t, 0, -1);
	esp_tr_set_lines(s.t, -1, 1);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, 0, 0);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	CHECK(answers_sync(&s));
	CHECK_EQ(sim_port_generation(s.d), gen);     /* same port */
	CHECK_EQ(sim_usb_pid(s.d), 0x1001);
	/* hard reset: RTS pulse -> core reset -> the firmware */
	esp_tr_set_lines(s.t, -1, 1);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, -1, 0);
	wait_ms(&s, 10);
	CHECK(in_app(s.d));
	/* after a manual entry (BOOT + RESET) a core reset stays in download
	 * mode: the straps are not re-sampled */
	sim_button_boot(s.d, true);
	sim_button_reset(s.d);
	sim_button_boot(s.d, false);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	esp_tr_set_lines(s.t, -1, 1);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, -1, 0);
	wait_ms(&s, 10);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	st_close(&s);
}

static void watchdog_write(struct st *s, const struct esp_chip_info *c, uint32_t key)
{
	st_write_reg(s, c->wdt_wprotect, key);
	st_write_reg(s, c->wdt_config1, 2000);
	st_write_reg(s, c->wdt_config0, (1u << 31) | (5u << 28) | (1u << 8) | 2);
	st_write_reg(s, c->wdt_wprotect, 0);
}

static void watchdog_reset_resamples_straps(void)
{
	struct st s;
	if (st_open(&s, "esp32c3") < 0) {
		CHECK(0);
		return;
	}
	const struct esp_chip_info *c = sim_chip(s.d);
	/* write-protected without the key: nothing happens */
	watchdog_write(&s, c, 0x12345678);
	wait_ms(&s, 500);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	st_flush(&s);
	watchdog_write(&s, c, 0x50D83AA1);
	wait_ms(&s, 500);
	CHECK(in_app(s.d));
	{
		/* the firmware's ROM line names the watchdog, as silicon does
		 * (was rst:0xc (RTC_SW_CPU_RST)) */
		uint8_t out[4096];
		size_t m = st_drain_raw(&s, out, sizeof out - 1, 10);
		out[m] = 0;
		const char *rst = strstr((char *)out, "rst:");
		CHECK(rst && !strncmp(rst, "rst:0x10 (RTCWDT_RTC_RST)", 25));
		if (rst)
			printf("# %.40s\n", rst);
	}
	/* with BOOT held the watchdog reset lands in download mode */
	sim_button_boot(s.d, true);
	sim_button_reset(s.d);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	st_flush(&s);
	watchdog_write(&s, c, 0x50D83AA1);
	wait_ms(&s, 500);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	uint8_t buf[512];
	size_t n = st_drain_raw(&s, buf, sizeof buf - 1, 10);
	buf[n] = 0;
	CHECK(strstr((char *)buf, "RTCWDT") != NULL);
	sim_button_boot(s.d, false);
	st_close(&s);
}

/* Opt-in: a USB-Serial/JTAG port that drops off the bus on chip resets. */
static void usb_jtag_reenumerate_option(void)
{
	struct st s;
	struct sim_config cfg = { .chip = "esp32c3", .app = true, .native_usb = true, .usb_jtag_reenumerate = true };
	if (st_open_cfg(&s, &cfg) < 0) {
		CHECK(0);
		return;
	}
	unsigned gen = sim_port_generation(s.d);
	esp_tr_set_lines(s.t, 0, 0);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, 1, 0);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, -1, 1);
	esp_tr_set_lines(s.t, 0, -1);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, 0, 0);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	CHECK_EQ(sim_port_generation(s.d), gen + 1);
	CHECK_EQ(sim_usb_pid(s.d), 0x1001);
	uint8_t b[4];
	CHECK_EQ(esp_tr_read(s.t, b, sizeof b, 10), -ENODEV);
	CHECK_EQ(st_reopen(&s), 0);
	CHECK(answers_sync(&s));
	/* watchdog reset: another drop; the loader's own work does not */
	gen = sim_port_generation(s.d);
	const struct esp_chip_info *c = sim_chip(s.d);
	st_write_reg(&s, c->wdt_wprotect, 0x50D83AA1);
	CHECK_EQ(sim_port_generation(s.d), gen);
	watchdog_write(&s, c, 0x50D83AA1);
	wait_ms(&s, 500);
	CHECK(in_app(s.d));
	CHECK_EQ(sim_port_generation(s.d), gen + 1);
	st_close(&s);
}

static void s2_usb_otg_reenumerates(void)
{
	struct st s;
	struct sim_config cfg = { .chip = "esp32s2", .native_usb = true };
	if (st_open_cfg(&s, &cfg) < 0) {
		CHECK(0);
		return;
	}
	CHECK_EQ(s.t->usb_pid, 0x0002);
	CHECK(answers_sync(&s));
	unsigned gen = sim_port_generation(s.d);
	watchdog_write(&s, sim_chip(s.d), 0x50D83AA1);
	wait_ms(&s, 500);
	CHECK(in_app(s.d));
	CHECK(sim_usb_pid(s.d) != 0x0002 && sim_usb_pid(s.d) != 0);
	CHECK(sim_port_generation(s.d) == gen + 1);
	uint8_t b[16];
	CHECK_EQ(esp_tr_read(s.t, b, sizeof b, 10), -ENODEV);
	CHECK_EQ(esp_tr_write(s.t, b, 1), -ENODEV);
	CHECK_EQ(st_reopen(&s), 0);
	CHECK_EQ(s.t->usb_pid, sim_usb_pid(s.d));
	/* TinyUSB firmware ignores DTR/RTS: no way into download mode */
	gen = sim_port_generation(s.d);
	esp_tr_set_lines(s.t, 0, 1);
	wait_ms(&s, 100);
	esp_tr_set_lines(s.t, 1, 0);
	wait_ms(&s, 50);
	esp_tr_set_lines(s.t, 0, 0);
	CHECK(in_app(s.d));
	CHECK_EQ(sim_port_generation(s.d), gen);
	/* BOOT + RESET: ROM port again, another re-enumeration */
	sim_button_boot(s.d, true);
	sim_button_reset(s.d);
	sim_button_boot(s.d, false);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	CHECK_EQ(sim_usb_pid(s.d), 0x0002);
	CHECK_EQ(sim_port_generation(s.d), gen + 1);
	CHECK_EQ(esp_tr_read(s.t, b, sizeof b, 10), -ENODEV);
	CHECK_EQ(st_reopen(&s), 0);
	CHECK(answers_sync(&s));
	/* a stub on USB-OTG resets the chip when RTS toggles: the chip drops
	 * off the bus and its ROM (BOOT was held at reset) comes back */
	uint8_t text[32] = { 0 };
	uint32_t mb[4] = { sizeof text, 1, 0x800, 0x40028000 };
	st_words(&s, 0x05, mb, 4, 200);
	st_data(&s, 0x07, 0, text, sizeof text, 200);
	uint32_t me[2] = { 0, 0x40028000 };
	st_words(&s, 0x06, me, 2, 200);
	CHECK_EQ(st_frame(&s, 500), 4);
	CHECK(sim_get_mode(s.d) == SIM_MODE_STUB);
	gen = sim_port_generation(s.d);
	esp_tr_set_lines(s.t, 0, 1);
	esp_tr_set_lines(s.t, 0, 0);
	CHECK(sim_get_mode(s.d) == SIM_MODE_ROM);
	CHECK_EQ(sim_port_generation(s.d), gen + 1);
	CHECK_EQ(st_reopen(&s), 0);
	uint32_t v = 0;
	CHECK(st_sync(&s, &v) == 0 && v == 0x20120707);
	st_close(&s);
}

static void unplug_and_replug(void)
{
	struct st s;
	if (st_open(&s, "esp32") < 0) {
		CHECK(0);
		return;
	}
	sim_unplug(s.d);
	CHECK(sim_get_mode(s.d) == SIM_MODE_OFF);
	uint8_t b[4];
	CHECK_EQ(esp_tr_read(s.t, b, sizeof b, 10), -ENODEV);
	CHECK_EQ(esp_tr_write(s.t, b, 1), -ENODEV);
	esp_transport *t2;
	CHECK_EQ(sim_transport_open(s.d, &t2), -ENODEV);
	sim_replug(s.d);
	CHECK(in_app(s.d));                          /* power-on with BOOT released */
	CHECK_EQ(esp_tr_read(s.t, b, sizeof b, 10), -ENODEV);  /* old handle stays dead */
	CHECK_EQ(st_reopen(&s), 0);
	st_close(&s);
}

static void change_baudrate_after_reply(void)
{
	struct st s;
	if (st_open(&s, "esp32") < 0) {
		CHECK(0);
		return;
	}
	CHECK(answers_sync(&s));
	uint32_t cb[2] = { 460800, 0 };
	CHECK_EQ(st_words(&s, 0x0F, cb, 2, 200), 4);   /* the reply comes at the old rate */
	CHECK_EQ(st_status(&s, 0), 0);
	/* then two dummy bytes at the new rate: noise to a host at the old one */
	uint8_t noise[16];
	CHECK_EQ(st_drain_raw(&s, noise, sizeof noise, 20), 2);
	/* the host still at 115200: the chip no longer understands it */
	st_cmd(&s, 0x0A, (const uint8_t[]){ 0x00, 0x10, 0x00, 0x40 }, 4, 0);
	CHECK(st_resp(&s, 100) < 0);
	esp_tr_set_baud(s.t, 460800);
	st_flush(&s);
	CHECK_EQ(st_read_reg(&s, 0x40001000), 0x00F01D83);
	/* and the answer garbles if the host picks another rate */
	esp_tr_set_baud(s.t, 921600);
	st_flush(&s);
	st_cmd(&s, 0x0A, (const uint8_t[]){ 0x00, 0x10, 0x00, 0x40 }, 4, 0);
	CHECK(st_resp(&s, 100) < 0);
	st_close(&s);
}

static void link_timing_model(void)
{
	/* SYNC: 46 bytes in + 8 x 14 bytes out at 10 bits/byte */
	struct { bool native; uint32_t baud; uint64_t want_us; } cases[] = {
		{ false, 115200, (46 + 112) * 10ull * 1000000 / 115200 },
		{ false, 921600, (46 + 112) * 10ull * 1000000 / 921600 },
		{ true, 115200, (46 + 112) },               /* ~1 MB/s, baud ignored */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct st s;
		struct sim_config cfg = { .chip = "esp32s3", .timing = true, .native_usb = cases[i].native };
		if (st_open_cfg(&s, &cfg) < 0) {
			CHECK(0);
			continue;
		}
		uint8_t junk[1024];
		st_drain_raw(&s, junk, sizeof junk, 100);   /* boot banner */
		if (cases[i].baud != 115200) {
			/* ROM auto-bauds on SYNC */
			esp_tr_set_baud(s.t, cases[i].baud);
		}
		uint64_t t0 = esp_now_us(&s.fc.clock);
		CHECK_EQ(st_sync(&s, NULL), 0);
		uint64_t dt = esp_now_us(&s.fc.clock) - t0;
		CHECK_MSG(dt + 2 >= cases[i].want_us && dt <= cases[i].want_us + cases[i].want_us / 10 + 20,
			  "case %zu: %llu us, model %llu us", i, (unsigned long long)dt, (unsigned long long)cases[i].want_us);
		st_close(&s);
	}
}

int main(void)
{
	RUN(classic_circuit_truth_table);
	RUN(rom_banner_before_frames);
	RUN(usb_jtag_serial_reset);
	RUN(watchdog_reset_resamples_straps);
	RUN(usb_jtag_reenumerate_option);
	RUN(s2_usb_otg_reenumerates);
	RUN(unplug_and_replug);
	RUN(change_baudrate_after_reply);
	RUN(link_timing_model);
	return t_done();
}
