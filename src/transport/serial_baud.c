#include <asm/termbits.h>
#include <errno.h>
#include <sys/ioctl.h>
#include "serial_baud.h"

int esp_serial_set_baud_fd(int fd, uint32_t baud)
{
	struct termios2 t;
	if (ioctl(fd, TCGETS2, &t) < 0)
		return -errno;
	t.c_cflag &= ~CBAUD;
	t.c_cflag |= BOTHER;
	t.c_ispeed = baud;
	t.c_ospeed = baud;
	/* input speed follows output speed */
	t.c_cflag &= ~(CBAUD << IBSHIFT);
	t.c_cflag |= BOTHER << IBSHIFT;
	if (ioctl(fd, TCSETS2, &t) < 0)
		return errno == ENOTTY ? -EINVAL : -errno;
	return 0;
}
