/* Registers a client can touch through READ_REG / WRITE_REG: the chip
 * detect magic, the eFuse MAC and revision words (profile.h), the UART clock divider, the SPI flash
 * controller (so reading the JEDEC ID works the way it does on silicon:
 * program USR/USR2/lengths, start with CMD bit 18, poll, read W0) and the
 * RTC watchdog (a system reset clients use to leave download mode).
 * Everything else is plain memory that reads back what was written, 0
 * otherwise. */
#include <string.h>
#include "profile.h"
#include "sim_priv.h"

#define SPI_CMD_USR   (1u << 18)
#define SPI_USR_CMD   (1u << 31)
#define SPI_USR_ADDR  (1u << 30)
#define SPI_USR_MISO  (1u << 28)
#define SPI_USR_MOSI  (1u << 27)

struct clk_reg { uint32_t addr; uint32_t clk_hz; };

/* UART0 CLKDIV register and the clock the ROM runs the UART from. */
static struct clk_reg uart_clkdiv(const struct esp_chip_info *c)
{
	switch (c->id) {
	case ESP_CHIP_ESP8266: return (struct clk_reg){ 0x60000014, 52000000 }; /* 2 x 26 MHz */
	case ESP_CHIP_ESP32:   return (struct clk_reg){ 0x3FF40014, 40000000 };
	case ESP_CHIP_ESP32S2: return (struct clk_reg){ 0x3F400014, 40000000 };
	default:               return (struct clk_reg){ 0x60000014, 40000000 };
	}
}

void sim_mac_words(const struct esp_chip_info *c, const uint8_t m[6], uint32_t w[4])
{
	memset(w, 0, 4 * sizeof w[0]);
	if (c->id == ESP_CHIP_ESP8266) {
		/* PROTOCOL.md A7: OUI from MAC3 when non-zero, else implied by
		 * bits 16..23 of MAC1 (0: 18:FE:34, 1: AC:D0:74). */
		uint32_t flag = 0, mac3 = 0;
		if (m[0] == 0x18 && m[1] == 0xFE && m[2] == 0x34)
			flag = 0;
		else if (m[0] == 0xAC && m[1] == 0xD0 && m[2] == 0x74)
			flag = 1;
		else
			mac3 = (uint32_t)m[0] << 16 | (uint32_t)m[1] << 8 | m[2];
		w[0] = (uint32_t)m[5] << 24 | 0x00A5u;   /* low bits: chip-id noise */
		w[1] = flag << 16 | (uint32_t)m[3] << 8 | m[4];
		w[2] = 0;
		w[3] = mac3;
		return;
	}
	/* general rule: mac0 = bytes 2..5, mac1 low 16 bits = bytes 0..1 */
	w[0] = (uint32_t)m[2] << 24 | (uint32_t)m[3] << 16 | (uint32_t)m[4] << 8 | m[5];
	w[1] = (uint32_t)m[0] << 8 | m[1];
	if (c->id == ESP_CHIP_ESP32) {
		/* bits 16..23: the eFuse CRC-8 of the MAC (Dallas/Maxim,
		 * reflected polynomial 0x8C, initial 0, over bytes 0..5);
		 * QEMU's efuse-esp32.bin holds 0xF5 for 24:0a:c4:12:34:56 */
		uint8_t crc = 0;
		for (int i = 0; i < 6; i++) {
			crc ^= m[i];
			for (int k = 0; k < 8; k++)
				crc = (crc & 1) ? (uint8_t)((crc >> 1) ^ 0x8C) : (uint8_t)(crc >> 1);
		}
		w[1] |= (uint32_t)crc << 16;
	} else if (c->id == ESP_CHIP_ESP32C6 || c->id == ESP_CHIP_ESP32H2) {
		/* bits 16..31: MAC_EXT, the ff:fe that makes the EUI-64
		 * (esptool prints MAC_EXT from here) */
		w[1] |= 0xFFFEu << 16;
	}
}

