#include <asm/termbits.h>
#include <errno.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include "serial_baud.h"

/* Standard rates keep their Bxxx code, so anyone reading the termios back
 * with cfgetospeed() (the far end of a pty, e.g. espsim) understands it;
 * only odd rates (74880, ...) need BOTHER. */
static const struct { uint32_t baud; unsigned code; } std_rates[] = {
	{ 9600, B9600 }, { 19200, B19200 }, { 38400, B38400 }, { 57600, B57600 },
	{ 115200, B115200 }, { 230400, B230400 }, { 460800, B460800 }, { 500000, B500000 },
	{ 576000, B576000 }, { 921600, B921600 }, { 1000000, B1000000 }, { 1152000, B1152000 },
	{ 1500000, B1500000 }, { 2000000, B2000000 }, { 2500000, B2500000 }, { 3000000, B3000000 },
	{ 3500000, B3500000 }, { 4000000, B4000000 },
};

int esp_serial_set_baud_fd(int fd, uint32_t baud)
{
	struct termios2 t;
	unsigned code = BOTHER;
	for (size_t i = 0; i < sizeof std_rates / sizeof *std_rates; i++)
		if (std_rates[i].baud == baud)
			code = std_rates[i].code;
	if (ioctl(fd, TCGETS2, &t) < 0)
		return -errno;
	t.c_cflag &= ~(CBAUD | (CBAUD << IBSHIFT));
	t.c_cflag |= code | (code << IBSHIFT);
	t.c_ispeed = baud;
	t.c_ospeed = baud;
	if (ioctl(fd, TCSETS2, &t) < 0)
		return errno == ENOTTY ? -EINVAL : -errno;
	return 0;
}
