/* Pulling images from an OCI distribution registry: reference parsing,
 * manifest/index/config parsing, HTTP(S) with libcurl (bearer and basic
 * auth, redirects), and the pull itself into the blob store.
 *
 * Everything a registry sends is hostile until checked: JSON is parsed with
 * limits, media types must be known, digests must be sha256 with 64
 * lowercase hex digits before they are used anywhere, sizes are bounded,
 * and every blob is verified against its digest before it enters the
 * store. Credentials go only to the registry's own origin (and to the token
 * realm it names), never to a host a redirect points at. */
#include "registry_internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "image.h"
#include "log.h"
#include "util.h"

#define ERRBODY_MAX (64u << 10) /* error bodies kept for the message */
#define TOKEN_BODY_MAX (1u << 20)
#define TOKEN_MAX 16384
#define MAX_REDIRECTS 5
#define ARRAY_MAX 4096 /* Env, Cmd, Entrypoint entries */
#define PORTS_MAX 1024

#define MANIFEST_ACCEPT                                                                            \
    "Accept: " INK_MT_OCI_INDEX ", " INK_MT_OCI_MANIFEST ", " INK_MT_DOCKER_LIST                   \
    ", " INK_MT_DOCKER_MANIFEST

/* A hostile string made safe to put in an error message: at most 80 bytes,
 * control and non-ASCII bytes replaced. */
static const char *printable(const char *s, char buf[96])
{
    size_t i = 0;
    if (!s)
        s = "(null)";
    for (; s[i] && i < 80; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i]) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}
#define P(s) printable((s), (char[96]){0})

/* -------------------------------------------------------------- references */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* path-component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)* */
static bool valid_component(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    while (i < n) {
        if (is_lower_alnum(s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !is_lower_alnum(s[j]))
            j++;
        size_t sep = j - i;
        bool ok = (sep == 1 && (s[i] == '.' || s[i] == '_' || s[i] == '-')) ||
                  (sep == 2 && s[i] == '_' && s[i + 1] == '_');
        if (!ok) {
            ok = true;
            for (size_t k = i; k < j; k++)
                ok = ok && s[k] == '-';
        }
        if (!ok)
            return false;
        i = j;
    }
    return true;
}

static bool valid_tag(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n >= sizeof(((ink_image_ref *)0)->tag))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        bool word = isalnum((unsigned char)c) || c == '_';
        if (!(word || (i > 0 && (c == '.' || c == '-'))))
            return false;
    }
    return true;
}

/* host[:port]: DNS labels or an IPv4 address, or [IPv6]. */
static bool valid_domain(const char *d)
{
    const char *port = NULL;
    if (d[0] == '[') {
        const char *close = strchr(d, ']');
        if (!close || close == d + 1)
            return false;
        for (const char *c = d + 1; c < close; c++) {
            if (!(isxdigit((unsigned char)*c) || *c == ':' || *c == '.'))
                return false;
        }
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return false;
    } else {
        const char *colon = strchr(d, ':');
        size_t hlen = colon ? (size_t)(colon - d) : strlen(d);
        if (colon)
            port = colon + 1;
        size_t label = 0;
        for (size_t i = 0; i <= hlen; i++) {
            char c = i < hlen ? d[i] : '.';
            if (c == '.') {
                if (label == 0 || d[i - 1] == '-')
                    return false;
                label = 0;
            } else if (isalnum((unsigned char)c) || (c == '-' && label > 0)) {
                label++;
            } else {
                return false;
            }
        }
    }
    if (port) {
        size_t n = strlen(port);
        if (n == 0 || n > 5 || strspn(port, "0123456789") != n || atoi(port) > 65535 ||
            atoi(port) == 0)
            return false;
    }
    return true;
}

int ink_image_ref_parse(const char *ref, ink_image_ref *out, ink_err *err)
{
    memset(out, 0, sizeof *out);
    if (!ref || !*ref)
        return ink_err_set(err, 0, "empty image reference");
    size_t len = strlen(ref);
    if (len > 512)
        return ink_err_set(err, 0, "image reference '%s' is too long", P(ref));
    for (size_t i = 0; i < len; i++) {
        if (ref[i] <= 0x20 || ref[i] >= 0x7f)
            return ink_err_set(err, 0, "image reference '%s': invalid character", P(ref));
    }
    char buf[520];
    memcpy(buf, ref, len + 1);

    char *at = strchr(buf, '@');
    if (at) {
        *at = '\0';
        if (!ink_digest_valid(at + 1))
            return ink_err_set(err, 0,
                               "image reference '%s': digest must be sha256: and 64 lowercase "
                               "hex digits",
                               P(ref));
        snprintf(out->digest, sizeof out->digest, "%s", at + 1);
    }
    char *last_slash = strrchr(buf, '/');
    char *colon = strrchr(last_slash ? last_slash : buf, ':');
    if (colon) {
        *colon = '\0';
        if (!valid_tag(colon + 1))
            return ink_err_set(err, 0,
                               "image reference '%s': invalid tag '%s' ([A-Za-z0-9_][A-Za-z0-9_.-]"
                               ", at most 127)",
                               P(ref), P(colon + 1));
        snprintf(out->tag, sizeof out->tag, "%s", colon + 1);
    }

    const char *path = buf;
    const char *domain = "docker.io";
    char *first_slash = strchr(buf, '/');
    if (first_slash) {
        size_t flen = (size_t)(first_slash - buf);
        bool is_domain = memchr(buf, '.', flen) || memchr(buf, ':', flen) ||
                         (flen == 9 && strncmp(buf, "localhost", 9) == 0);
        for (size_t i = 0; i < flen && !is_domain; i++)
            is_domain = isupper((unsigned char)buf[i]);
        if (is_domain) {
            *first_slash = '\0';
            domain = buf;
            path = first_slash + 1;
            if (!valid_domain(domain) || strlen(domain) >= sizeof out->registry)
                return ink_err_set(err, 0, "image reference '%s': invalid registry '%s'", P(ref),
                                   P(domain));
        }
    }
    bool hub = strcmp(domain, "docker.io") == 0 || strcmp(domain, "index.docker.io") == 0 ||
               strcmp(domain, "registry-1.docker.io") == 0;
    snprintf(out->registry, sizeof out->registry, "%s", hub ? "registry-1.docker.io" : domain);

    if (!*path)
        return ink_err_set(err, 0, "image reference '%s': no repository name", P(ref));
    for (const char *c = path; *c; c++) {
        if (isupper((unsigned char)*c))
            return ink_err_set(err, 0, "image reference '%s': repository name must be lowercase",
                               P(ref));
    }
    for (const char *c = path;;) {
        const char *end = strchr(c, '/');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        if (!valid_component(c, n))
            return ink_err_set(err, 0, "image reference '%s': invalid repository name '%s'", P(ref),
                               P(path));
        if (!end)
            break;
        c = end + 1;
    }
    int n = snprintf(out->repository, sizeof out->repository, "%s%s",
                     hub && !strchr(path, '/') ? "library/" : "", path);
    if (n < 0 || (size_t)n >= sizeof out->repository || strlen(out->registry) + 1 + (size_t)n > 255)
        return ink_err_set(err, 0, "image reference '%s': name longer than 255 characters", P(ref));
    if (!out->tag[0] && !out->digest[0])
        snprintf(out->tag, sizeof out->tag, "latest");
    return 0;
}

