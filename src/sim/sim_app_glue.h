/* How the engine drives the application model (sim_app.h), or a minimal
 * stand-in when the app model is not built in. */
#ifndef ESPSIM_APP_GLUE_H
#define ESPSIM_APP_GLUE_H
#include "sim_priv.h"

/* Boots what is in flash; true when it runs (false: boot loop). */
bool sim_app_glue_boot(sim_device *d, uint64_t now_us, int cause);
void sim_app_glue_free(sim_device *d);
void sim_app_glue_poll(sim_device *d, uint64_t now_us);
void sim_app_glue_input(sim_device *d, const uint8_t *buf, size_t n, uint64_t now_us);
uint64_t sim_app_glue_next(sim_device *d);

#endif