/* eFuse words that carry the chip revision (esptool's get_major/minor_
 * chip_version per target; ESP32 and C3 values as QEMU's eFuse files
 * and its APB_CTRL_DATE read).  Returns true and the word when addr is
 * one of them. */
static bool revision_word(const struct esp_chip_info *c, uint32_t addr, uint32_t *v)
{
	struct sim_rev r = sim_chip_rev(c);
	uint32_t blk1 = c->mac_reg[0];
	switch (c->id) {
	case ESP_CHIP_ESP32:
		/* BLK0 word 3 bit 15 CHIP_VER_REV1, word 5 bit 20 CHIP_VER_REV2,
		 * APB_CTRL_DATE bit 31: all three set is v3; word 5 bits
		 * 24..25 the minor */
		if (addr == 0x3FF5A00C) {
			*v = r.major >= 1 ? 1u << 15 : 0;
			return true;
		}
		if (addr == 0x3FF5A014) {
			*v = (r.major >= 2 ? 1u << 20 : 0) | (r.minor & 3) << 24;
			return true;
		}
		if (addr == 0x3FF6607C) {
			*v = 0x16042000u | (r.major >= 3 ? 1u << 31 : 0);
			return true;
		}
		return false;
	case ESP_CHIP_ESP32S2:
		/* BLK1 word 3: major bits 18..19, minor bit 3 at bit 20;
		 * word 4: minor bits 0..2 at bits 4..6 */
		if (addr == blk1 + 12) {
			*v = (r.major & 3) << 18 | ((r.minor >> 3) & 1) << 20;
			return true;
		}
		if (addr == blk1 + 16) {
			*v = (r.minor & 7) << 4;
			return true;
		}
		return false;
	case ESP_CHIP_ESP32S3: case ESP_CHIP_ESP32C3: case ESP_CHIP_ESP32C6: case ESP_CHIP_ESP32H2:
		/* BLK1 word 3: minor bits 0..2 at bits 18..20; word 5: minor
		 * bit 3 at bit 23, major at bits 24..25 */
		if (addr == blk1 + 12) {
			*v = (r.minor & 7) << 18;
			return true;
		}
		if (addr == blk1 + 20) {
			*v = ((r.minor >> 3) & 1) << 23 | (r.major & 3) << 24;
			return true;
		}
		return false;
	default:
		return false;
	}
}

static uint32_t *store(sim_device *d, uint32_t addr, bool create)
{
	for (int i = 0; i < d->n_regs; i++)
		if (d->regs[i].addr == addr)
			return &d->regs[i].val;
	if (!create)
		return NULL;
	if (d->n_regs == SIM_MAX_REGS) /* forget the oldest plain register */
		memmove(&d->regs[0], &d->regs[1], sizeof d->regs[0] * (SIM_MAX_REGS - 1)), d->n_regs--;
	d->regs[d->n_regs].addr = addr;
	d->regs[d->n_regs].val = 0;
	return &d->regs[d->n_regs++].val;
}

void sim_regs_reset(sim_device *d)
{
	d->n_regs = 0;
	memset(&d->spi, 0, sizeof d->spi);
	d->wdt_unlocked = d->wdt_armed = false;
	d->wdt_config1 = 0;
	if (d->chip->id == ESP_CHIP_ESP32) {
		/* esptool's ROM-baud compensation reads these: values chosen so
		 * the computed ROM clock is exactly 40 MHz (no correction). */
		*store(d, 0x3FF5F06C, true) = 800u << 7;
		*store(d, 0x3FF5A010, true) = 128;
	}
}

static int spi_index(const struct esp_spi_regs *r, uint32_t addr)
{
	if (addr == r->cmd) return 0;
	if (addr == r->addr) return 1;
	if (addr == r->usr) return 2;
	if (addr == r->usr1) return 3;
	if (addr == r->usr2) return 4;
	if (r->mosi_dlen && addr == r->mosi_dlen) return 5;
	if (r->miso_dlen && addr == r->miso_dlen) return 6;
	if (addr >= r->w0 && addr < r->w0 + 64 && (addr & 3) == 0) return 7 + (int)((addr - r->w0) / 4);
	return -1;
}