/* ------------------------------------------------------------ JSON parsing */

static json_t *parse_object(const char *body, size_t len, const char *what, ink_err *err)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        ink_err_set(err, 0, "%s is not valid JSON (line %d: %s)", what, je.line, P(je.text));
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        ink_err_set(err, 0, "%s is not a JSON object", what);
        return NULL;
    }
    return j;
}

/* A JSON string without embedded NULs, or NULL. */
static const char *json_cstr(const json_t *v)
{
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    return strlen(s) == json_string_length(v) ? s : NULL;
}

static bool valid_media_type(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(((ink_descriptor *)0)->media_type) || !strchr(s, '/'))
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-_/") == n;
}

static int parse_descriptor(const json_t *j, const char *what, uint64_t max_size, ink_descriptor *d,
                            ink_err *err)
{
    memset(d, 0, sizeof *d);
    if (!json_is_object(j))
        return ink_err_set(err, 0, "%s is not an object", what);
    const char *mt = json_cstr(json_object_get(j, "mediaType"));
    if (!mt || !valid_media_type(mt))
        return ink_err_set(err, 0, "%s: missing or invalid mediaType", what);
    const char *digest = json_cstr(json_object_get(j, "digest"));
    if (!digest)
        return ink_err_set(err, 0, "%s: missing digest", what);
    if (!ink_digest_valid(digest))
        return ink_err_set(err, 0, "%s: digest '%s' is not sha256: with 64 lowercase hex digits",
                           what, P(digest));
    const json_t *size = json_object_get(j, "size");
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return ink_err_set(err, 0, "%s %s: missing or invalid size", what, digest);
    uint64_t sz = (uint64_t)json_integer_value(size);
    if (sz > max_size)
        return ink_err_set(err, 0, "%s %s: size %" PRIu64 " exceeds the limit of %" PRIu64, what,
                           digest, sz, max_size);
    snprintf(d->media_type, sizeof d->media_type, "%s", mt);
    snprintf(d->digest, sizeof d->digest, "%s", digest);
    d->size = sz;
    return 0;
}

static int kind_of_media_type(const char *mt, ink_doc_kind *kind, ink_err *err)
{
    if (strcmp(mt, INK_MT_OCI_INDEX) == 0 || strcmp(mt, INK_MT_DOCKER_LIST) == 0) {
        *kind = INK_DOC_INDEX;
        return 0;
    }
    if (strcmp(mt, INK_MT_OCI_MANIFEST) == 0 || strcmp(mt, INK_MT_DOCKER_MANIFEST) == 0) {
        *kind = INK_DOC_MANIFEST;
        return 0;
    }
    if (strncmp(mt, "application/vnd.docker.distribution.manifest.v1", 47) == 0)
        return ink_err_set(err, 0, "Docker schema 1 manifests are not supported");
    return ink_err_set(err, 0, "unsupported manifest media type '%s'", P(mt));
}

int ink_manifest_kind(const char *body, size_t len, const char *content_type, ink_doc_kind *kind,
                      ink_err *err)
{
    json_auto_t *j = parse_object(body, len, "manifest", err);
    if (!j)
        return -1;
    const json_t *sv = json_object_get(j, "schemaVersion");
    if (sv && (!json_is_integer(sv) || json_integer_value(sv) != 2)) {
        if (json_is_integer(sv) && json_integer_value(sv) == 1)
            return ink_err_set(err, 0, "Docker schema 1 manifests are not supported");
        return ink_err_set(err, 0, "manifest schemaVersion is not 2");
    }
    /* The Content-Type without parameters; generic JSON types say nothing. */
    char ct[128] = "";
    if (content_type) {
        while (*content_type == ' ')
            content_type++;
        size_t n = strcspn(content_type, "; \t");
        if (n < sizeof ct) {
            memcpy(ct, content_type, n);
            ct[n] = '\0';
        }
        if (strcasecmp(ct, "application/json") == 0 || strcasecmp(ct, "text/plain") == 0 ||
            strcasecmp(ct, "application/octet-stream") == 0)
            ct[0] = '\0';
    }
    const json_t *mtv = json_object_get(j, "mediaType");
    if (mtv) {
        const char *mt = json_cstr(mtv);
        if (!mt)
            return ink_err_set(err, 0, "manifest mediaType is not a string");
        if (kind_of_media_type(mt, kind, err) < 0)
            return -1;
        ink_doc_kind hk;
        ink_err ignored;
        if (ct[0] && kind_of_media_type(ct, &hk, &ignored) == 0 && hk != *kind)
            return ink_err_set(err, 0, "manifest says it is '%s' but was served as '%s'", mt, ct);
        return 0;
    }
    if (ct[0])
        return kind_of_media_type(ct, kind, err);
    if (json_object_get(j, "manifests")) {
        *kind = INK_DOC_INDEX;
        return 0;
    }
    if (json_object_get(j, "config") && json_object_get(j, "layers")) {
        *kind = INK_DOC_MANIFEST;
        return 0;
    }
    return ink_err_set(err, 0, "document is neither an image manifest nor an index");
}

static bool layer_media_type_ok(const char *mt)
{
    static const char *const ok[] = {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(ok); i++) {
        if (strcmp(mt, ok[i]) == 0)
            return true;
    }
    return false;
}

void ink_manifest_free(ink_manifest *m)
{
    if (!m)
        return;
    free(m->layers);
    memset(m, 0, sizeof *m);
}

