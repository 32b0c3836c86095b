/* Timing model of the simulated NOR flash.  Numbers are the typical values
 * of a Winbond W25Q32JV (4 MB, the flash on most ESP32 modules), datasheet
 * rev. F section 9.6 "AC Electrical Characteristics": sector erase (4 KiB)
 * tSE 45 ms, block erase (64 KiB) tBE2 150 ms, page program (256 B) tPP
 * 0.7 ms, chip erase tCE 10 s (scaled with the flash size).  Reading
 * (MD5, READ_FLASH) is modelled at 10 MB/s: an assumption (40 MHz SPI
 * reads plus MD5 in software), not a measured figure.  Link timing is in
 * device.c: 10 bits per byte at the current baud on a UART, ~1 MB/s on
 * native USB whatever the baud. */
#include "sim_priv.h"

#define NS_PER_MS 1000000ull
#define T_SECTOR_ERASE (45 * NS_PER_MS)
#define T_BLOCK_ERASE  (150 * NS_PER_MS)
#define T_PAGE_PROGRAM (700 * 1000ull)
#define T_CHIP_ERASE   (10000 * NS_PER_MS)
#define T_READ_BYTE    100ull             /* 10 MB/s */

uint64_t sim_t_erase(const sim_device *d, uint32_t off, uint32_t len)
{
	if (!d->timing || len == 0)
		return 0;
	uint64_t t = 0;
	uint64_t a = off & ~(SIM_SECTOR - 1);
	uint64_t end = ((uint64_t)off + len + SIM_SECTOR - 1) & ~(uint64_t)(SIM_SECTOR - 1);
	/* Like the ROM and the stubs: 64 KiB block erase where aligned. */
	while (a < end) {
		if ((a % SIM_BLOCK) == 0 && end - a >= SIM_BLOCK) {
			t += T_BLOCK_ERASE;
			a += SIM_BLOCK;
		} else {
			t += T_SECTOR_ERASE;
			a += SIM_SECTOR;
		}
	}
	return t;
}

uint64_t sim_t_chip_erase(const sim_device *d)
{
	if (!d->timing)
		return 0;
	/* scale with size: 10 s is the 4 MB figure */
	return T_CHIP_ERASE * (d->flash_size / (4u << 20) ? d->flash_size / (4u << 20) : 1);
}

uint64_t sim_t_program(const sim_device *d, uint32_t len)
{
	if (!d->timing)
		return 0;
	return (uint64_t)((len + SIM_PAGE - 1) / SIM_PAGE) * T_PAGE_PROGRAM;
}

uint64_t sim_t_md5(const sim_device *d, uint32_t len)
{
	if (!d->timing)
		return 0;
	return (uint64_t)len * T_READ_BYTE;
}
