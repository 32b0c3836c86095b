/* Internals of the simulator engine, shared by its source files only.
 *
 * Model in one paragraph: a device has one lock.  Host bytes come in with
 * a time stamp (sim_host_write); the device decodes SLIP frames (ROM and
 * stub) or passes bytes to the app, and everything it sends goes onto an
 * output timeline where each byte has a due time (the link, the flash and
 * the device's own work decide it when the timing model is on; else it is
 * due at once).  Readers take only bytes that are due. */
#ifndef ESPSIM_PRIV_H
#define ESPSIM_PRIV_H
#include <md5.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <zlib.h>
#include "espfs/sim.h"
#include "espfs/slip.h"
#include "flash.h"

struct sim_app;

#define SIM_MAX_FRAME (0x10000 + 64)  /* biggest command frame we accept */
#define SIM_MAX_SEGS 8
#define SIM_ROM_BUF 72                /* 64 data (READ_FLASH_SLOW) + 4 status, rounded */

/* USB identities (PROTOCOL.md A16). */
#define SIM_VID_ESPRESSIF 0x303A
#define SIM_PID_USB_JTAG  0x1001
#define SIM_PID_TINYUSB   0x4001      /* ESP-IDF TinyUSB, one CDC interface */
#define SIM_VID_CP210X    0x10C4
#define SIM_PID_CP210X    0xEA60

struct out_chunk {
	size_t len;           /* bytes of this chunk still queued */
	uint64_t start_ns;    /* time the first byte starts on the wire */
	uint64_t byte_ns;     /* wire time per byte (0: timing off) */
	size_t sent;          /* bytes of the chunk already taken */
};

struct sim_seg {
	uint32_t addr, size, filled;
	uint8_t *data;
};

/* State of the ROM loader / stub. */
struct sim_loader {
	bool stub;
	bool stub_legacy;             /* the stub is esptool's legacy one (loader_mem.c) */
	/* flash write in progress (FLASH_BEGIN / FLASH_DEFL_BEGIN) */
	int op;                       /* 0 none, 1 plain, 2 deflate */
	uint32_t op_offset, op_size, op_blocks, op_block_size;
	uint32_t op_written;          /* bytes programmed (uncompressed) */
	uint32_t op_erased_to;        /* stub: erased up to this address */
	uint32_t op_next_seq;
	uint64_t op_total_bytes;      /* for unplug-at-percent */
	z_stream zs;
	bool zs_live;
	uint8_t *zbuf;                /* inflate output buffer */
	/* RAM download */
	bool mem_active;
	int mem_seg;                  /* index in segs */
	uint32_t mem_blocks, mem_block_size, mem_next_seq;
	struct sim_seg segs[SIM_MAX_SEGS];
	int n_segs;
	/* flash parameters (ROM: 2 MB until SPI_SET_PARAMS) */
	uint32_t spi_size;
	bool attached;
	/* stub READ_FLASH streaming */
	bool rf_active;
	uint32_t rf_off, rf_len, rf_pkt, rf_max_inflight, rf_sent, rf_acked;
	MD5_CTX rf_md5;
	/* stub: error of work done after the reply, reported on the next
	 * command (esp-flasher-stub behaviour) */
	uint8_t deferred_err;
	uint32_t rom_value;            /* ROM reply value field (sticky) */
	/* ESP32-family ROM reply state (measured on the genuine ROMs, see
	 * loader.c): the buffer replies are built in (its bytes after the
	 * status stay from earlier replies) and the sticky error byte */
	uint8_t rom_buf[SIM_ROM_BUF];
	uint8_t rom_err;
	uint8_t rom_last_op;           /* opcode of the last reply, and */
	uint8_t rom_last_copies;       /* how many copies it went out in */
};

/* SPI flash controller of the chip, as far as clients drive it. */
struct sim_spi {
	uint32_t cmd, addr, usr, usr1, usr2, mosi_dlen, miso_dlen;
	uint32_t w[16];
};

/* The flash chip's status registers SR1..SR3 (SR1 bit 0 WIP, bit 1 WEL).
 * Non-volatile: kept across chip resets. */
struct sim_flash_sr {
	uint8_t sr[3];
};

#define SIM_MAX_REGS 64

struct sim_device {
	pthread_mutex_t lock;
	pthread_cond_t cond;          /* output appended / state changed */
	const struct esp_chip_info *chip;
	const esp_clock *clock;
	bool timing, native_usb, improv;
	char *name;
	struct sim_config cfg;        /* copy; strings point into owned copies */
	uint8_t mac[6];
	uint32_t jedec;

	struct sim_flash flash;
	uint32_t flash_size;

	sim_mode mode;
	bool plugged;
	unsigned generation;          /* bumps on re-enumeration / replug */
	uint16_t usb_pid_now;

