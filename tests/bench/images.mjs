// The images flashed: the ESPHome factory images from $ESPFS_SHARED, or,
// when shared/ is absent, a synthetic image of the same size built from
// espfs-mkimage's bootable factory image plus deterministic filler.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

const FW = 'firmware/esphome-project-template/gh-pages-fd3bfd6';
const SHARED = {
	esp32: `${FW}/project-template-esp32/project-template-esp32.factory.bin`,
	esp32c3: `${FW}/project-template-esp32c3/project-template-esp32c3.factory.bin`,
};
const SYNTH_SIZE = { esp32: 1315200, esp32c3: 1367168 };   // as the shared ones

/** Filler that deflates roughly like firmware (~60%): 64-byte runs of
 * full-entropy, low-nibble-only and zero bytes (xorshift32, fixed seed). */
function filler(n, seed) {
	const out = Buffer.alloc(n);
	let x = seed >>> 0 || 1;
	const next = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
	let mask = 0xff;
	for (let i = 0; i < n; i++) {
		if (i % 64 === 0) mask = [0xff, 0x0f, 0x0f, 0x00][next() & 3];
		out[i] = next() & mask;
	}
	return out;
}

/** { chip, path, bytes, source } for each chip; writes synthetic ones to dir. */
export function images(chips, { build, dir }) {
	return chips.map((chip) => {
		const root = process.env.ESPFS_SHARED;
		const p = root && path.join(root, SHARED[chip]);
		if (p && fs.existsSync(p))
			return { chip, path: p, bytes: fs.readFileSync(p), source: `shared: ${SHARED[chip]}` };
		const out = path.join(dir, `synthetic-${chip}.bin`);
		const r = spawnSync(path.join(build, 'tests/mount/espfs-mkimage'), [chip, 'factory', out], { encoding: 'utf8' });
		if (r.status !== 0) throw new Error(`espfs-mkimage ${chip}: ${r.stderr}`);
		const base = fs.readFileSync(out);
		const start = 0x20000;   // inside the factory partition, after the app
		if (base.length > start) throw new Error(`synthetic ${chip} image is larger than expected`);
		const img = Buffer.alloc(SYNTH_SIZE[chip], 0xff);
		base.copy(img);
		filler(img.length - start, 0x5eed + chip.length).copy(img, start);
		fs.writeFileSync(out, img);
		return { chip, path: out, bytes: img, source: 'synthetic (shared/ absent): espfs-mkimage factory + filler' };
	});
}
