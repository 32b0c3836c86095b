/* The device set: simulated devices and explicit ports from the command
 * line, USB serial ports found by enumeration (libserialport) with hotplug
 * polling, and the events the FUSE layer turns into notifications. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "device_i.h"
#include "espfs/log.h"
#ifdef ESPFS_HAVE_SERIALPORT
#include <libserialport.h>
#endif

/* The simulated bus is polled every tick, real USB every few ticks. */
#define TICK_MS 250
#define REAL_SCAN_TICKS 4
/* Native-USB chips drop off the bus for a moment on every reset and a
 * cable may be re-seated: a port must stay missing this long before its
 * folder goes (hotplug debounce). */
#define REMOVAL_AFTER_MS 3000

struct entry {
	esp_device *dev;
	bool scanned;           /* found by enumeration (subject to hotplug) */
	bool sim;               /* on the simulated USB bus */
	uint64_t missing_since; /* ms; 0 = present in the last scan */
	unsigned sim_gen;       /* simulated bus: enumeration seen last */
	unsigned sim_tty;       /* its ttyACM/ttyUSB number */
	bool removed;
};

/* One serial port as enumeration sees it. */
struct port_info {
	char path[256];         /* /dev/ttyACM0, or sim:ttyACM3 */
	uint16_t vid, pid;
	char serial[64], product[96], manufacturer[96], usb_path[128];
	esp_device *sim;        /* the simulated device behind it */
};