int ink_manifest_parse(const char *body, size_t len, uint64_t max_blob, ink_manifest *out,
                       ink_err *err)
{
    memset(out, 0, sizeof *out);
    json_auto_t *j = parse_object(body, len, "manifest", err);
    if (!j)
        return -1;
    const json_t *mtv = json_object_get(j, "mediaType");
    if (mtv) {
        const char *mt = json_cstr(mtv);
        if (!mt ||
            (strcmp(mt, INK_MT_OCI_MANIFEST) != 0 && strcmp(mt, INK_MT_DOCKER_MANIFEST) != 0))
            return ink_err_set(err, 0, "manifest mediaType '%s' is not an image manifest",
                               P(mt ? mt : "?"));
    }
    ink_descriptor config;
    if (parse_descriptor(json_object_get(j, "config"), "manifest config", INK_CONFIG_MAX, &config,
                         err) < 0)
        return -1;
    if (strcmp(config.media_type, INK_MT_OCI_CONFIG) != 0 &&
        strcmp(config.media_type, INK_MT_DOCKER_CONFIG) != 0)
        return ink_err_set(err, 0,
                           "config %s has media type '%s': not a container image (an artifact?)",
                           config.digest, config.media_type);
    const json_t *layers = json_object_get(j, "layers");
    if (!json_is_array(layers))
        return ink_err_set(err, 0, "manifest has no layers array");
    size_t n = json_array_size(layers);
    if (n > INK_LAYERS_MAX)
        return ink_err_set(err, 0, "manifest has %zu layers (at most %d)", n, INK_LAYERS_MAX);
    ink_descriptor *ls = ink_xcalloc(n ? n : 1, sizeof *ls);
    for (size_t i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, "layer %zu", i);
        if (parse_descriptor(json_array_get(layers, i), what, max_blob, &ls[i], err) < 0) {
            free(ls);
            return -1;
        }
        if (!layer_media_type_ok(ls[i].media_type)) {
            ink_err_set(err, 0, "layer %zu (%s): unsupported media type '%s'", i, ls[i].digest,
                        ls[i].media_type);
            free(ls);
            return -1;
        }
    }
    out->config = config;
    out->layers = ls;
    out->nlayers = n;
    return 0;
}

static bool is_manifest_type(const char *mt)
{
    return strcmp(mt, INK_MT_OCI_MANIFEST) == 0 || strcmp(mt, INK_MT_DOCKER_MANIFEST) == 0;
}

/* Parses an index / manifest list and finds its bounded "manifests"
 * array. Returns the document (caller decrefs) or NULL. */
static json_t *index_manifests(const char *body, size_t len, const json_t **ms, size_t *cnt,
                               ink_err *err)
{
    json_t *j = parse_object(body, len, "index", err);
    if (!j)
        return NULL;
    *ms = json_object_get(j, "manifests");
    if (!json_is_array(*ms)) {
        json_decref(j);
        ink_err_set(err, 0, "index has no manifests array");
        return NULL;
    }
    *cnt = json_array_size(*ms);
    if (*cnt > INK_INDEX_ENTRIES_MAX) {
        json_decref(j);
        ink_err_set(err, 0, "index has %zu entries (at most %d)", *cnt, INK_INDEX_ENTRIES_MAX);
        return NULL;
    }
    return j;
}

int ink_index_entries(const char *body, size_t len, ink_descriptor **out, size_t *n, ink_err *err)
{
    *out = NULL;
    *n = 0;
    const json_t *ms;
    size_t cnt;
    json_auto_t *j = index_manifests(body, len, &ms, &cnt, err);
    if (!j)
        return -1;
    ink_descriptor *ds = ink_xcalloc(cnt ? cnt : 1, sizeof *ds);
    for (size_t i = 0; i < cnt; i++) {
        char what[32];
        snprintf(what, sizeof what, "index entry %zu", i);
        if (parse_descriptor(json_array_get(ms, i), what, INK_MANIFEST_MAX, &ds[i], err) < 0) {
            free(ds);
            return -1;
        }
    }
    *out = ds;
    *n = cnt;
    return 0;
}

int ink_index_select(const char *body, size_t len, const char *os, const char *arch,
                     ink_descriptor *out, ink_err *err)
{
    const json_t *ms;
    size_t cnt;
    json_auto_t *j = index_manifests(body, len, &ms, &cnt, err);
    if (!j)
        return -1;
    char avail[256] = "";
    size_t alen = 0, listed = 0;
    for (size_t i = 0; i < cnt; i++) {
        const json_t *e = json_array_get(ms, i);
        char what[32];
        snprintf(what, sizeof what, "index entry %zu", i);
        ink_descriptor d;
        if (parse_descriptor(e, what, INK_MANIFEST_MAX, &d, err) < 0)
            return -1;
        const json_t *plat = json_object_get(e, "platform");
        const char *pos = json_cstr(json_object_get(plat, "os"));
        const char *parch = json_cstr(json_object_get(plat, "architecture"));
        const char *pvar = json_cstr(json_object_get(plat, "variant"));
        if (!is_manifest_type(d.media_type) || !pos || !parch)
            continue;
        if (strcmp(pos, os) == 0 && strcmp(parch, arch) == 0) {
            *out = d;
            return 0;
        }
        if (listed < 8 && alen < sizeof avail - 1) {
            int w = snprintf(avail + alen, sizeof avail - alen, "%s%s/%s%s%s", listed ? ", " : "",
                             P(pos), P(parch), pvar ? "/" : "", pvar ? P(pvar) : "");
            alen = w > 0 ? alen + (size_t)w : alen;
            listed++;
        }
    }
    if (!listed)
        return ink_err_set(err, 0, "no %s/%s image in the index (it lists no platforms)", os, arch);
    return ink_err_set(err, 0, "no %s/%s image in the index; available: %s", os, arch, avail);
}

/* ------------------------------------------------------------- image config */

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void ink_image_config_free(ink_image_config *c)
{
    if (!c)
        return;
    free_strv(c->entrypoint, c->nentrypoint);
    free_strv(c->cmd, c->ncmd);
    free_strv(c->env, c->nenv);
    free(c->working_dir);
    free(c->user);
    free(c->exposed_ports);
    memset(c, 0, sizeof *c);
}

static int string_array(const json_t *cfg, const char *key, char ***out, size_t *n, ink_err *err)
{
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return ink_err_set(err, 0, "image config %s is not an array", key);
    size_t cnt = json_array_size(v);
    if (cnt > ARRAY_MAX)
        return ink_err_set(err, 0, "image config %s has %zu entries (at most %d)", key, cnt,
                           ARRAY_MAX);
    char **arr = ink_xcalloc(cnt + 1, sizeof *arr);
    for (size_t i = 0; i < cnt; i++) {
        const char *s = json_cstr(json_array_get(v, i));
        if (!s) {
            free_strv(arr, i);
            return ink_err_set(err, 0, "image config %s[%zu] is not a string", key, i);
        }
        arr[i] = ink_xstrdup(s);
    }
    *out = arr;
    *n = cnt;
    return 0;
}

static int optional_string(const json_t *cfg, const char *key, char **out, ink_err *err)
{
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v))
        return 0;
    const char *s = json_cstr(v);
    if (!s)
        return ink_err_set(err, 0, "image config %s is not a string", key);
    if (*s)
        *out = ink_xstrdup(s);
    return 0;
}

