/* What a simulated chip is, beyond the facts the client shares
 * (espfs/chip.h): its silicon revision and the eFuse words that carry it,
 * and the ROM behaviour measured on Espressif's real ROMs in QEMU
 * (tests/conformance).  Header-only so the app model (built alone in
 * tests/sim/test_app) prints the same revision the eFuses say. */
#ifndef ESPSIM_PROFILE_H
#define ESPSIM_PROFILE_H
#include <stdbool.h>
#include <stdint.h>
#include "espfs/chip.h"

struct sim_rev { unsigned major, minor; };

/* Revision of each simulated chip.  ESP32 v3.0 and ESP32-C3 v0.3 are
 * what QEMU's genuine ROMs and eFuse files report (so the conformance
 * test compares them equal); the others are common silicon revisions. */
static inline struct sim_rev sim_chip_rev(const struct esp_chip_info *c)
{
	switch (c->id) {
	case ESP_CHIP_ESP32:   return (struct sim_rev){ 3, 0 };
	case ESP_CHIP_ESP32S2: return (struct sim_rev){ 1, 0 };
	case ESP_CHIP_ESP32S3: return (struct sim_rev){ 0, 2 };
	case ESP_CHIP_ESP32C3: return (struct sim_rev){ 0, 3 };
	case ESP_CHIP_ESP32C6: return (struct sim_rev){ 0, 1 };
	default:               return (struct sim_rev){ 0, 0 };
	}
}

/* The chip-detect magic a chip of that revision answers: the C3 changed
 * it with ECO3 (v0.3: 0x1B31506F, measured; esptool lists both). */
static inline uint32_t sim_chip_magic(const struct esp_chip_info *c)
{
	if (c->id == ESP_CHIP_ESP32C3)
		return 0x1B31506Fu;
	return c->magic[0];
}

/* The C3 ROM answers READ_FLASH_SLOW like the ESP32's (measured on the
 * genuine ROM in QEMU; esptool never sends it to a C3).  Unmeasured
 * chips keep the shared table's answer. */
static inline bool sim_rom_read_slow(const struct esp_chip_info *c)
{
	return c->rom_has_read_slow || c->id == ESP_CHIP_ESP32C3;
}

#endif
