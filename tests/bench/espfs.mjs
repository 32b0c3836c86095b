// espfs under measurement: mount with simulated devices (timing model on),
// timed cp, byte counters (wirecount.c), peak RSS, and an unmount that
// happens whatever goes wrong (see cleanup in bench.mjs).
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';

export const live = new Set();   // mounts to tear down on any exit
export const cps = new Set();    // cp processes in flight, likewise

const SLOT = 64 + 4 * 24, SLOTS = 64;    // struct wire_slot in wirecount.c

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function mounted(mnt) {
	return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
		.some((l) => l.split(' ')[4] === mnt);
}

export class Mount {
	/** sims: [{ chip, name, flash }]; resolves once every device folder is
	 * there (espfs serves only after attaching what it was given). */
	static async start({ bin, dir, sims, baud, stubDir }) {
		const mnt = path.join(dir, 'mnt');
		fs.mkdirSync(mnt, { recursive: true });
		const wireFile = path.join(dir, 'wire.bin');
		const args = ['-f', '--no-scan'];
		if (stubDir) args.push('--stub-dir', stubDir);
		if (baud) args.push('--baud', String(baud));
		for (const s of sims) args.push('--sim', `${s.chip},timing,name=${s.name},flash=${s.flash}`);
		args.push(mnt);
		const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ESPFS_BENCH_WIRE: wireFile } });
		const m = new Mount(proc, mnt, wireFile);
		live.add(m);
		proc.stderr.on('data', (d) => { m.log = (m.log + d).slice(-4000); });
		const t0 = Date.now();
		while (!mounted(mnt)) {
			if (m.exit) throw new Error(`espfs exited before mounting: ${m.log}`);
			if (Date.now() - t0 > 30000) throw new Error(`espfs did not mount in 30 s: ${m.log}`);
			await sleep(20);
		}
		const names = sims.map((s) => s.name);
		while (!names.every((n) => fs.existsSync(path.join(mnt, n, 'flash.bin')))) {
			if (Date.now() - t0 > 60000) throw new Error(`devices ${names} did not appear in 60 s: ${m.log}`);
			await sleep(20);
		}
		m.ready_s = (Date.now() - t0) / 1000;
		return m;
	}

	constructor(proc, mnt, wireFile) {
		this.proc = proc;
		this.mnt = mnt;
		this.wireFile = wireFile;
		this.log = '';
		this.exit = null;
		this.exited = new Promise((r) => proc.once('exit', (code, sig) => { this.exit = { code, sig }; r(); }));
	}

	/** Peak resident set so far (VmHWM) and the current split (RssAnon:
	 * espfs's own heap and stacks; RssFile/RssShmem: mostly the simulated
	 * devices' flash files, mapped in-process), in KiB. */
	memory() {
		const st = fs.readFileSync(`/proc/${this.proc.pid}/status`, 'utf8');
		const kib = (k) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(st)?.[1] ?? NaN);
		return { vmhwm: kib('VmHWM'), anon: kib('RssAnon'), file: kib('RssFile'), shmem: kib('RssShmem') };
	}

	/** Bytes so far with device `name`: [{ baud, up, down }] (baud 0 = USB). */
	wire(name) {
		let buf;
		try { buf = fs.readFileSync(this.wireFile); } catch { return null; }
		for (let i = 0; i < SLOTS && (i + 1) * SLOT <= buf.length; i++) {
			const s = buf.subarray(i * SLOT, (i + 1) * SLOT);
			const nm = s.subarray(0, 64).toString('latin1').replace(/\0.*$/s, '');
			if (!nm.endsWith(`-${name}`)) continue;
			const out = [];
			for (let b = 0; b < 4; b++) {
				const o = 64 + b * 24;
				if (!s.readUInt32LE(o + 4)) continue;
				out.push({ baud: s.readUInt32LE(o), up: Number(s.readBigUInt64LE(o + 8)), down: Number(s.readBigUInt64LE(o + 16)) });
			}
			return out;
		}
		return [];
	}

	async stop() {
		if (mounted(this.mnt)) spawnSync('fusermount3', ['-u', this.mnt]);
		const t = setTimeout(() => this.proc.kill('SIGTERM'), 10000);
		const k = setTimeout(() => this.proc.kill('SIGKILL'), 15000);
		await this.exited;
		clearTimeout(t);
		clearTimeout(k);
		live.delete(this);
	}

	/** For the exit hook: synchronous and forgiving. */
	stopNow() {
		try { if (mounted(this.mnt)) spawnSync('fusermount3', ['-uz', this.mnt]); } catch { /* ok */ }
		try { if (!this.exit) this.proc.kill('SIGKILL'); } catch { /* gone */ }
	}
}

/** Difference of two wire() readings. */
export function wireDelta(a, b) {
	return b.map((x) => {
		const y = (a || []).find((w) => w.baud === x.baud) || { up: 0, down: 0 };
		return { baud: x.baud, up: x.up - y.up, down: x.down - y.down };
	}).filter((w) => w.up || w.down);
}

/** Run cp SRC DST; resolves with the wall time in seconds. */
export function timedCp(src, dst) {
	return new Promise((resolve, reject) => {
		const t0 = process.hrtime.bigint();
		const p = spawn('cp', [src, dst], { stdio: ['ignore', 'ignore', 'pipe'] });
		cps.add(p);
		let err = '';
		p.stderr.on('data', (d) => { err += d; });
		p.once('exit', (code) => {
			cps.delete(p);
			const s = Number(process.hrtime.bigint() - t0) / 1e9;
			if (code === 0) resolve(s); else reject(new Error(`cp ${src} ${dst}: exit ${code}: ${err.trim()}`));
		});
	});
}
