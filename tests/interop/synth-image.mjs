// A small synthetic ESP32 "factory" flash image (bootloader at 0x1000,
// partition table at 0x8000, an ESPHome-looking app at 0x10000), built
// here from the public formats so the Improv interop test runs without
// ../shared.  Formats: ESP-IDF docs "App Image Format" (esp_image_header_t,
// segments, XOR checksum seeded 0xEF on a 16-byte line, appended SHA-256,
// esp_app_desc_t) and "Partition Tables" (32-byte AA 50 rows, MD5 row EB EB).
import { createHash } from 'node:crypto';

const enc = new TextEncoder();

function u32(buf, off, v) {
	buf[off] = v & 0xff; buf[off + 1] = (v >>> 8) & 0xff;
	buf[off + 2] = (v >>> 16) & 0xff; buf[off + 3] = (v >>> 24) & 0xff;
}

function cstr(buf, off, s, cap) {
	const b = enc.encode(s);
	if (b.length >= cap) throw new Error(`${s} does not fit in ${cap} bytes`);
	buf.set(b, off);
}

/** esp_image_header_t + extended header, segments, checksum, SHA-256. */
function appImage(chipId, entry, segments) {
	const parts = [];
	const hdr = new Uint8Array(24);
	hdr[0] = 0xe9; hdr[1] = segments.length; hdr[2] = 2 /* DIO */; hdr[3] = 0x20 /* 4MB, 40m */;
	u32(hdr, 4, entry);
	hdr[8] = 0xee;                    // WP pin: not used
	hdr[12] = chipId & 0xff; hdr[13] = chipId >> 8;
	hdr[17] = 0xff; hdr[18] = 0xff;   // max_chip_rev_full: any
	hdr[23] = 1;                      // SHA-256 appended
	parts.push(hdr);
	let csum = 0xef;
	for (const { addr, data } of segments) {
		if (data.length % 4) throw new Error('segment length must be a multiple of 4');
		const sh = new Uint8Array(8);
		u32(sh, 0, addr); u32(sh, 4, data.length);
		parts.push(sh, data);
		for (const b of data) csum ^= b;
	}
	let len = parts.reduce((n, p) => n + p.length, 0);
	const pad = new Uint8Array(((len | 15) + 1) - len);   // checksum ends a 16-byte line
	pad[pad.length - 1] = csum;
	parts.push(pad);
	len += pad.length;
	const body = new Uint8Array(len);
	let o = 0;
	for (const p of parts) { body.set(p, o); o += p.length; }
	const sha = createHash('sha256').update(body).digest();
	const out = new Uint8Array(len + 32);
	out.set(body); out.set(sha, len);
	return out;
}

function partitionTable(rows) {
	const t = new Uint8Array(0xc00).fill(0xff);
	rows.forEach(([label, type, subtype, offset, size], i) => {
		const e = new Uint8Array(32);
		e[0] = 0xaa; e[1] = 0x50; e[2] = type; e[3] = subtype;
		u32(e, 4, offset); u32(e, 8, size);
		cstr(e, 12, label, 16);
		t.set(e, i * 32);
	});
	const o = rows.length * 32;
	t.fill(0xff, o, o + 16);
	t[o] = 0xeb; t[o + 1] = 0xeb;
	t.set(createHash('md5').update(t.subarray(0, o)).digest(), o + 16);
	return t;
}

/**
 * An ESP32 flash image whose app announces itself the way an ESPHome build
 * does (esp_app_desc_t, the "ESPHome version ... compiled on %s" banner,
 * "<name>.local", "improv_serial").  Returns { image, expect }.
 */
export function esp32EsphomeFactory({ name = 'interop-synth', esphomeVersion = '2099.1.0', project = 'interop.synth', projectVersion = '0.9.1' } = {}) {
	const desc = new Uint8Array(256);
	u32(desc, 0, 0xabcd5432);
	cstr(desc, 16, esphomeVersion, 32);
	cstr(desc, 48, name, 32);
	cstr(desc, 80, '00:00:00', 16);
	cstr(desc, 96, 'Jan  1 2099', 16);
	cstr(desc, 112, 'v4.4.7', 32);
	const strings = [
		`ESPHome version ${esphomeVersion} compiled on %s`,
		`Project ${project} version ${projectVersion}`,
		`${name}.local`,
		'Jan  1 2099, 00:00:00',
		'improv_serial',
	];
	const rodataText = enc.encode(`\0${strings.join('\0')}\0`);
	const rodata = new Uint8Array(desc.length + ((rodataText.length + 3) & ~3));
	rodata.set(desc);
	rodata.set(rodataText, desc.length);
	const iram = new Uint8Array(64).map((_, i) => (i * 37) & 0xff);
	const app = appImage(0, 0x40080000, [
		{ addr: 0x3f400020, data: rodata },
		{ addr: 0x40080000, data: iram },
	]);
	const boot = appImage(0, 0x40080400, [{ addr: 0x3fff0030, data: new Uint8Array(128).fill(0x5a) }]);
	const pt = partitionTable([
		['nvs', 1, 2, 0x9000, 0x5000],
		['factory', 0, 0, 0x10000, 0x100000],
	]);
	const image = new Uint8Array(0x10000 + app.length).fill(0xff);
	image.set(boot, 0x1000);
	image.set(pt, 0x8000);
	image.set(app, 0x10000);
	return { image, expect: { name, esphomeVersion, project, projectVersion } };
}