static uint32_t *spi_slot(sim_device *d, int i)
{
	switch (i) {
	case 0: return &d->spi.cmd;
	case 1: return &d->spi.addr;
	case 2: return &d->spi.usr;
	case 3: return &d->spi.usr1;
	case 4: return &d->spi.usr2;
	case 5: return &d->spi.mosi_dlen;
	case 6: return &d->spi.miso_dlen;
	default: return &d->spi.w[i - 7];
	}
}

/* The flash chip's answer to a user command. */
static void spi_execute(sim_device *d)
{
	struct sim_spi *s = &d->spi;
	uint8_t cmd = (s->usr & SPI_USR_CMD) ? (uint8_t)(s->usr2 & 0xFF) : 0;
	uint32_t miso_bits = 0;
	if (s->usr & SPI_USR_MISO)
		miso_bits = d->chip->spi_has_dlen ? (s->miso_dlen & 0x3FF) + 1 : ((s->usr1 >> 8) & 0x1FF) + 1;
	uint8_t out[64];
	memset(out, 0xFF, sizeof out);     /* an idle MISO line reads high */
	uint32_t a = (s->usr & SPI_USR_ADDR) ? s->addr : 0;
	uint32_t mosi_bits = 0;
	if (s->usr & SPI_USR_MOSI)
		mosi_bits = d->chip->spi_has_dlen ? (s->mosi_dlen & 0x3FF) + 1 : ((s->usr1 >> 17) & 0x1FF) + 1;
	uint32_t mosi_bytes = mosi_bits / 8;
	uint8_t *sr = d->fsr.sr;
	if (d->chip->id == ESP_CHIP_ESP8266 || d->chip->id == ESP_CHIP_ESP32)
		a >>= 8;                     /* address in the top 24 bits there */
	if (!d->ld.attached)
		cmd = 0;                     /* no flash on the bus: MISO stays high */
	switch (cmd) {
	case 0x9F: /* RDID: manufacturer, memory type, capacity */
		out[0] = d->jedec & 0xFF;
		out[1] = (d->jedec >> 8) & 0xFF;
		out[2] = (d->jedec >> 16) & 0xFF;
		break;
	/* Status registers (esptool read_status/write_status): reads repeat
	 * the register while clocked; a write needs WREN first and clears
	 * WEL; SR1's WIP/WEL bits are not writable.  01 takes SR1 and, with
	 * a second byte, SR2 (16-bit WRSR); 31 SR2, 11 SR3. */
	case 0x05: memset(out, sr[0], sizeof out); break;
	case 0x35: memset(out, sr[1], sizeof out); break;
	case 0x15: memset(out, sr[2], sizeof out); break;
	case 0x06: sr[0] |= 0x02; break;      /* write enable */
	case 0x04: sr[0] &= (uint8_t)~0x02; break;
	case 0x01: case 0x31: case 0x11:
		if ((sr[0] & 0x02) && mosi_bytes) {
			uint8_t b0 = (uint8_t)(s->w[0] & 0xFF), b1 = (uint8_t)((s->w[0] >> 8) & 0xFF);
			if (cmd == 0x01) {
				sr[0] = (uint8_t)((b0 & 0xFC) | (sr[0] & 0x03));
				if (mosi_bytes >= 2)
					sr[1] = b1;
			} else {
				sr[cmd == 0x31 ? 1 : 2] = b0;
			}
		}
		sr[0] &= (uint8_t)~0x02;
		break;
	case 0x5A: { /* SFDP: the signature at address 0 */
		static const uint8_t sfdp[8] = { 'S', 'F', 'D', 'P', 0x06, 0x01, 0x00, 0xFF };
		if ((a & 0xFFFFFF) == 0)
			memcpy(out, sfdp, sizeof sfdp);
		break;
	}
	case 0xAB: /* release power-down / device id */
		out[0] = (uint8_t)(((d->jedec >> 16) & 0xFF) - 1);
		break;
	case 0x4B: /* unique id from the MAC */
		memcpy(out, d->mac, 6);
		out[6] = 0x5A, out[7] = 0xA5;
		break;
	default:  /* write enable, resets, ...: no data */
		break;
	}
	if (miso_bits > 512)
		miso_bits = 512;
	uint32_t nbytes = (miso_bits + 7) / 8;
	for (uint32_t i = 0; i < nbytes; i += 4) {
		uint32_t v = 0;
		for (uint32_t k = 0; k < 4 && i + k < nbytes; k++)
			v |= (uint32_t)out[i + k] << (8 * k);
		if (i + 4 > nbytes) /* bits beyond the read length keep old contents */
			v = (s->w[i / 4] & ~((1u << (8 * (nbytes - i))) - 1)) | v;
		s->w[i / 4] = v;
	}
	s->cmd &= ~SPI_CMD_USR;          /* done at once */
}

