// Node ESM loader hooks for packages published for bundlers
// (improv-wifi-serial-sdk imports "./util/hex-formatter" without ".js";
// esp-web-flasher's unbundled dist imports JSON without attributes).
// Registered from load-bundler-packages.mjs; only applies inside node_modules.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

export async function resolve(specifier, context, next) {
	try {
		return await next(specifier, context);
	} catch (e) {
		const fromDeps = context.parentURL && context.parentURL.includes('/node_modules/');
		if (!fromDeps || !(specifier.startsWith('./') || specifier.startsWith('../')))
			throw e;
		for (const suffix of ['.js', '/index.js']) {
			try { return await next(specifier + suffix, context); } catch { /* next */ }
		}
		throw e;
	}
}

export async function load(url, context, next) {
	if (url.startsWith('file:') && url.includes('/node_modules/') && url.endsWith('.json')) {
		const text = fs.readFileSync(fileURLToPath(url), 'utf8');
		return { format: 'module', source: `export default ${text};`, shortCircuit: true };
	}
	return next(url, context);
}