struct esp_devmgr {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct dev_options opt;
	dev_event_fn fn;
	void *ctx;
	struct entry *v;
	size_t n, cap;
	int sim_count;
	bool started;
	bool stop;
	pthread_t scan_thread;
	bool scanning;
	bool scan_real;
	unsigned next_acm, next_usb; /* simulated bus: next ttyACM/ttyUSB numbers */
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

esp_devmgr *devmgr_new(const struct dev_options *opt, dev_event_fn fn, void *ctx)
{
	esp_devmgr *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	m->opt = *opt;
	m->fn = fn;
	m->ctx = ctx;
	return m;
}

static bool name_taken(esp_devmgr *m, const char *name)
{
	if (!strcmp(name, "by-mac"))
		return true;
	for (size_t i = 0; i < m->n; i++)
		if (!m->v[i].removed && !strcmp(m->v[i].dev->name, name))
			return true;
	return false;
}

/* Called with m->lock held. */
static void unique_name(esp_devmgr *m, const char *want, char *out, size_t cap)
{
	snprintf(out, cap, "%s", want);
	for (int k = 2; name_taken(m, out); k++)
		snprintf(out, cap, "%s-%d", want, k);
}

static int add_device(esp_devmgr *m, esp_device *d, bool scanned, bool sim)
{
	pthread_mutex_lock(&m->lock);
	if (m->n == m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 8;
		struct entry *nv = realloc(m->v, nc * sizeof *nv);
		if (!nv) {
			pthread_mutex_unlock(&m->lock);
			return -ENOMEM;
		}
		m->v = nv;
		m->cap = nc;
	}
	m->v[m->n++] = (struct entry){ .dev = d, .scanned = scanned, .sim = sim };
	d->hotplug = scanned;
	bool started = m->started;
	pthread_mutex_unlock(&m->lock);
	if (started)
		dev_start(d);
	return 0;
}

static bool blank(sim_device *s, uint32_t off, uint32_t len)
{
	uint8_t *b = sim_flash_copy(s, off, len);
	bool r = true;
	for (uint32_t i = 0; b && i < len; i++)
		if (b[i] != 0xFF) {
			r = false;
			break;
		}
	free(b);
	return r;
}

int devmgr_add_sim(esp_devmgr *m, const char *spec, char *err, size_t errlen)
{
	char buf[1024], chipname[32] = "", name[64] = "", flash[512] = "";
	struct sim_config cfg;
	memset(&cfg, 0, sizeof cfg);
	snprintf(buf, sizeof buf, "%s", spec);
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!chipname[0] && !strchr(tok, '=')) {
			snprintf(chipname, sizeof chipname, "%s", tok);
		} else if (!strncmp(tok, "flash=", 6)) {
			snprintf(flash, sizeof flash, "%s", tok + 6);
		} else if (!strncmp(tok, "name=", 5)) {
			/* the name is a folder in the mount root: one path
			 * component, not "." / "..", not the by-mac folder */
			const char *v = tok + 5;
			if (!*v || strchr(v, '/') || !strcmp(v, ".") || !strcmp(v, "..") ||
			    !strcmp(v, "by-mac") || strlen(v) >= sizeof name - 4) {
				snprintf(err, errlen, "--sim name=%.80s: want a folder name of 1..%zu bytes "
					 "without '/', not \".\", \"..\" or \"by-mac\"", v,
					 sizeof name - 5);
				return -EINVAL;
			}
			snprintf(name, sizeof name, "%s", v);
		} else if (!strcmp(tok, "app")) {
			cfg.app = true;
		} else if (!strcmp(tok, "improv")) {
			cfg.improv = true;
		} else if (!strcmp(tok, "timing")) {
			cfg.timing = true;
		} else if (!strcmp(tok, "echo")) {
			cfg.echo = true;  /* its application echoes console input */
		} else if (!strcmp(tok, "usb")) {
			cfg.native_usb = true;
		} else if (!strcmp(tok, "reenum")) {
			cfg.native_usb = true;  /* USB-Serial/JTAG drops off the bus on resets */
			cfg.usb_jtag_reenumerate = true;
		} else if (!strncmp(tok, "size=", 5)) {
			/* strict: strtoul alone takes "-1", "4M" and, cast to
			 * 32 bits, turns 0x100000000 into 0 (the default size) */
			const char *v = tok + 5;
			char *end = NULL;
			errno = 0;
			unsigned long long sz = *v >= '0' && *v <= '9' ? strtoull(v, &end, 0) : 0;
			if (!end || *end || errno || sz == 0 || sz > UINT32_MAX) {
				snprintf(err, errlen, "--sim size=%.40s: want a byte count such as 0x400000 "
					 "(at most 32 bits)", v);
				return -EINVAL;
			}
			cfg.flash_size = (uint32_t)sz;
		} else if (!strncmp(tok, "wifi=", 5)) {
			const char *v = tok + 5, *colon = strchr(v, ':');
			if (!colon || cfg.n_wifi >= SIM_MAX_WIFI) {
				snprintf(err, errlen, "--sim %s: wifi=SSID:PASS expected", chipname);
				return -EINVAL;
			}
			int i = cfg.n_wifi++;
			snprintf(cfg.wifi[i].ssid, sizeof cfg.wifi[i].ssid, "%.*s", (int)(colon - v), v);
			snprintf(cfg.wifi[i].pass, sizeof cfg.wifi[i].pass, "%s", colon + 1);
		} else {
			snprintf(err, errlen, "--sim: unknown option '%s'", tok);
			return -EINVAL;
		}
	}
	const struct esp_chip_info *chip = esp_chip_by_name(chipname);
	if (!chip) {
		snprintf(err, errlen, "--sim: unknown chip '%s'", chipname);
		return -EINVAL;
	}
	if (cfg.app && cfg.n_wifi)
		cfg.improv = true;
	char dname[64];
	pthread_mutex_lock(&m->lock);
	if (!name[0])
		snprintf(name, sizeof name, "sim%d", m->sim_count);
	m->sim_count++;
	unique_name(m, name, dname, sizeof dname);
	pthread_mutex_unlock(&m->lock);
	cfg.chip = chip->key;
	cfg.flash_file = flash[0] ? flash : NULL;
	cfg.name = dname;
	sim_device *s = sim_device_new(&cfg, err, errlen);
	if (!s)
		return -EINVAL;
	/* An app device with nothing to boot gets a small synthetic image. */
	if (cfg.app && blank(s, 0, 0x10000)) {
		uint8_t *img;
		size_t len;
		if (device_synth_image(chip->key, "factory", "espfs-demo", &img, &len) == 0) {
			sim_flash_load(s, 0, img, len);
			free(img);
			sim_button_reset(s);
		}
	}
	esp_device *d = dev_alloc(m, dname, &m->opt);
	if (!d) {
		sim_device_free(s);
		return -ENOMEM;
	}
	d->sim = s;
	d->id.is_sim = true;
	if (flash[0])
		snprintf(d->journal_file, sizeof d->journal_file, "%s.espfs-journal", flash);
	snprintf(d->id.port, sizeof d->id.port, "sim:%s", chip->key);
	d->sim_socket = m->sim_count;  /* sockets 1, 2, ... */
	int rc = add_device(m, d, true, true);
	if (rc < 0)
		device_unref(d);
	return rc;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s && s[1] ? s + 1 : path;
}

