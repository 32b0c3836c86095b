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
		snprintf(err, errlen, "%s", c.msg[0] ? c.msg : strerror(-rc));
		return rc;
	}
	out->known = true;
	snprintf(out->firmware, sizeof out->firmware, "%s", info.firmware);
	snprintf(out->version, sizeof out->version, "%s", info.version);
	snprintf(out->chip, sizeof out->chip, "%s", info.chip);
	snprintf(out->name, sizeof out->name, "%s", info.name);
	return 0;
#else
	(void)d;
	(void)out;
	snprintf(err, errlen, "Improv client not built");
	return -EOPNOTSUPP;
#endif
}

int dev_improv_provision(esp_device *d, const char *ssid, const char *pass, atomic_int *cancel,
			 char *err, size_t errlen)
{
	(void)cancel;  /* one RPC; the device gives up by itself after ~30 s */
#ifdef ESPFS_HAVE_IMPROV
	struct improv_client c;
	improv_client_init(&c, d->tr);
	int rc = improv_get_state(&c, IMPROV_AFTER_FLASH_TIMEOUT_MS);
	if (rc < 0) {
		snprintf(err, errlen, "no Improv answer from the application: %s",
			 c.msg[0] ? c.msg : strerror(-rc));
		return rc;
	}
	rc = improv_provision(&c, (const uint8_t *)ssid, strlen(ssid), (const uint8_t *)pass,
			      strlen(pass), 0);
	if (rc < 0) {
		/* no SSID: the reason shows in state, which every user may read,
		 * and an SSID may hold any bytes (docs/files.md) */
		snprintf(err, errlen, "wifi: %s", c.msg[0] ? c.msg : strerror(-rc));
		return rc;
	}
	return 0;
#else
	(void)d;
	(void)ssid;
	(void)pass;
	snprintf(err, errlen, "Improv client not built");
	return -EOPNOTSUPP;
#endif
}
