/* Attribute files: the text a read returns (from the device's cache, never
 * from the chip).  The parsers for values written to `wifi`, `erase` and
 * `state` are in parse.c (callable without FUSE, fuzzed). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vfs.h"

char *attr_text(struct node *n, size_t *len, bool secrets)
{
	char buf[4096];  /* the state line with its warnings, never cut */
	struct dev_identity id;
	size_t l = 0;
	char *out;
	switch (n->kind) {
	case N_CHIP:
		device_identity(n->dev, &id);
		l = (size_t)snprintf(buf, sizeof buf, "%s\n", id.chip ? id.chip->name : "unknown");
		break;
	case N_MAC:
		device_identity(n->dev, &id);
		if (id.known)
			l = (size_t)snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x\n", id.mac[0],
					     id.mac[1], id.mac[2], id.mac[3], id.mac[4], id.mac[5]);
		else
			l = (size_t)snprintf(buf, sizeof buf, "unknown\n");
		break;
	case N_STATE:
		l = device_state_text(n->dev, buf, sizeof buf);
		break;
	case N_WIFI:
		l = device_wifi_text(n->dev, buf, sizeof buf);
		break;
	case N_INFO:
		out = device_info_json(n->dev, secrets);
		*len = out ? strlen(out) : 0;
		return out;
	case N_PTCSV:
		return device_partitions_csv(n->dev, len);
	default:
		*len = 0;
		return NULL;
	}
	out = malloc(l + 1);
	if (out)
		memcpy(out, buf, l + 1);
	*len = out ? l : 0;
	return out;
}
