// espfs benchmark driver (run through run.sh, which builds what it needs).
//   node bench.mjs --build DIR [--quick] [--runs N] [--runs-long N]
//                  [--cases a,b,c,d,e] [--out FILE]
// Cases (all on the simulator with its timing model on):
//   a  flash a factory image, each tool at its default rate (115200)
//   b  the same at 921600 (esptool-js: CHANGE_BAUDRATE; espfs: --baud)
//   c  espfs re-flashing the identical image (second cp, at 921600)
//   d  full 4 MB dump at 921600 (cp from flash.bin; esptool-js readFlash)
//   e  1/4/8 devices flashed in parallel in one mount: wall time, chip
//      file latency meanwhile, espfs peak RSS
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadModel, bounds, eraseSeconds, programSeconds, readSeconds } from './model.mjs';
import { Mount, live, cps, wireDelta, timedCp } from './espfs.mjs';
import { images } from './images.mjs';
import { report } from './report.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TREE = path.resolve(HERE, '../..');   // node_modules, git

/* ---------- options ---------- */
const opt = { quick: false, runs: null, runsLong: null, cases: 'abcde', out: path.join(HERE, 'results/latest.json') };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
	const a = argv[i];
	if (a === '--build') opt.build = path.resolve(argv[++i]);
	else if (a === '--src') opt.src = path.resolve(argv[++i]);
	else if (a === '--rev') opt.rev = argv[++i];
	else if (a === '--quick') opt.quick = true;
	else if (a === '--runs') opt.runs = Number(argv[++i]);
	else if (a === '--runs-long') opt.runsLong = Number(argv[++i]);
	else if (a === '--cases') opt.cases = argv[++i].replace(/,/g, '');
	else if (a === '--out') opt.out = path.resolve(argv[++i]);
	else { process.stderr.write(`bench: unknown option ${a}\n`); process.exit(2); }
}
if (!opt.build) { process.stderr.write('bench: --build DIR is required (use run.sh)\n'); process.exit(2); }
const SRC = opt.src ?? TREE;                // what was built: sim constants
// short cases (< ~20 s a run) and long ones (115200 flashes, 4 MB dumps):
// the timing model makes runs repeat within ~2%, so one long run tells
opt.runs ??= opt.quick ? 1 : 3;
opt.runsLong ??= 1;
if (opt.quick) opt.cases = opt.cases.replace('a', '');
const CHIPS = opt.quick ? ['esp32'] : ['esp32', 'esp32c3'];
const PARALLEL = opt.quick ? [1, 8] : [1, 4, 8];
const FAST = 921600;

process.env.ESPSIM = path.join(opt.build, 'src/sim/espsim');
const ESPFS = path.join(opt.build, 'espfs-wire');
const STUBS = path.join(TREE, 'tests/interop/node_modules/esptool-js/lib/targets/stub_flasher');
for (const f of [ESPFS, process.env.ESPSIM, STUBS])
	if (!fs.existsSync(f)) { process.stderr.write(`bench: ${f} is missing (run.sh builds; tests/deps.sh installs node_modules)\n`); process.exit(2); }
const { esptoolFlash, esptoolDump } = await import('./esptool.mjs');   // after ESPSIM is set

