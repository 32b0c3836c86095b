/* espsim's TCP front ends (espsim_net.c): RFC 2217 or raw. */
#ifndef ESPSIM_NET_H
#define ESPSIM_NET_H
#include <signal.h>
#include <stdbool.h>
#include "espfs/sim.h"

/* A listening socket on 127.0.0.1:port (0: any free port); *bound_port
 * is the one it got.  Negative errno on failure. */
int espsim_listen(int port, int *bound_port);
/* Serve the device on it until *stop; closes lfd. */
void espsim_serve_net(sim_device *d, int lfd, bool telnet, volatile sig_atomic_t *stop);

#endif