/* ExposedPorts {"80/tcp": {}, "8080": {}, "53/udp": {}} -> tcp ports. */
static int exposed_ports(const json_t *cfg, ink_image_config *c, ink_err *err)
{
    const json_t *v = json_object_get(cfg, "ExposedPorts");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return ink_err_set(err, 0, "image config ExposedPorts is not an object");
    if (json_object_size(v) > PORTS_MAX)
        return ink_err_set(err, 0, "image config exposes more than %d ports", PORTS_MAX);
    c->exposed_ports = ink_xcalloc(json_object_size(v) + 1, sizeof *c->exposed_ports);
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)v, key, val)
    {
        (void)val;
        char *end;
        errno = 0;
        long port = strtol(key, &end, 10);
        if (end == key || !isdigit((unsigned char)key[0]) || errno || port < 1 || port > 65535 ||
            (*end && *end != '/'))
            return ink_err_set(err, 0, "image config ExposedPorts: invalid port '%s'", P(key));
        if (*end == '/' && strcasecmp(end + 1, "tcp") != 0) {
            if (strcasecmp(end + 1, "udp") != 0 && strcasecmp(end + 1, "sctp") != 0)
                return ink_err_set(err, 0, "image config ExposedPorts: invalid port '%s'", P(key));
            continue;
        }
        bool dup = false;
        for (size_t i = 0; i < c->nexposed_ports; i++)
            dup = dup || c->exposed_ports[i] == port;
        if (!dup)
            c->exposed_ports[c->nexposed_ports++] = (uint16_t)port;
    }
    return 0;
}

int ink_image_config_parse(const char *body, size_t len, ink_image_config *out, ink_err *err)
{
    memset(out, 0, sizeof *out);
    json_auto_t *j = parse_object(body, len, "image config", err);
    if (!j)
        return -1;
    const char *os = json_cstr(json_object_get(j, "os"));
    const char *arch = json_cstr(json_object_get(j, "architecture"));
    if ((os && *os && strcmp(os, "linux") != 0) || (arch && *arch && strcmp(arch, "amd64") != 0))
        return ink_err_set(err, 0, "the image is for %s/%s; this node runs linux/amd64",
                           P(os ? os : "?"), P(arch ? arch : "?"));
    const json_t *cfg = json_object_get(j, "config");
    if (!cfg || json_is_null(cfg))
        return 0;
    if (!json_is_object(cfg))
        return ink_err_set(err, 0, "image config: config is not an object");
    if (string_array(cfg, "Entrypoint", &out->entrypoint, &out->nentrypoint, err) < 0 ||
        string_array(cfg, "Cmd", &out->cmd, &out->ncmd, err) < 0 ||
        string_array(cfg, "Env", &out->env, &out->nenv, err) < 0 ||
        optional_string(cfg, "WorkingDir", &out->working_dir, err) < 0 ||
        optional_string(cfg, "User", &out->user, err) < 0 || exposed_ports(cfg, out, err) < 0) {
        ink_image_config_free(out);
        return -1;
    }
    return 0;
}

int ink_image_fill(const char *manifest_digest, const ink_manifest *m, const char *config_body,
                   size_t config_len, ink_image *out, ink_err *err)
{
    memset(out, 0, sizeof *out);
    if (ink_image_config_parse(config_body, config_len, &out->config, err) < 0)
        return ink_err_wrap(err, "config %s", m->config.digest);
    snprintf(out->manifest_digest, sizeof out->manifest_digest, "%s", manifest_digest);
    snprintf(out->config_digest, sizeof out->config_digest, "%s", m->config.digest);
    out->layers = ink_xcalloc(m->nlayers + 1, sizeof *out->layers);
    out->layer_media_types = ink_xcalloc(m->nlayers + 1, sizeof *out->layer_media_types);
    for (size_t i = 0; i < m->nlayers; i++) {
        out->layers[i] = ink_xstrdup(m->layers[i].digest);
        out->layer_media_types[i] = ink_xstrdup(m->layers[i].media_type);
        out->total_bytes += m->layers[i].size;
    }
    out->nlayers = m->nlayers;
    return 0;
}

/* ------------------------------------------------------------- auth helpers */

int ink_www_authenticate_parse(const char *value, ink_auth_challenge *out, ink_err *err)
{
    memset(out, 0, sizeof *out);
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t sl = strcspn(p, " \t");
    if (sl == 6 && strncasecmp(p, "Bearer", 6) == 0)
        out->scheme = INK_AUTH_BEARER;
    else if (sl == 5 && strncasecmp(p, "Basic", 5) == 0)
        out->scheme = INK_AUTH_BASIC;
    else
        return ink_err_set(err, 0, "unsupported authentication scheme in '%s'", P(value));
    p += sl;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        size_t kl = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
        if (kl == 0 || kl > 32)
            return ink_err_set(err, 0, "malformed WWW-Authenticate '%s'", P(value));
        char key[33];
        memcpy(key, p, kl);
        key[kl] = '\0';
        p += kl;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '=')
            return ink_err_set(err, 0, "malformed WWW-Authenticate '%s'", P(value));
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        char val[1024];
        size_t vl = 0;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    p++;
                if (vl >= sizeof val - 1)
                    return ink_err_set(err, 0, "WWW-Authenticate %s is too long", key);
                val[vl++] = *p++;
            }
            if (*p != '"')
                return ink_err_set(err, 0, "unterminated quote in WWW-Authenticate '%s'", P(value));
            p++;
        } else {
            while (*p && *p != ',' && *p != ' ' && *p != '\t') {
                if (vl >= sizeof val - 1)
                    return ink_err_set(err, 0, "WWW-Authenticate %s is too long", key);
                val[vl++] = *p++;
            }
        }
        val[vl] = '\0';
        for (size_t i = 0; i < vl; i++) {
            if ((unsigned char)val[i] < 0x20 || (unsigned char)val[i] >= 0x7f)
                return ink_err_set(err, 0, "WWW-Authenticate %s has control characters", key);
        }
        char *dst = NULL;
        size_t cap = 0;
        if (strcasecmp(key, "realm") == 0) {
            dst = out->realm;
            cap = sizeof out->realm;
        } else if (strcasecmp(key, "service") == 0) {
            dst = out->service;
            cap = sizeof out->service;
        } else if (strcasecmp(key, "scope") == 0) {
            dst = out->scope;
            cap = sizeof out->scope;
        }
        if (dst) {
            if (vl >= cap)
                return ink_err_set(err, 0, "WWW-Authenticate %s is too long", key);
            memcpy(dst, val, vl + 1);
        }
    }
    if (out->scheme == INK_AUTH_BEARER && !out->realm[0])
        return ink_err_set(err, 0, "Bearer challenge without a realm: '%s'", P(value));
    return 0;
}

typedef struct origin {
    char *scheme, *host, *port;
} origin;

static void origin_free(origin *o)
{
    curl_free(o->scheme);
    curl_free(o->host);
    curl_free(o->port);
}

static int origin_of(const char *url, origin *o)
{
    memset(o, 0, sizeof *o);
    CURLU *u = curl_url();
    if (!u)
        abort();
    int rc = -1;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &o->scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &o->host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &o->port, CURLU_DEFAULT_PORT) == CURLUE_OK)
        rc = 0;
    curl_url_cleanup(u);
    if (rc < 0)
        origin_free(o);
    return rc;
}