/* ---------- cleanup on any exit ---------- */
// Work files on tmpfs where there is one: the simulated chips' flash and
// espfs-wire's counters are mapped files, and on a disk their writeback
// stalled the host now and then (latency probe spikes of up to ~14 ms with
// the counters on ext4, none over 8 ms on tmpfs); a real chip's flash is
// no file of the host's.
const TMP_ROOT = (() => { try { fs.accessSync('/dev/shm', fs.constants.W_OK); return '/dev/shm'; } catch { return os.tmpdir(); } })();
const TMP = fs.mkdtempSync(path.join(TMP_ROOT, 'espfs-bench-'));
const children = new Set();
process.on('exit', () => {
	for (const c of cps) try { c.kill('SIGKILL'); } catch { /* gone */ }
	for (const m of live) m.stopNow();
	for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ }
	fs.rmSync(TMP, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => process.exit(1));

/* ---------- helpers ---------- */
const model = loadModel(SRC);
const log = (s) => process.stderr.write(`bench: ${s}\n`);
let dirN = 0;
const newDir = () => { const d = path.join(TMP, String(dirN++)); fs.mkdirSync(d); return d; };

function sameAs(file, bytes, what) {
	const got = fs.readFileSync(file).subarray(0, bytes.length);
	if (!got.equals(bytes)) throw new Error(`${what}: ${file} does not hold the expected bytes`);
}

/** sims: [{ chip, name, content? }]: content = what the flash starts with
 * (else blank). */
async function withMount(sims, baud, fn) {
	const dir = newDir();
	const specs = sims.map((s) => ({ chip: s.chip, name: s.name, flash: path.join(dir, `${s.name}.bin`) }));
	sims.forEach((s, i) => { if (s.content) fs.writeFileSync(specs[i].flash, s.content); });
	const m = await Mount.start({ bin: ESPFS, dir, baud, stubDir: STUBS, sims: specs });
	try { return await fn(m, dir); } finally { await m.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
}

/** A 4 MB flash holding img (as after flashing it). */
function flashWith(img) {
	const buf = Buffer.alloc(4 << 20, 0xff);
	img.bytes.copy(buf);
	return buf;
}

const flashWork = (img) => eraseSeconds(model, 0, img.bytes.length) + programSeconds(model, img.bytes.length);

/* ---------- the measurements ---------- */

async function espfsFlash(img, baud, reflash) {
	return withMount([{ chip: img.chip, name: 'd0' }], baud, async (m, dir) => {
		const dst = path.join(m.mnt, 'd0/flash.bin');
		const w0 = m.wire('d0');
		const s = await timedCp(img.path, dst);
		const w1 = m.wire('d0');
		sameAs(path.join(dir, 'd0.bin'), img.bytes, 'espfs flash');
		const r = { s, wire: wireDelta(w0, w1), mount_s: m.ready_s, mount_wire: wireDelta([], w0) };
		if (reflash) {
			const s2 = await timedCp(img.path, dst);
			sameAs(path.join(dir, 'd0.bin'), img.bytes, 'espfs re-flash');
			r.reflash = { s: s2, wire: wireDelta(w1, m.wire('d0')) };
		}
		return r;
	});
}

async function espfsDump(img, baud) {
	return withMount([{ chip: img.chip, name: 'd0', content: flashWith(img) }], baud, async (m, dir) => {
		const flash = path.join(dir, 'd0.bin');
		const out = path.join(dir, 'dump.bin');
		const w0 = m.wire('d0');
		const s = await timedCp(path.join(m.mnt, 'd0/flash.bin'), out);
		const w1 = m.wire('d0');
		const size = fs.statSync(flash).size;
		sameAs(out, fs.readFileSync(flash), 'espfs dump');
		if (fs.statSync(out).size !== size) throw new Error('espfs dump: wrong size');
		// again, once the worker has let the chip go (0.7 s idle): the read
		// cache answers after the chip's MD5s of what it holds
		await new Promise((r) => setTimeout(r, 1500));
		const s2 = await timedCp(path.join(m.mnt, 'd0/flash.bin'), out);
		const w2 = m.wire('d0');
		sameAs(out, fs.readFileSync(flash), 'espfs second dump');
		return { s, size, wire: wireDelta(w0, w1), again: { s: s2, wire: wireDelta(w1, w2) } };
	});
}

/* n cp's started together by one small shell, as a user would: node
 * forking its own large process n times at once kept the latency probe
 * off the CPU for up to ~19 ms, which measured the harness, not the mount.
 * Resolves with each cp's seconds. */
function shellCps(src, dsts) {
	const script = 'src=$1; shift; for d in "$@"; do ( t=$(date +%s%N); cp "$src" "$d" && ' +
		'echo "ok $(( $(date +%s%N) - t ))" || echo "fail $d" ) & done; wait';
	return new Promise((resolve, reject) => {
		const p = spawn('bash', ['-c', script, 'cps', src, ...dsts], { stdio: ['ignore', 'pipe', 'inherit'] });
		children.add(p);
		let out = '';
		p.stdout.on('data', (d) => { out += d; });
		p.once('exit', () => {
			children.delete(p);
			const lines = out.trim().split('\n');
			const ok = lines.filter((l) => l.startsWith('ok ')).map((l) => Number(l.slice(3)) / 1e9);
			if (ok.length === dsts.length) resolve(ok); else reject(new Error(`parallel cp: ${out.trim()}`));
		});
	});
}

async function parallel(img, n) {
	const sims = [...Array(n).keys()].map((i) => ({ chip: img.chip, name: `d${i}` }));
	sims.push({ chip: img.chip, name: 'idle' });
	return withMount(sims, FAST, async (m, dir) => {
		const probe = [path.join(m.mnt, 'idle/chip'), path.join(m.mnt, 'd0/chip')];
		const sampler = spawn(path.join(opt.build, 'latprobe'), ['20', ...probe], { stdio: ['ignore', 'pipe', 'inherit'] });
		children.add(sampler);
		let out = '';
		sampler.stdout.on('data', (d) => { out += d; });
		await new Promise((r) => { const f = () => (out.includes('ready') ? r() : setTimeout(f, 5)); f(); });
		const w0 = m.wire('d0');
		const t0 = process.hrtime.bigint();
		const each = await shellCps(img.path, sims.slice(0, n).map((s) => path.join(m.mnt, s.name, 'flash.bin')));
		const wall = Number(process.hrtime.bigint() - t0) / 1e9;
		const w1 = m.wire('d0');
		const exited = new Promise((r) => sampler.once('exit', r));
		sampler.kill('SIGTERM');
		await exited;
		children.delete(sampler);
		const lat = JSON.parse(out.slice(out.indexOf('{')));
		for (const s of sims.slice(0, n)) sameAs(path.join(dir, `${s.name}.bin`), img.bytes, `parallel flash ${s.name}`);
		return { wall_s: wall, each_s: each, mem_kib: m.memory(), mount_s: m.ready_s, wire_d0: wireDelta(w0, w1), latency_ms: { idle: lat.samples[probe[0]], busy: lat.samples[probe[1]] }, latency_errors: lat.errors };
	});
}

/* ---------- cases ---------- */
const rows = [];
const extra = { parallel: [] };
const median = (a) => { const s = [...a].sort((x, y) => x - y); const k = s.length >> 1; return s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2; };

/* The best any client can do with a stub's one block in flight
 * (schedbound.c), for a fresh flash of img at baud. */
function schedBound(img, baud) {
	const r = spawnSync(path.join(opt.build, 'schedbound'), [img.path, '0', String(baud)], { encoding: 'utf8' });
	if (r.status !== 0) throw new Error(`schedbound: ${r.stderr}`);
	return JSON.parse(r.stdout);
}

function row(r) {
	r.median_s = median(r.times_s);
	if (r.bound) {
		r.meas_over_bound = r.median_s / r.bound.overlap_s;
		r.meas_over_serial = r.median_s / r.bound.serial_s;
	}
	if (r.sched)
		r.meas_over_sched = r.median_s / r.sched.sched_s;
	rows.push(r);
	log(`${r.case} ${r.chip} ${r.who} ${r.what}: ${r.times_s.map((t) => t.toFixed(2)).join(' ')} s`);
}

async function flashCase(kase, img, baud, runs, reflash) {
	const e = [], j = [];
	for (let i = 0; i < runs; i++) {
		log(`case ${kase} ${img.chip} ${baud ?? 'default'} run ${i + 1}/${runs}: espfs`);
		e.push(await espfsFlash(img, baud, reflash));
		log(`case ${kase} ${img.chip} ${baud ?? 'default'} run ${i + 1}/${runs}: esptool-js`);
		j.push(await esptoolFlash({ dir: newDir(), chip: img.chip, baud: baud ?? 115200, image: img.bytes }));
	}
	// a default rate is what each tool ended up using: the rate that
	// carried most of the bytes (esptool-js: romBaudrate = baudrate = 115200)
	const mainRate = (w) => w.reduce((a, b) => (b.up + b.down > a.up + a.down ? b : a)).baud;
	const rate = baud ? String(baud) : `default (${mainRate(e[0].wire)})`;
	const ejRate = baud ? String(baud) : `default (${mainRate(j[0].wire_work)})`;
	const ratios = e.map((x, i) => x.s / j[i].total_s);
	const vsWrite = e.map((x, i) => x.s / j[i].work_s);
	const sched = schedBound(img, baud ?? FAST);
	if (kase !== 'c') {
		// espfs connects when it mounts (cp finds the stub running): shown
		// apart, as esptool-js's connect is inside its time
		row({ case: kase, chip: img.chip, who: 'espfs', what: `mount (attach: sync, stub, identity) @${rate}`, times_s: e.map((x) => x.mount_s),
			wire: e[0].mount_wire, wire_source: 'counted (espfs-wire)', bound: bounds(model, e[0].mount_wire, 0) });
		row({ case: kase, chip: img.chip, who: 'espfs', what: `cp image -> flash.bin @${rate}`, times_s: e.map((x) => x.s),
			ratio_runs: ratios, ratio: median(ratios), ratio_vs_write_runs: vsWrite, ratio_vs_write: median(vsWrite),
			wire: e[0].wire, wire_source: 'counted (espfs-wire)', bound: bounds(model, e[0].wire, flashWork(img)), sched });
		row({ case: kase, chip: img.chip, who: 'esptool-js', what: `main()+writeFlash @${ejRate}`, times_s: j.map((x) => x.total_s),
			connect_s: j.map((x) => x.connect_s), write_s: j.map((x) => x.work_s),
			wire: [...j[0].wire_connect, ...j[0].wire_work], wire_source: 'counted (espsim /proc io)',
			bound: bounds(model, [...j[0].wire_connect, ...j[0].wire_work], flashWork(img)),
			sched: baud ? sched : schedBound(img, 115200), sched_of: 'writeFlash alone' });
	}
	if (reflash) {
		const fresh = e.map((x) => x.s), again = e.map((x) => x.reflash.s);
		const r = again.map((t, i) => t / fresh[i]);
		// nothing has to be written: the flash only has to be read for MD5
		row({ case: 'c', chip: img.chip, who: 'espfs', what: `re-flash identical image @${rate}`, times_s: again,
			ideal_s: readSeconds(model, img.bytes.length),
			ratio_runs: r, ratio: median(r), ratio_is: 'espfs re-flash / espfs fresh flash',
			wire: e[0].reflash.wire, wire_source: 'counted (espfs-wire)',
			bound: bounds(model, e[0].reflash.wire, readSeconds(model, img.bytes.length)) });
	}
}

async function dumpCase(img, runs) {
	const e = [], j = [];
	for (let i = 0; i < runs; i++) {
		log(`case d ${img.chip} run ${i + 1}/${runs}: espfs`);
		e.push(await espfsDump(img, FAST));
		log(`case d ${img.chip} run ${i + 1}/${runs}: esptool-js`);
		const dir = newDir();
		const flashFile = path.join(dir, 'src.bin');
		fs.writeFileSync(flashFile, flashWith(img));
		j.push(await esptoolDump({ dir, chip: img.chip, baud: FAST, flashFile, size: e[0].size }));
	}
	const size = e[0].size;
	const ratios = e.map((x, i) => x.s / j[i].total_s);
	row({ case: 'd', chip: img.chip, who: 'espfs', what: `cp flash.bin (${size >> 20} MB) -> file @${FAST}`, times_s: e.map((x) => x.s),
		ratio_runs: ratios, ratio: median(ratios), wire: e[0].wire, wire_source: 'counted (espfs-wire)',
		bound: bounds(model, e[0].wire, readSeconds(model, size)) });
	const again = e.map((x) => x.again.s);
	const rAgain = again.map((t, i) => t / e[i].s);
	row({ case: 'd', chip: img.chip, who: 'espfs', what: `cp flash.bin again (read cache, chip ran between) @${FAST}`, times_s: again,
		ratio_runs: rAgain, ratio: median(rAgain), ratio_is: 'second dump / first dump', wire: e[0].again.wire, wire_source: 'counted (espfs-wire)',
		bound: bounds(model, e[0].again.wire, readSeconds(model, size)) });
	row({ case: 'd', chip: img.chip, who: 'esptool-js', what: `main()+readFlash ${size >> 20} MB @${FAST}`, times_s: j.map((x) => x.total_s),
		connect_s: j.map((x) => x.connect_s), read_s: j.map((x) => x.work_s),
		wire: [...j[0].wire_connect, ...j[0].wire_work], wire_source: 'counted (espsim /proc io)',
		bound: bounds(model, [...j[0].wire_connect, ...j[0].wire_work], readSeconds(model, size)) });
}

async function parallelCase(img, runs) {
	let one = null;
	for (const n of PARALLEL) {
		const rs = [];
		for (let i = 0; i < runs; i++) {
			log(`case e: ${n} device(s) in parallel, run ${i + 1}/${runs}`);
			rs.push(await parallel(img, n));
		}
		const walls = rs.map((x) => x.wall_s);
		if (n === 1) one = median(walls);
		const pct = (a, q) => { const x = [...a].sort((u, v) => u - v); return x[Math.min(x.length - 1, Math.ceil(q * x.length) - 1)]; };
		const lat = (k) => { const a = rs.flatMap((x) => x.latency_ms[k]); return { n: a.length, median_ms: a.length ? median(a) : null, p99_ms: a.length ? pct(a, 0.99) : null, max_ms: a.length ? Math.max(...a) : null }; };
		const p = { devices: n, wall_s: walls, median_s: median(walls), vs_one: one ? median(walls) / one : null,
			vmhwm_kib: Math.max(...rs.map((x) => x.mem_kib.vmhwm)), rss_anon_kib: Math.max(...rs.map((x) => x.mem_kib.anon)), mem_kib: rs.map((x) => x.mem_kib), mount_s: rs.map((x) => x.mount_s),
			chip_latency: { idle_device: lat('idle'), flashing_device: lat('busy') }, latency_errors: rs.map((x) => x.latency_errors),
			bound: bounds(model, rs[0].wire_d0, flashWork(img)) };
		extra.parallel.push(p);
		row({ case: 'e', chip: img.chip, who: 'espfs', what: `${n} device(s) in parallel @${FAST}`, times_s: walls,
			ratio: p.vs_one, ratio_is: `wall(${n}) / wall(1)`, wire: rs[0].wire_d0, wire_source: 'counted (espfs-wire), per device',
			bound: p.bound, parallel: p });
	}
}

const started = Date.now();
const imgs = images(CHIPS, { build: opt.build, dir: TMP });
for (const img of imgs) log(`${img.chip}: ${img.bytes.length} bytes, ${img.source}`);
try {
	for (const img of imgs) {
		if (opt.cases.includes('a')) await flashCase('a', img, null, opt.runsLong, false);
		if (opt.cases.includes('b')) await flashCase('b', img, FAST, opt.runs, opt.cases.includes('c'));
		else if (opt.cases.includes('c')) await flashCase('c', img, FAST, opt.runs, true);
	}
	if (opt.cases.includes('d')) await dumpCase(imgs[0], opt.runsLong);
	if (opt.cases.includes('e')) await parallelCase(imgs[0], opt.runs);
} catch (e) {
	log(`FAILED: ${e.stack || e}`);
	process.exitCode = 1;
}

const git = (a) => spawnSync('git', ['-C', TREE, ...a], { encoding: 'utf8' }).stdout.trim();
const meta = {
	date: new Date().toISOString(),
	commit: opt.rev ?? git(['rev-parse', '--short', 'HEAD']),
	dirty: opt.rev ? false : git(['status', '--porcelain', '--', 'src', 'include']) !== '',
	host: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
	options: { quick: opt.quick, runs: opt.runs, runs_long: opt.runsLong, cases: opt.cases },
	images: imgs.map((i) => ({ chip: i.chip, bytes: i.bytes.length, source: i.source })),
	model, elapsed_s: (Date.now() - started) / 1000,
};
report({ meta, rows, extra }, opt.out);
process.exit(process.exitCode ?? 0);