	/* lines and straps */
	int dtr, rts;                 /* 1 asserted */
	bool boot_btn;
	bool en_low;                  /* chip held in reset */
	bool strap_pending;
	uint64_t strap_at_us;
	int pending_cause;
	bool latched_download;        /* strap latched at the last system reset */
	bool resetting;               /* inside sim_chip_reset */
	bool usb_force_download;      /* USB-JTAG: DTR-only state seen */
	int last_usb_state;

	/* UART */
	uint32_t host_baud, dev_baud;
	bool rom_autobaud;            /* ROM measures the rate on SYNC until told */
	uint64_t rx_free_ns;          /* host->device wire busy until */
	uint64_t tx_free_ns;          /* device->host wire busy until */
	uint64_t busy_ns;             /* device CPU busy until */
	uint64_t prog_done_ns;        /* stub: background programming done at */
	uint64_t now_ns;              /* latest time the device has seen */

	/* output timeline */
	uint8_t *out;
	size_t out_head, out_len, out_cap;
	struct out_chunk *chunks;
	size_t ch_head, ch_len, ch_cap;

	/* input */
	slip_decoder dec;
	uint8_t *frame;

	struct sim_loader ld;
	struct sim_spi spi;
	struct sim_flash_sr fsr;
	struct { uint32_t addr, val; } regs[SIM_MAX_REGS];
	int n_regs;

	/* RTC watchdog */
	bool wdt_unlocked, wdt_armed;
	uint32_t wdt_config1;
	uint64_t wdt_at_us;

	/* faults */
	struct sim_faults faults;
	uint64_t rng;

	struct sim_app *app;
	uint64_t app_t_ns;             /* time stamp for app output */
};

/* reset causes (ROM boot line, app reset cause) */
enum { CAUSE_POWERON = 0, CAUSE_EN = 1, CAUSE_LINES = 2, CAUSE_WDT = 3, CAUSE_SW = 4, CAUSE_USB = 5 };

/* timeline.c */
uint64_t sim_rand(sim_device *d);
double sim_rand01(sim_device *d);
/* Queue device output; first byte goes on the wire not before t_ns. */
void sim_emit_at(sim_device *d, const uint8_t *buf, size_t n, uint64_t t_ns);
/* A response frame: header + data + status bytes, SLIP encoded. */
void sim_reply(sim_device *d, uint8_t op, uint32_t value, const uint8_t *data, size_t n,
	       const uint8_t *status, size_t status_len, uint64_t t_ns);
/* A raw SLIP frame (stub OHAI, READ_FLASH data and MD5). */
void sim_raw_frame(sim_device *d, const uint8_t *buf, size_t n, uint64_t t_ns);
void sim_emit_text(sim_device *d, const char *s, uint64_t t_ns);
uint64_t sim_host_byte_ns(const sim_device *d);
bool sim_baud_mismatch(const sim_device *d);
/* faults.max_baud: the link above that rate damages bytes */
bool sim_link_marginal(const sim_device *d, uint32_t baud);
void sim_out_clear(sim_device *d);
/* Drop output not yet on the wire (the UART stops on reset). */
void sim_out_cut_undue(sim_device *d);
size_t sim_out_take(sim_device *d, uint8_t *buf, size_t cap, uint64_t now_ns);
uint64_t sim_out_next_ns(sim_device *d);

/* reset.c */
/* Chip resets.  system: re-samples the BOOT strap (EN, power, watchdog). */
void sim_chip_reset(sim_device *d, bool system, int cause, uint64_t now_us);
void sim_boot_app(sim_device *d, uint64_t now_us, int cause);
void sim_enter_rom(sim_device *d, int cause, uint64_t now_us);
void sim_do_unplug(sim_device *d);
/* Let device time run up to now: strap sampling, watchdog, app output. */
void sim_advance(sim_device *d, uint64_t now_us);
void sim_usb_jtag_lines(sim_device *d, uint64_t now_us);
void sim_classic_lines(sim_device *d, uint64_t now_us);
uint64_t sim_byte_ns(const sim_device *d);

/* loader.c */
void sim_loader_init(sim_device *d, bool stub);
void sim_loader_free(sim_device *d);
void sim_loader_frame(sim_device *d, const uint8_t *f, size_t n, uint64_t t_ns);

/* regs.c */
uint32_t sim_reg_read(sim_device *d, uint32_t addr);
void sim_reg_write(sim_device *d, uint32_t addr, uint32_t value, uint64_t t_ns);
void sim_regs_reset(sim_device *d);
void sim_mac_words(const struct esp_chip_info *c, const uint8_t mac[6], uint32_t w[4]);

/* timing.c: NOR and link timing (ns) */
uint64_t sim_t_erase(const sim_device *d, uint32_t off, uint32_t len);
uint64_t sim_t_chip_erase(const sim_device *d);
uint64_t sim_t_program(const sim_device *d, uint32_t len);
uint64_t sim_t_md5(const sim_device *d, uint32_t len);

#endif
