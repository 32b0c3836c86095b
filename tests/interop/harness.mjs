// The interop harness: TAP output, one temp dir and one espsim per case, and
// cleanup that happens whatever the client does (throws, hangs, leaves
// handles open).  Every test file is `await runCases([cases])`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { PtySerialPort } from './webserial-shim.mjs';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
const live = new Set();           // child processes to kill on any exit
const liveDirs = new Set();       // temp dirs to remove on any exit

// TAP owns stdout; the clients' own console chatter goes to stderr.
const tapOut = (line) => process.stdout.write(`${line}\n`);
for (const k of ['log', 'info', 'debug', 'warn', 'error', 'trace'])
	console[k] = (...a) => process.stderr.write(`${a.map(String).join(' ')}\n`);

process.on('exit', () => {
	for (const p of live) try { p.kill('SIGKILL'); } catch { /* gone */ }
	for (const d of liveDirs) try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* ok */ }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
	process.on(sig, () => process.exit(1));

/* ---------- what is available ---------- */

export function espsimPath() {
	const cands = [];
	if (process.env.ESPSIM) cands.push(process.env.ESPSIM);
	if (process.env.ESPFS_BUILD) cands.push(path.join(process.env.ESPFS_BUILD, 'src/sim/espsim'));
	for (const c of cands) {
		try { fs.accessSync(c, fs.constants.X_OK); return c; } catch { /* next */ }
	}
	return null;
}

let helpText = null;
/** espsim's --help text (empty when it has none); used to see which
 * optional flags (--mac, --fault) this build of espsim accepts. */
export function espsimHelp() {
	if (helpText !== null) return helpText;
	const exe = espsimPath();
	helpText = '';
	if (!exe) return helpText;
	const r = spawnSync(exe, ['--help'], { encoding: 'utf8', timeout: 3000 });
	helpText = `${r.stdout || ''}${r.stderr || ''}`;
	return helpText;
}

export function sharedFile(rel) {
	const root = process.env.ESPFS_SHARED;
	if (!root) return { skip: 'ESPFS_SHARED is not set' };
	const p = path.join(root, rel);
	if (!fs.existsSync(p)) return { skip: `${p} is absent` };
	return { path: p };
}

export function nodeModulesMissing() {
	for (const pkg of ['esptool-js', 'esp-web-flasher', 'improv-wifi-serial-sdk'])
		if (!fs.existsSync(path.join(HERE, 'node_modules', pkg, 'package.json')))
			return `tests/interop/node_modules/${pkg} is missing (run tests/deps.sh)`;
	return null;
}

/* ---------- espsim ---------- */

export class Sim {
	constructor(proc, link, slave, dir) {
		this.proc = proc;
		this.link = link;
		this.slave = slave;
		this.dir = dir;
		this.stderr = '';
		this.exit = null;
		this.exited = new Promise((resolve) => proc.once('exit', (code, sig) => {
			live.delete(proc);
			this.exit = { code, sig };
			resolve(this.exit);
		}));
	}

	/** SIGTERM, then SIGKILL if it does not go within 5 s.  The flash file is
	 * only guaranteed complete after this. */
	async stop() {
		if (this.exit) return this.exit;
		this.proc.kill('SIGTERM');
		const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
		const r = await this.exited;
		clearTimeout(t);
		return r;
	}
}

/** Start espsim; resolves once it printed the slave path. */
export async function startSim(t, { chip, flash, app = false, wifi = [], improv = false, extra = [] }) {
	const exe = espsimPath();
	if (!exe) throw new Error('espsim is not built');
	const link = path.join(t.dir, `tty-${chip}`);
	const args = ['--chip', chip, '--link', link, '--flash', flash];
	if (app) args.push('--app');
	for (const w of wifi) args.push('--wifi', w);
	if (improv) args.push('--improv');
	args.push(...extra);
	const proc = spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] });
	live.add(proc);
	const sim = new Sim(proc, link, null, t.dir);
	t.sims.push(sim);
	proc.stderr.on('data', (d) => { sim.stderr = (sim.stderr + d).slice(-8192); });
	let out = '';
	sim.slave = await new Promise((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error(`espsim did not print its slave path in 10 s; stderr: ${sim.stderr}`)), 10000);
		proc.stdout.on('data', (d) => {
			out += d;
			const nl = out.indexOf('\n');
			if (nl >= 0) { clearTimeout(timer); resolve(out.slice(0, nl).trim()); }
		});
		proc.once('exit', (code, sig) => {
			clearTimeout(timer);
			reject(new Error(`espsim ${args.join(' ')} exited (${code ?? sig}) before it was ready; stderr: ${sim.stderr}`));
		});
	});
	proc.stdout.resume();
	if (!fs.existsSync(link))
		throw new Error(`espsim printed ${sim.slave} but the link ${link} does not exist`);
	return sim;
}

/** A shim port on the sim's link; the case's cleanup closes it. */
export function openPort(t, link) {
	const port = new PtySerialPort(link);
	t.ports.push(port);
	return port;
}

/* ---------- TAP ---------- */

let n = 0;
let failed = 0;
export function ok(cond, name, diag) {
	n++;
	if (!cond) failed++;
	tapOut(`${cond ? 'ok' : 'not ok'} ${n} - ${name}`);
	if (!cond && diag !== undefined) comment(diag);
	return !!cond;
}
export function skip(name, reason) {
	n++;
	tapOut(`ok ${n} - ${name} # SKIP ${reason}`);
}
export function comment(text) {
	for (const line of String(text).split('\n')) tapOut(`# ${line}`);
}
/** Byte comparison that names the first difference. */
export function sameBytes(actual, expected, name) {
	let diag;
	let same = actual.length >= expected.length;
	if (!same) diag = `only ${actual.length} of ${expected.length} bytes`;
	else {
		for (let i = 0; i < expected.length; i++) {
			if (actual[i] !== expected[i]) {
				same = false;
				diag = `first difference at 0x${i.toString(16)}: got 0x${actual[i].toString(16)}, want 0x${expected[i].toString(16)}`;
				break;
			}
		}
	}
	return ok(same, name, diag);
}

