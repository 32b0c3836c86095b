// Table on stdout, everything (every run, wire bytes per rate, bounds) as
// JSON in the results file.
import fs from 'node:fs';
import path from 'node:path';

function table(head, body) {
	const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => String(r[i]).length)));
	const line = (r) => r.map((c, i) => (i < 4 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ');
	return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...body.map(line)].join('\n');
}

const median = (a) => { const s = [...a].sort((x, y) => x - y); const k = s.length >> 1; return s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2; };
const f = (x, d = 2) => (x == null || Number.isNaN(x) ? '-' : x.toFixed(d));
const kb = (wire, k) => (wire ? f(wire.reduce((s, w) => s + w[k], 0) / 1024, 1) : '-');

export function report(res, outFile) {
	const { meta, rows, extra } = res;
	const out = [];
	out.push(`espfs bench ${meta.date}  commit ${meta.commit}${meta.dirty ? ' (src changed)' : ''}  ${meta.host.cpus} CPUs`);
	for (const i of meta.images) out.push(`  ${i.chip}: ${i.bytes} bytes (${i.source})`);
	out.push('');
	out.push(table(
		['case', 'chip', 'who', 'what', 'runs', 'median s', 'ratio', 'vs write', 'up KiB', 'down KiB', 'bound s', 'meas/bound', 'sched s', 'meas/sched', 'serial s', 'meas/serial'],
		rows.map((r) => [r.case, r.chip, r.who, r.what, r.times_s.length, f(r.median_s), f(r.ratio), f(r.ratio_vs_write), kb(r.wire, 'up'), kb(r.wire, 'down'),
			f(r.bound?.overlap_s), f(r.meas_over_bound), f(r.sched?.sched_s), r.sched ? f((r.sched_of ? median(r.write_s) : r.median_s) / r.sched.sched_s) : '-',
			f(r.bound?.serial_s), f(r.meas_over_serial)])));
	out.push('');
	out.push('ratio: a, b, d = espfs / esptool-js of the same run (median over runs); c = re-flash / fresh flash; d again = second dump / first; e = wall(N) / wall(1).');
	out.push('vs write: espfs cp / esptool-js writeFlash alone (espfs connected at mount, see its mount row; esptool-js connects in main()).');
	out.push('bound = max(host->device wire, device->host wire, flash time) [pipelined]; serial = their sum [nothing overlapped];');
	out.push('wire time = counted bytes x 10 bits / baud at the rate they went at; flash time = sim NOR erase+program of the image');
	out.push('sched = the best any client can reach with a stub\'s one block in flight (schedbound.c: best block sizes for one libdeflate-12 stream');
	out.push('of the image on the sim\'s model, + the final MD5); esptool-js rows compare its writeFlash alone with it.');
	out.push('(re-flash: MD5 read only, so with no data sent it could take ~' + f(rows.find((r) => r.ideal_s)?.ideal_s) + ' s; dump: 4 MB read).  Bytes counted, not estimated: espfs through espfs-wire (transport counters),');
	out.push('esptool-js through espsim\'s /proc/PID/io.');
	if (extra.parallel.length) {
		out.push('');
		out.push(table(
			['devices', '', '', '', 'wall s', 'vs 1', 'idle chip p50 ms', 'idle p99 ms', 'idle max ms', 'busy chip p50 ms', 'busy p99 ms', 'busy max ms', 'VmHWM MiB', 'anon MiB', 'mount s'],
			extra.parallel.map((p) => [p.devices, '', '', '', f(p.median_s), f(p.vs_one), f(p.chip_latency.idle_device.median_ms, 1), f(p.chip_latency.idle_device.p99_ms, 1),
				f(p.chip_latency.idle_device.max_ms, 1), f(p.chip_latency.flashing_device.median_ms, 1), f(p.chip_latency.flashing_device.p99_ms, 1), f(p.chip_latency.flashing_device.max_ms, 1),
				f(p.vmhwm_kib / 1024, 1), f(p.rss_anon_kib / 1024, 1), f(Math.max(...p.mount_s))])));
		out.push('chip latency (latprobe.c): stat + open + read + close of <dev>/chip every 20 ms during the parallel cp; idle = a device not being flashed, busy = d0.');
		out.push('VmHWM: peak RSS of espfs, including the simulated devices (4 MiB flash file mapped per device, N+1 devices);');
		out.push('anon: RssAnon after the flash, espfs\'s own heap and stacks.');
	}
	out.push(`elapsed ${f(meta.elapsed_s, 0)} s; JSON: ${outFile}`);
	process.stdout.write(`${out.join('\n')}\n`);
	fs.mkdirSync(path.dirname(outFile), { recursive: true });
	fs.writeFileSync(outFile, `${JSON.stringify(res, null, 1)}\n`);
}
