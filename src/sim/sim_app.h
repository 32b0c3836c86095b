/* The application side of the simulator: what a simulated ESP does when it
 * boots the firmware in its flash (ROM + 2nd-stage bootloader checks, boot
 * log, periodic console lines, Improv serial when the image is an ESPHome
 * build with the improv_serial component, or when forced).  An image that
 * does not validate gives a boot loop: the ROM's complaint, repeated.  Internal to src/sim; the engine drives it.
 *
 * Threading: none of its own; the engine calls it under the device lock.
 * Output is delivered through env->emit, always in whole console lines or
 * whole Improv packets (each followed by '\n'). */
#ifndef ESPFS_SIM_APP_H
#define ESPFS_SIM_APP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "espfs/chip.h"
#include "espfs/sim.h"

/* One configured network: exactly the element type of sim_config.wifi[],
 * so `env.wifi = cfg->wifi;` needs no cast. */
typedef __typeof__(((struct sim_config *)0)->wifi[0]) sim_app_wifi;

struct sim_app_env {
	const struct esp_chip_info *chip;
	/* Reads flash; returns 0 or a negative errno.  Reads past flash_size
	 * are never issued. */
	int (*flash_read)(void *ctx, uint32_t off, uint8_t *buf, uint32_t len);
	void *flash_ctx;
	uint32_t flash_size;
	/* Networks the simulated air offers (normally cfg->wifi); copied at
	 * boot. */
	const sim_app_wifi *wifi;
	int n_wifi;
	bool improv_forced;          /* speak Improv even if not ESPHome */
	bool echo;                   /* echo host input that is not Improv */
	const uint8_t *mac;          /* 6 bytes (copied at boot) */
	/* Device -> host bytes.  Called only from within sim_app_* calls. */
	void (*emit)(void *ctx, const uint8_t *buf, size_t n);
	void *emit_ctx;
	uint64_t now_us;             /* time of the reset (boot starts here) */
	/* Reset cause for the ROM line: 0 = power-on (default), 1 = EN/reset
	 * pin pressed, 2 = software (RTS/DTR sequence treated as EN),
	 * 3 = RTC watchdog (rst:0x10 RTCWDT_RTC_RST). */
	int reset_cause;
	/* Wi-Fi credentials the firmware kept from an earlier provisioning
	 * (NVS survives a reset, not an erase).  NULL: none; a stored SSID
	 * that matches env->wifi[] boots straight into PROVISIONED.  Read it
	 * back with sim_app_stored_ssid() before sim_app_free(). */
	const char *stored_ssid;
};

struct sim_app;

/* Boot: validates flash like ROM + bootloader and emits the boot log that
 * is due at env->now_us (later lines through sim_app_poll).  Never NULL
 * except on out-of-memory. */
struct sim_app *sim_app_boot(const struct sim_app_env *env);
/* Host -> device bytes (Improv requests; anything else is ignored). */
void sim_app_input(struct sim_app *a, const uint8_t *buf, size_t n, uint64_t now_us);
/* Time advanced: emit all output due at or before now_us. */
void sim_app_poll(struct sim_app *a, uint64_t now_us);
/* Earliest time more output becomes due; UINT64_MAX if nothing scheduled. */
uint64_t sim_app_next_event_us(struct sim_app *a);
/* false: the image did not validate and the device is in a boot loop. */
bool sim_app_running(const struct sim_app *a);
void sim_app_free(struct sim_app *a);

/* Inspection (tests, state files): NULL/0 when unknown. */
const char *sim_app_project_name(const struct sim_app *a); /* ESPHome device name, else app_desc project */
const char *sim_app_version(const struct sim_app *a);      /* ESPHome version or app_desc version */
bool sim_app_is_esphome(const struct sim_app *a);
bool sim_app_speaks_improv(const struct sim_app *a);
uint8_t sim_app_improv_state(const struct sim_app *a);     /* 0x02 authorized .. 0x04 provisioned */
/* Why boot failed (empty string when running). */
const char *sim_app_boot_error(const struct sim_app *a);
/* Flash offset of the app that booted (0 when none, and for an ESP8266
 * single image at 0). */
uint32_t sim_app_boot_offset(const struct sim_app *a);
/* SSID the firmware has stored after a successful Improv provisioning
 * (NULL: none).  Valid until sim_app_free(). */
const char *sim_app_stored_ssid(const struct sim_app *a);

#endif
