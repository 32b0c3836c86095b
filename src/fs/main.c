/* espfs: mount every attached Espressif chip as a folder.
 *
 *   espfs [options] MOUNTPOINT
 *
 * Options of our own are taken out of argv first; the rest (-f, -d, -s is
 * refused, -o ...) goes to libfuse.  Order of start-up matters: mount and
 * daemonize before any thread exists (fork keeps only the caller), then
 * attach devices, then serve. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "espfs/log.h"
#include "vfs.h"

#define MAX_SPECS 64

struct opts {
	const char *sims[MAX_SPECS];
	int n_sims;
	const char *ports[MAX_SPECS];
	int n_ports;
	bool no_scan;
	bool demo;
	bool help;
	int verbose;
	struct dev_options dev;
};

static void usage(const char *prog)
{
	printf("usage: %s [options] MOUNTPOINT\n\n"
	       "Mounts every attached ESP chip as a folder (chip, mac, flash.bin, erase,\n"
	       "wifi, state, info.json, console).  See espfs(1) and docs/files.md.\n\n"
	       "espfs options:\n"
	       "    --sim SPEC         add a simulated device (repeatable); SPEC is\n"
	       "                       CHIP[,flash=FILE][,name=NAME][,app][,improv]\n"
	       "                       [,wifi=SSID:PASS][,timing][,size=BYTES][,usb][,reenum]\n"
	       "    --port PATH        add a serial port (repeatable): pty, symlink, tty\n"
	       "    --no-scan          do not enumerate USB serial ports\n"
	       "    --reset none|auto  how to reset chips (none: never touch DTR/RTS)\n"
	       "    --baud N           fastest loader baud rate to try after connecting; falls\n"
	       "                       back on a marginal link (default 921600; native USB\n"
	       "                       ignores it)\n"
	       "    --download-wait S  how long a job waits for BOOT+RESET when no reset\n"
	       "                       reaches the loader (default 60)\n"
	       "    --console-baud N   the application's UART rate for console (default\n"
	       "                       115200; native USB ignores it)\n"
	       "    --stub-dir DIR     where the stub flasher JSON files are\n"
	       "    --no-stub          use the ROM loader only\n"
	       "    --no-probe         do not enter the loader at attach (no identity)\n"
	       "    --demo             mount two simulated devices and say what to try\n"
	       "    -v, --verbose      log more (twice: debug)\n\n",
	       prog);
}

static int take_value(int argc, char **argv, int *i, const char *opt, const char **val)
{
	size_t l = strlen(opt);
	if (!strcmp(argv[*i], opt)) {
		if (*i + 1 >= argc) {
			fprintf(stderr, "espfs: %s needs a value\n", opt);
			exit(2);
		}
		*val = argv[++*i];
		return 1;
	}
	if (!strncmp(argv[*i], opt, l) && argv[*i][l] == '=') {
		*val = argv[*i] + l + 1;
		return 1;
	}
	return 0;
}

/* Remove our options from argv; returns the new argc. */
static int parse_own(int argc, char **argv, struct opts *o)
{
	int out = 1, positional[2] = { 0, 0 }, n_pos = 0;
	for (int i = 1; i < argc; i++) {
		const char *v;
		if (take_value(argc, argv, &i, "--sim", &v)) {
			if (o->n_sims < MAX_SPECS)
				o->sims[o->n_sims++] = v;
		} else if (take_value(argc, argv, &i, "--port", &v)) {
			if (o->n_ports < MAX_SPECS)
				o->ports[o->n_ports++] = v;
		} else if (take_value(argc, argv, &i, "--reset", &v)) {
			if (!strcmp(v, "none")) {
				o->dev.reset = ESP_RESET_NONE;
			} else if (!strcmp(v, "auto")) {
				o->dev.reset = ESP_RESET_AUTO;
			} else {
				fprintf(stderr, "espfs: --reset none|auto\n");
				exit(2);
			}
		} else if (take_value(argc, argv, &i, "--baud", &v)) {
			o->dev.baud = (uint32_t)strtoul(v, NULL, 0);
		} else if (take_value(argc, argv, &i, "--download-wait", &v)) {
			char *end;
			unsigned long sec = strtoul(v, &end, 10);
			if (*end || !*v || sec == 0 || sec > 3600) {
				fprintf(stderr, "espfs: --download-wait SECONDS (1..3600)\n");
				exit(2);
			}
			o->dev.download_wait_ms = (unsigned)sec * 1000u;
		} else if (take_value(argc, argv, &i, "--console-baud", &v)) {
			char *end;
			unsigned long b = strtoul(v, &end, 10);
			if (*end || !*v || b < 300 || b > 5000000) {
				fprintf(stderr, "espfs: --console-baud N (300..5000000)\n");
				exit(2);
			}
			o->dev.console_baud = (uint32_t)b;
		} else if (take_value(argc, argv, &i, "--stub-dir", &v)) {
			o->dev.stub_dir = v;
		} else if (!strcmp(argv[i], "--no-scan")) {
			o->no_scan = true;
		} else if (!strcmp(argv[i], "--no-stub")) {
			o->dev.no_stub = true;
		} else if (!strcmp(argv[i], "--no-probe")) {
			o->dev.no_probe = true;
		} else if (!strcmp(argv[i], "--demo")) {
			o->demo = true;
		} else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
			o->verbose++;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			o->help = true;
			argv[out++] = argv[i];
		} else {
			if (argv[i][0] != '-' && !(out > 1 && !strcmp(argv[out - 1], "-o")))
				positional[n_pos++ < 2 ? n_pos - 1 : 1] = out;
			argv[out++] = argv[i];
		}
	}
	/* mount(8) through mount.fuse3 runs "espfs SOURCE MOUNTPOINT -o ...":
	 * there is no source to speak of ("none", "espfs"): drop it */
	if (n_pos == 2) {
		memmove(&argv[positional[0]], &argv[positional[0] + 1],
			(size_t)(out - positional[0] - 1) * sizeof *argv);
		out--;
	}
	argv[out] = NULL;
	return out;
}

