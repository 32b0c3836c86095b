// Metadata latency probe, run as its own process so its blocking calls
// never delay the bench's timers:  node sampler.mjs INTERVAL_MS FILE...
// Every INTERVAL_MS: stat + read each FILE, timing each pair.  On SIGTERM
// prints {"FILE": [ms, ...], ...} and exits.
import fs from 'node:fs';

const [interval, ...files] = process.argv.slice(2);
const samples = Object.fromEntries(files.map((f) => [f, []]));
const errors = Object.fromEntries(files.map((f) => [f, 0]));
const nap = new Int32Array(new SharedArrayBuffer(4));

let stop = false;
process.on('SIGTERM', () => { stop = true; });

function loop() {
	for (const f of files) {
		const t0 = process.hrtime.bigint();
		try {
			fs.statSync(f);
			fs.readFileSync(f);
		} catch {
			errors[f]++;
			continue;
		}
		samples[f].push(Number(process.hrtime.bigint() - t0) / 1e6);
	}
	Atomics.wait(nap, 0, 0, Number(interval));
	if (stop) {
		process.stdout.write(JSON.stringify({ samples, errors }));
		process.exit(0);
	}
	setImmediate(loop);   // lets the SIGTERM handler run
}
process.stdout.write('ready\n');
loop();
