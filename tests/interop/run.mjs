// Runs every interop test outside meson and sums up:
//   node tests/interop/run.mjs [--espsim PATH] [--shared DIR] [t-NAME.mjs ...]
// (meson runs each t-*.mjs as its own TAP test; this is for quick manual use.)
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const env = { ...process.env };
const picked = [];
for (let i = 0; i < args.length; i++) {
	if (args[i] === '--espsim') env.ESPSIM = path.resolve(args[++i]);
	else if (args[i] === '--shared') env.ESPFS_SHARED = path.resolve(args[++i]);
	else picked.push(path.basename(args[i]));
}
if (!env.ESPFS_SHARED && fs.existsSync('/work/shared')) env.ESPFS_SHARED = '/work/shared';
const tests = picked.length ? picked
	: fs.readdirSync(here).filter((f) => /^t-.*\.mjs$/.test(f)).sort();

let pass = 0, fail = 0, skipped = 0;
for (const t of tests) {
	const t0 = Date.now();
	const child = spawn(process.execPath, [path.join(here, t)], { env, stdio: ['ignore', 'pipe', 'inherit'] });
	let out = '';
	child.stdout.on('data', (d) => { out += d; process.stdout.write(d); });
	const code = await new Promise((r) => child.once('exit', (c, s) => r(c ?? s)));
	const lines = out.split('\n');
	const p = lines.filter((l) => /^ok /.test(l) && !/# SKIP/i.test(l)).length;
	const s = lines.filter((l) => /^ok .*# SKIP/i.test(l) || /^1\.\.0 # SKIP/i.test(l)).length;
	const f = lines.filter((l) => /^not ok /.test(l)).length + (code === 0 ? 0 : 1);
	pass += p; skipped += s; fail += f;
	console.log(`== ${t}: ${p} ok, ${f} failed, ${s} skipped, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
console.log(`== interop: ${pass} passed, ${fail} failed, ${skipped} skipped`);
process.exit(fail ? 1 : 0);