/** A logger every client accepts (esptool-js terminal, esp-web-flasher and
 * improv loggers); keeps the last lines for failure diagnostics. */
export function makeLog() {
	const lines = [];
	const add = (...a) => {
		lines.push(a.map((x) => (typeof x === 'string' ? x : (() => { try { return JSON.stringify(x); } catch { return String(x); } })())).join(' '));
		if (lines.length > 200) lines.shift();
	};
	return {
		lines,
		log: add, error: add, debug: () => {},
		clean: () => {}, writeLine: add, write: add,
		tail: (k = 15) => lines.slice(-k).join('\n'),
	};
}

/** Run cases in order.  A case: { name, timeout (ms), skip(): reason|null,
 * run: async (t) => {...} }.  t has dir (temp), sims, ports, log. */
export async function runCases(cases) {
	// meson kills us at 120 s; leave first, through the exit hooks above
	setTimeout(() => {
		tapOut('Bail out! interop test file exceeded 110 s');
		process.exit(1);
	}, 110000).unref();
	const nm = nodeModulesMissing();
	if (nm) { tapOut(`1..0 # SKIP ${nm}`); process.exit(0); }
	for (const c of cases) {
		const reason = c.skip ? c.skip() : null;
		if (reason) { skip(c.name, reason); continue; }
		const t = {
			dir: fs.mkdtempSync(path.join(os.tmpdir(), 'espfs-interop-')),
			sims: [], ports: [], log: makeLog(),
		};
		liveDirs.add(t.dir);
		const started = Date.now();
		let timer;
		try {
			await Promise.race([
				c.run(t),
				new Promise((_, reject) => {
					timer = setTimeout(() => reject(new Error(`timed out after ${c.timeout ?? 60000} ms`)), c.timeout ?? 60000);
				}),
			]);
			comment(`${c.name}: ${((Date.now() - started) / 1000).toFixed(2)} s`);
		} catch (e) {
			ok(false, `${c.name}: ${e && e.message ? e.message : e}`);
			comment(`client log tail:\n${t.log.tail()}`);
			for (const s of t.sims) if (s.stderr) comment(`espsim stderr:\n${s.stderr.slice(-2000)}`);
		} finally {
			clearTimeout(timer);
			for (const p of t.ports) await p.forceClose().catch(() => {});
			for (const s of t.sims) await s.stop();
			fs.rmSync(t.dir, { recursive: true, force: true });
			liveDirs.delete(t.dir);
		}
	}
	tapOut(`1..${n}`);
	// clients leave timers and listeners behind; do not wait for them
	process.exit(0);
}

/* ---------- data helpers ---------- */

export const md5hex = (bytes) => createHash('md5').update(bytes).digest('hex');

/** Deterministic pseudo-random bytes (xorshift32), so a failure reproduces. */
export function prngBytes(n, seed = 0x2545f491) {
	const out = new Uint8Array(n);
	let x = seed >>> 0 || 1;
	for (let i = 0; i < n; i++) {
		x ^= x << 13; x >>>= 0;
		x ^= x >>> 17;
		x ^= x << 5; x >>>= 0;
		out[i] = x & 0xff;
	}
	return out;
}

export function readFile(p) {
	return new Uint8Array(fs.readFileSync(p));
}

/** A blank (0xFF) flash file of `size` bytes with `image` at `offset`. */
export function makeFlashFile(p, size, image = null, offset = 0) {
	const buf = Buffer.alloc(size, 0xff);
	if (image) buf.set(image, offset);
	fs.writeFileSync(p, buf);
}

export function allFF(bytes, from, to) {
	for (let i = from; i < to; i++) if (bytes[i] !== 0xff) return i;
	return -1;
}

/* ---------- MAC the device should report ---------- */

// Values with real Espressif OUIs; espsim gets them with --mac when it has
// that flag, otherwise the test reads what espsim says it uses on stderr.
export const TEST_MACS = {
	esp32: '24:0a:c4:5e:a1:07',
	esp32c3: '84:f7:03:2b:19:c4',
	esp32s3: 'f4:12:fa:80:3d:5a',
	esp8266: '5c:cf:7f:a8:42:13',
	esp32s2: '7c:df:a1:0e:55:31',
	esp32c6: '40:4c:ca:41:9b:e0',
};

export function macArgs(chip) {
	return espsimHelp().includes('--mac') ? ['--mac', TEST_MACS[chip]] : [];
}

/** The MAC espsim uses, or null when it neither takes --mac nor tells. */
export function simMac(sim, chip) {
	if (espsimHelp().includes('--mac')) return TEST_MACS[chip];
	const m = /mac[\s=:]+([0-9a-f]{2}(?::[0-9a-f]{2}){5})/i.exec(sim.stderr);
	return m ? m[1].toLowerCase() : null;
}

export function checkMac(sim, chip, got, who) {
	const want = simMac(sim, chip);
	if (!want) {
		skip(`${who}: MAC matches espsim's`, 'espsim has no --mac and prints no MAC on stderr (asked in notes/sim-issues.md)');
		return;
	}
	ok(String(got).toLowerCase() === want, `${who}: MAC ${got} is espsim's (${want})`);
}