/* Paths on the command line mean what they mean where espfs was started:
 * the devices are opened after daemonizing, which changes to "/".  A
 * relative path is made absolute (symlinks are kept: a port's folder is
 * named after the link).  NULL on out of memory. */
static char *absolute(const char *p)
{
	if (p[0] == '/')
		return strdup(p);
	char cwd[4096];
	if (!getcwd(cwd, sizeof cwd))
		return NULL;
	char *out;
	if (asprintf(&out, "%s/%s", cwd, p) < 0)
		return NULL;
	return out;
}

/* --sim SPEC with flash=REL: the same spec with flash= made absolute. */
static char *absolute_sim_spec(const char *spec)
{
	const char *f = strstr(spec, "flash=");
	while (f && f != spec && f[-1] != ',')
		f = strstr(f + 1, "flash=");
	if (!f || f[6] == '/' || f[6] == 0 || f[6] == ',')
		return strdup(spec);
	const char *v = f + 6, *end = strchr(v, ',');
	size_t vl = end ? (size_t)(end - v) : strlen(v);
	char *rel = strndup(v, vl), *abs = rel ? absolute(rel) : NULL, *out = NULL;
	if (abs && asprintf(&out, "%.*sflash=%s%s", (int)(f - spec), spec, abs, end ? end : "") < 0)
		out = NULL;
	free(rel);
	free(abs);
	return out;
}

/* A --stub-dir must hold a stub for at least one chip (esptool's
 * <chip>.json or esptool-js's stub_flasher_<chip>.json): a wrong
 * directory would otherwise run the ROM loader without a word. */