bool ink_url_same_origin(const char *a, const char *b)
{
    origin oa, ob;
    if (origin_of(a, &oa) < 0)
        return false;
    if (origin_of(b, &ob) < 0) {
        origin_free(&oa);
        return false;
    }
    bool same = strcasecmp(oa.scheme, ob.scheme) == 0 && strcasecmp(oa.host, ob.host) == 0 &&
                strcmp(oa.port, ob.port) == 0;
    origin_free(&oa);
    origin_free(&ob);
    return same;
}

static bool host_is_plain(const ink_registry_opts *opts, const char *hostport)
{
    for (size_t i = 0; opts && i < opts->nplain_http; i++) {
        if (opts->plain_http[i] && strcasecmp(opts->plain_http[i], hostport) == 0)
            return true;
    }
    return false;
}

/* ---------------------------------------------------------------------- HTTP */

typedef struct response {
    long status;
    char content_type[256];
    char docker_digest[128];
    char bearer[2048]; /* the first challenge of each scheme */
    char basic[512];
    /* body of a 2xx answer goes to the writer or to buf (at most max) */
    ink_blob_writer *w;
    char *buf;
    size_t len, cap, max;
    /* body of anything else, for the error message */
    char *ebuf;
    size_t elen, ecap;
    ink_err sink_err;
    bool sink_failed;
    char *final_url; /* where the answer came from, after redirects */
} response;

static void response_reset_body(response *r)
{
    r->len = 0;
    r->elen = 0;
}

static void response_free(response *r)
{
    free(r->buf);
    free(r->ebuf);
    free(r->final_url);
    r->buf = r->ebuf = r->final_url = NULL;
    r->cap = r->ecap = 0;
}

static void copy_header_value(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    response *r = ud;
    size_t len = size * nmemb, n = len;
    while (n > 0 && (data[n - 1] == '\r' || data[n - 1] == '\n'))
        n--;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after 100 Continue, say): forget the old one. */
        r->status = 0;
        r->content_type[0] = r->docker_digest[0] = r->bearer[0] = r->basic[0] = '\0';
        response_reset_body(r);
        const char *sp = memchr(data, ' ', n);
        if (sp && (size_t)(sp - data) + 4 <= n && isdigit((unsigned char)sp[1]) &&
            isdigit((unsigned char)sp[2]) && isdigit((unsigned char)sp[3]))
            r->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
        return len;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon)
        return len;
    size_t kl = (size_t)(colon - data);
    const char *v = colon + 1;
    while (v < data + n && (*v == ' ' || *v == '\t'))
        v++;
    size_t vl = (size_t)(data + n - v);
#define IS(name) (kl == sizeof(name) - 1 && strncasecmp(data, name, kl) == 0)
    if (IS("content-type")) {
        copy_header_value(r->content_type, sizeof r->content_type, v, vl);
    } else if (IS("docker-content-digest")) {
        copy_header_value(r->docker_digest, sizeof r->docker_digest, v, vl);
    } else if (IS("www-authenticate")) {
        if (vl >= 6 && strncasecmp(v, "bearer", 6) == 0 && !r->bearer[0])
            copy_header_value(r->bearer, sizeof r->bearer, v, vl);
        else if (vl >= 5 && strncasecmp(v, "basic", 5) == 0 && !r->basic[0])
            copy_header_value(r->basic, sizeof r->basic, v, vl);
    }
#undef IS
    return len;
}

static void append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (nc < *len + n + 1)
            nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb)
            abort();
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    response *r = ud;
    size_t n = size * nmemb;
    if (r->status < 200 || r->status > 299) {
        size_t keep = n < ERRBODY_MAX - r->elen ? n : ERRBODY_MAX - r->elen;
        if (keep)
            append(&r->ebuf, &r->elen, &r->ecap, data, keep);
        return n;
    }
    if (r->w) {
        if (ink_blob_writer_write(r->w, data, n, &r->sink_err) < 0) {
            r->sink_failed = true;
            return 0;
        }
        return n;
    }
    if (n > r->max - r->len) {
        r->sink_failed = true;
        ink_err_set(&r->sink_err, 0, "response larger than %zu bytes", r->max);
        return 0;
    }
    append(&r->buf, &r->len, &r->cap, data, n);
    return n;
}

typedef struct session {
    ink_image_store *store;
    const ink_registry_opts *opts;
    ink_image_ref ref;
    char base[300]; /* scheme://host[:port] */
    bool plain;
    CURL *curl;
    char errbuf[CURL_ERROR_SIZE];
    char *auth; /* "Authorization: ..." for the registry's origin, or NULL */
    int64_t timeout_ms;
    uint64_t max_blob;
    uint64_t fetched_bytes;
    unsigned fetched_blobs;
} session;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The registry's error body ({"errors":[{"code":..,"message":..}]}) as
 * "CODE: message", or the start of whatever text it is. */
static void describe_error_body(const response *r, char *out, size_t cap)
{
    out[0] = '\0';
    if (!r->ebuf || !r->elen)
        return;
    json_auto_t *j = json_loadb(r->ebuf, r->elen, 0, NULL);
    const json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
    const char *code = json_cstr(json_object_get(e0, "code"));
    const char *msg = json_cstr(json_object_get(e0, "message"));
    if (code || msg) {
        snprintf(out, cap, "%s%s%s", code ? P(code) : "", code && msg ? ": " : "",
                 msg ? P(msg) : "");
        return;
    }
    if (!j && r->ebuf[0] != '<') { /* short plain text, not HTML */
        char text[81];
        size_t n = r->elen < 80 ? r->elen : 80;
        memcpy(text, r->ebuf, n);
        text[n] = '\0';
        snprintf(out, cap, "%s", P(text));
    }
}

static const char *status_text(long status)
{
    switch (status) {
    case 400:
        return " Bad Request";
    case 401:
        return " Unauthorized";
    case 403:
        return " Forbidden";
    case 404:
        return " Not Found";
    case 405:
        return " Method Not Allowed";
    case 429:
        return " Too Many Requests";
    case 500:
        return " Internal Server Error";
    case 502:
        return " Bad Gateway";
    case 503:
        return " Service Unavailable";
    default:
        return "";
    }
}

static int http_status_error(const char *method, const char *url, const response *r,
                             const char *extra, ink_err *err)
{
    char detail[256];
    describe_error_body(r, detail, sizeof detail);
    ink_err_set(err, 0, "%s %s: HTTP %ld%s%s%s%s", method, url, r->status, status_text(r->status),
                detail[0] ? ": " : "", detail, extra ? extra : "");
    /* The class of failure for callers, without strerror in the text. */
    if (err)
        err->errnum = r->status == 404 ? ENOENT : r->status == 401 ? EACCES : EIO;
    return -1;
}

