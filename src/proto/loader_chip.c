/* What the chip is: registers, chip detection, MAC, watchdogs, and the
 * SPI flash (attach, JEDEC ID, parameters) (PROTOCOL.md A6-A8, A15). */
#include <errno.h>
#include <string.h>
#include "espfs/log.h"
#include "loader_priv.h"

int esp_loader_read_reg(esp_loader *l, uint32_t addr, uint32_t *val)
{
	uint8_t p[4];
	esp__put32(p, addr);
	int rc = esp_loader_command(l, ESP_READ_REG, p, 4, 0, ESP_TMO_DEFAULT_MS, val, NULL, 0, 0);
	if (rc < 0)
		esp__err_prefix(l, "read register 0x%08x", addr);
	return rc < 0 ? rc : 0;
}

int esp_loader_write_reg(esp_loader *l, uint32_t addr, uint32_t val, uint32_t mask, uint32_t delay_us)
{
	uint8_t p[16];
	esp__put32(p, addr);
	esp__put32(p + 4, val);
	esp__put32(p + 8, mask);
	esp__put32(p + 12, delay_us);
	int rc = esp_loader_command(l, ESP_WRITE_REG, p, 16, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	if (rc < 0)
		esp__err_prefix(l, "write register 0x%08x", addr);
	return rc < 0 ? rc : 0;
}

int esp__wreg(esp_loader *l, uint32_t addr, uint32_t val)
{
	return esp_loader_write_reg(l, addr, val, 0xFFFFFFFFu, 0);
}

/* ---- chip detection ---- */

int esp_loader_detect_chip(esp_loader *l, const struct esp_chip_info **chip)
{
	uint8_t d[40];
	int gsi_len = 0;
	const struct esp_chip_info *c = NULL;
	slip_reader_flush(&l->rd);
	int rc = esp__send(l, ESP_GET_SECURITY_INFO, NULL, 0, 0);
	if (rc < 0)
		return rc;
	rc = esp__recv(l, ESP_GET_SECURITY_INFO, ESP_TMO_DEFAULT_MS, NULL, d, sizeof d, ESP_EXPECT_RAW);
	if (rc == -ENODEV)
		return rc;
	if (rc >= 2) {
		/* 20 data bytes (S3 and later), 12 (ESP32-S2), or a failure
		 * reply from ROMs without the command; the size field is not
		 * to be trusted (A2), the frame length is. */
		size_t plen = (size_t)rc < sizeof d ? (size_t)rc : sizeof d;
		size_t dl = plen >= 22 ? 20 : plen >= 14 ? 12 : 0;
		if (dl && d[dl] == 0) {
			gsi_len = (int)dl;
			l->secure_download = (esp__get32(d) & (1u << 2)) != 0;
			if (dl == 20)
				c = esp_chip_by_image_id((int)esp__get32(d + 12));
		}
	}
	if (!c) {
		uint32_t magic = 0;
		rc = esp_loader_read_reg(l, ESP_CHIP_DETECT_MAGIC_REG, &magic);
		if (rc == -ENODEV || rc == -ETIMEDOUT)
			return rc;
		if (rc < 0 && gsi_len == 12) {
			/* READ_REG refused after a 12-byte security info: an
			 * ESP32-S2 in Secure Download Mode (A6 step 2b) */
			c = esp_chip_get(ESP_CHIP_ESP32S2);
			l->secure_download = true;
		} else if (rc < 0) {
			return rc;
		} else {
			c = esp_chip_by_magic(magic);
			if (!c) {
				esp__err(l, "unknown chip (magic value 0x%08x)", magic);
				return -EOPNOTSUPP;
			}
		}
	}
	l->chip = c;
	if (chip)
		*chip = c;
	if (esp__is_usb_jtag(l->t) && !l->stub && !l->secure_download) {
		rc = esp_loader_disable_watchdogs(l);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Over USB-Serial/JTAG the ROM's watchdogs stay armed and would reset the
 * chip in the middle of a long operation; esptool disarms them right after
 * connecting (A15, "_post_connect"; not in Secure Download Mode, not
 * needed once a stub runs, which does it itself). */
struct wdt_off {
	esp_chip_id id;
	uint32_t rtc_wprotect, rtc_config0, rtc_key;
	uint32_t swd_conf, swd_bit, swd_wprotect, swd_key;
};
static const struct wdt_off wdt_offs[] = {
	{ ESP_CHIP_ESP32C3, 0x600080A8, 0x60008090, 0x50D83AA1, 0x600080AC, 1u << 31, 0x600080B0, 0x8F1D312A },
	{ ESP_CHIP_ESP32S3, 0x600080B0, 0x60008098, 0x50D83AA1, 0x600080B4, 1u << 31, 0x600080B8, 0x8F1D312A },
	{ ESP_CHIP_ESP32C6, 0x600B1C18, 0x600B1C00, 0x50D83AA1, 0x600B1C1C, 1u << 18, 0x600B1C20, 0x50D83AA1 },
	{ ESP_CHIP_ESP32H2, 0x600B1C1C, 0x600B1C00, 0x50D83AA1, 0x600B1C20, 1u << 18, 0x600B1C24, 0x50D83AA1 },
};

int esp_loader_disable_watchdogs(esp_loader *l)
{
	int rc = esp__need_chip(l);
	if (rc < 0)
		return rc;
	if (l->stub || l->secure_download)
		return 0;
	for (size_t i = 0; i < sizeof wdt_offs / sizeof *wdt_offs; i++) {
		const struct wdt_off *w = &wdt_offs[i];
		if (w->id != l->chip->id)
			continue;
		uint32_t conf = 0;
		if ((rc = esp__wreg(l, w->rtc_wprotect, w->rtc_key)) < 0 ||
		    (rc = esp__wreg(l, w->rtc_config0, 0)) < 0 ||
		    (rc = esp__wreg(l, w->rtc_wprotect, 0)) < 0 ||
		    (rc = esp__wreg(l, w->swd_wprotect, w->swd_key)) < 0 ||
		    (rc = esp_loader_read_reg(l, w->swd_conf, &conf)) < 0 ||
		    (rc = esp__wreg(l, w->swd_conf, conf | w->swd_bit)) < 0 ||
		    (rc = esp__wreg(l, w->swd_wprotect, 0)) < 0) {
			esp__err_prefix(l, "disabling the ROM watchdogs");
			return rc;
		}
		return 0;
	}
	return 0;
}

int esp__need_chip(esp_loader *l)
{
	return l->chip ? 0 : esp_loader_detect_chip(l, NULL);
}

int esp_loader_read_mac(esp_loader *l, uint8_t mac[6])
{
	int rc = esp__need_chip(l);
	if (rc < 0)
		return rc;
	const struct esp_chip_info *c = l->chip;
	uint32_t w0, w1;
	if ((rc = esp_loader_read_reg(l, c->mac_reg[0], &w0)) < 0 ||
	    (rc = esp_loader_read_reg(l, c->mac_reg[1], &w1)) < 0)
		return rc;
	if (c->id == ESP_CHIP_ESP8266) {
		/* A7: the OUI is in MAC3, or implied by a byte of MAC1 */
		uint32_t w3;
		if ((rc = esp_loader_read_reg(l, c->mac_reg[2], &w3)) < 0)
			return rc;
		if (w3 != 0) {
			mac[0] = (uint8_t)(w3 >> 16); mac[1] = (uint8_t)(w3 >> 8); mac[2] = (uint8_t)w3;
		} else if (((w1 >> 16) & 0xFF) == 0) {
			mac[0] = 0x18; mac[1] = 0xFE; mac[2] = 0x34;
		} else if (((w1 >> 16) & 0xFF) == 1) {
			mac[0] = 0xAC; mac[1] = 0xD0; mac[2] = 0x74;
		} else {
			esp__err(l, "unknown ESP8266 OUI in eFuse (MAC1 0x%08x)", w1);
			return -EIO;
		}
		mac[3] = (uint8_t)(w1 >> 8); mac[4] = (uint8_t)w1; mac[5] = (uint8_t)(w0 >> 24);
		return 0;
	}
	mac[0] = (uint8_t)(w1 >> 8); mac[1] = (uint8_t)w1;
	mac[2] = (uint8_t)(w0 >> 24); mac[3] = (uint8_t)(w0 >> 16);
	mac[4] = (uint8_t)(w0 >> 8); mac[5] = (uint8_t)w0;
	return 0;
}

/* ---- chip revision ---- */

/* Register addresses and bit positions from esptool's targets
 * (esptool/targets/esp32.py get_major/minor_chip_version: EFUSE_RD_REG_BASE
 * 0x3FF5A000 words 3 and 5, APB_CTL_DATE 0x3FF6607C bit 31;
 * esp32c3.py: EFUSE_BLOCK1_ADDR 0x60008844, words 3 and 5). */
#define ESP32_EFUSE_WORD3 0x3FF5A00Cu
#define ESP32_EFUSE_WORD5 0x3FF5A014u
#define ESP32_APB_CTRL_DATE 0x3FF6607Cu
#define ESP32C3_EFUSE_BLK1 0x60008844u

int esp_loader_read_revision(esp_loader *l, unsigned *rev)
{
	int rc = esp__need_chip(l);
	if (rc < 0)
		return rc;
	uint32_t w3 = 0, w5 = 0, date = 0;
	switch (l->chip->id) {
	case ESP_CHIP_ESP32: {
		if ((rc = esp_loader_read_reg(l, ESP32_EFUSE_WORD3, &w3)) < 0 ||
		    (rc = esp_loader_read_reg(l, ESP32_EFUSE_WORD5, &w5)) < 0 ||
		    (rc = esp_loader_read_reg(l, ESP32_APB_CTRL_DATE, &date)) < 0)
			return rc;
		/* three ECO bits in three places; 0, 1, 3, 7 mean v0..v3 */
		unsigned bits = (date >> 31 & 1) << 2 | (w5 >> 20 & 1) << 1 | (w3 >> 15 & 1);
		unsigned major = bits == 7 ? 3 : bits == 3 ? 2 : bits == 1 ? 1 : 0;
		*rev = major * 100 + (w5 >> 24 & 3);
		return 0;
	}
	case ESP_CHIP_ESP32C3:
		if ((rc = esp_loader_read_reg(l, ESP32C3_EFUSE_BLK1 + 4 * 3, &w3)) < 0 ||
		    (rc = esp_loader_read_reg(l, ESP32C3_EFUSE_BLK1 + 4 * 5, &w5)) < 0)
			return rc;
		*rev = (w5 >> 24 & 3) * 100 + ((w5 >> 23 & 1) << 3 | (w3 >> 18 & 7));
		return 0;
	default:
		esp__err(l, "reading the revision of the %s is not implemented", l->chip->name);
		return -EOPNOTSUPP;
	}
}

/* ---- SPI flash ---- */

#define ESP32_EFUSE_RDATA3 0x3FF5A00Cu
#define ESP32_EFUSE_RDATA5 0x3FF5A014u

/* The ESP32 ROM attaches in-package flash only when told its pins, which
 * eFuse knows (A8); 0 means the default pins. */
static uint32_t esp32_spi_pads(esp_loader *l)
{
	uint32_t r5 = 0, r3 = 0;
	if (esp_loader_read_reg(l, ESP32_EFUSE_RDATA5, &r5) < 0 ||
	    esp_loader_read_reg(l, ESP32_EFUSE_RDATA3, &r3) < 0)
		return 0;
	uint32_t clk = r5 & 0x1F, q = (r5 >> 5) & 0x1F, d = (r5 >> 10) & 0x1F,
		 cs = (r5 >> 15) & 0x1F, hd = (r3 >> 4) & 0x1F;
	if (!clk && !q && !d && !cs && !hd)
		return 0;
	return hd << 24 | cs << 18 | d << 12 | q << 6 | clk;
}

int esp__flash_begin(esp_loader *l, uint8_t op, uint32_t size_word, uint32_t blocks,
		     uint32_t block_size, uint32_t offset, uint32_t timeout_ms)
{
	uint8_t p[20];
	esp__put32(p, size_word);
	esp__put32(p + 4, blocks);
	esp__put32(p + 8, block_size);
	esp__put32(p + 12, offset);
	esp__put32(p + 16, 0); /* not encrypted */
	/* A3 safe rule: ESP8266/ESP32 ROM take 16 bytes, later ROMs 20, stubs either */
	size_t n = !l->stub && l->chip && l->chip->rom_begin_has_encrypt_word ? 20 : 16;
	return esp_loader_command(l, op, p, n, 0, timeout_ms, NULL, NULL, 0, 0);
}

int esp_loader_spi_attach(esp_loader *l)
{
	int rc = esp__need_chip(l);
	if (rc < 0)
		return rc;
	uint8_t p[8] = { 0 };
	if (l->stub) {
		rc = esp_loader_command(l, ESP_SPI_ATTACH, p, 4, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	} else if (!l->chip->rom_has_spi_attach) {
		/* ESP8266 ROM: an empty FLASH_BEGIN attaches the flash */
		rc = esp__flash_begin(l, ESP_FLASH_BEGIN, 0, 0, ESP_ROM_WRITE_BLOCK, 0, ESP_TMO_DEFAULT_MS);
	} else {
		uint32_t cfg = l->chip->id == ESP_CHIP_ESP32 && !l->secure_download ? esp32_spi_pads(l) : 0;
		esp__put32(p, cfg);
		rc = esp_loader_command(l, ESP_SPI_ATTACH, p, 8, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	}
	if (rc < 0) {
		esp__err_prefix(l, "attaching SPI flash");
		return rc;
	}
	l->attached = true;
	return 0;
}

int esp_loader_spi_set_params(esp_loader *l, uint32_t flash_size)
{
	int rc = esp__need_chip(l);
	if (rc < 0)
		return rc;
	if (!l->stub && l->chip->id == ESP_CHIP_ESP8266) {
		l->params_set = true; /* the ESP8266 ROM has no such command */
		return 0;
	}
	uint8_t p[24];
	esp__put32(p, 0);
	esp__put32(p + 4, flash_size);
	esp__put32(p + 8, 0x10000);
	esp__put32(p + 12, ESP_SECTOR);
	esp__put32(p + 16, 0x100);
	esp__put32(p + 20, 0xFFFF);
	rc = esp_loader_command(l, ESP_SPI_SET_PARAMS, p, sizeof p, 0, ESP_TMO_DEFAULT_MS, NULL, NULL, 0, 0);
	if (rc < 0) {
		esp__err_prefix(l, "setting flash parameters");
		return rc;
	}
	l->params_set = true;
	return 0;
}

/* RDID (0x9F) through the SPI controller's user-command registers (A8). */
static int read_jedec(esp_loader *l, uint32_t *id)
{
	const struct esp_spi_regs *r = &l->chip->spi;
	uint32_t usr, usr2, cmd = 0;
	int rc;
	if ((rc = esp_loader_read_reg(l, r->usr, &usr)) < 0 ||
	    (rc = esp_loader_read_reg(l, r->usr2, &usr2)) < 0)
		return rc;
	if (l->chip->spi_has_dlen)
		rc = esp__wreg(l, r->miso_dlen, 24 - 1);
	else
		rc = esp__wreg(l, r->usr1, (24 - 1) << 8);
	if (rc < 0 ||
	    (rc = esp__wreg(l, r->usr, 1u << 31 | 1u << 28)) < 0 ||
	    (rc = esp__wreg(l, r->usr2, 7u << 28 | 0x9F)) < 0 ||
	    (rc = esp__wreg(l, r->w0, 0)) < 0 ||
	    (rc = esp__wreg(l, r->cmd, 1u << 18)) < 0)
		return rc;
	int polls;
	for (polls = 0; polls < 10; polls++) {
		if ((rc = esp_loader_read_reg(l, r->cmd, &cmd)) < 0)
			return rc;
		if (!(cmd & 1u << 18))
			break;
	}
	if (polls == 10) {
		esp__err(l, "SPI flash command did not complete");
		return -EIO;
	}
	if ((rc = esp_loader_read_reg(l, r->w0, id)) < 0 ||
	    (rc = esp__wreg(l, r->usr, usr)) < 0 ||
	    (rc = esp__wreg(l, r->usr2, usr2)) < 0)
		return rc;
	*id &= 0xFFFFFF;
	return 0;
}

int esp_loader_flash_id(esp_loader *l, uint32_t *jedec, uint32_t *size)
{
	int rc = esp__need_chip(l);
	if (rc < 0)
		return rc;
	if (!l->attached && (rc = esp_loader_spi_attach(l)) < 0)
		return rc;
	uint32_t id = 0;
	if ((rc = read_jedec(l, &id)) < 0) {
		esp__err_prefix(l, "reading the flash ID");
		return rc;
	}
	if (id == 0xFFFFFF || id == 0 || id == 0xFFFF3F) {
		esp__err(l, "no SPI flash answers (JEDEC ID 0x%06x)", id);
		return -EIO;
	}
	uint32_t sz = esp_flash_size_from_jedec(id);
	if (!sz) {
		LOGW("%s: unknown flash size for JEDEC ID 0x%06x, assuming %u MB", l->t->name, id,
		     l->chip->default_flash_size >> 20);
		sz = l->chip->default_flash_size;
	}
	if (sz != l->flash_size)
		l->params_set = false;
	l->jedec = id;
	l->flash_size = sz;
	if (jedec)
		*jedec = id;
	if (size)
		*size = sz;
	return 0;
}

int esp__flash_ready(esp_loader *l)
{
	int rc = esp__need_chip(l);
	if (rc < 0)
		return rc;
	if (!l->attached && (rc = esp_loader_spi_attach(l)) < 0)
		return rc;
	if (!l->flash_size) {
		rc = esp_loader_flash_id(l, NULL, NULL);
		if (rc == -EACCES) /* Secure Download Mode: no register access */
			l->flash_size = l->chip->default_flash_size;
		else if (rc < 0)
			return rc;
	}
	if (!l->params_set && (rc = esp_loader_spi_set_params(l, l->flash_size)) < 0)
		return rc;
	return 0;
}

uint32_t esp_loader_flash_size(const esp_loader *l)
{
	return l->flash_size;
}

static bool usb_otg(const esp_loader *l)
{
	return l->chip && l->chip->usb_otg_rom_pid && l->t->usb_vid == ESP_ESPRESSIF_VID &&
	       l->t->usb_pid == l->chip->usb_otg_rom_pid;
}

uint32_t esp__write_block(const esp_loader *l)
{
	if (!l->stub)
		return ESP_ROM_WRITE_BLOCK;
	return usb_otg(l) ? 0x800 : ESP_STUB_WRITE_BLOCK;
}

uint32_t esp__ram_block(const esp_loader *l)
{
	return usb_otg(l) ? 0x800 : ESP_RAM_BLOCK;
}
