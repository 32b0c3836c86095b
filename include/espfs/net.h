/* Remote serial ports, named as esptool/pyserial name them:
 *   rfc2217://HOST:PORT   a serial port behind an RFC 2217 server (ser2net,
 *                         esp_rfc2217_server, espsim --rfc2217): baud rate,
 *                         DTR/RTS (auto-reset) and purges travel with the data
 *   socket://HOST:PORT    raw TCP to a port server: bytes only (no resets,
 *                         the rate is the server's: set_baud refuses others)
 * A query string (?...) after the port is ignored, as pyserial's options
 * do not apply here. */
#ifndef ESPFS_NET_H
#define ESPFS_NET_H
#include <stdbool.h>
#include "espfs/transport.h"

/* Connect and negotiate within the timeouts of net.c.  On failure err
 * says why ("connection refused", "no RFC 2217 from the server", ...) and
 * the return is a negative errno (-ECONNREFUSED, -ETIMEDOUT, -EINVAL for a
 * malformed URL, -EPROTO when the server does not do RFC 2217). */
int esp_net_open(const char *url, uint32_t baud, const esp_clock *clock, esp_transport **out,
		 char *err, size_t errlen);

/* Whether a --port argument is one of the URLs above (not a path). */
bool esp_net_is_url(const char *port);

#endif
