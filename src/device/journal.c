/* The per-device journal: a write or erase that espfs did not see to its
 * end (espfs killed, crashed, the host lost power) leaves the chip half
 * written, and the next espfs run must say so instead of "idle".  Before
 * a job first touches the flash the range goes into the journal as
 * "running"; when the job ends the journal holds the standing warning of
 * the device (device.c: an unfinished range nobody asked for), or is
 * removed when there is none.  At attach, once the MAC is known, a
 * journal left by an earlier run becomes the standing warning again.
 *
 * Where: $XDG_STATE_HOME/espfs/<mac>.journal, else /var/lib/espfs (root),
 * else $TMPDIR (or /tmp)/espfs-state-<uid>.  A simulated chip whose flash
 * persists in a file keeps it next to that file (FILE.espfs-journal): the
 * journal belongs with the flash it describes; one without a file has
 * nothing to outlive the run.  Format (text, one record):
 *   espfs-journal 1
 *   <running|incomplete> 0x<lo> 0x<hi> <unix time> <what>
 *   <the standing warning's text, or empty>
 * Best effort: a journal that cannot be written is logged, never an
 * error of the job. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "device_i.h"
#include "espfs/log.h"

static bool mkdirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		mkdir(path, 0700);
		*p = '/';
	}
	return mkdir(path, 0700) == 0 || errno == EEXIST;
}

static int journal_path(esp_device *d, char *out, size_t cap)
{
	if (d->sim) {
		if (!d->journal_file[0])
			return -ENOENT;
		snprintf(out, cap, "%s", d->journal_file);
		return 0;
	}
	struct dev_identity id;
	device_identity(d, &id);
	static const uint8_t zero[6];
	if (!id.known || !memcmp(id.mac, zero, 6))
		return -ENOENT;
	char dir[256];
	const char *x = getenv("XDG_STATE_HOME");
	if (x && x[0] == '/')
		snprintf(dir, sizeof dir, "%s/espfs", x);
	else if (geteuid() == 0)
		snprintf(dir, sizeof dir, "/var/lib/espfs");
	else
		snprintf(dir, sizeof dir, "%s/espfs-state-%u",
			 getenv("TMPDIR") && getenv("TMPDIR")[0] == '/' ? getenv("TMPDIR") : "/tmp",
			 (unsigned)geteuid());
	if (!mkdirs(dir))
		return -errno;
	snprintf(out, cap, "%s/%02x%02x%02x%02x%02x%02x.journal", dir, id.mac[0], id.mac[1],
		 id.mac[2], id.mac[3], id.mac[4], id.mac[5]);
	return 0;
}

static void put(esp_device *d, const char *kind, uint32_t lo, uint32_t hi, const char *what,
		const char *text)
{
	char path[512], tmp[530];
	if (journal_path(d, path, sizeof path) < 0)
		return;
	snprintf(tmp, sizeof tmp, "%s.new", path);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		LOGW("%s: cannot write the journal %s: %s", d->name, tmp, strerror(errno));
		return;
	}
	fprintf(f, "espfs-journal 1\n%s 0x%x 0x%x %lld %s\n%s\n", kind, lo, hi,
		(long long)time(NULL), what, text);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		LOGW("%s: cannot write the journal %s: %s", d->name, path, strerror(errno));
		unlink(tmp);
	}
}

void dev_journal_begin(esp_device *d, uint32_t lo, uint32_t hi, const char *what)
{
	char text[sizeof d->warn];
	pthread_mutex_lock(&d->lock);
	if (d->warn_hi > d->warn_lo) {
		if (d->warn_lo < lo)
			lo = d->warn_lo;
		if (d->warn_hi > hi)
			hi = d->warn_hi;
	}
	snprintf(text, sizeof text, "%s", d->warn_hi > d->warn_lo ? d->warn : "");
	pthread_mutex_unlock(&d->lock);
	put(d, "running", lo, hi, what, text);
}

void dev_journal_sync(esp_device *d)
{
	char text[sizeof d->warn], path[512];
	pthread_mutex_lock(&d->lock);
	uint32_t lo = d->warn_lo, hi = d->warn_hi;
	snprintf(text, sizeof text, "%s", d->warn);
	pthread_mutex_unlock(&d->lock);
	if (hi > lo)
		put(d, "incomplete", lo, hi, "-", text);
	else if (journal_path(d, path, sizeof path) == 0 && unlink(path) < 0 && errno != ENOENT)
		LOGW("%s: cannot remove the journal %s: %s", d->name, path, strerror(errno));
}

void dev_journal_load(esp_device *d)
{
	char path[512], kind[16] = "", what[64] = "", text[1024] = "", line[64];
	unsigned lo = 0, hi = 0;
	long long t = 0;
	pthread_mutex_lock(&d->lock);
	bool have = d->warn_hi > d->warn_lo;
	pthread_mutex_unlock(&d->lock);
	if (have || journal_path(d, path, sizeof path) < 0)
		return;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	bool ok = fgets(line, sizeof line, f) && !strcmp(line, "espfs-journal 1\n") &&
		  fscanf(f, "%15s %x %x %lld %63s", kind, &lo, &hi, &t, what) == 5 && hi > lo;
	if (ok) {
		fgetc(f);  /* the end of that line */
		if (!fgets(text, sizeof text, f))
			text[0] = 0;
		text[strcspn(text, "\n")] = 0;
	}
	fclose(f);
	if (!ok) {
		LOGW("%s: ignoring a malformed journal %s", d->name, path);
		return;
	}
	char when[32] = "?";
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm))
		strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
	if (!strcmp(kind, "running"))
		dev_flash_warn(d, lo, hi, "flash 0x%x-0x%x: a %s write or erase there was interrupted "
			       "(previous espfs run, %s); the flash may be erased or partly written "
			       "and the chip may not boot: write it again, or \"ack\" to state%s%s",
			       lo, hi, what, when, text[0] ? "; before that: " : "", text);
	else
		dev_flash_warn(d, lo, hi, "flash 0x%x-0x%x (previous espfs run, %s): %s", lo, hi,
			       when, text);
	LOGW("%s: the journal says flash 0x%x-0x%x was left unfinished by an earlier run", d->name,
	     lo, hi);
}
