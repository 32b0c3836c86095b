/* Adapter between the device manager and the Improv serial client: device
 * identity at attach, and Wi-Fi provisioning for the `wifi` file.  The
 * password is passed through and never logged or kept. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "device_i.h"
#include "espfs/log.h"
#ifdef ESPFS_HAVE_IMPROV
#include "espfs/improv.h"
#endif

/* After a reset into the application the firmware needs a moment to boot
 * before it answers; ESPHome answers within a couple of seconds. */
#define INFO_TIMEOUT_MS 2500

#ifdef ESPFS_HAVE_IMPROV
/* Does this console line say the chip cannot start what is in flash?  The
 * ROM prints "invalid header: 0x..." for an erased or broken bootloader
 * (over and over, until its watchdog resets it); ESP-IDF's bootloader
 * prints "E (ms) boot: ..." / "E (ms) esp_image: ..." and restarts.  Either
 * way the chip loops and no application answers. */
static const char *boot_failure(const char *line)
{
	/* ESP-IDF colours its log lines: ESC [ 0 ; 3 1 m before the "E" */
	while (line[0] == '\x1b' && line[1] == '[') {
		const char *m = strchr(line, 'm');
		if (!m)
			break;
		line = m + 1;
	}
	if (strstr(line, "invalid header:"))
		return line;
	if (line[0] == 'E' && line[1] == ' ' && line[2] == '(') {
		const char *p = strchr(line, ')');
		if (p && (strstr(p, " boot:") || strstr(p, " esp_image:") || strstr(p, " flash_parts:")))
			return p[1] == ' ' ? p + 2 : p + 1;
	}
	return NULL;
}

static void scan_boot_log(const struct improv_client *c, char *out, size_t cap)
{
	out[0] = 0;
	for (unsigned i = 0; i < improv_console_count(&c->ps); i++) {
		const char *why = boot_failure(improv_console_line(&c->ps, i));
		if (why) {
			snprintf(out, cap, "%s", why);
			/* without the colour reset and the line end */
			for (char *p = out; *p; p++)
				if (*p == '\x1b' || *p == '\r' || *p == '\n') {
					*p = 0;
					break;
				}
			return;
		}
	}
}

static void fill_info(struct dev_improv_info *out, const struct improv_info *info)
{
	out->known = true;
	snprintf(out->firmware, sizeof out->firmware, "%s", info->firmware);
	snprintf(out->version, sizeof out->version, "%s", info->version);
	snprintf(out->chip, sizeof out->chip, "%s", info->chip);
	snprintf(out->name, sizeof out->name, "%s", info->name);
}
#endif

int dev_improv_get_info(esp_device *d, struct dev_improv_info *out, char *err, size_t errlen)
{
#ifdef ESPFS_HAVE_IMPROV
	struct improv_client c;
	struct improv_info info;
	improv_client_init(&c, d->tr);
	int rc = improv_get_state(&c, INFO_TIMEOUT_MS);
	out->state = rc;
	if (rc >= 0)
		rc = improv_device_info(&c, &info, INFO_TIMEOUT_MS);
	if (rc < 0) {
		scan_boot_log(&c, out->bootfail, sizeof out->bootfail);
		snprintf(err, errlen, "%s", c.msg[0] ? c.msg : strerror(-rc));
		return rc;
	}
	fill_info(out, &info);
	return 0;
#else
	(void)d;
	(void)out;
	snprintf(err, errlen, "Improv client not built");
	return -EOPNOTSUPP;
#endif
}

int dev_improv_provision(esp_device *d, const char *ssid, const char *pass, atomic_int *cancel,
			 struct dev_improv_info *info, bool identify, char *err, size_t errlen)
{
#ifdef ESPFS_HAVE_IMPROV
	struct improv_client c;
	improv_client_init(&c, d->tr);
	/* every wait of the client polls this (IMPROV_CANCEL_POLL_MS): a
	 * Ctrl-C on `echo ... > wifi` returns within ~0.1 s */
	c.cancel = cancel;
	int rc = improv_get_state(&c, IMPROV_AFTER_FLASH_TIMEOUT_MS);
	if (rc < 0)
		scan_boot_log(&c, info->bootfail, sizeof info->bootfail);
	if (rc < 0 && info->bootfail[0] && rc != -EINTR) {
		snprintf(err, errlen, "no Improv answer: the chip does not start (boot-looping: %s)",
			 info->bootfail);
		return rc;
	}
	if (rc < 0) {
		if (rc == -EINTR)
			snprintf(err, errlen, "wifi \"%s\": cancelled", ssid);
		else
			snprintf(err, errlen, "no Improv answer from the application: %s",
				 c.msg[0] ? c.msg : strerror(-rc));
		return rc;
	}
	info->state = rc;
	if (identify) {
		/* the app answered: who it is, for a device that was not
		 * identified at attach (a failure here changes nothing) */
		struct improv_info ii;
		if (improv_device_info(&c, &ii, INFO_TIMEOUT_MS) == 0)
			fill_info(info, &ii);
		else if (c.cancel && atomic_load(c.cancel))
			return -EINTR;
	}
	rc = improv_provision(&c, (const uint8_t *)ssid, strlen(ssid), (const uint8_t *)pass,
			      strlen(pass), 0);
	if (rc < 0) {
		/* no SSID: the reason shows in state, which every user may read,
		 * and an SSID may hold any bytes (docs/files.md) */
		snprintf(err, errlen, "wifi: %s",
			 rc == -EINTR ? "cancelled; the device may still join the network"
				      : c.msg[0] ? c.msg : strerror(-rc));
		return rc;
	}
	return 0;
#else
	(void)d;
	(void)ssid;
	(void)pass;
	(void)cancel;
	(void)info;
	(void)identify;
	snprintf(err, errlen, "Improv client not built");
	return -EOPNOTSUPP;
#endif
}

void dev_improv_apply(esp_device *d, const struct dev_improv_info *info)
{
	const struct esp_chip_info *chip = info->known ? esp_chip_by_name(info->chip) : NULL;
	pthread_mutex_lock(&d->lock);
	if (info->known)
		d->improv = *info;
	if (info->state == 4)  /* Improv "provisioned": it has a network */
		snprintf(d->wifi_status, sizeof d->wifi_status, "provisioned");
	else if (info->state >= 0)
		snprintf(d->wifi_status, sizeof d->wifi_status, "unprovisioned");
	if (chip && !d->id.chip) {
		d->id.chip = chip;
		if (!d->id.flash_size) {
			d->id.flash_size = chip->default_flash_size;
			d->flash_size_guessed = true;
		}
	}
	/* it started: no boot loop (any more) */
	if (info->known || info->state >= 0)
		d->bootwarn[0] = 0;
	pthread_mutex_unlock(&d->lock);
}
