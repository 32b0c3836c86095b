/* A USB serial bridge without a tty, on a fake /sys and /proc: named as
 * brltty's doing when a process called brltty runs, as a missing driver
 * otherwise; a bridge with its tty, or another USB device, is not named. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../../src/device/device_i.h"
#include "../t.h"
#include "fake_tree.h"

static char sys_[PATH_MAX + 8], proc[PATH_MAX + 8];

static void usb_dev(const char *name, const char *vid, const char *pid)
{
	char d[256], f[300];
	snprintf(d, sizeof d, "sys/bus/usb/devices/%s", name);
	mkdirs(d);
	snprintf(f, sizeof f, "%s/idVendor", d);
	put(f, vid);
	snprintf(f, sizeof f, "%s/idProduct", d);
	put(f, pid);
	/* the interface is a directory of the device (and a link beside it
	 * in bus/usb/devices, which the scan skips) */
	snprintf(d, sizeof d, "sys/bus/usb/devices/%s/%s:1.0", name, name);
	mkdirs(d);
	snprintf(d, sizeof d, "sys/bus/usb/devices/%s:1.0", name);
	mkdirs(d);
}

static char out[1024];

static void t_brltty(void)
{
	usb_dev("1-1.2", "10c4\n", "ea60\n");
	mkdirs("proc/4242");
	put("proc/4242/comm", "brltty\n");
	mkdirs("proc/1");
	put("proc/1/comm", "init\n");
	CHECK_EQ(dev_ttyless_bridges(sys_, proc, out, sizeof out), 1);
	CHECK_MSG(strstr(out, "brltty took the port") != NULL, "%s", out);
	CHECK_MSG(strstr(out, "10c4:ea60 at USB 1-1.2") != NULL, "%s", out);
	CHECK_MSG(strstr(out, "pid 4242") != NULL, "%s", out);
}

static void t_no_driver(void)
{
	put("proc/4242/comm", "bash\n");
	CHECK_EQ(dev_ttyless_bridges(sys_, proc, out, sizeof out), 1);
	CHECK_MSG(strstr(out, "brltty") == NULL, "%s", out);
	CHECK_MSG(strstr(out, "cp210x") != NULL, "%s", out);
}

static void t_with_tty(void)
{
	mkdirs("sys/bus/usb/devices/1-1.2/1-1.2:1.0/ttyUSB0");
	usb_dev("1-1.3", "303a\n", "1001\n");   /* native USB: not a bridge */
	mkdirs("sys/bus/usb/devices/1-1.4");    /* a hub without ids */
	put("proc/4242/comm", "brltty\n");
	CHECK_EQ(dev_ttyless_bridges(sys_, proc, out, sizeof out), 0);
	CHECK_STR(out, "");
}

static void t_ch340(void)
{
	usb_dev("3-2", "1a86\n", "7523\n");
	CHECK_EQ(dev_ttyless_bridges(sys_, proc, out, sizeof out), 1);
	CHECK_MSG(strstr(out, "1a86:7523 at USB 3-2") != NULL, "%s", out);
}

int main(void)
{
	snprintf(root, sizeof root, "/tmp/espfs-brltty.XXXXXX");
	if (!mkdtemp(root))
		return 1;
	snprintf(sys_, sizeof sys_, "%s/sys", root);
	snprintf(proc, sizeof proc, "%s/proc", root);
	t_run("a CP210x without a tty while brltty runs: brltty took the port", t_brltty);
	t_run("without brltty: no driver, the module named", t_no_driver);
	t_run("a bridge with its tty and a native-USB chip are not named", t_with_tty);
	t_run("a CH340 without a tty", t_ch340);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	if (system(cmd) != 0)
		return 1;
	return t_done();
}
