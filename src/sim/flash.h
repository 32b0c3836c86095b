/* NOR flash model of the simulator: erase sets whole 4 KiB sectors to 0xFF,
 * programming can only clear bits (new = old AND data), like a real SPI NOR
 * chip.  Backed by a shared file mapping when a file is given, so every
 * write is visible to other processes (tests, cmp) at once. */
#ifndef ESPSIM_FLASH_H
#define ESPSIM_FLASH_H
#include <stddef.h>
#include <stdint.h>

#define SIM_SECTOR 4096u
#define SIM_BLOCK  65536u
#define SIM_PAGE   256u

struct sim_flash {
	uint8_t *mem;
	uint32_t size;
	int fd;              /* -1 when in memory only */
	int mapped;          /* mem is a MAP_SHARED mapping of fd */
};

/* Opens (or creates, blank 0xFF) the backing file at exactly size bytes.
 * An existing file of another size is resized: new space is 0xFF. */
int sim_flash_open(struct sim_flash *f, const char *path, uint32_t size, char *err, size_t errlen);
void sim_flash_close(struct sim_flash *f);
/* Push dirty pages to the file (the mapping is already coherent for
 * readers through the page cache; this makes it durable). */
void sim_flash_sync(struct sim_flash *f);

int sim_flash_read(const struct sim_flash *f, uint32_t off, uint8_t *buf, uint32_t len);
/* Erase every sector touched by [off, off+len). */
int sim_flash_erase(struct sim_flash *f, uint32_t off, uint32_t len);
int sim_flash_erase_all(struct sim_flash *f);
/* NOR program: AND the data into flash. */
int sim_flash_program(struct sim_flash *f, uint32_t off, const uint8_t *data, uint32_t len);
/* Plain overwrite (test setup, not NOR semantics). */
int sim_flash_poke(struct sim_flash *f, uint32_t off, const uint8_t *data, uint32_t len);

#endif
