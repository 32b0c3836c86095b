/* The compressed-block planner (src/proto/loader_blocks.c): every plan
 * covers the stream exactly in blocks a stub accepts; it is used only
 * where the link, not the flash, is the bottleneck; and a port with a
 * slow turnaround gets fewer, longer blocks. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "t.h"
#include "../src/proto/loader_priv.h"

/* 1 MiB: stretches of near-constant data (DROM-like, compress ~10:1)
 * between stretches of noise (compress hardly at all) */
static uint8_t *image(size_t n, uint32_t seed)
{
	uint8_t *p = malloc(n);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (i / 0x8000) % 3 == 0 ? (uint8_t)(i % 7 == 0 ? seed >> 24 : 0x20) : (uint8_t)(seed >> 16);
	}
	return p;
}

struct plan {
	uint32_t *sizes;
	size_t n;
};

static struct plan plan_for(uint32_t baud, uint32_t flags, uint32_t turnaround, bool stub,
			    const uint8_t *z, size_t zlen, size_t raw)
{
	esp_transport t;
	memset(&t, 0, sizeof t);
	t.baud = baud;
	t.flags = flags;
	esp_loader *l = calloc(1, sizeof *l);
	l->t = &t;
	l->stub = stub;
	l->turnaround_us = turnaround;
	struct plan p = { 0, 0 };
	p.sizes = esp__plan_defl_blocks(l, 0x10000, z, zlen, raw, 0x4000, &p.n);
	free(l);
	return p;
}

static bool covers(struct plan p, size_t zlen)
{
	size_t sum = 0;
	for (size_t i = 0; i < p.n; i++) {
		if (!p.sizes[i] || p.sizes[i] > 0x4000)
			return false;
		sum += p.sizes[i];
	}
	return sum == zlen;
}

static void plans(void)
{
	size_t raw = 1u << 20;
	uint8_t *img = image(raw, 7);
	uLongf zlen = compressBound(raw);
	uint8_t *z = malloc(zlen);
	CHECK(compress2(z, &zlen, img, raw, 9) == Z_OK);

	struct plan fast = plan_for(921600, 0, 300, true, z, zlen, raw);
	struct plan slow = plan_for(921600, 0, 16000, true, z, zlen, raw);
	printf("# %lu stream bytes: %zu blocks at a 0.3 ms turnaround, %zu at 16 ms\n", (unsigned long)zlen,
	       fast.n, slow.n);
	CHECK(fast.sizes && covers(fast, zlen));
	CHECK(slow.sizes && covers(slow, zlen));
	CHECK(slow.n < fast.n);
	/* the first block travels while the flash has nothing to do */
	CHECK(fast.sizes[0] < 0x4000);

	/* no plan (fixed blocks) through the ROM, on native USB, at no baud */
	struct plan rom = plan_for(921600, 0, 300, false, z, zlen, raw);
	struct plan usb = plan_for(921600, ESP_TR_NATIVE_USB, 300, true, z, zlen, raw);
	CHECK(!rom.sizes && !usb.sizes);

	free(fast.sizes);
	free(slow.sizes);
	free(z);
	free(img);
}

int main(void)
{
	RUN(plans);
	return t_done();
}
