// esptool-js 0.7.0 against `espsim --timing` through the interop tests'
// Web Serial shim (imported, not copied).  Wire bytes come from espsim's
// /proc/PID/io: every byte it reads from or writes to the pty master is a
// byte on the simulated link (its flash file is mapped, not read).
import fs from 'node:fs';
import { startSim, openPort, makeLog, md5hex } from '../interop/harness.mjs';
import { esptoolJs } from '../interop/load-clients.mjs';
import { PtySerialPort } from '../interop/webserial-shim.mjs';

function procIo(pid) {
	const t = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
	return { up: Number(/rchar: (\d+)/.exec(t)[1]), down: Number(/wchar: (\d+)/.exec(t)[1]) };
}
// esptool-js narrates on the console (TRACE lines); the table owns stdout
// and stderr carries the bench's progress, so its chatter goes nowhere
for (const k of ['log', 'info', 'debug', 'trace']) console[k] = () => {};

const ioDelta = (a, b, baud) => [{ baud, up: b.up - a.up, down: b.down - a.down }];

/** Read and drop what espsim printed at power-up.  A real board's boot
 * banner is long gone when a flasher opens the port; on a pty it waits in
 * the buffer, and esptool-js 0.7.0 then fails its first SYNC on it, sends
 * another, and reads the first one's late replies as answers to later
 * commands (with the timing model they trickle in after its flushInput). */
async function drainBanner(link) {
	const port = new PtySerialPort(link);
	await port.open({ baudRate: 115200 });
	const reader = port.readable.getReader();
	let last = Date.now();
	const t0 = last;
	while (Date.now() - last < 50 && Date.now() - t0 < 1000) {
		const r = await Promise.race([reader.read(), new Promise((ok) => setTimeout(() => ok(null), 20))]);
		if (r && r.value && r.value.length) last = Date.now();
	}
	await reader.cancel().catch(() => {});
	reader.releaseLock();
	await port.close();
}

/** One esptool-js session: connect (sync, stub, maybe CHANGE_BAUDRATE),
 * then `work(loader)`.  Returns times (s) and wire bytes of both parts. */
async function session({ dir, chip, baud, flashFile }, work) {
	const t = { dir, sims: [], ports: [], log: makeLog() };
	const sim = await startSim(t, { chip, flash: flashFile, extra: ['--timing'] });
	try {
		await drainBanner(sim.link);
		const port = openPort(t, sim.link);
		const { ESPLoader, Transport } = await esptoolJs();
		const transport = new Transport(port, false);
		const loader = new ESPLoader({ transport, baudrate: baud, romBaudrate: 115200, terminal: t.log });
		const io0 = procIo(sim.proc.pid);
		const t0 = process.hrtime.bigint();
		await loader.main('no_reset');
		const t1 = process.hrtime.bigint();
		const io1 = procIo(sim.proc.pid);
		if (!loader.IS_STUB) throw new Error('esptool-js did not start its stub');
		if (port.baudRate !== baud) throw new Error(`esptool-js runs at ${port.baudRate}, not ${baud}`);
		const result = await work(loader);
		const t2 = process.hrtime.bigint();
		const io2 = procIo(sim.proc.pid);
		await transport.disconnect();
		const s = (a, b) => Number(b - a) / 1e9;
		return {
			result,
			connect_s: s(t0, t1), work_s: s(t1, t2), total_s: s(t0, t2),
			// CHANGE_BAUDRATE is the last exchange of main(): its bytes go at
			// the ROM rate (a handful of bytes counted slow: bound a hair high)
			wire_connect: ioDelta(io0, io1, 115200), wire_work: ioDelta(io1, io2, baud),
		};
	} catch (e) {
		throw new Error(`${e.message}\nesptool-js log:\n${t.log.tail()}\nespsim: ${sim.stderr.slice(-500)}`);
	} finally {
		for (const p of t.ports) await p.forceClose().catch(() => {});
		await sim.stop();
	}
}

/** writeFlash of `image` at 0 (compressed, MD5-checked by esptool-js). */
export async function esptoolFlash({ dir, chip, baud, image }) {
	const flashFile = `${dir}/ej-flash.bin`;
	fs.rmSync(flashFile, { force: true });
	const r = await session({ dir, chip, baud, flashFile }, (loader) => loader.writeFlash({
		fileArray: [{ data: image, address: 0 }], flashMode: 'keep', flashFreq: 'keep', flashSize: 'keep',
		eraseAll: false, compress: true, calculateMD5Hash: md5hex,
	}));
	const got = fs.readFileSync(flashFile).subarray(0, image.length);
	if (!got.equals(Buffer.from(image))) throw new Error('esptool-js flash: the flash file does not hold the image');
	fs.rmSync(flashFile, { force: true });
	return r;
}

/** readFlash of the whole flash (`size` bytes) into memory. */
export async function esptoolDump({ dir, chip, baud, flashFile, size }) {
	const r = await session({ dir, chip, baud, flashFile }, (loader) => loader.readFlash(0, size));
	if (!Buffer.from(r.result).equals(fs.readFileSync(flashFile).subarray(0, size)))
		throw new Error('esptool-js readFlash: bytes differ from the flash file');
	r.result = null;
	return r;
}
