// Loads the three reference clients the way each needs (see REFCLIENTS.md):
// esptool-js as is, esp-web-flasher from its self-contained bundle,
// improv-wifi-serial-sdk's serial.js through the resolve hook.
import { register } from 'node:module';

let hooked = false;
function hook() {
	if (!hooked) { register('./esm-hooks.mjs', import.meta.url); hooked = true; }
}

export async function esptoolJs() {
	return import('esptool-js');
}

export async function espWebFlasher() {
	return import('esp-web-flasher/dist/web/index.js');
}

export async function improvSerial() {
	hook();
	return import('improv-wifi-serial-sdk/dist/serial.js');
}
