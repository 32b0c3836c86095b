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

#define SCAN_INTERVAL_MS 1000
/* Native-USB chips drop off the bus for a moment on every reset: only a
 * port missing from several scans in a row is an unplug. */
#define SCAN_MISSES_FOR_REMOVAL 3

struct entry {
	esp_device *dev;
	bool scanned;           /* found by enumeration (subject to hotplug) */
	int misses;
	bool removed;
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
};

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

static int add_device(esp_devmgr *m, esp_device *d, bool scanned)
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
	m->v[m->n++] = (struct entry){ .dev = d, .scanned = scanned };
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
			snprintf(name, sizeof name, "%s", tok + 5);
		} else if (!strcmp(tok, "app")) {
			cfg.app = true;
		} else if (!strcmp(tok, "improv")) {
			cfg.improv = true;
		} else if (!strcmp(tok, "timing")) {
			cfg.timing = true;
		} else if (!strcmp(tok, "usb")) {
			cfg.native_usb = true;
		} else if (!strncmp(tok, "size=", 5)) {
			cfg.flash_size = (uint32_t)strtoul(tok + 5, NULL, 0);
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
	snprintf(d->id.port, sizeof d->id.port, "sim:%s", chip->key);
	int rc = add_device(m, d, false);
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
	int rc = add_device(m, d, false);
	if (rc < 0)
		device_unref(d);
	return rc;
}

#ifdef ESPFS_HAVE_SERIALPORT
static bool wanted_vid(int vid)
{
	/* Espressif native USB, CP210x, CH34x/CH9102, FTDI */
	return vid == 0x303a || vid == 0x10c4 || vid == 0x1a86 || vid == 0x0403;
}

static bool known_path(esp_devmgr *m, const char *path)
{
	char real[512];
	const char *rp = realpath(path, real) ? real : path;
	for (size_t i = 0; i < m->n; i++) {
		if (m->v[i].removed || m->v[i].dev->sim)
			continue;
		char r2[512];
		const char *p2 = realpath(m->v[i].dev->path, r2) ? r2 : m->v[i].dev->path;
		if (!strcmp(rp, p2)) {
			m->v[i].misses = 0;
			return true;
		}
	}
	return false;
}

static void scan_once(esp_devmgr *m)
{
	struct sp_port **ports = NULL;
	if (sp_list_ports(&ports) != SP_OK)
		return;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].scanned && !m->v[i].removed)
			m->v[i].misses++;
	pthread_mutex_unlock(&m->lock);
	for (int i = 0; ports[i]; i++) {
		struct sp_port *p = ports[i];
		int vid = 0, pid = 0;
		if (sp_get_port_transport(p) != SP_TRANSPORT_USB ||
		    sp_get_port_usb_vid_pid(p, &vid, &pid) != SP_OK || !wanted_vid(vid))
			continue;
		const char *path = sp_get_port_name(p);
		const char *serial = sp_get_port_usb_serial(p);
		pthread_mutex_lock(&m->lock);
		bool known = known_path(m, path);
		/* A chip that re-enumerated under another name (native USB
		 * switching between app and ROM) keeps its folder: same USB
		 * serial number and vendor, old port missing. */
		for (size_t k = 0; !known && serial && *serial && k < m->n; k++) {
			esp_device *o = m->v[k].dev;
			if (m->v[k].removed || !m->v[k].scanned || m->v[k].misses == 0 ||
			    o->id.usb_vid != vid || strcmp(o->id.usb_serial, serial))
				continue;
			pthread_mutex_lock(&o->lock);
			snprintf(o->path, sizeof o->path, "%s", path);
			snprintf(o->id.port, sizeof o->id.port, "%s", path);
			o->id.usb_pid = (uint16_t)pid;
			pthread_mutex_unlock(&o->lock);
			m->v[k].misses = 0;
			known = true;
			LOGI("%s: now at %s", o->name, path);
		}
		pthread_mutex_unlock(&m->lock);
		if (known)
			continue;
		esp_device *d = new_port_device(m, path);
		if (!d)
			continue;
		d->id.usb_vid = (uint16_t)vid;
		d->id.usb_pid = (uint16_t)pid;
		const char *s;
		if ((s = serial))
			snprintf(d->id.usb_serial, sizeof d->id.usb_serial, "%s", s);
		if ((s = sp_get_port_usb_product(p)))
			snprintf(d->id.usb_product, sizeof d->id.usb_product, "%s", s);
		if ((s = sp_get_port_usb_manufacturer(p)))
			snprintf(d->id.usb_manufacturer, sizeof d->id.usb_manufacturer, "%s", s);
		int bus = 0, addr = 0;
		if (sp_get_port_usb_bus_address(p, &bus, &addr) == SP_OK)
			snprintf(d->id.usb_path, sizeof d->id.usb_path, "bus %d address %d", bus, addr);
		LOGI("found %s (%04x:%04x)", path, vid, pid);
		if (add_device(m, d, true) < 0)
			device_unref(d);
	}
	sp_free_port_list(ports);
	/* unplugged ports */
	for (;;) {
		esp_device *gone = NULL;
		pthread_mutex_lock(&m->lock);
		for (size_t i = 0; i < m->n && !gone; i++)
			if (m->v[i].scanned && !m->v[i].removed &&
			    m->v[i].misses >= SCAN_MISSES_FOR_REMOVAL) {
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

static void *scan_main(void *arg)
{
	esp_devmgr *m = arg;
	for (;;) {
		scan_once(m);
		pthread_mutex_lock(&m->lock);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += SCAN_INTERVAL_MS / 1000;
		while (!m->stop && pthread_cond_timedwait(&m->cond, &m->lock, &ts) == 0)
			;
		bool stop = m->stop;
		pthread_mutex_unlock(&m->lock);
		if (stop)
			return NULL;
	}
}
#endif

int devmgr_start(esp_devmgr *m, bool scan)
{
	pthread_mutex_lock(&m->lock);
	m->started = true;
	size_t n = m->n;
	pthread_mutex_unlock(&m->lock);
	for (size_t i = 0; i < n; i++)
		dev_start(m->v[i].dev);
#ifdef ESPFS_HAVE_SERIALPORT
	if (scan && pthread_create(&m->scan_thread, NULL, scan_main, m) == 0)
		m->scanning = true;
#else
	if (scan)
		LOGW("built without libserialport: no USB enumeration");
#endif
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
#ifdef ESPFS_HAVE_SERIALPORT
	if (m->scanning)
		pthread_join(m->scan_thread, NULL);
#endif
	for (size_t i = 0; i < m->n; i++)
		dev_stop_and_join(m->v[i].dev);
	for (size_t i = 0; i < m->n; i++)
		device_unref(m->v[i].dev);
	free(m->v);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
}