static void setup_common(session *ss, CURL *c, const char *url, bool stream)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ink-agent");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)ss->timeout_ms);
    if (stream) {
        /* Layers may take longer than one timeout: give up on stalls. */
        long secs = (long)(ss->timeout_ms / 1000);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, secs > 0 ? secs : 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)ss->timeout_ms);
    }
    if (ss->opts && ss->opts->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, ss->opts->ca_file);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ss->errbuf);
}

static int basic_header(const char *user, const char *pass, char **out)
{
    cleanup_free char *raw = ink_xasprintf("%s:%s", user, pass ? pass : "");
    size_t n = strlen(raw);
    cleanup_free unsigned char *b64 = ink_xmalloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock(b64, (const unsigned char *)raw, (int)n);
    explicit_bzero(raw, n);
    *out = ink_xasprintf("Authorization: Basic %s", b64);
    return 0;
}

static void set_auth(session *ss, char *header)
{
    if (ss->auth) {
        explicit_bzero(ss->auth, strlen(ss->auth));
        free(ss->auth);
    }
    ss->auth = header;
}

/* GET realm?service=&scope= (with basic credentials when there are some),
 * then use the token it returns. */
static int fetch_token(session *ss, const ink_auth_challenge *ch, ink_err *err)
{
    origin ro;
    if (origin_of(ch->realm, &ro) < 0)
        return ink_err_set(err, 0, "token realm '%s' is not a URL", P(ch->realm));
    bool https = strcasecmp(ro.scheme, "https") == 0;
    bool http = strcasecmp(ro.scheme, "http") == 0;
    cleanup_free char *realm_hostport = ink_xasprintf("%s:%s", ro.host, ro.port);
    bool plain_ok = host_is_plain(ss->opts, realm_hostport) || host_is_plain(ss->opts, ro.host) ||
                    (ss->plain && ink_url_same_origin(ch->realm, ss->base));
    origin_free(&ro);
    if (!https && !(http && plain_ok))
        return ink_err_set(err, 0, "token realm '%s' is not https", P(ch->realm));

    char scope[600];
    if (ch->scope[0])
        snprintf(scope, sizeof scope, "%s", ch->scope);
    else
        snprintf(scope, sizeof scope, "repository:%s:pull", ss->ref.repository);
    CURL *c = curl_easy_init();
    if (!c)
        return ink_err_set(err, ENOMEM, "curl_easy_init");
    char *esvc = curl_easy_escape(c, ch->service, 0);
    char *escope = curl_easy_escape(c, scope, 0);
    cleanup_free char *url =
        ink_xasprintf("%s%s%s%s%sscope=%s", ch->realm, strchr(ch->realm, '?') ? "&" : "?",
                      ch->service[0] ? "service=" : "", ch->service[0] ? esvc : "",
                      ch->service[0] ? "&" : "", escope);
    curl_free(esvc);
    curl_free(escope);

    response r = {.max = TOKEN_BODY_MAX};
    setup_common(ss, c, url, false);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    if (ss->opts && ss->opts->username) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, ss->opts->username);
        curl_easy_setopt(c, CURLOPT_PASSWORD, ss->opts->password ? ss->opts->password : "");
    }
    ss->errbuf[0] = '\0';
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    int ret = -1;
    if (rc != CURLE_OK) {
        if (r.sink_failed)
            ink_err_set(err, 0, "token from %s: %s", P(ch->realm), r.sink_err.msg);
        else
            ink_err_set(err, 0, "token from %s: %s", P(ch->realm),
                        ss->errbuf[0] ? ss->errbuf : curl_easy_strerror(rc));
        goto out;
    }
    if (r.status != 200) {
        http_status_error("GET", ch->realm, &r,
                          r.status == 401 ? (ss->opts && ss->opts->username
                                                 ? " (credentials rejected)"
                                                 : " (the registry needs credentials)")
                                          : NULL,
                          err);
        ink_err_wrap(err, "token request");
        goto out;
    }
    {
        json_auto_t *j = r.buf ? json_loadb(r.buf, r.len, 0, NULL) : NULL;
        const char *tok = json_cstr(json_object_get(j, "token"));
        if (!tok || !*tok)
            tok = json_cstr(json_object_get(j, "access_token"));
        size_t tl = tok ? strlen(tok) : 0;
        if (!tl || tl > TOKEN_MAX ||
            strspn(tok, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/=") !=
                tl) {
            ink_err_set(err, 0, "token from %s: no usable token in the response", P(ch->realm));
            goto out;
        }
        set_auth(ss, ink_xasprintf("Authorization: Bearer %s", tok));
        ret = 0;
    }
out:
    if (r.buf)
        explicit_bzero(r.buf, r.len);
    response_free(&r);
    return ret;
}

/* An HTTP error from the registry (or from where it redirected to), with a
 * hint for 401s. */
static int registry_status_error(const session *ss, const char *method, const char *url,
                                 const response *r, ink_err *err)
{
    if (r->final_url && strcmp(r->final_url, url) != 0) {
        cleanup_free char *shown = ink_xasprintf("%s (redirected to %s)", url, r->final_url);
        return http_status_error(method, shown, r, NULL, err);
    }
    const char *hint = NULL;
    if (r->status == 401)
        hint = ss->auth ? " (credentials rejected)"
                        : " (the registry requires credentials, none were given)";
    return http_status_error(method, url, r, hint, err);
}

/* A 401 from the registry: answer its challenge. */
static int authenticate(session *ss, const char *method, const response *r, const char *url,
                        ink_err *err)
{
    ink_auth_challenge ch;
    if (r->bearer[0]) {
        if (ink_www_authenticate_parse(r->bearer, &ch, err) < 0)
            return ink_err_wrap(err, "%s %s: HTTP 401", method, url);
        return fetch_token(ss, &ch, err);
    }
    if (r->basic[0] && ss->opts && ss->opts->username) {
        char *h;
        basic_header(ss->opts->username, ss->opts->password, &h);
        set_auth(ss, h);
        return 0;
    }
    return registry_status_error(ss, method, url, r, err);
}

/* One GET (or HEAD) against the registry with auth and redirects. The final
 * status is in r->status; transport failures are errors, HTTP errors are
 * not (the caller words them). */
