// A Web Serial SerialPort look-alike over a pty path, so browser flashers
// (esptool-js, esp-web-flasher, improv-wifi-serial-sdk) can run in Node
// against espsim.  Only what those clients touch is provided.
//
// Why it is built this way (measured, see shared/REFCLIENTS.md):
// - raw mode comes from `stty -F PATH BAUD raw -echo`, never from
//   tty.setRawMode (libuv keeps OPOST|ONLCR: 0x0a would become 0d 0a); the
//   stty speed is also how espsim's timing model learns the baud rate;
// - writes complete synchronously (fs.writeSync, retried on EAGAIN) so a fast
//   device's reply can never overtake the write's completion;
// - `readable`/`writable` are re-created lazily after a cancel/close, as the
//   Web Serial spec does; clients re-acquire readers in loops.
import fs from 'node:fs';
import tty from 'node:tty';
import { execFileSync } from 'node:child_process';

const WRITE_STALL_MS = 5000;   // a device that never drains is an error, not a hang
const sleeper = new Int32Array(new SharedArrayBuffer(4));

function lostError() {
	// Web Serial reports an unplugged device as a NetworkError DOMException
	return new DOMException('The device has been lost.', 'NetworkError');
}

function destroyTty(t) {
	if (t.closed) return Promise.resolve();
	return new Promise((resolve) => {
		t.once('close', resolve);
		t.destroy();
	});
}

export class PtySerialPort {
	constructor(path) {
		this.path = path;
		this._open = false;
		this._wfd = -1;
		this._tty = null;
		this._readable = null;
		this._ctl = null;
		this._pending = [];
		this._writable = null;
		this._lost = false;
		this.baudRate = 0;
		this.eagainRetries = 0;   // for the shim's own test
		this.onRx = null;         // a test's tap on everything the device sends
		this.lostAt = 0;          // when the device went away (Date.now())
	}

	getInfo() { return {}; }

	async setSignals(_signals) { /* a pty has no DTR/RTS lines */ }

	async open(options = {}) {
		if (this._open)
			throw new DOMException('The port is already open.', 'InvalidStateError');
		const baud = options.baudRate;
		if (!Number.isInteger(baud) || baud <= 0)
			throw new TypeError('open: baudRate must be a positive integer');
		execFileSync('stty', ['-F', this.path, String(baud), 'raw', '-echo'],
			{ stdio: ['ignore', 'ignore', 'pipe'] });
		const flags = fs.constants.O_RDWR | fs.constants.O_NOCTTY;
		this._wfd = fs.openSync(this.path, flags | fs.constants.O_NONBLOCK);
		let rfd;
		try {
			rfd = fs.openSync(this.path, flags);
			this._tty = new tty.ReadStream(rfd);
		} catch (e) {
			if (rfd !== undefined && !this._tty) fs.closeSync(rfd);
			fs.closeSync(this._wfd);
			this._wfd = -1;
			throw e;
		}
		this._tty.pause();
		this._tty.on('data', (buf) => this._deliver(new Uint8Array(buf)));
		this._tty.on('error', () => this._fail());
		this._tty.on('end', () => this._fail());
		this._open = true;
		this._lost = false;
		this.baudRate = baud;
	}

	_deliver(chunk) {
		if (this.onRx) this.onRx(chunk);
		if (this._ctl) this._ctl.enqueue(chunk);
		else this._pending.push(chunk);
	}

	// The other end went away (espsim exited): readers see the error a
	// browser gives for an unplugged device.
	_fail() {
		if (this._lost) return;
		this._lost = true;
		this.lostAt = Date.now();
		if (this._ctl) {
			try { this._ctl.error(lostError()); } catch { /* already closed */ }
			this._ctl = null;
		}
		this._readable = null;
	}

	get readable() {
		if (!this._open || this._lost) return null;
		if (this._readable) return this._readable;
		const port = this;
		const stream = new ReadableStream({
			start(ctl) {
				port._ctl = ctl;
				for (const c of port._pending.splice(0)) ctl.enqueue(c);
				port._tty.resume();
			},
			cancel() {
				// data keeps queueing in the tty until someone reads again
				if (port._readable === stream) {
					port._tty.pause();
					port._ctl = null;
					port._readable = null;
				}
			},
		});
		this._readable = stream;
		return stream;
	}

	get writable() {
		if (!this._open || this._lost) return null;
		if (this._writable) return this._writable;
		const port = this;
		const stream = new WritableStream({
			write(chunk) { port._writeAll(chunk); },
			close() { if (port._writable === stream) port._writable = null; },
			abort() { if (port._writable === stream) port._writable = null; },
		});
		this._writable = stream;
		return stream;
	}

	_writeAll(chunk) {
		if (this._wfd < 0) throw new DOMException('The port is closed.', 'InvalidStateError');
		const buf = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk);
		let off = 0;
		let stalledSince = 0;
		while (off < buf.length) {
			let n;
			try {
				n = fs.writeSync(this._wfd, buf, off, buf.length - off);
			} catch (e) {
				if (e.code !== 'EAGAIN') {
					if (e.code === 'EIO') this._fail();
					throw e.code === 'EIO' ? lostError() : e;
				}
				const now = Date.now();
				if (!stalledSince) stalledSince = now;
				else if (now - stalledSince > WRITE_STALL_MS)
					throw new DOMException('write stalled: the device does not read', 'NetworkError');
				this.eagainRetries++;
				Atomics.wait(sleeper, 0, 0, 1);
				continue;
			}
			off += n;
			stalledSince = 0;
		}
	}

	async close() {
		if (!this._open)
			throw new DOMException('The port is already closed.', 'InvalidStateError');
		if ((this._readable && this._readable.locked) || (this._writable && this._writable.locked))
			throw new TypeError('close: a stream of this port is locked');
		if (this._ctl) {
			try { this._ctl.close(); } catch { /* errored */ }
			this._ctl = null;
		}
		this._readable = null;
		this._writable = null;
		this._pending = [];
		this._open = false;
		const t = this._tty;
		this._tty = null;
		await destroyTty(t);
		fs.closeSync(this._wfd);
		this._wfd = -1;
	}

	// For the harness: close whatever the client left open, ignoring locks.
	async forceClose() {
		if (!this._open) return;
		if (this._ctl) {
			try { this._ctl.error(new DOMException('closed by the harness', 'AbortError')); } catch { /* ok */ }
			this._ctl = null;
		}
		this._readable = null;
		this._writable = null;
		this._open = false;
		const t = this._tty;
		this._tty = null;
		if (t) await destroyTty(t);
		if (this._wfd >= 0) fs.closeSync(this._wfd);
		this._wfd = -1;
	}
}
