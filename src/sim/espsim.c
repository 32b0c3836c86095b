/* espsim: one simulated Espressif device on a pseudo-terminal, for clients
 * that only know serial ports (esptool-js, esp-web-flasher, Improv SDK,
 * espfs itself).  Prints the slave path when ready; serves until SIGINT or
 * SIGTERM.  A pty has no DTR/RTS, so resets cannot be signalled over it;
 * --rfc2217 PORT serves the device over RFC 2217 instead (espsim_net.c),
 * which carries them, and --tcp PORT as raw bytes. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include "espfs/sim.h"
#include "espsim_net.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void usage(FILE *f)
{
	fprintf(f,
		"usage: espsim --chip CHIP (--link PATH | --rfc2217 PORT | --tcp PORT) [options]\n"
		"  --chip CHIP        esp8266, esp32, esp32s2, esp32s3, esp32c3, esp32c6\n"
		"  --link PATH        symlink to the pty slave (replaced if it is a symlink)\n"
		"  --rfc2217 PORT     instead of a pty: an RFC 2217 server on 127.0.0.1:PORT\n"
		"                     (0: any free port), one client at a time; its baud rate\n"
		"                     and DTR/RTS reach the device (auto-reset works); prints\n"
		"                     rfc2217://127.0.0.1:PORT when ready\n"
		"  --tcp PORT         the same as raw TCP (no control: socket://127.0.0.1:PORT)\n"
		"  --flash FILE       flash contents (created blank at the flash size)\n"
		"  --flash-size N     bytes, or with K/M suffix (default: 4M)\n"
		"  --app              boot the firmware in flash (default: ROM download mode)\n"
		"  --wifi SSID:PASS   a network the simulated air offers (repeatable)\n"
		"  --improv           speak Improv even if the image is not ESPHome\n"
		"  --timing           link and flash timing model on\n"
		"  --mac XX:XX:XX:XX:XX:XX\n"
		"  --name NAME        derives a stable MAC when --mac is absent\n"
		"  --native-usb       native USB identity (S2 USB-OTG, C3/S3/C6 USB-JTAG)\n"
		"  --fault corrupt=RATE|drop=RATE|stall|garbage|unplug=PERCENT|flashfail|maxbaud=N\n"
		"  --seed N           seed of the fault generator\n");
}

static int parse_size(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);
	if (end == s)
		return -1;
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	if (*end || v == 0 || v > 0xFFFFFFFFull)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned b[6];
	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (b[i] > 255)
			return -1;
		mac[i] = (uint8_t)b[i];
	}
	return 0;
}

static int parse_fault(const char *s, struct sim_faults *f)
{
	const char *eq = strchr(s, '=');
	const char *v = eq ? eq + 1 : NULL;
	size_t kl = eq ? (size_t)(eq - s) : strlen(s);
	if (kl == 7 && !strncmp(s, "corrupt", 7) && v)
		f->corrupt_rate = atof(v);
	else if (kl == 4 && !strncmp(s, "drop", 4) && v)
		f->drop_rate = atof(v);
	else if (kl == 5 && !strncmp(s, "stall", 5))
		f->stall = true;
	else if (kl == 7 && !strncmp(s, "garbage", 7))
		f->garbage = true;
	else if (kl == 6 && !strncmp(s, "unplug", 6) && v)
		f->unplug_at_percent = atoi(v);
	else if (kl == 9 && !strncmp(s, "flashfail", 9))
		f->flash_program_fail = true;
	else if (kl == 7 && !strncmp(s, "maxbaud", 7) && v)
		f->max_baud = (uint32_t)strtoul(v, NULL, 0);
	else
		return -1;
	return 0;
}

static uint32_t speed_to_baud(speed_t s)
{
	static const struct { speed_t s; uint32_t b; } t[] = {
		{ B300, 300 }, { B1200, 1200 }, { B2400, 2400 }, { B4800, 4800 }, { B9600, 9600 },
		{ B19200, 19200 }, { B38400, 38400 }, { B57600, 57600 }, { B115200, 115200 },
		{ B230400, 230400 }, { B460800, 460800 }, { B500000, 500000 }, { B576000, 576000 },
		{ B921600, 921600 }, { B1000000, 1000000 }, { B1152000, 1152000 }, { B1500000, 1500000 },
		{ B2000000, 2000000 }, { B2500000, 2500000 }, { B3000000, 3000000 },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (t[i].s == s)
			return t[i].b;
	return 0;
}

/* The rate the client set on the port (tcsetattr on its fd changes the
 * one termios of the pty, which our slave fd sees). */
