/* USB physical path from a sysfs tree: a fake /sys built in a temp dir
 * with the link shapes the kernel makes for cdc_acm (ttyACM) and
 * usb-serial (ttyUSB) ports, and ports that are not on USB. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../../src/device/device_i.h"
#include "../t.h"
#include "fake_tree.h"

static void link_tty(const char *tty, const char *target)
{
	char dir[PATH_MAX * 2], l[PATH_MAX * 2], t[PATH_MAX * 2];
	snprintf(dir, sizeof dir, "class/tty/%s", tty);
	mkdirs(dir);
	snprintf(l, sizeof l, "%s/class/tty/%s/device", root, tty);
	snprintf(t, sizeof t, "%s/%s", root, target);
	mkdirs(target);
	if (symlink(t, l) != 0)
		perror("symlink");
}

static char out[64];

static void cdc_acm_port(void)
{
	CHECK_EQ(dev_usb_physical_path(root, "/dev/ttyACM0", out, sizeof out), 0);
	CHECK_STR(out, "1-1.2");
}

static void usb_serial_port_one_level_deeper(void)
{
	CHECK_EQ(dev_usb_physical_path(root, "ttyUSB0", out, sizeof out), 0);
	CHECK_STR(out, "3-4");
}

static void not_on_usb(void)
{
	CHECK(dev_usb_physical_path(root, "/dev/ttyS0", out, sizeof out) < 0);
	CHECK(out[0] == 0);
}

static void root_hub_is_no_socket(void)
{
	CHECK(dev_usb_physical_path(root, "/dev/ttyACM9", out, sizeof out) < 0);
}

static void no_such_tty(void)
{
	CHECK(dev_usb_physical_path(root, "/dev/ttyACM5", out, sizeof out) < 0);
}

int main(void)
{
	char tmpl[] = "/tmp/espfs-sysfs.XXXXXX";
	if (!mkdtemp(tmpl)) {
		printf("1..0 # SKIP mkdtemp failed\n");
		return 0;   /* TAP: the SKIP plan with status 0 */
	}
	snprintf(root, sizeof root, "%s", tmpl);
	link_tty("ttyACM0", "devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.2/1-1.2:1.0");
	link_tty("ttyUSB0", "devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4:1.0/ttyUSB0");
	link_tty("ttyS0", "devices/pnp0/00:05");
	link_tty("ttyACM9", "devices/pci0000:00/0000:00:14.0/usb1/1-0:1.0");
	RUN(cdc_acm_port);
	RUN(usb_serial_port_one_level_deeper);
	RUN(not_on_usb);
	RUN(root_hub_is_no_socket);
	RUN(no_such_tty);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "# cleanup failed\n");
	return t_done();
}
