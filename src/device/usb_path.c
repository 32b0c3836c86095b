/* The USB physical path of a tty, from sysfs: /sys/class/tty/NAME/device
 * resolves to .../usb1/1-1/1-1.2/1-1.2:1.0 (CDC-ACM) or one level deeper
 * for USB-serial drivers (.../1-1.3:1.0/ttyUSB0).  The USB device part,
 * "1-1.2" (bus 1, hub port 1, port 2), names the socket: it stays the same
 * while the board stays plugged there, whatever tty name the kernel hands
 * out on re-enumeration (Documentation/ABI/stable/sysfs-bus-usb). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "device_i.h"

int dev_usb_physical_path(const char *sysroot, const char *dev, char *out, size_t cap)
{
	char link[PATH_MAX], real[PATH_MAX];
	const char *base = strrchr(dev, '/');
	out[0] = 0;
	snprintf(link, sizeof link, "%s/class/tty/%s/device", sysroot, base ? base + 1 : dev);
	if (!realpath(link, real))
		return -errno;
	/* climb to the interface directory ("1-1.2:1.0"), then one more */
	char *slash;
	while ((slash = strrchr(real, '/')) && !strchr(slash, ':'))
		*slash = 0;
	if (!slash)
		return -ENOENT;
	*slash = 0;
	const char *usbdev = strrchr(real, '/');
	usbdev = usbdev ? usbdev + 1 : real;
	/* "1-1.2", never a root hub ("usb1") or a PCI address */
	if (!strchr(usbdev, '-') || strchr(usbdev, ':'))
		return -ENOENT;
	snprintf(out, cap, "%.*s", (int)(cap - 1), usbdev);
	return 0;
}
