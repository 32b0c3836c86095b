/* Baud negotiation: the fastest rate the link sustains (PROTOCOL.md A14).
 *
 * A rate can fail in two ways: the host port refuses it (a USB-UART bridge
 * without that divider: set_baud fails, so we find out before telling the
 * device), or the line garbles at it (cable, level shifter, a bridge that
 * accepts the setting but cannot keep up).  The second is found by a probe
 * after the change, with the device already at the bad rate.  Getting it
 * back: send it CHANGE_BAUDRATE at that rate (a short frame sometimes
 * gets through a marginal link; a device at another rate ignores it) and
 * probe at the lower one, a few times.  When that fails and the port has
 * DTR/RTS, reset the chip into its ROM at the rate we started from, start
 * the stub again from the loader's copy, and change to the lower rate from
 * a link that works.  Commands are never queued ahead: one CHANGE_BAUDRATE
 * at a time, since a legacy stub computes its new divider from the one it
 * has, and a second copy processed after the first switch would be off. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "loader_priv.h"

#define PROBE_READS 4
#define PROBE_TMO_MS 200u
#define QUICK_TMO_MS 60u
#define STEP_DOWN_TRIES 4

static const uint32_t ladder[] = { 3000000, 2000000, 1500000, 921600, 460800, 230400, 115200 };
#define N_LADDER (sizeof ladder / sizeof ladder[0])

/* One READ_REG round trip.  What it takes beyond its bytes' wire time is
 * the port's turnaround (USB-UART bridges: ~1 ms; an FTDI chip with its
 * default 16 ms latency timer: up to 16 ms), which the block planner
 * weighs against shorter blocks (loader_blocks.c). */
static bool read_magic(esp_loader *l, uint32_t want, uint32_t tmo_ms)
{
	uint32_t v = 0;
	uint8_t p[4];
	esp__put32(p, ESP_CHIP_DETECT_MAGIC_REG);
	uint64_t t0 = esp_now_us(l->t->clock);
	bool ok = esp_loader_command(l, ESP_READ_REG, p, 4, 0, tmo_ms, &v, NULL, 0, 0) == 0 && v == want;
	if (ok && l->t->baud && !(l->t->flags & ESP_TR_NATIVE_USB)) {
		/* 14 bytes out, 14 back (header, value, status, SLIP ends) */
		uint64_t wire = 28ull * 10000000u / l->t->baud, rtt = esp_now_us(l->t->clock) - t0;
		uint32_t extra = rtt > wire ? (uint32_t)(rtt - wire) : 0;
		if (!l->turnaround_us || extra < l->turnaround_us)
			l->turnaround_us = extra ? extra : 1;
	}
	return ok;
}

/* Several round trips that must all come back intact: one garbled byte
 * in any of them fails the rate. */
static bool probe(esp_loader *l, uint32_t want)
{
	for (int i = 0; i < PROBE_READS; i++)
		if (!read_magic(l, want, PROBE_TMO_MS))
			return false;
	return true;
}

/* Tell a device that may be at any of from[0..n) to go to rate to. */
static bool step_down(esp_loader *l, const uint32_t *from, int n, uint32_t to, uint32_t magic)
{
	for (int t = 0; t < STEP_DOWN_TRIES; t++) {
		for (int i = n - 1; i >= 0; i--) {
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
			esp_sleep_ms(l->t->clock, 30);
			esp_tr_flush_input(l->t);
			slip_reader_flush(&l->rd);
			/* one quick look first: most tries fail here */
			if (read_magic(l, magic, QUICK_TMO_MS) && probe(l, magic))
				return true;
		}
	}
	return false;
}

/* Last resort: reset the chip (ROM at the rate we started from), start
 * the stub again if one was running, then change to rate to. */
static bool relink(esp_loader *l, uint32_t start, uint32_t to, uint32_t magic)
{
	bool had_stub = l->stub;
	if ((l->t->flags & ESP_TR_NO_LINES) || (had_stub && !l->kept_stub.text))
		return false;
	if (esp_tr_set_baud(l->t, start) < 0 || esp_loader_connect(l, ESP_RESET_AUTO, 0) < 0)
		return false;
	if (had_stub && !l->stub && esp_loader_run_stub(l, &l->kept_stub) < 0)
		return false;
	if (to != start && esp_loader_change_baud(l, to) < 0)
		return false;
	return probe(l, magic);
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
		/* garbled before on this port: stay below that */
		uint32_t w = 0;
		for (size_t i = 0; i < N_LADDER && !w; i++)
			if (ladder[i] < l->baud_cap)
				w = ladder[i];
		wanted = w;
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
	/* rates the device may be at after a failed change (all garbled);
	 * empty: it is at cur and the link works */
	uint32_t tried[N_LADDER + 1];
	int nt = 0;
	for (int i = 0; i < nc; i++) {
		uint32_t c = cand[i];
		/* can the host port do it at all?  Ask it before the device */
		if (esp_tr_set_baud(l->t, c) < 0)
			continue;
		if (nt == 0) {
			if ((rc = esp_tr_set_baud(l->t, cur)) < 0) {
				esp__err(l, "port cannot go back to %u baud: %s", cur, strerror(-rc));
				return rc;
			}
			if ((rc = esp_loader_change_baud(l, c)) < 0)
				return rc;   /* no answer at a rate that worked: not a rate problem */
			if (probe(l, magic))
				return (int)c;
		} else if (step_down(l, tried, nt, c, magic) || relink(l, cur, c, magic)) {
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
	if (step_down(l, tried, nt, cur, magic) || relink(l, cur, cur, magic))
		return (int)cur;
	esp__err(l, "lost the link while trying faster baud rates (down to %u); "
		 "reset the chip and connect again", tried[nt - 1]);
	return -EPROTO;
}
