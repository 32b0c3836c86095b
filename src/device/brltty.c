/* USB serial bridges that are plugged in but have no tty: brltty (the
 * braille display daemon, installed by default on many desktops) claims
 * CP210x and CH340 adapters as braille displays, so their /dev/ttyUSB*
 * vanishes right after it appears and no serial tool sees the board (the
 * most common "my board is not found" report in esptool's and espflash's
 * trackers).  What can be seen: the USB device in sysfs with none of its
 * interfaces bound to a tty, and a process named brltty running. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include "device_i.h"
#include "espfs/log.h"
#include "espfs/sysfs.h"
#include "espfs/transport.h"

/* The bridges brltty's udev rules claim among those on ESP boards, and the
 * rest we look for (a bridge without a tty and without brltty: no driver). */
static bool bridge(unsigned vid, unsigned pid)
{
	if (vid == 0x10c4)
		return pid == 0xea60;
	if (vid == 0x1a86)
		return pid == 0x7523 || pid == 0x5523 || pid == 0x55d4 || pid == 0x55d3;
	if (vid == 0x0403)
		return pid == 0x6001 || pid == 0x6010 || pid == 0x6011 || pid == 0x6014 ||
		       pid == 0x6015;
	return false;
}

static unsigned read_hex(const char *dir, const char *name)
{
	char p[1000];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return esp_sysfs_hex(p);
}

/* Does any interface of the USB device at dir (e.g. .../1-1.2) have a
 * tty: "1-1.2:1.0/ttyUSB0" (usb-serial) or "1-1.2:1.0/tty/ttyACM0"? */
static bool has_tty(const char *dir, const char *name)
{
	DIR *d = opendir(dir);
	if (!d)
		return false;
	bool found = false;
	size_t nl = strlen(name);
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		if (strncmp(e->d_name, name, nl) || e->d_name[nl] != ':')
			continue;
		char ip[1000];
		snprintf(ip, sizeof ip, "%s/%s", dir, e->d_name);
		DIR *i = opendir(ip);
		if (!i)
			continue;
		struct dirent *f;
		while ((f = readdir(i)))
			if (!strncmp(f->d_name, "tty", 3)) {
				found = true;
				break;
			}
		closedir(i);
	}
	closedir(d);
	return found;
}

int dev_ttyless_bridges(const char *sysroot, const char *proc, char *out, size_t cap)
{
	char base[400];
	snprintf(base, sizeof base, "%s/bus/usb/devices", sysroot);
	if (cap)
		out[0] = 0;
	DIR *d = opendir(base);
	if (!d)
		return 0;
	int n = 0;
	size_t used = 0;
	long brl = -1;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || strchr(e->d_name, ':'))
			continue;  /* interfaces are "1-1.2:1.0" */
		char dir[700];
		snprintf(dir, sizeof dir, "%s/%s", base, e->d_name);
		unsigned vid = read_hex(dir, "idVendor"), pid = read_hex(dir, "idProduct");
		if (!bridge(vid, pid) || has_tty(dir, e->d_name))
			continue;
		if (brl < 0)
			brl = esp_process_running(proc, "brltty");
		int k = snprintf(out + used, cap - used, "%s", used ? "; " : "");
		if (k > 0 && (size_t)k < cap - used)
			used += (size_t)k;
		if (brl > 0)
			k = snprintf(out + used, cap - used,
				     "brltty took the port: adapter %04x:%04x at USB %s has no tty, "
				     "brltty (pid %ld) claims it as a braille display; remove brltty "
				     "(espfs(1), BRLTTY)",
				     vid, pid, e->d_name, brl);
		else
			k = snprintf(out + used, cap - used,
				     "adapter %04x:%04x at USB %s has no tty: no driver took it "
				     "(kernel module %s?)", vid, pid, e->d_name,
				     vid == 0x10c4 ? "cp210x" : vid == 0x0403 ? "ftdi_sio" :
				     pid == 0x55d4 || pid == 0x55d3 ? "cdc_acm/ch343" : "ch341");
		if (k > 0 && (size_t)k < cap - used)
			used += (size_t)k;
		n++;
	}
	closedir(d);
	return n;
}

void dev_note_ttyless_bridges(void)
{
	/* one scanning thread: what was said last time is enough memory */
	static char said[600];
	char now[600];
	if (dev_ttyless_bridges("/sys", "/proc", now, sizeof now) > 0 && strcmp(now, said))
		LOGW("%s", now);
	snprintf(said, sizeof said, "%s", now);
}