static int http_request(session *ss, const char *url0, bool head, const char *accept, response *r,
                        bool stream, ink_err *err)
{
    cleanup_free char *url = ink_xstrdup(url0);
    bool authed = false;
    for (int hop = 0;; hop++) {
        struct curl_slist *hdrs = NULL;
        if (accept)
            hdrs = curl_slist_append(hdrs, accept);
        /* Credentials only ever go to the registry's own origin. */
        if (ss->auth && ink_url_same_origin(url, ss->base))
            hdrs = curl_slist_append(hdrs, ss->auth);
        curl_easy_reset(ss->curl);
        setup_common(ss, ss->curl, url, stream);
        if (head)
            curl_easy_setopt(ss->curl, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(ss->curl, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(ss->curl, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(ss->curl, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(ss->curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(ss->curl, CURLOPT_WRITEDATA, r);
        r->status = 0;
        r->sink_failed = false;
        response_reset_body(r);
        ss->errbuf[0] = '\0';
        LOG_DEBUG("registry request", "method", head ? "HEAD" : "GET", "url", url);
        CURLcode rc = curl_easy_perform(ss->curl);
        curl_slist_free_all(hdrs);
        if (rc != CURLE_OK) {
            if (r->sink_failed) {
                *err = r->sink_err;
                return -1;
            }
            bool tls = rc == CURLE_SSL_CONNECT_ERROR && strncmp(url, "https:", 6) == 0;
            return ink_err_set(err, 0, "%s %s: %s%s", head ? "HEAD" : "GET", url,
                               ss->errbuf[0] ? ss->errbuf : curl_easy_strerror(rc),
                               tls ? " (a plain-HTTP registry? see plain_http)" : "");
        }
        if (r->status == 401 && !authed && ink_url_same_origin(url, ss->base)) {
            if (authenticate(ss, head ? "HEAD" : "GET", r, url, err) < 0)
                return -1;
            authed = true;
            hop--;
            continue;
        }
        if (r->status == 301 || r->status == 302 || r->status == 303 || r->status == 307 ||
            r->status == 308) {
            char *loc = NULL;
            curl_easy_getinfo(ss->curl, CURLINFO_REDIRECT_URL, &loc);
            if (!loc)
                return ink_err_set(err, 0, "GET %s: HTTP %ld without a Location", url, r->status);
            if (hop >= MAX_REDIRECTS)
                return ink_err_set(err, 0, "GET %s: more than %d redirects", url0, MAX_REDIRECTS);
            origin o;
            if (origin_of(loc, &o) < 0)
                return ink_err_set(err, 0, "GET %s: refusing redirect to '%s'", url, P(loc));
            bool ok = strcasecmp(o.scheme, "https") == 0 ||
                      (strcasecmp(o.scheme, "http") == 0 && ss->plain);
            origin_free(&o);
            if (!ok)
                return ink_err_set(err, 0, "GET %s: refusing redirect to '%s'", url, P(loc));
            char *next = ink_xstrdup(loc);
            free(url);
            url = next;
            continue;
        }
        free(r->final_url);
        r->final_url = INK_STEAL(url);
        return 0;
    }
}

static char *registry_url(session *ss, const char *kind, const char *reference)
{
    return ink_xasprintf("%s/v2/%s/%s/%s", ss->base, ss->ref.repository, kind, reference);
}

/* A manifest or index is parsed in full before it is stored: the cache
 * holds no document it could not use. */
static int check_document(session *ss, const char *digest, const char *body, size_t len,
                          const char *content_type, ink_err *err)
{
    ink_doc_kind kind;
    if (ink_manifest_kind(body, len, content_type[0] ? content_type : NULL, &kind, err) < 0)
        return ink_err_wrap(err, "manifest %s", digest);
    if (kind == INK_DOC_INDEX) {
        ink_descriptor *entries = NULL;
        size_t n = 0;
        if (ink_index_entries(body, len, &entries, &n, err) < 0)
            return ink_err_wrap(err, "index %s", digest);
        free(entries);
        return 0;
    }
    ink_manifest m;
    if (ink_manifest_parse(body, len, ss->max_blob, &m, err) < 0)
        return ink_err_wrap(err, "manifest %s", digest);
    ink_manifest_free(&m);
    return 0;
}

/* Fetches a manifest by tag (expect_digest NULL) or by digest, verifies it
 * and stores it. *body is the document, digest_out its digest. */
static int fetch_manifest(session *ss, const char *reference, const char *expect_digest,
                          uint64_t expect_size, char **body, size_t *len, char *content_type,
                          char digest_out[INK_DIGEST_MAX], ink_err *err)
{
    content_type[0] = '\0';
    if (expect_digest) {
        int r = ink_store_has_blob(ss->store, expect_digest, expect_size, err);
        if (r < 0)
            return -1;
        if (r == 1) {
            snprintf(digest_out, INK_DIGEST_MAX, "%s", expect_digest);
            return ink_store_read_blob(ss->store, expect_digest, INK_MANIFEST_MAX, body, len, err);
        }
    }
    cleanup_free char *url = registry_url(ss, "manifests", reference);
    response r = {.max = INK_MANIFEST_MAX};
    if (http_request(ss, url, false, MANIFEST_ACCEPT, &r, false, err) < 0) {
        response_free(&r);
        return -1;
    }
    if (r.status != 200) {
        registry_status_error(ss, "GET", url, &r, err);
        response_free(&r);
        return -1;
    }
    if (!r.buf)
        append(&r.buf, &r.len, &r.cap, "", 0);
    char got[INK_DIGEST_MAX];
    ink_sha256_digest(r.buf, r.len, got);
    int ret = -1;
    if (expect_digest && strcmp(got, expect_digest) != 0) {
        ink_err_set(err, 0, "manifest %s failed verification: its content hashes to %s",
                    expect_digest, got);
    } else if (!expect_digest && r.docker_digest[0] && strcmp(r.docker_digest, got) != 0) {
        ink_err_set(err, 0,
                    "manifest '%s': the registry says its digest is %s but the content hashes "
                    "to %s",
                    reference, P(r.docker_digest), got);
    } else if (expect_size != UINT64_MAX && r.len != expect_size) {
        ink_err_set(err, 0, "manifest %s: %zu bytes where the index says %" PRIu64, got, r.len,
                    expect_size);
    } else if (check_document(ss, got, r.buf, r.len, r.content_type, err) == 0 &&
               ink_store_put_blob(ss->store, got, r.buf, r.len, err) == 0) {
        snprintf(digest_out, INK_DIGEST_MAX, "%s", got);
        snprintf(content_type, 256, "%s", r.content_type);
        *body = INK_STEAL(r.buf);
        *len = r.len;
        ss->fetched_bytes += *len;
        ret = 0;
    }
    response_free(&r);
    return ret;
}

/* Tag -> manifest: HEAD first, so that an unchanged tag whose manifest is
 * cached costs no download; GET otherwise. */
static int resolve_tag(session *ss, char **body, size_t *len, char *content_type,
                       char digest_out[INK_DIGEST_MAX], ink_err *err)
{
    cleanup_free char *url = registry_url(ss, "manifests", ss->ref.tag);
    response r = {.max = 0};
    if (http_request(ss, url, true, MANIFEST_ACCEPT, &r, false, err) < 0) {
        response_free(&r);
        return -1;
    }
    if (r.status == 200 && ink_digest_valid(r.docker_digest)) {
        int have = ink_store_has_blob(ss->store, r.docker_digest, UINT64_MAX, err);
        if (have < 0) {
            response_free(&r);
            return -1;
        }
        if (have == 1) {
            content_type[0] = '\0';
            snprintf(digest_out, INK_DIGEST_MAX, "%s", r.docker_digest);
            response_free(&r);
            return ink_store_read_blob(ss->store, digest_out, INK_MANIFEST_MAX, body, len, err);
        }
    }
    response_free(&r);
    return fetch_manifest(ss, ss->ref.tag, NULL, UINT64_MAX, body, len, content_type, digest_out,
                          err);
}

static int fetch_blob(session *ss, const ink_descriptor *d, uint64_t max, ink_err *err)
{
    int have = ink_store_has_blob(ss->store, d->digest, d->size, err);
    if (have != 0)
        return have < 0 ? -1 : 0;
    ink_blob_writer *w;
    if (ink_blob_writer_open(ss->store, d->digest, d->size, max, &w, err) < 0)
        return -1;
    cleanup_free char *url = registry_url(ss, "blobs", d->digest);
    response r = {.w = w};
    int64_t t0 = ink_mono_ms();
    int rc = http_request(ss, url, false, NULL, &r, true, err);
    if (rc == 0 && r.status != 200)
        rc = registry_status_error(ss, "GET", url, &r, err);
    response_free(&r);
    if (rc < 0) {
        ink_blob_writer_abort(w);
        if (!strstr(err->msg, d->digest))
            ink_err_wrap(err, "blob %s", d->digest);
        return -1;
    }
    uint64_t n = ink_blob_writer_written(w);
    if (ink_blob_writer_commit(w, err) < 0)
        return -1;
    ss->fetched_bytes += n;
    ss->fetched_blobs++;
    LOG_DEBUG("blob fetched", "digest", d->digest, "bytes", LOG_U64(n), "ms",
              LOG_INT(ink_mono_ms() - t0));
    return 0;
}

static int do_pull(session *ss, char manifest_digest[INK_DIGEST_MAX], ink_err *err)
{
    cleanup_free char *body = NULL;
    size_t len = 0;
    char ct[256] = "", digest[INK_DIGEST_MAX];
    ink_doc_kind kind;
    if (ss->ref.digest[0]) {
        if (fetch_manifest(ss, ss->ref.digest, ss->ref.digest, UINT64_MAX, &body, &len, ct, digest,
                           err) < 0)
            return -1;
    } else if (resolve_tag(ss, &body, &len, ct, digest, err) < 0) {
        return -1;
    }
    if (ink_manifest_kind(body, len, ct[0] ? ct : NULL, &kind, err) < 0)
        return ink_err_wrap(err, "manifest %s", digest);
    if (kind == INK_DOC_INDEX) {
        ink_descriptor d;
        if (ink_index_select(body, len, "linux", "amd64", &d, err) < 0)
            return ink_err_wrap(err, "index %s", digest);
        free(body);
        body = NULL;
        if (fetch_manifest(ss, d.digest, d.digest, d.size, &body, &len, ct, digest, err) < 0)
            return -1;
        if (ink_manifest_kind(body, len, ct[0] ? ct : NULL, &kind, err) < 0)
            return ink_err_wrap(err, "manifest %s", digest);
        if (kind != INK_DOC_MANIFEST)
            return ink_err_set(err, 0, "index entry %s is an index itself", digest);
    }
    ink_manifest m;
    if (ink_manifest_parse(body, len, ss->max_blob, &m, err) < 0)
        return ink_err_wrap(err, "manifest %s", digest);
    /* The config first: a wrong-platform image fails before its layers. */
    int rc = fetch_blob(ss, &m.config, INK_CONFIG_MAX, err);
    if (rc == 0) {
        cleanup_free char *cfg = NULL;
        size_t clen = 0;
        ink_image_config c;
        rc = ink_store_read_blob(ss->store, m.config.digest, INK_CONFIG_MAX, &cfg, &clen, err);
        if (rc == 0 && (rc = ink_image_config_parse(cfg, clen, &c, err)) == 0)
            ink_image_config_free(&c);
        else if (rc < 0)
            ink_err_wrap(err, "config %s", m.config.digest);
    }
    for (size_t i = 0; rc == 0 && i < m.nlayers; i++)
        rc = fetch_blob(ss, &m.layers[i], ss->max_blob, err);
    ink_manifest_free(&m);
    if (rc < 0)
        return -1;
    snprintf(manifest_digest, INK_DIGEST_MAX, "%s", digest);
    return 0;
}

int ink_image_pull(ink_image_store *s, const char *ref, const ink_registry_opts *opts,
                   ink_image *out, ink_err *err)
{
    ink_err scratch;
    if (!err)
        err = &scratch;
    memset(out, 0, sizeof *out);
    session ss = {.store = s, .opts = opts};
    if (ink_image_ref_parse(ref, &ss.ref, err) < 0)
        return -1;
    ss.plain = host_is_plain(opts, ss.ref.registry);
    snprintf(ss.base, sizeof ss.base, "%s://%s", ss.plain ? "http" : "https", ss.ref.registry);
    ss.timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : 60000;
    ss.max_blob = opts && opts->max_blob_bytes ? opts->max_blob_bytes : INK_BLOB_DEFAULT_MAX;
    char canon[700];
    snprintf(canon, sizeof canon, "%s/%s%s%s%s%s", ss.ref.registry, ss.ref.repository,
             ss.ref.tag[0] ? ":" : "", ss.ref.tag, ss.ref.digest[0] ? "@" : "", ss.ref.digest);

    pthread_once(&curl_once, curl_init_once);
    ss.curl = curl_easy_init();
    if (!ss.curl)
        return ink_err_set(err, ENOMEM, "pulling %s: curl_easy_init failed", canon);
    int64_t t0 = ink_mono_ms();
    char digest[INK_DIGEST_MAX];
    int rc = do_pull(&ss, digest, err);
    curl_easy_cleanup(ss.curl);
    set_auth(&ss, NULL);
    if (rc < 0)
        return ink_err_wrap(err, "pulling %s", canon);
    if (!ss.ref.digest[0] && ink_store_set_ref(s, canon, digest, err) < 0)
        return ink_err_wrap(err, "pulling %s", canon);
    if (ink_image_load(s, digest, out, err) < 0)
        return ink_err_wrap(err, "pulling %s", canon);
    LOG_INFO("image pulled", "ref", canon, "digest", digest, "layers", LOG_U64(out->nlayers),
             "fetched_blobs", LOG_U64(ss.fetched_blobs), "fetched_bytes", LOG_U64(ss.fetched_bytes),
             "ms", LOG_INT(ink_mono_ms() - t0));
    return 0;
}
