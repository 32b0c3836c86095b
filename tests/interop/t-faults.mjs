// Every espsim fault seen through esptool-js: the client must fail cleanly
// (its promise rejects with an error, within its own timeouts, never hangs),
// or, for faults it can survive, succeed with the right data; espsim itself
// must keep running and stop on SIGTERM.
import fs from 'node:fs';
import path from 'node:path';
import {
	runCases, startSim, openPort, ok, comment, md5hex, prngBytes, readFile,
	espsimPath, espsimHelp,
} from './harness.mjs';
import { esptoolJs } from './load-clients.mjs';

const DATA = prngBytes(512 * 1024, 41);
const ADDR = 0x10000;

function needFaults() {
	if (!espsimPath()) return 'espsim is not built (set ESPSIM or ESPFS_BUILD)';
	if (!espsimHelp().includes('--fault')) return 'this espsim has no --fault option';
	return null;
}

// What each fault does to the conversation, and what a clean failure is.
// survivable: the client may also succeed (then the flash must be right).
const FAULTS = [
	{ fault: 'stall', stage: 'connect', expect: /connect|timeout|timed out/i },
	{ fault: 'garbage', stage: 'connect', expect: /connect|packet|timeout|invalid/i },
	{ fault: 'corrupt=0.02', stage: 'flash', survivable: true },
	{ fault: 'drop=0.02', stage: 'flash', survivable: true },
	{ fault: 'unplug=50', stage: 'flash', unplug: true, expect: /timeout|timed out|lost|closed|stopped|read/i },
	{ fault: 'flashfail', stage: 'flash', expect: /fail|status|error/i },
];

async function attempt(t, fault) {
	const flash = path.join(t.dir, 'flash.bin');
	const sim = await startSim(t, { chip: 'esp32', flash, extra: ['--fault', fault, '--seed', '7'] });
	const port = openPort(t, sim.link);
	const { ESPLoader, Transport } = await esptoolJs();
	const transport = new Transport(port, false);
	const loader = new ESPLoader({ transport, baudrate: 115200, romBaudrate: 115200, terminal: t.log });
	let stage = 'connect';
	const t0 = Date.now();
	let error = null;
	try {
		await loader.main('no_reset');
		stage = 'flash';
		await loader.writeFlash({
			fileArray: [{ data: DATA, address: ADDR }], flashMode: 'keep', flashFreq: 'keep',
			flashSize: 'keep', eraseAll: false, compress: true, calculateMD5Hash: md5hex,
		});
		stage = 'done';
	} catch (e) {
		error = e;
	}
	const ms = Date.now() - t0;
	const lostAfter = port.lostAt ? port.lostAt - t0 : -1;
	const linkGone = !fs.existsSync(sim.link);
	await transport.disconnect().catch(() => {});
	const alive = sim.exit === null;
	const exit = await sim.stop();
	return { error, stage, ms, alive, exit, flash, lostAfter, linkGone };
}

await runCases(FAULTS.map((f) => ({
	name: `esptool-js against espsim --fault ${f.fault}`,
	skip: needFaults,
	timeout: 100000,
	async run(t) {
		const r = await attempt(t, f.fault);
		const msg = r.error ? (r.error.message || String(r.error)).split('\n')[0] : 'no error';
		comment(`${f.fault}: ${r.error ? 'failed' : 'succeeded'} at stage ${r.stage} after ${r.ms} ms: ${msg}`);
		if (f.survivable && !r.error) {
			const file = readFile(r.flash);
			ok(md5hex(file.subarray(ADDR, ADDR + DATA.length)) === md5hex(DATA),
				`${f.fault}: esptool-js recovered, and the flash holds the right data`);
		} else {
			ok(r.error instanceof Error, `${f.fault}: esptool-js fails with an Error (${msg})`);
			if (f.expect) ok(f.expect.test(msg), `${f.fault}: the error says what happened (${msg})`);
			if (!f.survivable) ok(r.stage === f.stage, `${f.fault}: it fails at the ${f.stage} stage (${r.stage})`);
		}
		if (f.unplug) {
			// the pty goes away like a pulled USB-UART; esptool-js 0.7.0 only
			// notices through its read timeout (its read loop treats the
			// port's NetworkError as the end of input, not as a lost device)
			ok(r.lostAfter >= 0 && r.linkGone,
				`${f.fault}: the port reports the device lost ${r.lostAfter} ms in, and the link is gone`);
		}
		ok(r.alive, `${f.fault}: espsim is still running after the client gave up`);
		ok(r.exit.code === 0, `${f.fault}: espsim exits cleanly on SIGTERM (${r.exit.code ?? r.exit.sig})`);
	},
})));