static esp_device *new_port_device(esp_devmgr *m, const char *path)
{
	char dname[64];
	pthread_mutex_lock(&m->lock);
	unique_name(m, base_name(path), dname, sizeof dname);
	pthread_mutex_unlock(&m->lock);
	esp_device *d = dev_alloc(m, dname, &m->opt);
	if (!d)
		return NULL;
	snprintf(d->path, sizeof d->path, "%s", path);
	snprintf(d->id.port, sizeof d->id.port, "%s", path);
	return d;
}

int devmgr_add_port(esp_devmgr *m, const char *path, char *err, size_t errlen)
{
	if (access(path, F_OK) != 0) {
		snprintf(err, errlen, "--port %s: %s", path, strerror(errno));
		return -ENOENT;
	}
	esp_device *d = new_port_device(m, path);
	if (!d)
		return -ENOMEM;
	int rc = add_device(m, d, false, false);
	if (rc < 0)
		device_unref(d);
	return rc;
}

/* ---- matching enumerated ports to devices (real and simulated) ---- */

static bool same_path(const char *a, const char *b)
{
	char ra[512], rb[512];
	if (!strcmp(a, b))
		return true;
	const char *pa = realpath(a, ra) ? ra : a, *pb = realpath(b, rb) ? rb : b;
	return strcmp(pa, pb) == 0;
}

/* The device a port belongs to: the same port; else the same USB socket
 * (physical path: a re-enumeration under another name, e.g. an ESP32-S2
 * switching between ROM and app); else the same USB serial number of a
 * device whose port is missing (re-plugged into another socket).  Called
 * with m->lock held. */
static struct entry *match_port(esp_devmgr *m, const struct port_info *p)
{
	struct entry *by_path = NULL, *by_socket = NULL, *by_serial = NULL;
	for (size_t i = 0; i < m->n; i++) {
		struct entry *e = &m->v[i];
		esp_device *o = e->dev;
		if (e->removed || !e->scanned || e->sim != (p->sim != NULL))
			continue;
		if (p->sim) {  /* the simulated bus knows which chip is behind a port */
			if (o == p->sim)
				return e;
			continue;
		}
		pthread_mutex_lock(&o->lock);
		if (same_path(o->path, p->path))
			by_path = e;
		else if (p->usb_path[0] && !strcmp(o->id.usb_path, p->usb_path) && o->id.usb_vid == p->vid)
			by_socket = e;
		else if (p->serial[0] && !strcmp(o->id.usb_serial, p->serial) && o->id.usb_vid == p->vid &&
			 e->missing_since)
			by_serial = e;
		pthread_mutex_unlock(&o->lock);
	}
	return by_path ? by_path : by_socket ? by_socket : by_serial;
}

static void take_identity(esp_device *d, const struct port_info *p)
{
	snprintf(d->path, sizeof d->path, "%s", p->path);
	snprintf(d->id.port, sizeof d->id.port, "%s", p->path);
	d->id.usb_vid = p->vid;
	d->id.usb_pid = p->pid;
	snprintf(d->id.usb_serial, sizeof d->id.usb_serial, "%s", p->serial);
	if (p->product[0])
		snprintf(d->id.usb_product, sizeof d->id.usb_product, "%s", p->product);
	if (p->manufacturer[0])
		snprintf(d->id.usb_manufacturer, sizeof d->id.usb_manufacturer, "%s", p->manufacturer);
	snprintf(d->id.usb_path, sizeof d->id.usb_path, "%s", p->usb_path);
}

