/* espsim: a simulated Espressif device (ROM loader, stub flasher, app
 * firmware with console and Improv, NOR flash, timing, faults).  It shares
 * nothing with the client side but SLIP and the chip table, so a
 * misunderstanding of the protocol cannot hide in both.
 *
 * Thread-safety: every function may be called from any thread; a device
 * has one internal lock.  Test actions (buttons, unplug, faults) can be
 * called while a client thread is talking to the device. */
#ifndef ESPFS_SIM_H
#define ESPFS_SIM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "espfs/chip.h"
#include "espfs/clock.h"
#include "espfs/transport.h"

typedef struct sim_device sim_device;

typedef enum sim_mode {
	SIM_MODE_OFF = 0,     /* unplugged */
	SIM_MODE_ROM,         /* ROM download mode */
	SIM_MODE_STUB,        /* stub flasher running */
	SIM_MODE_APP,         /* running what is in flash (console, maybe Improv) */
	SIM_MODE_BOOT_LOOP,   /* invalid image: ROM complaint, looping */
} sim_mode;

#define SIM_MAX_WIFI 8

struct sim_config {
	const char *chip;           /* "esp32", "esp32s2", ... (esp_chip_by_name) */
	/* Persisted flash; NULL = in memory only.  Created blank (0xFF) at the
	 * flash size when absent.  Mapped shared: every write is visible to
	 * other readers of the file at once (write-through). */
	const char *flash_file;
	uint32_t flash_size;        /* 0 = the profile's default (4 MB) */
	bool app;                   /* start by booting flash (else ROM download mode) */
	bool improv;                /* speak Improv even if the image is not ESPHome */
	bool timing;                /* timing model on (off: instant) */
	const uint8_t *mac;         /* 6 bytes; NULL = derived from the name */
	const char *name;           /* used to derive a stable MAC; may be NULL */
	struct { char ssid[256]; char pass[256]; } wifi[SIM_MAX_WIFI];
	int n_wifi;
	const esp_clock *clock;     /* NULL = real clock */
	/* USB identity: native-USB profiles (S2 OTG, C3/S3/C6 USB-JTAG-Serial)
	 * when true, else a USB-UART bridge with a DTR/RTS auto-reset circuit. */
	bool native_usb;
	/* USB-Serial/JTAG profiles only: every chip reset drops the port off
	 * the bus for a moment (same 303a:1001), ending open transports and
	 * bumping sim_port_generation(), as some hosts see it.  Off: the port
	 * survives resets. */
	bool usb_jtag_reenumerate;
	/* The application echoes what the host sends it (console input),
	 * as a REPL would; Improv packets are still answered, not echoed. */
	bool echo;
};

/* Power-on: ROM download mode (cfg->app false) or the firmware in flash.
 * Profiles: esp8266, esp32, esp32s2, esp32s3, esp32c3, esp32c6. */
sim_device *sim_device_new(const struct sim_config *cfg, char *err, size_t errlen);
void sim_device_free(sim_device *d);   /* saves the flash file */

/* An in-process transport to the device (bytes, baud, DTR/RTS, unplug).
 * Closing it does not affect the device.  Reads wait on cfg->clock (a fake
 * clock advances by the wait).  After an unplug or a USB re-enumeration
 * (ESP32-S2 USB-OTG switching between ROM and app) it returns -ENODEV:
 * open a new one.  flags: ESP_TR_NATIVE_USB for native-USB profiles;
 * usb_vid/usb_pid: 303a:1001 (USB-JTAG), 303a:0002 / 303a:4001 (S2 ROM /
 * TinyUSB app), 10c4:ea60 (CP210x bridge) otherwise. */
int sim_transport_open(sim_device *d, esp_transport **out);

/* Raw device-side byte interface, used by the pty front end (espsim):
 * feed host bytes; take device bytes that are due by now_us. */
void sim_host_write(sim_device *d, const uint8_t *buf, size_t n, uint64_t now_us);
size_t sim_host_read(sim_device *d, uint8_t *buf, size_t cap, uint64_t now_us);
/* Earliest time at which more device output becomes due (UINT64_MAX: none). */
uint64_t sim_next_event_us(sim_device *d);
void sim_set_baud(sim_device *d, uint32_t baud);
void sim_set_lines(sim_device *d, int dtr, int rts);

/* Lines: UART bridges have the two-transistor auto-reset circuit (DTR
 * alone = IO0 low, RTS alone = EN low, straps sampled ~2 ms after EN
 * rises); C3/S3/C6 native USB follow the USB-Serial/JTAG rules (DTR-only
 * requests download, RTS-only holds reset, release = core reset); the
 * S2's USB-OTG ignores the lines. */

/* Test actions. */
void sim_button_boot(sim_device *d, bool pressed);
void sim_button_reset(sim_device *d);          /* EN pulse: boots per BOOT strap */
void sim_unplug(sim_device *d);
void sim_replug(sim_device *d);

/* Faults (0 = off).  flash_program_fail: ROM answers the block with
 * 01 08; the stub ACKs it and reports 0xC4 on the next command. */
struct sim_faults {
	double corrupt_rate;        /* probability a device->host byte is flipped */
	double drop_rate;           /* probability a device->host byte is lost */
	bool stall;                 /* device stops answering */
	int unplug_at_percent;      /* unplug when a flash write reaches N% (1..100) */
	bool flash_program_fail;    /* FLASH_DATA fails like a bad chip */
	bool garbage;               /* device answers random bytes */
	/* A marginal link (UART only): above this rate 1 byte in 5 is
	 * damaged in each direction; short frames still get through. */
	uint32_t max_baud;
	uint32_t seed;
};
void sim_set_faults(sim_device *d, const struct sim_faults *f);

/* Inspection.  While held in reset (EN low) the mode is the one the chip
 * had before; it changes when the chip boots again. */
sim_mode sim_get_mode(sim_device *d);
const struct esp_chip_info *sim_chip(sim_device *d);
void sim_get_mac(sim_device *d, uint8_t mac[6]);
uint32_t sim_flash_size(sim_device *d);
/* Copy of flash contents (caller frees). */
uint8_t *sim_flash_copy(sim_device *d, uint32_t offset, uint32_t len);
/* Write flash directly (test setup: put an image in place). */
int sim_flash_load(sim_device *d, uint32_t offset, const uint8_t *data, size_t len);
/* USB identity of the port now: the bridge's for UART boards (10c4:ea60),
 * 303a:xxxx for native USB; PID 0 while unplugged. */
uint16_t sim_usb_pid(sim_device *d);
uint16_t sim_usb_vid(sim_device *d);          /* 0x303A native USB, else the bridge's */
/* Changes every time the device re-enumerates (USB-OTG ROM <-> app). */
unsigned sim_port_generation(sim_device *d);

#endif
