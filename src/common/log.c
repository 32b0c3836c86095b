#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include "espfs/log.h"

static int log_level = ESP_LOG_WARN;
static esp_log_sink log_sink;
static void *log_ctx;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void esp_log_set_level(int level) { log_level = level; }
int esp_log_get_level(void) { return log_level; }

void esp_log_set_sink(esp_log_sink sink, void *ctx)
{
	pthread_mutex_lock(&log_lock);
	log_sink = sink;
	log_ctx = ctx;
	pthread_mutex_unlock(&log_lock);
}

void esp_log(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	if (level > log_level && !log_sink)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	if (log_sink)
		log_sink(level, line, log_ctx);
	if (level <= log_level) {
		static const char *tag[8] = { "", "", "", "error", "warning", "", "info", "debug" };
		fprintf(stderr, "espfs: %s: %s\n", tag[level & 7], line);
	}
	pthread_mutex_unlock(&log_lock);
}
