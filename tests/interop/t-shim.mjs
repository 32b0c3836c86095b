// Checks webserial-shim.mjs on its own, against a python pty that echoes
// (pty-loopback.py): byte transparency, the stty baud, large synchronous
// writes, readable re-creation after cancel, close/re-open, device loss.
import path from 'node:path';
import { createHash } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { HERE, ok, runCases, comment } from './harness.mjs';
import { PtySerialPort } from './webserial-shim.mjs';

function havePython() {
	const r = spawnSync('python3', ['-c', 'import pty, termios'], { stdio: 'ignore' });
	return r.status === 0 ? null : 'python3 with pty/termios is not available';
}

async function startLoop(t) {
	const link = path.join(t.dir, 'loop');
	const proc = spawn('python3', [path.join(HERE, 'pty-loopback.py'), link], { stdio: ['ignore', 'pipe', 'inherit'] });
	const sim = {
		proc, exit: null,
		exited: new Promise((r) => proc.once('exit', (c, s) => { sim.exit = { c, s }; r(); })),
		async stop() { if (!sim.exit) { proc.kill('SIGTERM'); await sim.exited; } },
		stderr: '',
	};
	t.sims.push(sim);
	await new Promise((resolve, reject) => {
		proc.stdout.once('data', () => resolve());
		proc.once('exit', () => reject(new Error('pty-loopback.py exited early')));
	});
	return { link, sim };
}

// Read from the port until `want` bytes arrived or ms passed.
async function readN(port, want, ms = 3000) {
	const reader = port.readable.getReader();
	const chunks = [];
	let got = 0;
	const timer = setTimeout(() => reader.cancel(), ms);
	try {
		while (got < want) {
			const { value, done } = await reader.read();
			if (done) break;
			chunks.push(value);
			got += value.length;
		}
	} finally {
		clearTimeout(timer);
		reader.releaseLock();
	}
	const out = new Uint8Array(got);
	let o = 0;
	for (const c of chunks) { out.set(c, o); o += c.length; }
	return out;
}

async function write(port, bytes) {
	const w = port.writable.getWriter();
	await w.write(bytes);
	w.releaseLock();
}

const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

await runCases([
	{
		name: 'shim over a pty loopback',
		skip: havePython,
		timeout: 20000,
		async run(t) {
			const { link, sim } = await startLoop(t);
			const port = new PtySerialPort(link);
			t.ports.push(port);
			ok(port.readable === null && port.writable === null, 'streams are null before open');
			await port.open({ baudRate: 921600 });
			ok(JSON.stringify(port.getInfo()) === '{}', 'getInfo() is {}');
			await port.setSignals({ dataTerminalReady: false, requestToSend: true });

			const all = new Uint8Array(256).map((_, i) => i);
			await write(port, all);
			const back = await readN(port, 256);
			ok(eq(back, all), 'all 256 byte values round-trip unchanged (no CR/LF translation, no echo)',
				`got ${back.length} bytes`);

			await write(port, new TextEncoder().encode('BAUD?\n'));
			const reply = new TextDecoder().decode(await readN(port, 'BAUD?\nBAUD=921600\n'.length));
			ok(reply.endsWith('BAUD=921600\n'), 'open({baudRate}) sets the tty speed the device side sees', reply);

			// cancel, then a fresh readable keeps receiving
			const r1 = port.readable;
			await r1.cancel();
			const r2 = port.readable;
			ok(r2 !== null && r2 !== r1, 'readable is re-created after cancel');
			await write(port, Uint8Array.of(0xc0, 0x0a, 0x0d, 0xc0));
			ok(eq(await readN(port, 4), Uint8Array.of(0xc0, 0x0a, 0x0d, 0xc0)), 'data arrives on the re-created readable');

			await port.close();
			ok(port.readable === null && port.writable === null, 'streams are null after close');
			await port.open({ baudRate: 115200 });
			await write(port, Uint8Array.of(1, 2, 3));
			ok(eq(await readN(port, 3), Uint8Array.of(1, 2, 3)), 'close and re-open works');

			await sim.stop();
			await new Promise((r) => setTimeout(r, 100));
			let lost = null;
			const readable = port.readable;
			const reader = readable ? readable.getReader() : null;
			if (!reader) lost = 'readable is null';
			else try {
				const r = await Promise.race([reader.read(), new Promise((res) => setTimeout(() => res('hang'), 3000))]);
				lost = r === 'hang' ? 'hang' : (r.done ? 'done' : 'data');
			} catch (e) { lost = e.name; }
			if (reader) reader.releaseLock();
			ok(['NetworkError', 'done', 'readable is null'].includes(lost), 'device loss ends the read (NetworkError or done)', lost);
			await port.forceClose();
		},
	},
	{
		name: 'large synchronous write with EAGAIN retry',
		skip: havePython,
		timeout: 20000,
		async run(t) {
			const { link } = await startLoop(t);
			const port = new PtySerialPort(link);
			t.ports.push(port);
			await port.open({ baudRate: 115200 });
			const big = new Uint8Array(1024 * 1024).map((_, i) => (i * 7 + (i >> 8)) & 0xff);
			// The loopback swallows the next N bytes after a pause, so the pty
			// fills up and the shim must retry on EAGAIN until it drains.
			await write(port, new TextEncoder().encode(`QUIET ${big.length}\n`));
			await readN(port, `QUIET ${big.length}\n`.length);
			const t0 = Date.now();
			await write(port, big);
			const ms = Date.now() - t0;
			const want = `GOT ${big.length} `.length + 32 + 1;
			const reply = new TextDecoder().decode(await readN(port, want)).trim();
			const md5 = createHash('md5').update(big).digest('hex');
			ok(reply === `GOT ${big.length} ${md5}`, `1 MiB written in one call arrives intact (write took ${ms} ms)`, reply);
			ok(port.eagainRetries > 0, `the write met a full pty and retried (${port.eagainRetries} EAGAIN retries)`);
		},
	},
]);