uint32_t sim_reg_read(sim_device *d, uint32_t addr)
{
	const struct esp_chip_info *c = d->chip;
	if (addr == ESP_CHIP_DETECT_MAGIC_REG)
		return sim_chip_magic(c);
	uint32_t w[4];
	sim_mac_words(c, d->mac, w);
	if (addr == c->mac_reg[0])
		return w[0];
	if (addr == c->mac_reg[1])
		return w[1];
	if (c->id == ESP_CHIP_ESP8266) {
		if (addr == c->mac_reg[0] + 8)
			return w[2];
		if (addr == c->mac_reg[2])
			return w[3];
	}
	uint32_t rv;
	if (revision_word(c, addr, &rv))
		return rv;
	/* the ROM loader's port (esptool's UARTDEV_BUF_NO): USB-OTG on a
	 * native-USB S2, USB-Serial/JTAG (4) on a native-USB S3, UART0 else */
	if (c->uartdev_buf_no && addr == (c->uartdev_buf_no & ~3u)) {
		uint32_t port = !d->native_usb ? 0 : c->has_usb_jtag_serial ? 4 : c->uartdev_usb_otg;
		return port << (8 * (c->uartdev_buf_no & 3));
	}
	struct clk_reg ck = uart_clkdiv(c);
	if (addr == ck.addr)
		return ck.clk_hz / (d->dev_baud ? d->dev_baud : 115200);
	int si = spi_index(&c->spi, addr);
	if (si >= 0)
		return *spi_slot(d, si);
	uint32_t *v = store(d, addr, false);
	return v ? *v : 0;
}

void sim_reg_write(sim_device *d, uint32_t addr, uint32_t value, uint64_t t_ns)
{
	const struct esp_chip_info *c = d->chip;
	int si = spi_index(&c->spi, addr);
	if (si >= 0) {
		*spi_slot(d, si) = value;
		if (si == 0 && (value & SPI_CMD_USR))
			spi_execute(d);
		return;
	}
	if (c->wdt_wprotect) {
		if (addr == c->wdt_wprotect) {
			d->wdt_unlocked = value == ESP_WDT_WKEY;
			*store(d, addr, true) = value;
			return;
		}
		if (addr == c->wdt_config0 || addr == c->wdt_config1) {
			if (!d->wdt_unlocked)
				return;        /* write-protected, like the hardware */
			*store(d, addr, true) = value;
			if (addr == c->wdt_config1)
				d->wdt_config1 = value;
			else if (value & (1u << 31)) {
				/* stage 0 timeout in RTC slow-clock ticks (~150 kHz) */
				uint64_t us = (uint64_t)d->wdt_config1 * 1000000u / 150000u;
				if (us < 1000)
					us = 1000;
				d->wdt_armed = true;
				d->wdt_at_us = t_ns / 1000 + us;
			} else
				d->wdt_armed = false;
			return;
		}
	}
	*store(d, addr, true) = value;
}