static void sync_baud(sim_device *d, int slave, uint32_t *seen)
{
	struct termios tio;
	if (tcgetattr(slave, &tio) == 0) {
		uint32_t b = speed_to_baud(cfgetospeed(&tio));
		if (b && b != *seen) {
			*seen = b;
			sim_set_baud(d, b);
			fprintf(stderr, "espsim: baud %u\n", b);  /* tests watch it */
		}
	}
}

/* Serving from now on: stop cleanly on INT/TERM, survive a client that
 * hangs up, say what is served where on stderr (tests and humans watch
 * it) and print the address to connect to on stdout. */
static void serving(sim_device *d, const char *where, const char *address)
{
	struct sigaction sa = { 0 };
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	uint8_t m6[6];
	sim_get_mac(d, m6);
	fprintf(stderr, "espsim: %s mac %02x:%02x:%02x:%02x:%02x:%02x on %s\n", sim_chip(d)->key,
		m6[0], m6[1], m6[2], m6[3], m6[4], m6[5], where);
	printf("%s\n", address);
	fflush(stdout);
}

static int serve_net(sim_device *d, int port, bool telnet)
{
	int bound = 0;
	int lfd = espsim_listen(port, &bound);
	if (lfd < 0) {
		fprintf(stderr, "espsim: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(-lfd));
		sim_device_free(d);
		return 1;
	}
	char where[64];
	snprintf(where, sizeof where, "%s://127.0.0.1:%d", telnet ? "rfc2217" : "socket", bound);
	serving(d, where, where);
	espsim_serve_net(d, lfd, telnet, &stop);
	sim_device_free(d);
	return 0;
}

int main(int argc, char **argv)
{
	struct sim_config cfg = { 0 };
	struct sim_faults faults = { 0 };
	bool have_faults = false;
	const char *link_path = NULL;
	int net_port = -1;
	bool net_telnet = false;
	uint8_t mac[6];
	static const struct option opts[] = {
		{ "chip", required_argument, 0, 'c' }, { "link", required_argument, 0, 'l' },
		{ "flash", required_argument, 0, 'f' }, { "flash-size", required_argument, 0, 's' },
		{ "app", no_argument, 0, 'a' }, { "wifi", required_argument, 0, 'w' },
		{ "improv", no_argument, 0, 'i' }, { "timing", no_argument, 0, 't' },
		{ "mac", required_argument, 0, 'm' }, { "name", required_argument, 0, 'n' },
		{ "native-usb", no_argument, 0, 'u' }, { "fault", required_argument, 0, 'F' },
		{ "seed", required_argument, 0, 'S' }, { "help", no_argument, 0, 'h' },
		{ "rfc2217", required_argument, 0, 'R' }, { "tcp", required_argument, 0, 'T' },
		{ 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cfg.chip = optarg; break;
		case 'l': link_path = optarg; break;
		case 'f': cfg.flash_file = optarg; break;
		case 's':
			if (parse_size(optarg, &cfg.flash_size) < 0) {
				fprintf(stderr, "espsim: bad --flash-size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'a': cfg.app = true; break;
		case 'i': cfg.improv = true; break;
		case 't': cfg.timing = true; break;
		case 'u': cfg.native_usb = true; break;
		case 'n': cfg.name = optarg; break;
		case 'w': {
			const char *colon = strchr(optarg, ':');
			if (!colon || cfg.n_wifi == SIM_MAX_WIFI || (size_t)(colon - optarg) >= sizeof cfg.wifi[0].ssid ||
			    strlen(colon + 1) >= sizeof cfg.wifi[0].pass) {
				fprintf(stderr, "espsim: bad --wifi (want SSID:PASS, at most %d)\n", SIM_MAX_WIFI);
				return 2;
			}
			memcpy(cfg.wifi[cfg.n_wifi].ssid, optarg, (size_t)(colon - optarg));
			strcpy(cfg.wifi[cfg.n_wifi].pass, colon + 1);
			cfg.n_wifi++;
			break;
		}
		case 'm':
			if (parse_mac(optarg, mac) < 0) {
				fprintf(stderr, "espsim: bad --mac '%s'\n", optarg);
				return 2;
			}
			cfg.mac = mac;
			break;
		case 'F':
			if (parse_fault(optarg, &faults) < 0) {
				fprintf(stderr, "espsim: bad --fault '%s'\n", optarg);
				return 2;
			}
			have_faults = true;
			break;
		case 'R':
		case 'T': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || !*optarg || v < 0 || v > 65535) {
				fprintf(stderr, "espsim: bad port '%s'\n", optarg);
				return 2;
			}
			net_port = (int)v;
			net_telnet = c == 'R';
			break;
		}
		case 'S': faults.seed = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!cfg.chip || (!link_path) == (net_port < 0)) {
		usage(stderr);
		return 2;
	}

	char err[256] = "";
	sim_device *d = sim_device_new(&cfg, err, sizeof err);
	if (!d) {
		fprintf(stderr, "espsim: %s\n", err);
		return 1;
	}
	if (have_faults)
		sim_set_faults(d, &faults);
	if (net_port >= 0)
		return serve_net(d, net_port, net_telnet);

	int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
		perror("espsim: pty");
		sim_device_free(d);
		return 1;
	}
	char slave_path[128];
	if (ptsname_r(master, slave_path, sizeof slave_path) != 0) {
		perror("espsim: ptsname");
		sim_device_free(d);
		return 1;
	}
	/* keep a slave fd open: without one the master reads EIO whenever no
	 * client has the port open */
	int slave = open(slave_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct termios tio;
	if (slave < 0 || tcgetattr(slave, &tio) < 0) {
		perror("espsim: slave");
		sim_device_free(d);
		return 1;
	}
	cfmakeraw(&tio);
	cfsetispeed(&tio, B115200);
	cfsetospeed(&tio, B115200);
	tcsetattr(slave, TCSANOW, &tio);
	fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);

	struct stat st;
	if (lstat(link_path, &st) == 0) {
		if (!S_ISLNK(st.st_mode)) {
			fprintf(stderr, "espsim: %s exists and is not a symlink\n", link_path);
			sim_device_free(d);
			return 1;
		}
		unlink(link_path);
	}
	if (symlink(slave_path, link_path) < 0) {
		fprintf(stderr, "espsim: symlink %s: %s\n", link_path, strerror(errno));
		sim_device_free(d);
		return 1;
	}

	char where[1200];  /* link_path is from the command line; snprintf cuts */
	snprintf(where, sizeof where, "%s -> %s", link_path, slave_path);
	serving(d, where, slave_path);

	const esp_clock *clk = esp_clock_real();
	uint8_t pend[65536];
	size_t pend_len = 0, pend_pos = 0;
	uint32_t baud_seen = 115200;
	bool linked = true;
	while (!stop) {
		if (linked && sim_get_mode(d) == SIM_MODE_OFF) {
			/* unplugged (fault injection): the port goes away like a USB
			 * device does, so open handles fail at once (EIO / hangup) */
			fprintf(stderr, "espsim: device unplugged; port %s removed\n", slave_path);
			unlink(link_path);
			close(master);
			close(slave);
			linked = false;
		}
		if (!linked) {
			poll(NULL, 0, 50);
			continue;
		}
		uint64_t now = esp_now_us(clk);
		sync_baud(d, slave, &baud_seen);
		if (pend_pos == pend_len) {
			pend_pos = 0;
			pend_len = sim_host_read(d, pend, sizeof pend, now);
		}
		while (pend_pos < pend_len) {
			ssize_t w = write(master, pend + pend_pos, pend_len - pend_pos);
			if (w > 0)
				pend_pos += (size_t)w;
			else
				break;       /* pty full: the client is not reading */
		}
		uint64_t next = sim_next_event_us(d);
		int timeout = 10;
		if (pend_pos < pend_len)
			timeout = 2;
		else if (next != UINT64_MAX && next > now && next - now < 10000)
			timeout = (int)((next - now + 999) / 1000);
		else if (next != UINT64_MAX && next <= now)
			timeout = 0;
		struct pollfd pfd = { master, POLLIN, 0 };
		int r = poll(&pfd, 1, timeout);
		if (r > 0 && (pfd.revents & POLLIN)) {
			uint8_t in[4096];
			ssize_t n = read(master, in, sizeof in);
			if (n > 0) {
				/* the client sets the rate before it writes at it */
				sync_baud(d, slave, &baud_seen);
				sim_host_write(d, in, (size_t)n, esp_now_us(clk));
			}
		}
	}
	if (linked) {
		unlink(link_path);
		close(slave);
		close(master);
	}
	sim_device_free(d);
	return 0;
}
