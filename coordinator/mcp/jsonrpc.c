/* JSON-RPC 2.0 messages: taking one apart, building responses, errors and
 * notifications, and turning them into single lines. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcp.h"
#include "util.h"

bool ink_jsonrpc_valid_id(const json_t *id)
{
    return id && (json_is_string(id) || json_is_integer(id));
}

static void invalid(ink_jsonrpc_msg *out, json_t *id, const char *why)
{
    out->kind = INK_JSONRPC_INVALID;
    out->id = ink_jsonrpc_valid_id(id) ? id : NULL;
    out->why = why;
}

void ink_jsonrpc_classify(json_t *msg, ink_jsonrpc_msg *out)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(msg)) {
        invalid(out, NULL, "a JSON-RPC message must be an object");
        return;
    }
    json_t *id = json_object_get(msg, "id");
    const char *version = json_string_value(json_object_get(msg, "jsonrpc"));
    if (!version || strcmp(version, "2.0") != 0) {
        invalid(out, id, "\"jsonrpc\" must be \"2.0\"");
        return;
    }
    json_t *method = json_object_get(msg, "method");
    if (method) {
        if (!json_is_string(method)) {
            invalid(out, id, "\"method\" must be a string");
            return;
        }
        /* An id that is present but unusable (null, a fraction, a boolean)
         * makes the message neither a request nor a notification: answering
         * it with its own id is impossible, so it gets id null. */
        if (id && !ink_jsonrpc_valid_id(id)) {
            invalid(out, NULL, "\"id\" must be a string or an integer");
            return;
        }
        json_t *params = json_object_get(msg, "params");
        if (params && !json_is_object(params) && !json_is_array(params)) {
            invalid(out, id, "\"params\" must be an object");
            return;
        }
        out->kind = id ? INK_JSONRPC_REQUEST : INK_JSONRPC_NOTIFICATION;
        out->method = json_string_value(method);
        out->id = id;
        out->params = params;
        return;
    }
    bool has_result = json_object_get(msg, "result") != NULL;
    bool has_error = json_object_get(msg, "error") != NULL;
    /* Error responses may carry id null (the peer could not read ours). */
    if (has_result != has_error && id && (ink_jsonrpc_valid_id(id) || json_is_null(id))) {
        out->kind = INK_JSONRPC_RESPONSE;
        out->id = id;
        return;
    }
    invalid(out, id, "a JSON-RPC message needs \"method\", or \"result\" or \"error\" with \"id\"");
}

json_t *ink_jsonrpc_result(const json_t *id, json_t *result)
{
    json_t *m = json_object();
    json_object_set_new(m, "jsonrpc", json_string("2.0"));
    json_object_set_new(m, "id", id ? json_deep_copy(id) : json_null());
    json_object_set_new(m, "result", result ? result : json_object());
    return m;
}

json_t *ink_jsonrpc_error(const json_t *id, int code, const char *message)
{
    json_t *e = json_object();
    json_object_set_new(e, "code", json_integer(code));
    json_object_set_new(e, "message", ink_json_text(message));
    json_t *m = json_object();
    json_object_set_new(m, "jsonrpc", json_string("2.0"));
    json_object_set_new(m, "id", id ? json_deep_copy(id) : json_null());
    json_object_set_new(m, "error", e);
    return m;
}

json_t *ink_jsonrpc_notification(const char *method, json_t *params)
{
    json_t *m = json_object();
    json_object_set_new(m, "jsonrpc", json_string("2.0"));
    json_object_set_new(m, "method", json_string(method));
    if (params)
        json_object_set_new(m, "params", params);
    return m;
}

char *ink_jsonrpc_dump(const json_t *msg)
{
    char *s = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        abort(); /* only when out of memory: every string in msg is valid UTF-8 */
    return s;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if none.
 * Overlong forms, surrogates and code points past U+10FFFF are invalid,
 * as jansson has it. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

json_t *ink_json_text(const char *s)
{
    if (!s)
        s = "";
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s);
    /* Every bad byte may grow to the 3 bytes of U+FFFD. */
    cleanup_free char *clean = ink_xmalloc(3 * n + 1);
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(p + i, n - i);
        if (len == 0) {
            memcpy(clean + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(clean + o, p + i, len);
            o += len;
            i += len;
        }
    }
    clean[o] = '\0';
    j = json_string(clean);
    if (!j)
        abort(); /* out of memory: the text is valid UTF-8 now */
    return j;
}