static esp_device *new_port_device(esp_devmgr *m, const char *path);

/* One scan's result for one kind of bus: known ports follow their device,
 * new real ports become devices, devices missing longer than the debounce
 * window go away. */
static void apply_scan(esp_devmgr *m, const struct port_info *ports, size_t n, bool sims)
{
	uint64_t now = now_ms();
	bool *seen = calloc(m->n + 1, sizeof *seen);
	if (!seen)
		return;
	pthread_mutex_lock(&m->lock);
	size_t n_entries = m->n;
	for (size_t k = 0; k < n; k++) {
		const struct port_info *p = &ports[k];
		struct entry *e = match_port(m, p);
		if (!e) {
			if (p->sim)
				continue;
			pthread_mutex_unlock(&m->lock);
			esp_device *d = new_port_device(m, p->path);
			if (d) {
				take_identity(d, p);
				LOGI("found %s (%04x:%04x)", p->path, p->vid, p->pid);
				if (add_device(m, d, true, false) < 0)
					device_unref(d);
			}
			pthread_mutex_lock(&m->lock);
			continue;
		}
		esp_device *o = e->dev;
		if ((size_t)(e - m->v) < n_entries)
			seen[e - m->v] = true;
		pthread_mutex_lock(&o->lock);
		bool moved = o->path[0] && strcmp(o->path, p->path) != 0;
		bool back = o->port_missing || (moved && o->follow_port);
		take_identity(o, p);
		o->port_missing = false;
		if (back) {
			o->replugged = true;
			pthread_cond_broadcast(&o->cond);
		}
		pthread_mutex_unlock(&o->lock);
		e->missing_since = 0;
		if (moved && !back)
			LOGI("%s: now at %s (%s)", o->name, p->path, p->usb_path);
		if (back)
			LOGI("%s: back at %s", o->name, p->path);
	}
	esp_device **missing = calloc(n_entries + 1, sizeof *missing);
	size_t n_missing = 0;
	for (size_t i = 0; missing && i < n_entries && i < m->n; i++) {
		struct entry *e = &m->v[i];
		if (seen[i] || e->removed || !e->scanned || e->sim != sims || e->missing_since)
			continue;
		pthread_mutex_lock(&e->dev->lock);
		bool attached = e->dev->attached;
		if (attached)
			e->dev->port_missing = true;
		pthread_mutex_unlock(&e->dev->lock);
		if (!attached)
			continue;
		e->missing_since = now;
		device_ref(e->dev);
		missing[n_missing++] = e->dev;
	}
	pthread_mutex_unlock(&m->lock);
	free(seen);
	for (size_t i = 0; i < n_missing; i++) {
		LOGI("%s: port missing", missing[i]->name);
		dev_set_mode(missing[i], "unplugged");
		device_unref(missing[i]);
	}
	free(missing);
	for (;;) {
		esp_device *gone = NULL;
		pthread_mutex_lock(&m->lock);
		for (size_t i = 0; i < m->n && !gone; i++)
			if (m->v[i].scanned && !m->v[i].removed && m->v[i].sim == sims &&
			    m->v[i].missing_since && now - m->v[i].missing_since >= REMOVAL_AFTER_MS &&
			    !m->v[i].dev->gone) {
				gone = m->v[i].dev;
				device_ref(gone);
			}
		pthread_mutex_unlock(&m->lock);
		if (!gone)
			break;
		dev_mark_gone(gone);
		device_unref(gone);
	}
}

/* The simulated USB bus: each simulated device sits in a socket (its
 * physical path) and, while plugged, shows one port named like the kernel
 * would (ttyUSB for a USB-UART bridge, ttyACM for native USB), a new name
 * on every re-enumeration.  Serial numbers: native USB reports the MAC
 * (Espressif's USB-Serial/JTAG and TinyUSB do), a bridge its own. */
