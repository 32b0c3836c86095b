/* ROM and stub status bytes to errno and words (PROTOCOL.md A2).
 * ROM failures arrive as byte0 = 1 with the reason in byte1; stubs put
 * their 0xC0..0xCB / 0xFF code in byte0 (the legacy stub also sends a
 * plain 0x01 for some commands, which reads like ROM "undefined error"). */
#include <errno.h>
#include "espfs/loader.h"

/* One switch for both the errno and the text, so they cannot drift. */
static int lookup(uint8_t s0, uint8_t s1, const char **text)
{
	unsigned code = s0 == 0x01 ? 0x100u | s1 : (unsigned)s0 << 8;
	const char *t;
	int e;
	switch (code) {
	case 0x100: e = EIO; t = "undefined error"; break;
	case 0x101: e = EINVAL; t = "input parameter invalid"; break;
	case 0x102: e = ENOMEM; t = "malloc failed on the chip"; break;
	case 0x103: e = EPROTO; t = "send message failed"; break;
	case 0x104: e = EPROTO; t = "receive message failed"; break;
	/* also what the ROM answers to a command it does not know */
	case 0x105: e = EOPNOTSUPP; t = "unsupported command or invalid message format"; break;
	case 0x106: e = EIO; t = "message ok but result wrong"; break;
	case 0x107: e = EPROTO; t = "checksum error"; break;
	case 0x108: e = EIO; t = "flash write error"; break;
	case 0x109: e = EIO; t = "flash read error"; break;
	case 0x10A: e = EINVAL; t = "flash read length error"; break;
	case 0x10B: e = EPROTO; t = "deflate failed"; break;
	case 0x10C: e = EPROTO; t = "deflate Adler32 error"; break;
	case 0x10D: e = EINVAL; t = "deflate parameter error"; break;
	case 0x10E: e = EINVAL; t = "invalid RAM binary size"; break;
	case 0x10F: e = EINVAL; t = "invalid RAM binary address"; break;
	case 0x164: e = EINVAL; t = "invalid parameter"; break;
	case 0x165: e = EINVAL; t = "invalid format"; break;
	case 0x166: e = EINVAL; t = "description too long"; break;
	case 0x167: e = EINVAL; t = "bad encoding description"; break;
	case 0x169: e = ENOSPC; t = "insufficient storage"; break;
	case 0xC000: e = EPROTO; t = "stub: bad data length"; break;
	case 0xC100: e = EPROTO; t = "stub: bad data checksum"; break;
	case 0xC200: e = EINVAL; t = "stub: bad block size"; break;
	case 0xC300: e = EOPNOTSUPP; t = "stub: invalid command"; break;
	case 0xC400: e = EIO; t = "stub: SPI operation failed"; break;
	case 0xC500: e = EIO; t = "stub: SPI unlock failed"; break;
	case 0xC600: e = EPROTO; t = "stub: not in flash mode"; break;
	case 0xC700: e = EPROTO; t = "stub: inflate error"; break;
	case 0xC800: e = EIO; t = "stub: not enough data"; break;
	case 0xC900: e = EINVAL; t = "stub: too much data"; break;
	case 0xCA00: e = EIO; t = "stub: NAND program failed"; break;
	case 0xCB00: e = EIO; t = "stub: NAND erase failed"; break;
	case 0xFF00: e = EOPNOTSUPP; t = "command not implemented"; break;
	default:
		if (code == 0)
			e = 0, t = "success";
		else if (s0 == 0x01)
			e = EIO, t = "unknown ROM error";
		else
			e = EIO, t = "unknown stub error";
		break;
	}
	if (text)
		*text = t;
	return e;
}

/* Returns a negative errno (0 for success), like the rest of the API. */
int esp_status_to_errno(uint8_t s0, uint8_t s1)
{
	if (s0 == 0)
		return 0;
	return -lookup(s0, s1, NULL);
}

const char *esp_status_text(uint8_t s0, uint8_t s1)
{
	const char *t;
	if (s0 == 0)
		return "success";
	lookup(s0, s1, &t);
	return t;
}
