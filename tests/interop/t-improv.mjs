// improv-wifi-serial-sdk 2.8.1 (the Improv client of ESP Web Tools) against
// espsim booting an ESP32 image (--app): the ESPHome factory image from
// shared/, and a synthetic ESPHome-like image built here (synth-image.mjs).
// Detection, device info, Wi-Fi scan, a wrong password refused, provisioning.
import path from 'node:path';
import {
	runCases, startSim, openPort, ok, comment, readFile, makeFlashFile, sharedFile, espsimPath,
} from './harness.mjs';
import { improvSerial } from './load-clients.mjs';
import { esp32EsphomeFactory } from './synth-image.mjs';

const FACTORY = 'firmware/esphome-project-template/gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.factory.bin';
const FACTORY_8266 = 'firmware/esphome-project-template/gh-pages-a9c729c/project-template-esp8266/project-template-esp8266.factory.bin';
const FLASH_SIZE = 4 << 20;   // the image headers say 4MB
const UNABLE_TO_CONNECT = 3;  // Improv error code
const PROVISIONED = 4;
const READY = 2;

// Flash `image`, boot it as an app and walk the SDK through its API.
// want: { firmware, version, name } the image carries.  ESPHome's Improv
// reports "ESPHome" and its version; from 2024.9 on (esphome#7248) it
// reports the project's name and version instead when the YAML declares a
// project.  The factory image is 2024.6.6 with a project, the synthetic one
// claims 2099.1.0 with a project, so both branches are exercised.
async function improvSession(t, image, want, chip = 'esp32') {
	const flash = path.join(t.dir, 'flash.bin');
	makeFlashFile(flash, FLASH_SIZE, image, 0);
	const sim = await startSim(t, {
		chip, flash, app: true, wifi: ['Net:pass', 'Neighbours:secret9'],
	});
	const port = openPort(t, sim.link);
	const rx = [];
	port.onRx = (chunk) => rx.push(Buffer.from(chunk));
	await port.open({ baudRate: 115200 });
	const { ImprovSerial } = await improvSerial();
	const improv = new ImprovSerial(port, t.log);
	const t0 = Date.now();
	// the app may still be printing its boot log; the SDK re-asks every second
	const info = await improv.initialize(10000);
	comment(`device info: ${JSON.stringify(info)} after ${Date.now() - t0} ms`);
	ok(info.firmware === want.firmware, `initialize(): firmware "${info.firmware}" (the image says ${want.firmware})`);
	ok(info.version === want.version, `initialize(): version "${info.version}" (the image says ${want.version})`);
	ok(info.chipFamily === chip.toUpperCase(), `initialize(): chip family "${info.chipFamily}"`);
	ok(info.name === want.name, `initialize(): device name "${info.name}" (the image says ${want.name})`);
	ok(improv.state === READY, `state is READY/authorized (${improv.state}) before provisioning`);

	const ssids = await improv.scan(15000);
	const names = ssids.map((s) => s.name);
	ok(names.includes('Net') && names.includes('Neighbours'), `scan() lists the configured networks (${names.join(', ')})`);
	ok(ssids.every((s) => Number.isFinite(s.rssi) && s.rssi < 0), 'scan() gives a negative RSSI for each');

	let err = null;
	try {
		await improv.provision('Net', 'wrong-password', 30000);
	} catch (e) { err = e; }
	ok(err !== null && String(err).toUpperCase().includes('UNABLE_TO_CONNECT'),
		`a wrong password fails with "unable to connect" (${err})`);
	ok(improv.error === UNABLE_TO_CONNECT, `the SDK's error state is UNABLE_TO_CONNECT (${improv.error})`);
	ok(improv.state !== PROVISIONED, `not provisioned after the failure (state ${improv.state})`);

	await improv.provision('Net', 'pass', 30000);
	ok(typeof improv.nextUrl === 'string' && /^https?:\/\/\S+/.test(improv.nextUrl),
		`provision("Net", "pass") resolves with a redirect URL (${improv.nextUrl})`);
	ok(improv.state === PROVISIONED, `state is PROVISIONED (${improv.state})`);

	await improv.requestCurrentState(5000);
	ok(improv.state === PROVISIONED && typeof improv.nextUrl === 'string',
		`a later current-state request still says provisioned, with the URL (${improv.nextUrl})`);

	await improv.close();
	await port.close();
	const exit = await sim.stop();
	ok(exit.code === 0, `espsim exits cleanly on SIGTERM (${exit.code ?? exit.sig})`);
	const serial = Buffer.concat(rx).toString('latin1');
	const leaked = ['wrong-password', 'secret9'].filter((p) => sim.stderr.includes(p) || serial.includes(p));
	ok(leaked.length === 0, 'no Wi-Fi password appears in espsim\'s log or the device\'s serial output', leaked.join(', '));
}

const needSim = () => (espsimPath() ? null : 'espsim is not built (set ESPSIM or ESPFS_BUILD)');

await runCases([
	{
		name: 'improv-wifi-serial-sdk, esp32 running a synthetic ESPHome-like image (no shared/ needed)',
		skip: needSim,
		timeout: 60000,
		async run(t) {
			const { image, expect } = esp32EsphomeFactory();
			await improvSession(t, image, { firmware: expect.project, version: expect.projectVersion, name: expect.name });
		},
	},
	{
		name: 'improv-wifi-serial-sdk, esp32 running the ESPHome factory image',
		skip: () => needSim() || sharedFile(FACTORY).skip || null,
		timeout: 60000,
		async run(t) {
			// shared/firmware/MANIFEST.md: app_desc project-template, ESPHome 2024.6.6
			await improvSession(t, readFile(sharedFile(FACTORY).path), { firmware: 'ESPHome', version: '2024.6.6', name: 'project-template' });
		},
	},
	{
		name: 'improv-wifi-serial-sdk, esp8266 running the ESPHome factory image',
		skip: () => needSim() || sharedFile(FACTORY_8266).skip || null,
		timeout: 60000,
		async run(t) {
			// strings in the image: ESPHome 2024.6.4, project-template.local
			await improvSession(t, readFile(sharedFile(FACTORY_8266).path),
				{ firmware: 'ESPHome', version: '2024.6.4', name: 'project-template' }, 'esp8266');
		},
	},
]);
