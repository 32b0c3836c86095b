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

/* The journal: the standing warnings, and the range a job is about to
 * touch (running: what), if any. */
static void put(esp_device *d, bool running, uint32_t lo, uint32_t hi, const char *what)
{
	char path[512], tmp[530];
	if (journal_path(d, path, sizeof path) < 0)
		return;
	pthread_mutex_lock(&d->lock);
	int n = d->n_warns;
	struct dev_warn *w = n ? malloc((size_t)n * sizeof *w) : NULL;
	if (w)
		memcpy(w, d->warns, (size_t)n * sizeof *w);
	else
		n = 0;
	pthread_mutex_unlock(&d->lock);
	if (!n && !running) {
		if (unlink(path) < 0 && errno != ENOENT)
			LOGW("%s: cannot remove the journal %s: %s", d->name, path, strerror(errno));
		return;
	}
	snprintf(tmp, sizeof tmp, "%s.new", path);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		LOGW("%s: cannot write the journal %s: %s", d->name, tmp, strerror(errno));
		free(w);
		return;
	}
	long long now = (long long)time(NULL);
	fprintf(f, "espfs-journal 1\n");
	if (running)
		fprintf(f, "running 0x%x 0x%x %lld %s\n\n", lo, hi, now, what);
	for (int i = 0; i < n; i++)
		fprintf(f, "incomplete 0x%x 0x%x %lld -\n%s\n", w[i].lo, w[i].hi, now, w[i].text);
	free(w);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		LOGW("%s: cannot write the journal %s: %s", d->name, path, strerror(errno));
		unlink(tmp);
	}
}

void dev_journal_begin(esp_device *d, uint32_t lo, uint32_t hi, const char *what)
{
	char w[64];
	/* one word: the record is space-separated */
	snprintf(w, sizeof w, "%s", what);
	for (char *p = w; *p; p++)
		if (*p == ' ' || *p == '\n')
			*p = '_';
	put(d, true, lo, hi, w);
}

void dev_journal_sync(esp_device *d)
{
	put(d, false, 0, 0, NULL);
}

void dev_journal_load(esp_device *d)
{
	char path[512], line[64];
	pthread_mutex_lock(&d->lock);
	bool have = d->n_warns > 0;
	pthread_mutex_unlock(&d->lock);
	if (have || journal_path(d, path, sizeof path) < 0)
		return;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	if (!fgets(line, sizeof line, f) || strcmp(line, "espfs-journal 1\n")) {
		LOGW("%s: ignoring a malformed journal %s", d->name, path);
		fclose(f);
		return;
	}
	char kind[16], what[64], text[1024];
	unsigned lo, hi;
	long long t;
	int n = 0;
	while (fscanf(f, "%15s %x %x %lld %63s", kind, &lo, &hi, &t, what) == 5) {
		fgetc(f);  /* the end of that line */
		if (!fgets(text, sizeof text, f))
			text[0] = 0;
		text[strcspn(text, "\n")] = 0;
		if (hi <= lo)
			continue;
		char when[32] = "?";
		time_t tt = (time_t)t;
		struct tm tm;
		if (gmtime_r(&tt, &tm))
			strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
		if (!strcmp(kind, "running"))
			dev_flash_warn(d, lo, hi, "flash 0x%x-0x%x: a %s write or erase there was "
				       "interrupted (previous espfs run, %s); it may be erased or partly "
				       "written and the chip may not boot: write it again, or \"ack\" "
				       "to state", lo, hi, what, when);
		else if (strstr(text, "(previous espfs run"))  /* carried over more than once */
			dev_flash_warn(d, lo, hi, "%s", text);
		else
			dev_flash_warn(d, lo, hi, "%s (previous espfs run, %s)", text, when);
		n++;
	}
	fclose(f);
	if (n)
		LOGW("%s: the journal %s says an earlier run left flash unfinished", d->name, path);
}