static void scan_sims(esp_devmgr *m)
{
	pthread_mutex_lock(&m->lock);
	size_t cap = m->n;
	struct port_info *ports = calloc(cap + 1, sizeof *ports);
	size_t n = 0;
	for (size_t i = 0; ports && i < m->n; i++) {
		struct entry *e = &m->v[i];
		esp_device *d = e->dev;
		if (!e->sim || e->removed)
			continue;
		uint16_t pid = sim_usb_pid(d->sim);
		if (!pid)
			continue;  /* unplugged */
		unsigned gen = sim_port_generation(d->sim);
		uint16_t vid = sim_usb_vid(d->sim);
		bool native = vid == 0x303a;
		if (gen != e->sim_gen || !e->sim_tty) {
			e->sim_gen = gen;
			e->sim_tty = native ? ++m->next_acm : ++m->next_usb;
		}
		struct port_info *p = &ports[n++];
		uint8_t mac[6];
		sim_get_mac(d->sim, mac);
		snprintf(p->path, sizeof p->path, "sim:tty%s%u", native ? "ACM" : "USB", e->sim_tty - 1);
		p->vid = vid;
		p->pid = pid;
		p->sim = d;
		if (native)
			snprintf(p->serial, sizeof p->serial, "%02X:%02X:%02X:%02X:%02X:%02X", mac[0], mac[1],
				 mac[2], mac[3], mac[4], mac[5]);
		else
			snprintf(p->serial, sizeof p->serial, "%02x%02x%02x%02x", mac[2] ^ 0x5a, mac[3],
				 mac[4], mac[5]);
		snprintf(p->manufacturer, sizeof p->manufacturer, "%s",
			 native ? "Espressif" : "Silicon Labs");
		snprintf(p->product, sizeof p->product, "%s",
			 !native ? "CP2102 USB to UART Bridge Controller"
			 : pid == 0x1001 ? "USB JTAG/serial debug unit" : "ESP32-S2 (simulated)");
		pthread_mutex_lock(&d->lock);
		int socket = d->sim_socket;
		pthread_mutex_unlock(&d->lock);
		snprintf(p->usb_path, sizeof p->usb_path, "sim-usb1-%d", socket);
	}
	pthread_mutex_unlock(&m->lock);
	if (ports)
		apply_scan(m, ports, n, true);
	free(ports);
}

#ifdef ESPFS_HAVE_SERIALPORT
static bool wanted_vid(int vid)
{
	/* Espressif native USB, CP210x, CH34x/CH9102, FTDI */
	return vid == 0x303a || vid == 0x10c4 || vid == 0x1a86 || vid == 0x0403;
}

static void scan_real(esp_devmgr *m)
{
	struct sp_port **ports = NULL;
	if (sp_list_ports(&ports) != SP_OK)
		return;
	size_t cnt = 0;
	while (ports[cnt])
		cnt++;
	struct port_info *pi = calloc(cnt + 1, sizeof *pi);
	size_t n = 0;
	for (size_t i = 0; pi && i < cnt; i++) {
		struct sp_port *p = ports[i];
		int vid = 0, pid = 0;
		if (sp_get_port_transport(p) != SP_TRANSPORT_USB ||
		    sp_get_port_usb_vid_pid(p, &vid, &pid) != SP_OK || !wanted_vid(vid))
			continue;
		struct port_info *q = &pi[n++];
		const char *s;
		snprintf(q->path, sizeof q->path, "%s", sp_get_port_name(p));
		q->vid = (uint16_t)vid;
		q->pid = (uint16_t)pid;
		if ((s = sp_get_port_usb_serial(p)))
			snprintf(q->serial, sizeof q->serial, "%s", s);
		if ((s = sp_get_port_usb_product(p)))
			snprintf(q->product, sizeof q->product, "%s", s);
		if ((s = sp_get_port_usb_manufacturer(p)))
			snprintf(q->manufacturer, sizeof q->manufacturer, "%s", s);
		dev_usb_physical_path("/sys", q->path, q->usb_path, sizeof q->usb_path);
		int bus = 0, addr = 0;
		if (!q->usb_path[0] && sp_get_port_usb_bus_address(p, &bus, &addr) == SP_OK)
			snprintf(q->usb_path, sizeof q->usb_path, "bus %d address %d", bus, addr);
	}
	sp_free_port_list(ports);
	if (pi)
		apply_scan(m, pi, n, false);
	free(pi);
	dev_note_ttyless_bridges();  /* a board whose tty brltty took */
}
#endif

