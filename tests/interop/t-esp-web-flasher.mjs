// esp-web-flasher 5.1.5 (the older ESP Web Tools flasher, legacy esptool
// stubs, its own ROM protocol code) against espsim: sync, chip family, MAC
// eFuses, legacy stub ("OHAI"), flash size detection, compressed write; the
// flash file must then hold the image byte for byte.
import fs from 'node:fs';
import path from 'node:path';
import {
	runCases, startSim, openPort, ok, sameBytes, prngBytes, readFile, allFF,
	macArgs, checkMac, sharedFile, espsimPath,
} from './harness.mjs';
import { espWebFlasher } from './load-clients.mjs';

const IMAGES = {
	esp32: 'firmware/esphome-project-template/gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.factory.bin',
	esp8266: 'firmware/esphome-project-template/gh-pages-a9c729c/project-template-esp8266/project-template-esp8266.factory.bin',
};
const NAMES = { esp32: 'ESP32', esp8266: 'ESP8266' };
const SIZES = { '1MB': 1 << 20, '2MB': 2 << 20, '4MB': 4 << 20, '8MB': 8 << 20, '16MB': 16 << 20 };
const needSim = () => (espsimPath() ? null : 'espsim is not built (set ESPSIM or ESPFS_BUILD)');

const hexMac = (arr) => arr.map((b) => b.toString(16).padStart(2, '0')).join(':');

// how: { stub (default true), baud (change the rate first), compress }
async function flashWith(t, chip, image, offset, { stub: useStub = true, baud = 0, compress = true } = {}) {
	const flash = path.join(t.dir, 'flash.bin');
	const sim = await startSim(t, { chip, flash, extra: macArgs(chip) });
	const port = openPort(t, sim.link);
	const { ESPLoader } = await espWebFlasher();
	await port.open({ baudRate: 115200 });
	const esp = new ESPLoader(port, t.log);
	await esp.initialize();
	ok(esp.chipName === NAMES[chip], `esp-web-flasher detects ${NAMES[chip]} (${esp.chipName})`);
	checkMac(sim, chip, hexMac(esp.macAddr()), 'esp-web-flasher');
	let stub = esp;
	if (useStub) {
		stub = await esp.runStub();
		ok(stub.IS_STUB === true, 'esp-web-flasher legacy stub started (OHAI)');
		const fileSize = fs.statSync(flash).size;
		ok(SIZES[stub.flashSize] === fileSize, `flash size detected by the stub (${stub.flashSize}) equals espsim's flash (${fileSize} bytes)`);
	}
	if (baud) {
		await stub.setBaudrate(baud);   // CHANGE_BAUDRATE, then it re-opens the port
		ok(port.baudRate === baud, `setBaudrate(${baud}) re-opened the port at ${port.baudRate}`);
	}
	const t0 = Date.now();
	let last = 0, calls = 0;
	const buf = image.buffer.slice(image.byteOffset, image.byteOffset + image.length);
	await stub.flashData(buf, (done) => { last = done; calls++; }, offset, compress);
	// its progress scales compressed blocks back by the ratio, so rounding
	// can leave the last report a little short of the total
	ok(calls > 0 && last >= 0.95 * image.length,
		`${compress ? 'compressed' : 'plain'} flashData (${useStub ? 'stub' : 'ROM'}) of ${image.length} B at 0x${offset.toString(16)} completes, progress ${last}/${image.length} in ${calls} reports (${Date.now() - t0} ms)`);
	// disconnect() cancels its read loop but leaves the port open (REFCLIENTS.md)
	await esp.disconnect();
	await port.close();
	const exit = await sim.stop();
	ok(exit.code === 0, `espsim exits cleanly on SIGTERM (${exit.code ?? exit.sig})`);
	return readFile(flash);
}

await runCases([
	{
		name: 'esp-web-flasher, esp32, synthetic data (no shared/ needed)',
		skip: needSim,
		timeout: 60000,
		async run(t) {
			const a = prngBytes(150000, 31);
			const file = await flashWith(t, 'esp32', a, 0x40000);
			sameBytes(file.subarray(0x40000), a, 'flash file holds the data byte for byte');
			const dirty = allFF(file, 0, 0x40000);
			ok(dirty < 0, 'flash below the write is untouched (0xFF)', `byte at 0x${dirty.toString(16)}`);
		},
	},
	{
		name: 'esp-web-flasher, esp32, stub at 921600 baud, synthetic data',
		skip: needSim,
		timeout: 60000,
		async run(t) {
			const a = prngBytes(200000, 32);
			const file = await flashWith(t, 'esp32', a, 0x100000, { baud: 921600 });
			sameBytes(file.subarray(0x100000), a, 'flash file holds the data byte for byte');
		},
	},
	// ROM only (no stub), plain writes: for the ESP8266 this goes through
	// esp-web-flasher's workaround for the ROM's erase-size bug
	...['esp32', 'esp8266'].map((chip, i) => ({
		name: `esp-web-flasher, ${chip}, ROM only, synthetic data`,
		skip: needSim,
		timeout: 60000,
		async run(t) {
			const a = prngBytes(40000 + 4 * i, 33 + i);
			const file = await flashWith(t, chip, a, 0x23000, { stub: false, compress: false });
			sameBytes(file.subarray(0x23000), a, 'flash file holds the data byte for byte');
			const dirty = allFF(file, 0, 0x23000);
			ok(dirty < 0, 'flash below the write is untouched (0xFF)', `byte at 0x${dirty.toString(16)}`);
		},
	})),
	...['esp32', 'esp8266'].map((chip) => ({
		name: `esp-web-flasher, ${chip}, ESPHome factory image at 0x0`,
		skip: () => needSim() || sharedFile(IMAGES[chip]).skip || null,
		timeout: 90000,
		async run(t) {
			const img = readFile(sharedFile(IMAGES[chip]).path);
			const file = await flashWith(t, chip, img, 0);
			sameBytes(file, img, `flash file holds the ${img.length}-byte factory image byte for byte`);
		},
	})),
]);
