/* Logging: one line per event to stderr (or a sink set by the program).
 * Never pass a Wi-Fi password to these functions. */
#ifndef ESPFS_LOG_H
#define ESPFS_LOG_H
#include <stdarg.h>

enum { ESP_LOG_ERR = 3, ESP_LOG_WARN = 4, ESP_LOG_INFO = 6, ESP_LOG_DEBUG = 7 };

void esp_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void esp_log_set_level(int level);
int esp_log_get_level(void);
typedef void (*esp_log_sink)(int level, const char *line, void *ctx);
void esp_log_set_sink(esp_log_sink sink, void *ctx);

#define LOGE(...) esp_log(ESP_LOG_ERR, __VA_ARGS__)
#define LOGW(...) esp_log(ESP_LOG_WARN, __VA_ARGS__)
#define LOGI(...) esp_log(ESP_LOG_INFO, __VA_ARGS__)
#define LOGD(...) esp_log(ESP_LOG_DEBUG, __VA_ARGS__)

#endif