static void *scan_main(void *arg)
{
	esp_devmgr *m = arg;
	for (unsigned tick = 0;; tick++) {
		scan_sims(m);
#ifdef ESPFS_HAVE_SERIALPORT
		if (m->scan_real && tick % REAL_SCAN_TICKS == 0)
			scan_real(m);
#endif
		pthread_mutex_lock(&m->lock);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!m->stop && pthread_cond_timedwait(&m->cond, &m->lock, &ts) == 0)
			;
		bool stop = m->stop;
		pthread_mutex_unlock(&m->lock);
		if (stop)
			return NULL;
	}
}

int devmgr_start(esp_devmgr *m, bool scan)
{
	pthread_mutex_lock(&m->lock);
	m->started = true;
	size_t n = m->n;
	pthread_mutex_unlock(&m->lock);
	for (size_t i = 0; i < n; i++)
		dev_start(m->v[i].dev);
#ifdef ESPFS_HAVE_SERIALPORT
	m->scan_real = scan;
#else
	if (scan)
		LOGW("built without libserialport: no USB enumeration");
#endif
	/* simulated devices sit on a simulated bus polled the same way */
	bool sims = false;
	for (size_t i = 0; i < n; i++)
		sims |= m->v[i].sim;
	if ((m->scan_real || sims) && pthread_create(&m->scan_thread, NULL, scan_main, m) == 0)
		m->scanning = true;
	return 0;
}

void devmgr_wait_attached(esp_devmgr *m, unsigned timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->lock);
	for (;;) {
		bool all = true;
		for (size_t i = 0; i < m->n; i++)
			if (!m->v[i].removed && !m->v[i].dev->announced)
				all = false;
		if (all || pthread_cond_timedwait(&m->cond, &m->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&m->lock);
}

void devmgr_device_ready(esp_devmgr *m, esp_device *d)
{
	pthread_mutex_lock(&d->lock);
	d->announced = true;
	pthread_mutex_unlock(&d->lock);
	devmgr_emit(m, d, DEV_EV_ADDED);
	pthread_mutex_lock(&m->lock);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

void devmgr_emit(esp_devmgr *m, esp_device *d, enum dev_event ev)
{
	if (ev == DEV_EV_REMOVED) {
		pthread_mutex_lock(&m->lock);
		for (size_t i = 0; i < m->n; i++)
			if (m->v[i].dev == d)
				m->v[i].removed = true;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
	}
	if (m->fn)
		m->fn(m->ctx, d, ev);
}

size_t devmgr_list(esp_devmgr *m, esp_device ***out)
{
	pthread_mutex_lock(&m->lock);
	esp_device **v = calloc(m->n + 1, sizeof *v);
	size_t k = 0;
	for (size_t i = 0; v && i < m->n; i++) {
		esp_device *d = m->v[i].dev;
		if (m->v[i].removed || !d->announced)
			continue;
		device_ref(d);
		v[k++] = d;
	}
	pthread_mutex_unlock(&m->lock);
	*out = v;
	return k;
}

void devmgr_list_free(esp_device **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		device_unref(v[i]);
	free(v);
}

void devmgr_free(esp_devmgr *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stop = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (m->scanning)
		pthread_join(m->scan_thread, NULL);
	for (size_t i = 0; i < m->n; i++)
		dev_stop_and_join(m->v[i].dev);
	for (size_t i = 0; i < m->n; i++)
		device_unref(m->v[i].dev);
	free(m->v);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
}
