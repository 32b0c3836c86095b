/* Baud negotiation: the fastest rate the link sustains (PROTOCOL.md A14).
 *
 * A rate can fail in two ways: the host port refuses it (a USB-UART bridge
 * without that divider: set_baud fails, we find out before telling the
 * device), or the line garbles at it (cable, level shifter, a bridge that
 * accepts the setting but cannot keep up).  The second is found by a probe
 * after the change; the device is then at the bad rate, so the way down is
 * to send it CHANGE_BAUDRATE at that rate (short frames often get through
 * a marginal link; a device at another rate ignores them) and probe again
 * at the lower one, a few times, from every rate it may be at. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "loader_priv.h"

#define PROBE_READS 4
#define PROBE_TMO_MS 200u
#define STEP_DOWN_TRIES 3

static const uint32_t ladder[] = { 3000000, 2000000, 1500000, 921600, 460800, 230400, 115200 };
#define N_LADDER (sizeof ladder / sizeof ladder[0])

/* Several round trips that must all come back intact: one garbled byte
 * in any of them fails the rate. */
static bool probe(esp_loader *l, uint32_t want)
{
	for (int i = 0; i < PROBE_READS; i++) {
		uint32_t v = 0;
		uint8_t p[4];
		esp__put32(p, ESP_CHIP_DETECT_MAGIC_REG);
		if (esp_loader_command(l, ESP_READ_REG, p, 4, 0, PROBE_TMO_MS, &v, NULL, 0, 0) < 0 || v != want)
			return false;
	}
	return true;
}

/* Tell a device that may be at any of from[0..n) to go to rate to. */
static bool step_down(esp_loader *l, const uint32_t *from, int n, uint32_t to, uint32_t magic)
{
	for (int t = 0; t < STEP_DOWN_TRIES; t++) {
		for (int i = 0; i < n; i++) {
			uint8_t p[8];
			esp__put32(p, esp__baud_word(l, to));
			esp__put32(p + 4, l->stub ? from[i] : 0);
			if (esp_tr_set_baud(l->t, from[i]) < 0)
				continue;
			slip_reader_flush(&l->rd);
			if (esp__send(l, ESP_CHANGE_BAUDRATE, p, 8, 0) < 0)
				return false;
			/* the reply comes at from[i]; the device switches after it */
			esp_sleep_ms(l->t->clock, 20);
			if (esp_tr_set_baud(l->t, to) < 0)
				return false;
			esp_sleep_ms(l->t->clock, 50);
			esp_tr_flush_input(l->t);
			slip_reader_flush(&l->rd);
			if (probe(l, magic))
				return true;
		}
	}
	return false;
}

int esp_loader_negotiate_baud(esp_loader *l, uint32_t wanted)
{
	int rc = esp__need_chip(l);
	if (rc < 0)
		return rc;
	uint32_t cur = l->t->baud;
	/* USB CDC moves bytes at USB speed whatever the line coding says */
	if (l->t->flags & ESP_TR_NATIVE_USB)
		return (int)cur;
	if (!l->stub && !l->chip->rom_has_change_baud)
		return (int)cur;       /* ESP8266 ROM: only the stub can */
	if (!wanted)
		wanted = 921600;
	if (l->baud_cap && wanted >= l->baud_cap) {
		/* failed before on this port: stay below that */
		wanted = 0;
		for (size_t i = 0; i < N_LADDER; i++)
			if (ladder[i] < l->baud_cap) {
				wanted = ladder[i];
				break;
			}
	}
	if (wanted <= cur)
		return (int)cur;
	uint32_t magic = 0;
	if ((rc = esp_loader_read_reg(l, ESP_CHIP_DETECT_MAGIC_REG, &magic)) < 0)
		return rc;
	(void)esp__baud_word(l, cur);     /* learn the ROM clock fix while the link is good */

	/* candidates: wanted, then the standard rates between it and now */
	uint32_t cand[N_LADDER + 1];
	int nc = 0;
	cand[nc++] = wanted;
	for (size_t i = 0; i < N_LADDER; i++)
		if (ladder[i] < wanted && ladder[i] > cur)
			cand[nc++] = ladder[i];
	/* rates the device may be at after a failed change (all garbled) */
	uint32_t tried[N_LADDER + 1];
	int nt = 0;
	for (int i = 0; i < nc; i++) {
		uint32_t c = cand[i];
		/* can the host port do it at all?  Ask it before the device */
		if (esp_tr_set_baud(l->t, c) < 0)
			continue;
		if (nt == 0) {
			/* the link works at cur: an ordinary change */
			if ((rc = esp_tr_set_baud(l->t, cur)) < 0) {
				esp__err(l, "port cannot go back to %u baud: %s", cur, strerror(-rc));
				return rc;
			}
			if ((rc = esp_loader_change_baud(l, c)) < 0)
				return rc;   /* no answer at a rate that worked: not a rate problem */
			if (probe(l, magic))
				return (int)c;
		} else if (step_down(l, tried, nt, c, magic)) {
			return (int)c;
		}
		/* garbled at c: never try it or anything above on this port */
		l->baud_cap = c;
		tried[nt++] = c;
	}
	if (nt == 0) {
		/* every faster rate refused by the port: still at cur, intact */
		if ((rc = esp_tr_set_baud(l->t, cur)) < 0)
			return rc;
		return (int)cur;
	}
	if (step_down(l, tried, nt, cur, magic))
		return (int)cur;
	esp__err(l, "lost the link while trying faster baud rates (down to %u); "
		 "reset the chip and connect again", tried[nt - 1]);
	return -EPROTO;
}