static int check_stub_dir(const char *dir)
{
	static const char *chips[] = { "esp8266", "esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c6" };
	char path[4200], found[200] = "";
	size_t used = 0;
	if (access(dir, R_OK | X_OK) < 0) {
		fprintf(stderr, "espfs: --stub-dir %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < sizeof chips / sizeof *chips; i++) {
		const struct esp_chip_info *c = esp_chip_by_name(chips[i]);
		if (c && esp_stub_find(c, dir, path, sizeof path) == 0) {
			int n = snprintf(found + used, sizeof found - used, "%s%s", used ? " " : "", c->key);
			if (n > 0 && (size_t)n < sizeof found - used)
				used += (size_t)n;
		}
	}
	if (!used) {
		fprintf(stderr, "espfs: --stub-dir %s holds no stub flasher (looked for <chip>.json "
			"and stub_flasher_<chip>.json); they come with esptool (pip install esptool: "
			"esptool/targets/stub_flasher/2) or esptool-js (npm install esptool-js: "
			"lib/targets/stub_flasher); without --stub-dir espfs looks in the usual places\n",
			dir);
		return -1;
	}
	LOGI("stub flashers in %s for: %s", dir, found);
	return 0;
}

static void demo_text(const char *mnt)
{
	fprintf(stderr,
		"espfs demo: two simulated devices are mounted at %s\n"
		"  sim0: an ESP32 waiting in its ROM loader (empty flash)\n"
		"  sim1: an ESP32-S2 running an app that speaks Improv Wi-Fi\n"
		"  (timing model on: the link behaves like a 921600-baud UART, so a full\n"
		"  4 MB flash.bin read takes about 45 s; a second one, from the read\n"
		"  cache after MD5 checks, about 1.3 s)\n"
		"  The folders appear once both devices are identified (a few seconds).\n"
		"Try:\n"
		"  ls -l %s/sim0 %s/by-mac\n"
		"  cat %s/sim1/chip %s/sim1/mac %s/sim1/state\n"
		"  cat %s/sim1/info.json\n"
		"  echo 'HomeNet:correct horse' > %s/sim1/wifi; cat %s/sim1/wifi\n"
		"  echo 'HomeNet:wrong' > %s/sim1/wifi    # fails: Connection refused\n"
		"  cp %s/sim1/flash.bin /tmp/s2-backup.bin\n"
		"  cp /tmp/s2-backup.bin %s/sim1/flash.bin   # flash it back (watch state)\n"
		"  echo '0x9000 0x5000' > %s/sim1/erase\n"
		"Unmount with: fusermount3 -u %s\n",
		mnt, mnt, mnt, mnt, mnt, mnt, mnt, mnt, mnt, mnt, mnt, mnt, mnt, mnt);
}

int main(int argc, char **argv)
{
	struct opts o;
	memset(&o, 0, sizeof o);
	o.dev.reset = ESP_RESET_AUTO;
	argc = parse_own(argc, argv, &o);

	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts copts;
	struct fuse_session *se = NULL;
	struct fuse_loop_config *lcfg = NULL;
	esp_devmgr *mgr = NULL;
	int ret = 1;
	char err[256];
	char *owned[2 * MAX_SPECS + 1];  /* absolute paths made for the options */
	int n_owned = 0;

	if (fuse_parse_cmdline(&args, &copts) != 0)
		return 2;
	if (o.help || copts.show_help) {
		usage(argv[0]);
		fuse_cmdline_help();
		fuse_lowlevel_help();
		ret = 0;
		goto out_args;
	}
	if (copts.show_version) {
		printf("espfs 0.1.0\n");
		fuse_lowlevel_version();
		ret = 0;
		goto out_args;
	}
	if (!copts.mountpoint) {
		usage(argv[0]);
		fprintf(stderr, "espfs: no mountpoint given\n");
		ret = 2;
		goto out_args;
	}
	struct stat mst;
	if (stat(copts.mountpoint, &mst) != 0 && errno == ENOTCONN) {
		/* left by an espfs older than auto_unmount, or one killed while
		 * fusermount3 itself was killed */
		fprintf(stderr, "espfs: %s is a dead mount (Transport endpoint is not connected);\n"
			"       unmount it first: fusermount3 -u %s\n", copts.mountpoint,
			copts.mountpoint);
		ret = 1;
		goto out_args;
	}
	for (int i = 0; i < o.n_ports; i++)
		if (!(o.ports[i] = owned[n_owned++] = absolute(o.ports[i])))
			goto out_args;
	for (int i = 0; i < o.n_sims; i++)
		if (!(o.sims[i] = owned[n_owned++] = absolute_sim_spec(o.sims[i])))
			goto out_args;
	if (o.dev.stub_dir) {
		char *rp = realpath(o.dev.stub_dir, NULL);
		if (!rp) {
			fprintf(stderr, "espfs: --stub-dir %s: %s\n", o.dev.stub_dir, strerror(errno));
			ret = 2;
			goto out_args;
		}
		o.dev.stub_dir = owned[n_owned++] = rp;
		esp_log_set_level(o.verbose ? ESP_LOG_INFO : ESP_LOG_WARN);
		if (check_stub_dir(o.dev.stub_dir) < 0) {
			ret = 2;
			goto out_args;
		}
	}
	if (copts.singlethread)
		fprintf(stderr, "espfs: -s ignored: interrupts and other devices need the "
			"multithreaded loop\n");
#ifdef ESPFS_DEV_STUB_DIR
	/* Running from a source checkout: esptool-js's stubs from the test deps. */
	if (!o.dev.stub_dir && !getenv("ESPFS_STUB_DIR") && access(ESPFS_DEV_STUB_DIR, R_OK) == 0)
		o.dev.stub_dir = ESPFS_DEV_STUB_DIR;
#endif
	esp_log_set_level(o.verbose >= 2 || copts.debug ? ESP_LOG_DEBUG :
			  o.verbose ? ESP_LOG_INFO : ESP_LOG_WARN);
	/* default_permissions: the kernel checks the modes (flash.bin and
	 * wifi 0600: docs/files.md "Who may read what"; fsops.c checks them
	 * again).  auto_unmount: a crashed espfs (kill -9, abort) must not
	 * leave "Transport endpoint is not connected" on the mountpoint;
	 * libfuse then mounts through fusermount3, which stays behind and
	 * unmounts when our /dev/fuse descriptor closes, also as root. */
	fuse_opt_add_arg(&args, "-ofsname=espfs,subtype=espfs,default_permissions,auto_unmount");

	/* 115200 is what the ROM starts at, not what the link can do: aim
	 * higher by default; negotiation falls back on a marginal link
	 * (set before devmgr_new, which copies the options) */
	if (!o.dev.baud)
		o.dev.baud = 921600;
	mgr = devmgr_new(&o.dev, vfs_device_event, NULL);
	if (!mgr)
		goto out_args;
	if (o.demo) {
		static const char *demo[] = { "esp32,timing", "esp32s2,app,improv,timing,wifi=HomeNet:correct horse" };
		for (int i = 0; i < 2; i++)
			if (devmgr_add_sim(mgr, demo[i], err, sizeof err) < 0) {
				fprintf(stderr, "espfs: demo: %s\n", err);
				goto out_mgr;
			}
	}
	for (int i = 0; i < o.n_sims; i++)
		if (devmgr_add_sim(mgr, o.sims[i], err, sizeof err) < 0) {
			fprintf(stderr, "espfs: %s\n", err);
			ret = 2;
			goto out_mgr;
		}
	for (int i = 0; i < o.n_ports; i++)
		if (devmgr_add_port(mgr, o.ports[i], err, sizeof err) < 0) {
			fprintf(stderr, "espfs: %s\n", err);
			ret = 2;
			goto out_mgr;
		}

	nodes_init();
	se = fuse_session_new(&args, &espfs_ops, sizeof espfs_ops, NULL);
	if (!se)
		goto out_nodes;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, copts.mountpoint) != 0)
		goto out_signals;
	if (o.demo)  /* before daemonizing: stderr goes away then */
		demo_text(copts.mountpoint);
	fuse_daemonize(copts.foreground);
	if (notify_start(se) < 0)
		goto out_unmount;
	devmgr_start(mgr, !o.no_scan && !o.demo);
	/* Serve only once the devices known now are attached, so the first
	 * listing is complete (requests wait in the kernel meanwhile). */
	devmgr_wait_attached(mgr, 30000);

	lcfg = fuse_loop_cfg_create();
	if (!lcfg)
		goto out_notify;
	fuse_loop_cfg_set_clone_fd(lcfg, copts.clone_fd);
	fuse_loop_cfg_set_max_threads(lcfg, copts.max_threads > 16 ? copts.max_threads : 16);
	ret = fuse_session_loop_mt(se, lcfg) ? 1 : 0;
	fuse_loop_cfg_destroy(lcfg);
	console_shutdown();  /* reads still waiting for console output */
out_notify:
	/* workers may still answer requests: keep the session until they stop */
	fuse_session_unmount(se);
	devmgr_free(mgr);
	mgr = NULL;
	notify_stop();
	goto out_signals;
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_nodes:
	devmgr_free(mgr);
	mgr = NULL;
	pthread_mutex_lock(&vfs.lock);
	nodes_free_all();
	pthread_mutex_unlock(&vfs.lock);
out_mgr:
	devmgr_free(mgr);
out_args:
	for (int i = 0; i < n_owned; i++)
		free(owned[i]);
	free(copts.mountpoint);
	fuse_opt_free_args(&args);
	return ret;
}
