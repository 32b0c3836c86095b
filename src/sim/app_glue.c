#include <string.h>
#include "sim_app_glue.h"
#ifdef SIM_HAVE_APP
#include "sim_app.h"

static int glue_flash_read(void *ctx, uint32_t off, uint8_t *buf, uint32_t len)
{
	sim_device *d = ctx;
	return sim_flash_read(&d->flash, off, buf, len);
}

static void glue_emit(void *ctx, const uint8_t *buf, size_t n)
{
	sim_device *d = ctx;
	sim_emit_at(d, buf, n, d->app_t_ns > d->now_ns ? d->app_t_ns : d->now_ns);
}

bool sim_app_glue_boot(sim_device *d, uint64_t now_us, int cause)
{
	struct sim_app_env env = {
		.chip = d->chip,
		.flash_read = glue_flash_read,
		.flash_ctx = d,
		.flash_size = d->flash_size,
		.wifi = d->cfg.wifi,
		.n_wifi = d->cfg.n_wifi,
		.improv_forced = d->improv,
		.echo = d->cfg.echo,
		.mac = d->mac,
		.emit = glue_emit,
		.emit_ctx = d,
		.now_us = now_us,
		.reset_cause = cause,
	};
	sim_app_glue_free(d);
	d->app_t_ns = now_us * 1000;
	d->app = sim_app_boot(&env);
	return d->app && sim_app_running(d->app);
}

void sim_app_glue_free(sim_device *d)
{
	if (d->app)
		sim_app_free(d->app);
	d->app = NULL;
}

void sim_app_glue_poll(sim_device *d, uint64_t now_us)
{
	d->app_t_ns = now_us * 1000;
	sim_app_poll(d->app, now_us);
}

void sim_app_glue_input(sim_device *d, const uint8_t *buf, size_t n, uint64_t now_us)
{
	d->app_t_ns = now_us * 1000;
	sim_app_input(d->app, buf, n, now_us);
}

uint64_t sim_app_glue_next(sim_device *d)
{
	return sim_app_next_event_us(d->app);
}

#else
/* Stand-in: a 2nd-stage bootloader that only checks the image magic. */
bool sim_app_glue_boot(sim_device *d, uint64_t now_us, int cause)
{
	uint8_t m = 0xFF;
	(void)cause;
	sim_flash_read(&d->flash, d->chip->bootloader_offset, &m, 1);
	bool ok = m == 0xE9;
	sim_emit_text(d, ok ? "espsim: app running (no app model built in)\r\n"
			    : "invalid header: 0xffffffff\r\n", now_us * 1000);
	return ok;
}
void sim_app_glue_free(sim_device *d) { d->app = NULL; }
void sim_app_glue_poll(sim_device *d, uint64_t now_us) { (void)d; (void)now_us; }
void sim_app_glue_input(sim_device *d, const uint8_t *buf, size_t n, uint64_t now_us)
{
	(void)d; (void)buf; (void)n; (void)now_us;
}
uint64_t sim_app_glue_next(sim_device *d) { (void)d; return UINT64_MAX; }
#endif
