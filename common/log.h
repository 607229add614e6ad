/* Structured logs: one event per line, logfmt on stderr
 * (ts=... level=info comp=agent msg="node registered" node=n1), or native
 * journald fields (INK_NODE=n1) when stderr is connected to the journal.
 *
 *   LOG_INFO("node registered", "node", id, "cpus", LOG_INT(n));
 *
 * Fields are key/value pairs of strings; LOG_INT/LOG_U64 format numbers into
 * a buffer that lives as long as the enclosing block. */
#ifndef INK_LOG_H
#define INK_LOG_H

#include <stdint.h>

typedef enum { INK_LOG_DEBUG = 0, INK_LOG_INFO, INK_LOG_WARN, INK_LOG_ERROR } ink_log_level;

typedef enum { INK_LOG_AUTO = 0, INK_LOG_LOGFMT, INK_LOG_JOURNAL } ink_log_format;

void ink_log_init(const char *component, ink_log_level min_level, ink_log_format format);
int ink_log_parse_level(const char *s, ink_log_level *out);
void ink_log_kv(ink_log_level level, const char *msg, ...) __attribute__((sentinel));

const char *ink_fmt_i64(char buf[24], int64_t v);
const char *ink_fmt_u64(char buf[24], uint64_t v);

#define LOG_INT(v) ink_fmt_i64((char[24]){0}, (int64_t)(v))
#define LOG_U64(v) ink_fmt_u64((char[24]){0}, (uint64_t)(v))

#define LOG_DEBUG(msg, ...) ink_log_kv(INK_LOG_DEBUG, msg, ##__VA_ARGS__, (char *)0)
#define LOG_INFO(msg, ...) ink_log_kv(INK_LOG_INFO, msg, ##__VA_ARGS__, (char *)0)
#define LOG_WARN(msg, ...) ink_log_kv(INK_LOG_WARN, msg, ##__VA_ARGS__, (char *)0)
#define LOG_ERROR(msg, ...) ink_log_kv(INK_LOG_ERROR, msg, ##__VA_ARGS__, (char *)0)

#endif
