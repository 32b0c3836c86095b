/* RAM download (MEM_BEGIN/DATA/END): segments are kept; MEM_END with an
 * entry inside uploaded code starts it, and code started that way is a
 * flasher stub, which greets with the raw frame "OHAI" (PROTOCOL.md A13). */
#include <stdlib.h>
#include <string.h>
#include "sim_loader.h"

void sim_ld_mem_begin(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	uint64_t s = start_time(d, t);
	if (n != 16) {
		sim_ld_fail2(d, OP_MEM_BEGIN, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t size = le32(p), blocks = le32(p + 4), bsize = le32(p + 8), addr = le32(p + 12);
	if (size > 512 * 1024) {
		sim_ld_fail2(d, OP_MEM_BEGIN, ROM_RAM_SIZE, 0x01, s);
		return;
	}
	int i;
	for (i = 0; i < l->n_segs; i++)
		if (l->segs[i].addr == addr)
			break;
	if (i == l->n_segs) {
		if (l->n_segs == SIM_MAX_SEGS) {
			sim_ld_fail2(d, OP_MEM_BEGIN, ROM_RAM_ADDR, 0x01, s);
			return;
		}
		l->n_segs++;
		l->segs[i].data = NULL;
	}
	struct sim_seg *g = &l->segs[i];
	free(g->data);
	g->data = calloc(1, size ? size : 1);
	g->addr = addr;
	g->size = size;
	g->filled = 0;
	l->mem_active = true;
	l->mem_seg = i;
	l->mem_blocks = blocks;
	l->mem_block_size = bsize;
	l->mem_next_seq = 0;
	sim_ld_ok(d, OP_MEM_BEGIN, 0, NULL, 0, s);
}

void sim_ld_mem_data(sim_device *d, const uint8_t *p, size_t n, uint32_t csum, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	uint64_t s = start_time(d, t);
	if (n < 16 || le32(p) != n - 16) {
		sim_ld_fail2(d, OP_MEM_DATA, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t len = le32(p), seq = le32(p + 4);
	if (sim_ld_rom_seq(d, l->mem_active, &l->mem_next_seq, seq, OP_MEM_DATA, s))
		return;
	if (xor_sum(p + 16, len) != (csum & 0xFF)) {
		sim_ld_fail2(d, OP_MEM_DATA, ROM_BAD_CHECKSUM, STUB_BAD_CHECKSUM, s);
		return;
	}
	if (!l->mem_active) {
		sim_ld_fail2(d, OP_MEM_DATA, ROM_RESULT_WRONG, STUB_NOT_IN_FLASH, s);
		return;
	}
	struct sim_seg *g = &l->segs[l->mem_seg];
	uint64_t at = (uint64_t)seq * l->mem_block_size;
	if (at + len > g->size) {
		if (l->stub) {
			sim_ld_fail(d, OP_MEM_DATA, STUB_TOO_MUCH, s);
			return;
		}
		/* the ROM does not check: it writes RAM past the announced
		 * size (measured).  The sim keeps only the announced part. */
		len = at < g->size ? (uint32_t)(g->size - at) : 0;
	}
	if (len)
		memcpy(g->data + at, p + 16, len);
	if (len && at + len > g->filled)
		g->filled = (uint32_t)(at + len);
	if (l->stub)
		l->mem_next_seq = seq + 1;
	sim_ld_ok(d, OP_MEM_DATA, 0, NULL, 0, s);
}

/* The two stub flavours act differently on RUN_USER_CODE and FLASH_END(0)
 * (PROTOCOL.md A3).  The device cannot read the code it was sent, so it
 * knows esptool's legacy stub by its entry point: those of the legacy
 * stub images esp-web-flasher 5.1.5 ships.  Any other code is taken for
 * esp-flasher-stub (esptool-js 0.7.0), as before. */
static bool legacy_stub_entry(esp_chip_id chip, uint32_t entry)
{
	switch (chip) {
	case ESP_CHIP_ESP8266: return entry == 0x4010D004;
	case ESP_CHIP_ESP32:   return entry == 0x400BE5AC;
	case ESP_CHIP_ESP32S2: return entry == 0x40028760;
	case ESP_CHIP_ESP32S3: return entry == 0x40378978;
	case ESP_CHIP_ESP32C3: return entry == 0x40380670;
	default:               return false;
	}
}

void sim_ld_mem_end(sim_device *d, const uint8_t *p, size_t n, uint64_t t)
{
	struct sim_loader *l = &d->ld;
	uint64_t s = start_time(d, t);
	if (n != 8) {
		sim_ld_fail2(d, OP_MEM_END, ROM_INVALID_MSG, STUB_BAD_LEN, s);
		return;
	}
	uint32_t no_exec = le32(p), entry = le32(p + 4);
	l->mem_active = false;
	sim_ld_ok(d, OP_MEM_END, 0, NULL, 0, s);
	if (no_exec || l->stub)
		return;
	bool in_image = false;
	for (int i = 0; i < l->n_segs; i++)
		if (entry >= l->segs[i].addr && entry < l->segs[i].addr + l->segs[i].filled)
			in_image = true;
	if (!in_image)
		return;   /* nothing uploaded there: the ROM keeps running */
	/* the uploaded code runs: it is a flasher stub; keep its segments */
	struct sim_seg keep[SIM_MAX_SEGS];
	int nk = l->n_segs;
	memcpy(keep, l->segs, sizeof keep);
	l->n_segs = 0;
	sim_loader_init(d, true);
	d->ld.stub_legacy = legacy_stub_entry(d->chip->id, entry);
	memcpy(d->ld.segs, keep, sizeof keep);
	d->ld.n_segs = nk;
	d->mode = SIM_MODE_STUB;
	/* a stub needs a moment to start, then greets */
	sim_raw_frame(d, (const uint8_t *)"OHAI", 4, s + (d->timing ? 2000000ull : 0));
}
