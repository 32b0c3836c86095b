// The simulator's timing model, read from its source so the bounds follow
// any change there: NOR timings (T_* in timing.c), geometry (SIM_SECTOR,
// SIM_BLOCK, SIM_PAGE) and the link model (sim_byte_ns: 10 bits a byte at
// the baud on a UART, 1000 ns a byte on native USB), wherever in src/sim
// they live.
import fs from 'node:fs';
import path from 'node:path';

function grab(text, re, what) {
	const m = re.exec(text);
	if (!m) throw new Error(`bench: cannot find ${what} in the sim sources (model.mjs needs updating)`);
	return m;
}

export function loadModel(srcRoot) {
	const dir = path.join(srcRoot, 'src/sim');
	const all = fs.readdirSync(dir).filter((f) => /\.[ch]$/.test(f)).sort()
		.map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).join('\n');
	const ms = (name) => Number(grab(all, new RegExp(`#define ${name}\\s+\\((\\d+) \\* NS_PER_MS\\)`), name)[1]) * 1e-3;
	const geo = (name) => Number(grab(all, new RegExp(`#define ${name}\\s+(\\d+)u`), name)[1]);
	const m = {
		sectorErase: ms('T_SECTOR_ERASE'),
		blockErase: ms('T_BLOCK_ERASE'),
		pageProgram: Number(grab(all, /#define T_PAGE_PROGRAM\s+\((\d+) \* 1000ull\)/, 'T_PAGE_PROGRAM')[1]) * 1e-6,
		readByte: Number(grab(all, /#define T_READ_BYTE\s+(\d+)ull/, 'T_READ_BYTE')[1]) * 1e-9,
		sector: geo('SIM_SECTOR'),
		block: geo('SIM_BLOCK'),
		page: geo('SIM_PAGE'),
		bitsPerByte: Number(grab(all, /sim_byte_ns\([^)]*\)\s*\{[^}]*?return (\d+)000000000ull \/ \(d->dev_baud/, 'UART byte time')[1]),
		usbByte: Number(grab(all, /sim_byte_ns\([^)]*\)\s*\{[^}]*?return (\d+);\s+\/\* ~1 MB\/s over USB/, 'USB byte time')[1]) * 1e-9,
	};
	return m;
}

/** Seconds to carry `bytes` at `baud` (0 = native USB). */
export function wireSeconds(m, bytes, baud) {
	return baud ? bytes * m.bitsPerByte / baud : bytes * m.usbByte;
}

/** Erase time the stub needs for [off, off+len): 64 KiB blocks where
 * aligned and whole, 4 KiB sectors elsewhere (sim_t_erase). */
export function eraseSeconds(m, off, len) {
	let t = 0;
	let a = Math.floor(off / m.sector) * m.sector;
	const end = Math.ceil((off + len) / m.sector) * m.sector;
	while (a < end) {
		if (a % m.block === 0 && end - a >= m.block) { t += m.blockErase; a += m.block; } else { t += m.sectorErase; a += m.sector; }
	}
	return t;
}

export const programSeconds = (m, len) => Math.ceil(len / m.page) * m.pageProgram;
export const readSeconds = (m, len) => len * m.readByte;

/**
 * Bounds for one operation.  wire: [{ baud, up, down }] (bytes per rate);
 * device: seconds the flash itself must spend (erase+program, or reads).
 * overlap: the link runs both directions at once and the stub programs one
 * block while the next arrives, so nothing can beat the longest of the
 * three.  serial: the three one after the other (no pipelining at all).
 */
export function bounds(m, wire, device) {
	let up = 0, down = 0;
	for (const w of wire) { up += wireSeconds(m, w.up, w.baud); down += wireSeconds(m, w.down, w.baud); }
	return { up_s: up, down_s: down, device_s: device, overlap_s: Math.max(up, down, device), serial_s: up + down + device };
}
