/* Unit tests for node-agent/image (registry.c, image_store.c) without a
 * network: references, digests, manifest/index/config parsing, platform
 * selection, WWW-Authenticate, the blob store (verify, commit, refs, load,
 * gc), and pulls from a hostile fake registry on loopback (lying digests,
 * oversized or malformed manifests, overlong blobs, redirect loops and
 * schemes, credentials across redirects, header injection via tokens). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "image.h"
#include "log.h"
#include "registry_internal.h"
#include "testlib.h"
#include "util.h"

#define D1 "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define D2 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D3 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

/* ------------------------------------------------------------- references */

static void ref_ok(const char *s, const char *registry, const char *repo, const char *tag,
                   const char *digest)
{
    ink_image_ref r;
    ink_err err = {0};
    if (ink_image_ref_parse(s, &r, &err) < 0)
        fail_msg("'%s': %s", s, err.msg);
    assert_string_equal(r.registry, registry);
    assert_string_equal(r.repository, repo);
    assert_string_equal(r.tag, tag);
    assert_string_equal(r.digest, digest);
}

static void ref_bad(const char *s, const char *needle)
{
    ink_image_ref r;
    ink_err err = {0};
    if (ink_image_ref_parse(s, &r, &err) == 0)
        fail_msg("'%s' parsed as %s/%s:%s@%s", s, r.registry, r.repository, r.tag, r.digest);
    if (!strstr(err.msg, needle))
        fail_msg("'%s': error '%s' lacks '%s'", s, err.msg, needle);
}

static void test_ref_docker_hub(void **state)
{
    (void)state;
    ref_ok("busybox", "registry-1.docker.io", "library/busybox", "latest", "");
    ref_ok("busybox:1.36", "registry-1.docker.io", "library/busybox", "1.36", "");
    ref_ok("user/app", "registry-1.docker.io", "user/app", "latest", "");
    ref_ok("docker.io/library/busybox:musl", "registry-1.docker.io", "library/busybox", "musl", "");
    ref_ok("docker.io/busybox", "registry-1.docker.io", "library/busybox", "latest", "");
    ref_ok("index.docker.io/user/app:v1", "registry-1.docker.io", "user/app", "v1", "");
}

static void test_ref_registries(void **state)
{
    (void)state;
    ref_ok("registry.example:5000/team/app:1.2", "registry.example:5000", "team/app", "1.2", "");
    ref_ok("127.0.0.1:5000/busybox", "127.0.0.1:5000", "busybox", "latest", "");
    ref_ok("localhost/a/b/c", "localhost", "a/b/c", "latest", "");
    ref_ok("localhost:5000/x", "localhost:5000", "x", "latest", "");
    ref_ok("ghcr.io/o/r:sha-1a2b.3_C-d", "ghcr.io", "o/r", "sha-1a2b.3_C-d", "");
    ref_ok("[::1]:5000/app:v", "[::1]:5000", "app", "v", "");
    ref_ok("Host.Example/app", "Host.Example", "app", "latest", "");
    ref_ok("r.io/a.b_c__d---e/f", "r.io", "a.b_c__d---e/f", "latest", "");
}

static void test_ref_digests(void **state)
{
    (void)state;
    ref_ok("127.0.0.1:5000/busybox@" D1, "127.0.0.1:5000", "busybox", "", D1);
    ref_ok("busybox@" D2, "registry-1.docker.io", "library/busybox", "", D2);
    ref_ok("r.io/app:v1@" D3, "r.io", "app", "v1", D3);
}

static void test_ref_errors(void **state)
{
    (void)state;
    ref_bad("", "empty");
    ref_bad("Busybox", "lowercase");
    ref_bad("user/App", "lowercase");
    ref_bad("r.io/Team/app", "lowercase");
    ref_bad("busybox:", "invalid tag");
    ref_bad("busybox:-x", "invalid tag");
    ref_bad("busybox:a/b", "invalid");
    ref_bad("busybox@sha256:abc", "digest");
    ref_bad("busybox@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "digest");
    ref_bad("busybox@sha512:"
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "digest");
    ref_bad("busybox@" D1 "@" D2, "digest");
    ref_bad("a b", "invalid character");
    ref_bad("busy\nbox", "invalid character");
    ref_bad("r.io//app", "invalid repository");
    ref_bad("r.io/app/", "invalid repository");
    ref_bad("r.io/-app", "invalid repository");
    ref_bad("r.io/a..b", "invalid repository");
    ref_bad("r.io/a_-b", "invalid repository");
    ref_bad("r.io/../etc", "invalid repository");
    ref_bad("r.io:99999/app", "invalid registry");
    ref_bad("r.io:/app", "invalid registry");
    ref_bad("-r.io/app", "invalid registry");
    ref_bad("r.io/", "no repository");
    char longtag[200];
    memset(longtag, 'a', sizeof longtag);
    memcpy(longtag, "app:", 4);
    longtag[4 + 130] = '\0';
    ref_bad(longtag, "invalid tag");
    char longname[400];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ref_bad(longname, "");
}

static void test_digest_valid(void **state)
{
    (void)state;
    assert_true(ink_digest_valid(D1));
    assert_false(ink_digest_valid(NULL));
    assert_false(ink_digest_valid(""));
    assert_false(ink_digest_valid("sha256:"));
    assert_false(ink_digest_valid(D1 "0"));
    assert_false(ink_digest_valid("sha256:0123456789abcdef0123456789abcdef0123456789abcdef012345678"
                                  "9abcde"));
    assert_false(ink_digest_valid("sha256:../../../../etc/passwd000000000000000000000000000000000"
                                  "000000"));
    assert_false(ink_digest_valid("SHA256:0123456789abcdef0123456789abcdef0123456789abcdef01234567"
                                  "89abcdef"));
    assert_false(ink_digest_valid("sha256:0123456789abcdef0123456789abcdef0123456789abcdef01234567"
                                  "89abcdeF"));
    char d[INK_DIGEST_MAX];
    ink_sha256_digest("", 0, d);
    assert_string_equal(d,
                        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ink_sha256_digest("abc", 3, d);
    assert_string_equal(d,
                        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* ---------------------------------------------------------------- manifests */

static const char *manifest_json(char *buf, size_t cap, const char *mt, const char *config_mt,
                                 const char *config_digest, const char *layer_mt,
                                 const char *layer_digest, const char *layer_size)
{
    snprintf(buf, cap,
             "{\"schemaVersion\":2%s%s%s,"
             "\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":100},"
             "\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%s},"
             "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"" D3
             "\",\"size\":7}]}",
             mt ? ",\"mediaType\":\"" : "", mt ? mt : "", mt ? "\"" : "", config_mt, config_digest,
             layer_mt, layer_digest, layer_size);
    return buf;
}

#define OCI_LAYER_GZ "application/vnd.oci.image.layer.v1.tar+gzip"

static void test_manifest_kind(void **state)
{
    (void)state;
    char b[2048];
    ink_doc_kind k = 0;
    ink_err err = {0};
    manifest_json(b, sizeof b, INK_MT_OCI_MANIFEST, INK_MT_OCI_CONFIG, D1, OCI_LAYER_GZ, D2, "5");
    assert_int_equal(ink_manifest_kind(b, strlen(b), NULL, &k, &err), 0);
    assert_int_equal(k, INK_DOC_MANIFEST);
    assert_int_equal(
        ink_manifest_kind(b, strlen(b), INK_MT_OCI_MANIFEST "; charset=utf-8", &k, &err), 0);
    /* The document and the Content-Type disagree. */
    assert_int_equal(ink_manifest_kind(b, strlen(b), INK_MT_OCI_INDEX, &k, &err), -1);
    assert_non_null(strstr(err.msg, "served as"));

    /* No mediaType: the Content-Type decides, else the shape. */
    manifest_json(b, sizeof b, NULL, INK_MT_OCI_CONFIG, D1, OCI_LAYER_GZ, D2, "5");
    assert_int_equal(ink_manifest_kind(b, strlen(b), INK_MT_DOCKER_MANIFEST, &k, &err), 0);
    assert_int_equal(k, INK_DOC_MANIFEST);
    assert_int_equal(ink_manifest_kind(b, strlen(b), "application/json", &k, &err), 0);
    assert_int_equal(k, INK_DOC_MANIFEST);
    assert_int_equal(ink_manifest_kind(b, strlen(b), "text/html", &k, &err), -1);
    assert_non_null(strstr(err.msg, "unsupported manifest media type 'text/html'"));
    const char *idx = "{\"schemaVersion\":2,\"manifests\":[]}";
    assert_int_equal(ink_manifest_kind(idx, strlen(idx), NULL, &k, &err), 0);
    assert_int_equal(k, INK_DOC_INDEX);
    const char *list =
        "{\"schemaVersion\":2,\"mediaType\":\"" INK_MT_DOCKER_LIST "\",\"manifests\":[]}";
    assert_int_equal(ink_manifest_kind(list, strlen(list), NULL, &k, &err), 0);
    assert_int_equal(k, INK_DOC_INDEX);

    const char *s1 = "{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}";
    assert_int_equal(ink_manifest_kind(s1, strlen(s1), NULL, &k, &err), -1);
    assert_non_null(strstr(err.msg, "schema 1"));
    const char *art = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.cncf.helm.chart\"}";
    assert_int_equal(ink_manifest_kind(art, strlen(art), NULL, &k, &err), -1);
    assert_non_null(strstr(err.msg, "unsupported manifest media type"));
    assert_int_equal(ink_manifest_kind("{\"a\":", 5, NULL, &k, &err), -1);
    assert_non_null(strstr(err.msg, "not valid JSON"));
    assert_int_equal(ink_manifest_kind("[1]", 3, NULL, &k, &err), -1);
    assert_non_null(strstr(err.msg, "not a JSON object"));
    assert_int_equal(ink_manifest_kind("{}", 2, NULL, &k, &err), -1);
    const char *dup =
        "{\"mediaType\":\"" INK_MT_OCI_INDEX "\",\"mediaType\":\"" INK_MT_OCI_MANIFEST "\"}";
    assert_int_equal(ink_manifest_kind(dup, strlen(dup), NULL, &k, &err), -1);
}

static void test_manifest_parse(void **state)
{
    (void)state;
    char b[2048];
    ink_manifest m;
    ink_err err = {0};
    manifest_json(b, sizeof b, INK_MT_DOCKER_MANIFEST, INK_MT_DOCKER_CONFIG, D1,
                  "application/vnd.docker.image.rootfs.diff.tar.gzip", D2, "12345");
    assert_int_equal(ink_manifest_parse(b, strlen(b), 1 << 20, &m, &err), 0);
    assert_string_equal(m.config.digest, D1);
    assert_int_equal(m.config.size, 100);
    assert_int_equal(m.nlayers, 2);
    assert_string_equal(m.layers[0].digest, D2);
    assert_int_equal(m.layers[0].size, 12345);
    assert_string_equal(m.layers[1].media_type, "application/vnd.oci.image.layer.v1.tar");
    ink_manifest_free(&m);

    struct {
        const char *config_mt, *config_digest, *layer_mt, *layer_digest, *size, *needle;
    } bad[] = {
        {INK_MT_OCI_CONFIG, D1, OCI_LAYER_GZ, "sha256:../../x", "5", "digest 'sha256:../../x'"},
        {INK_MT_OCI_CONFIG, "sha256:ABC", OCI_LAYER_GZ, D2, "5", "is not sha256"},
        {INK_MT_OCI_CONFIG, D1, OCI_LAYER_GZ, D2, "-1", "invalid size"},
        {INK_MT_OCI_CONFIG, D1, OCI_LAYER_GZ, D2, "1.5", "invalid size"},
        {INK_MT_OCI_CONFIG, D1, OCI_LAYER_GZ, D2, "\"5\"", "invalid size"},
        {INK_MT_OCI_CONFIG, D1, OCI_LAYER_GZ, D2, "9007199254740993", "exceeds the limit"},
        {"application/vnd.cncf.helm.config.v1+json", D1, OCI_LAYER_GZ, D2, "5", "artifact"},
        {INK_MT_OCI_CONFIG, D1, "application/x-shellscript", D2, "5", "unsupported media type"},
        {INK_MT_OCI_CONFIG, D1, "bad type\\n", D2, "5", "invalid mediaType"},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        manifest_json(b, sizeof b, INK_MT_OCI_MANIFEST, bad[i].config_mt, bad[i].config_digest,
                      bad[i].layer_mt, bad[i].layer_digest, bad[i].size);
        if (ink_manifest_parse(b, strlen(b), 1 << 20, &m, &err) == 0)
            fail_msg("case %zu parsed: %s", i, b);
        if (!strstr(err.msg, bad[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].needle);
    }
    const char *nolayers = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" INK_MT_OCI_CONFIG
                           "\",\"digest\":\"" D1 "\",\"size\":1}}";
    assert_int_equal(ink_manifest_parse(nolayers, strlen(nolayers), 100, &m, &err), -1);
    assert_non_null(strstr(err.msg, "no layers"));
    const char *noconfig = "{\"schemaVersion\":2,\"layers\":[]}";
    assert_int_equal(ink_manifest_parse(noconfig, strlen(noconfig), 100, &m, &err), -1);
    assert_non_null(strstr(err.msg, "config is not an object"));
    const char *index = "{\"mediaType\":\"" INK_MT_OCI_INDEX "\",\"manifests\":[]}";
    assert_int_equal(ink_manifest_parse(index, strlen(index), 100, &m, &err), -1);
    assert_non_null(strstr(err.msg, "not an image manifest"));
}

#define ENTRY(mt, digest, platform)                                                                \
    "{\"mediaType\":\"" mt "\",\"digest\":\"" digest "\",\"size\":500" platform "}"

static void test_index_select(void **state)
{
    (void)state;
    ink_descriptor d;
    ink_err err = {0};
    const char *idx =
        "{\"schemaVersion\":2,\"mediaType\":\"" INK_MT_OCI_INDEX "\",\"manifests\":[" ENTRY(
            INK_MT_OCI_MANIFEST, D1,
            ",\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":"
            "\"v8\"}") "," ENTRY(INK_MT_OCI_MANIFEST, D3,
                                 ",\"platform\":{\"os\":\"unknown\",\"architecture\":"
                                 "\"unknown\"}") "," ENTRY(INK_MT_OCI_MANIFEST, D2,
                                                           ",\"platform\":{\"os\":"
                                                           "\"linux\",\"architecture\":"
                                                           "\"amd64\"}") "," ENTRY(INK_MT_OCI_MANIFEST,
                                                                                   D3,
                                                                                   ",\"plat"
                                                                                   "form\":"
                                                                                   "{\"os\""
                                                                                   ":\"linu"
                                                                                   "x\","
                                                                                   "\"archi"
                                                                                   "tecture"
                                                                                   "\":"
                                                                                   "\"amd64"
                                                                                   "\"}") "]}";
    assert_int_equal(ink_index_select(idx, strlen(idx), "linux", "amd64", &d, &err), 0);
    assert_string_equal(d.digest, D2);
    assert_int_equal(d.size, 500);

    /* No amd64: the error lists what there is. */
    assert_int_equal(ink_index_select(idx, strlen(idx), "linux", "s390x", &d, &err), -1);
    assert_non_null(strstr(err.msg, "no linux/s390x image in the index"));
    assert_non_null(strstr(err.msg, "linux/arm64/v8"));
    assert_non_null(strstr(err.msg, "linux/amd64"));

    /* Docker manifest list; a nested index entry is not a candidate. */
    const char *list =
        "{\"schemaVersion\":2,\"mediaType\":\"" INK_MT_DOCKER_LIST
        "\",\"manifests\":[" ENTRY(INK_MT_OCI_INDEX, D1,
                                   ",\"platform\":{\"os\":\"linux\",\"architecture\":"
                                   "\"amd64\"}") "," ENTRY(INK_MT_DOCKER_MANIFEST, D2,
                                                           ",\"platform\":{\"os\":\"linux\","
                                                           "\"architecture\":\"amd64\"}") "]}";
    assert_int_equal(ink_index_select(list, strlen(list), "linux", "amd64", &d, &err), 0);
    assert_string_equal(d.digest, D2);

    const char *noplat = "{\"manifests\":[" ENTRY(INK_MT_OCI_MANIFEST, D1, "") "]}";
    assert_int_equal(ink_index_select(noplat, strlen(noplat), "linux", "amd64", &d, &err), -1);
    assert_non_null(strstr(err.msg, "lists no platforms"));

    const char *baddigest = "{\"manifests\":[" ENTRY(
        INK_MT_OCI_MANIFEST, "sha256:/etc/passwd",
        ",\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}") "]}";
    assert_int_equal(ink_index_select(baddigest, strlen(baddigest), "linux", "amd64", &d, &err),
                     -1);
    assert_non_null(strstr(err.msg, "index entry 0"));

    const char *huge = "{\"manifests\":[{\"mediaType\":\"" INK_MT_OCI_MANIFEST "\",\"digest\":\"" D1
                       "\",\"size\":99999999999,\"platform\":"
                       "{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";
    assert_int_equal(ink_index_select(huge, strlen(huge), "linux", "amd64", &d, &err), -1);
    assert_non_null(strstr(err.msg, "exceeds the limit"));

    ink_descriptor *all;
    size_t n;
    assert_int_equal(ink_index_entries(idx, strlen(idx), &all, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(all[0].digest, D1);
    free(all);
    assert_int_equal(ink_index_select("{}", 2, "linux", "amd64", &d, &err), -1);
    assert_non_null(strstr(err.msg, "no manifests array"));
}

/* ------------------------------------------------------------------ config */

static void test_config_parse(void **state)
{
    (void)state;
    ink_err err = {0};
    ink_image_config c;
    const char *cfg =
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
        "\"Entrypoint\":[\"/bin/busybox\",\"httpd\"],\"Cmd\":[\"-f\",\"-p\",\"80\"],"
        "\"Env\":[\"PATH=/bin\",\"A=b=c\"],\"WorkingDir\":\"/www\",\"User\":\"1000:1000\","
        "\"ExposedPorts\":{\"80/tcp\":{},\"8080\":{},\"53/udp\":{},\"80/TCP\":{}}},"
        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
    assert_int_equal(ink_image_config_parse(cfg, strlen(cfg), &c, &err), 0);
    assert_int_equal(c.nentrypoint, 2);
    assert_string_equal(c.entrypoint[1], "httpd");
    assert_int_equal(c.ncmd, 3);
    assert_string_equal(c.cmd[2], "80");
    assert_int_equal(c.nenv, 2);
    assert_string_equal(c.env[1], "A=b=c");
    assert_string_equal(c.working_dir, "/www");
    assert_string_equal(c.user, "1000:1000");
    assert_int_equal(c.nexposed_ports, 2);
    assert_int_equal(c.exposed_ports[0], 80);
    assert_int_equal(c.exposed_ports[1], 8080);
    ink_image_config_free(&c);

    const char *empty = "{\"config\":{\"Entrypoint\":null,\"WorkingDir\":\"\"}}";
    assert_int_equal(ink_image_config_parse(empty, strlen(empty), &c, &err), 0);
    assert_int_equal(c.nentrypoint, 0);
    assert_null(c.working_dir);
    ink_image_config_free(&c);
    assert_int_equal(ink_image_config_parse("{}", 2, &c, &err), 0);
    ink_image_config_free(&c);

    struct {
        const char *json, *needle;
    } bad[] = {
        {"{\"architecture\":\"arm64\",\"os\":\"linux\"}", "linux/arm64"},
        {"{\"os\":\"windows\"}", "windows"},
        {"{\"config\":[]}", "config is not an object"},
        {"{\"config\":{\"Cmd\":\"sh\"}}", "Cmd is not an array"},
        {"{\"config\":{\"Env\":[\"A=1\",2]}}", "Env[1] is not a string"},
        {"{\"config\":{\"Env\":[\"A=\\u0000x\"]}}", "not valid JSON"},
        {"{\"config\":{\"User\":0}}", "User is not a string"},
        {"{\"config\":{\"ExposedPorts\":[80]}}", "ExposedPorts is not an object"},
        {"{\"config\":{\"ExposedPorts\":{\"0/tcp\":{}}}}", "invalid port '0/tcp'"},
        {"{\"config\":{\"ExposedPorts\":{\"70000\":{}}}}", "invalid port"},
        {"{\"config\":{\"ExposedPorts\":{\"80/foo\":{}}}}", "invalid port"},
        {"{\"config\":{\"ExposedPorts\":{\"-80/tcp\":{}}}}", "invalid port"},
        {"{\"config\":{\"ExposedPorts\":{\"http\":{}}}}", "invalid port"},
        {"not json", "not valid JSON"},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        if (ink_image_config_parse(bad[i].json, strlen(bad[i].json), &c, &err) == 0)
            fail_msg("case %zu parsed", i);
        if (!strstr(err.msg, bad[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].needle);
    }
}

/* -------------------------------------------------------------------- auth */

static void test_www_authenticate(void **state)
{
    (void)state;
    ink_auth_challenge c;
    ink_err err = {0};
    assert_int_equal(ink_www_authenticate_parse(
                         "Bearer realm=\"https://auth.docker.io/token\",service=\"registry."
                         "docker.io\",scope=\"repository:library/busybox:pull\"",
                         &c, &err),
                     0);
    assert_int_equal(c.scheme, INK_AUTH_BEARER);
    assert_string_equal(c.realm, "https://auth.docker.io/token");
    assert_string_equal(c.service, "registry.docker.io");
    assert_string_equal(c.scope, "repository:library/busybox:pull");

    assert_int_equal(
        ink_www_authenticate_parse(
            "bearer  Realm = \"http://h/t?x=1\" , scope=\"a,b \\\"q\\\"\",error=x", &c, &err),
        0);
    assert_string_equal(c.realm, "http://h/t?x=1");
    assert_string_equal(c.scope, "a,b \"q\"");
    assert_string_equal(c.service, "");

    assert_int_equal(ink_www_authenticate_parse("Basic realm=\"Registry Realm\"", &c, &err), 0);
    assert_int_equal(c.scheme, INK_AUTH_BASIC);
    assert_string_equal(c.realm, "Registry Realm");

    assert_int_equal(ink_www_authenticate_parse("Bearer service=x", &c, &err), -1);
    assert_non_null(strstr(err.msg, "without a realm"));
    assert_int_equal(ink_www_authenticate_parse("Negotiate abc", &c, &err), -1);
    assert_non_null(strstr(err.msg, "unsupported authentication scheme"));
    assert_int_equal(ink_www_authenticate_parse("Bearer realm=\"https://x", &c, &err), -1);
    assert_int_equal(ink_www_authenticate_parse("Bearer realm", &c, &err), -1);
    assert_int_equal(ink_www_authenticate_parse("Bearer realm=\"a\x01\"", &c, &err), -1);
}

static void test_same_origin(void **state)
{
    (void)state;
    assert_true(ink_url_same_origin("https://r.io/v2/x", "https://r.io"));
    assert_true(ink_url_same_origin("https://r.io:443/v2/x", "https://R.IO/"));
    assert_true(ink_url_same_origin("http://127.0.0.1:5000/a", "http://127.0.0.1:5000"));
    assert_false(ink_url_same_origin("http://r.io/v2/x", "https://r.io"));
    assert_false(ink_url_same_origin("https://r.io:444/v2/x", "https://r.io"));
    assert_false(ink_url_same_origin("https://storage.r.io/blob", "https://r.io"));
    assert_false(ink_url_same_origin("https://r.io.evil.com/", "https://r.io"));
    assert_false(ink_url_same_origin("https://r.io@evil.com/", "https://r.io"));
    assert_false(ink_url_same_origin("not a url", "https://r.io"));
}

/* ------------------------------------------------------------------- store */

typedef struct {
    char dir[128];
    ink_image_store *s;
} fixture;

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    ink_err err = {0};
    if (test_mkdtemp(f->dir, sizeof f->dir, "image") < 0) {
        free(f);
        return -1;
    }
    char root[160];
    snprintf(root, sizeof root, "%s/images", f->dir);
    if (ink_image_store_open(root, &f->s, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ink_image_store_close(f->s);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

static size_t count_dir(const char *root, const char *sub)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", root, sub);
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void put(ink_image_store *s, const char *data, char digest[INK_DIGEST_MAX])
{
    ink_err err = {0};
    ink_sha256_digest(data, strlen(data), digest);
    if (ink_store_put_blob(s, digest, data, strlen(data), &err) < 0)
        fail_msg("put: %s", err.msg);
}

static void test_store_blobs(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    const char *root = ink_image_store_root(f->s);
    char d[INK_DIGEST_MAX];
    put(f->s, "hello", d);
    assert_int_equal(ink_store_has_blob(f->s, d, 5, &err), 1);
    assert_int_equal(ink_store_has_blob(f->s, d, UINT64_MAX, &err), 1);
    assert_int_equal(ink_store_has_blob(f->s, d, 6, &err), -1);
    assert_non_null(strstr(err.msg, "descriptor says 6 bytes"));
    assert_int_equal(ink_store_has_blob(f->s, D1, 5, &err), 0);
    char *path = ink_image_blob_path(f->s, d);
    char expect[300];
    snprintf(expect, sizeof expect, "%s/blobs/sha256/%s", root, d + 7);
    assert_string_equal(path, expect);
    free(path);
    assert_null(ink_image_blob_path(f->s, "sha256:../../etc/passwd"));
    assert_null(ink_image_blob_path(f->s, "sha256:" D1));

    /* Content that does not match its digest never enters blobs/. */
    assert_int_equal(ink_store_put_blob(f->s, D1, "hello", 5, &err), -1);
    assert_non_null(strstr(err.msg, "blob " D1 " failed verification"));
    assert_int_equal(ink_store_has_blob(f->s, D1, UINT64_MAX, &err), 0);
    assert_int_equal(count_dir(root, "tmp"), 0);

    /* Truncated: fewer bytes than the descriptor. */
    ink_blob_writer *w;
    char d2[INK_DIGEST_MAX];
    ink_sha256_digest("0123456789", 10, d2);
    assert_int_equal(ink_blob_writer_open(f->s, d2, 10, 100, &w, &err), 0);
    assert_int_equal(ink_blob_writer_write(w, "01234", 5, &err), 0);
    assert_int_equal(count_dir(root, "tmp"), 1);
    assert_int_equal(ink_blob_writer_commit(w, &err), -1);
    assert_non_null(strstr(err.msg, "truncated: got 5 of 10 bytes"));
    assert_non_null(strstr(err.msg, d2));
    assert_int_equal(count_dir(root, "tmp"), 0);
    assert_int_equal(ink_store_has_blob(f->s, d2, UINT64_MAX, &err), 0);

    /* More than the descriptor, or than the limit. */
    assert_int_equal(ink_blob_writer_open(f->s, d2, 10, 100, &w, &err), 0);
    assert_int_equal(ink_blob_writer_write(w, "0123456789", 10, &err), 0);
    assert_int_equal(ink_blob_writer_write(w, "x", 1, &err), -1);
    assert_non_null(strstr(err.msg, "more data than the descriptor"));
    ink_blob_writer_abort(w);
    assert_int_equal(ink_blob_writer_open(f->s, d2, UINT64_MAX, 4, &w, &err), 0);
    assert_int_equal(ink_blob_writer_write(w, "01234", 5, &err), -1);
    assert_non_null(strstr(err.msg, "limit of 4 bytes"));
    ink_blob_writer_abort(w);
    assert_int_equal(ink_blob_writer_open(f->s, d2, 10, 4, &w, &err), -1);
    assert_int_equal(ink_blob_writer_open(f->s, "sha256:x", 10, 40, &w, &err), -1);
    assert_non_null(strstr(err.msg, "invalid digest"));
    assert_int_equal(count_dir(root, "tmp"), 0);

    /* Streamed in pieces, then read back verified. */
    assert_int_equal(ink_blob_writer_open(f->s, d2, 10, 100, &w, &err), 0);
    assert_int_equal(ink_blob_writer_write(w, "0123", 4, &err), 0);
    assert_int_equal(ink_blob_writer_write(w, "456789", 6, &err), 0);
    assert_int_equal(ink_blob_writer_written(w), 10);
    assert_int_equal(ink_blob_writer_commit(w, &err), 0);
    char *buf;
    size_t len;
    assert_int_equal(ink_store_read_blob(f->s, d2, 100, &buf, &len, &err), 0);
    assert_int_equal(len, 10);
    assert_memory_equal(buf, "0123456789", 10);
    free(buf);

    /* A blob damaged on disk is detected and dropped. */
    path = ink_image_blob_path(f->s, d2);
    FILE *fp = fopen(path, "r+");
    assert_non_null(fp);
    fputc('X', fp);
    fclose(fp);
    free(path);
    assert_int_equal(ink_store_read_blob(f->s, d2, 100, &buf, &len, &err), -1);
    assert_non_null(strstr(err.msg, "corrupt"));
    assert_int_equal(ink_store_has_blob(f->s, d2, UINT64_MAX, &err), 0);
}

static void test_store_refs(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    char out[INK_DIGEST_MAX];
    assert_int_equal(ink_store_get_ref(f->s, "127.0.0.1:5000/busybox:latest", out, &err), 0);
    assert_string_equal(out, "");
    assert_int_equal(ink_store_set_ref(f->s, "127.0.0.1:5000/busybox:latest", D1, &err), 0);
    assert_int_equal(ink_store_set_ref(f->s, "127.0.0.1:5000/busybox:v2", D2, &err), 0);
    assert_int_equal(ink_store_get_ref(f->s, "127.0.0.1:5000/busybox:latest", out, &err), 0);
    assert_string_equal(out, D1);
    assert_int_equal(ink_store_get_ref(f->s, "127.0.0.1:5000/busybox:v2", out, &err), 0);
    assert_string_equal(out, D2);
    assert_int_equal(ink_store_set_ref(f->s, "x", "sha256:nope", &err), -1);
    char path[300];
    snprintf(path, sizeof path, "%s/refs/127.0.0.1%%3A5000%%2Fbusybox%%3Alatest",
             ink_image_store_root(f->s));
    assert_int_equal(access(path, F_OK), 0);
    /* Long references get a hashed name. */
    char longref[600];
    memset(longref, 'a', sizeof longref - 1);
    longref[sizeof longref - 1] = '\0';
    assert_int_equal(ink_store_set_ref(f->s, longref, D3, &err), 0);
    assert_int_equal(ink_store_get_ref(f->s, longref, out, &err), 0);
    assert_string_equal(out, D3);
}

/* Writes a small image (config + two layers + manifest) into the store. */
static void make_image(ink_image_store *s, const char *tag, char mdigest[INK_DIGEST_MAX],
                       char cdigest[INK_DIGEST_MAX], char l1[INK_DIGEST_MAX],
                       char l2[INK_DIGEST_MAX])
{
    char cfg[512], man[1024];
    snprintf(cfg, sizeof cfg,
             "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"httpd\"],"
             "\"Env\":[\"TAG=%s\"],\"ExposedPorts\":{\"80/tcp\":{}}}}",
             tag);
    char layer1[64], layer2[64];
    snprintf(layer1, sizeof layer1, "layer-one-%s", tag);
    snprintf(layer2, sizeof layer2, "shared layer");
    put(s, cfg, cdigest);
    put(s, layer1, l1);
    put(s, layer2, l2);
    snprintf(man, sizeof man,
             "{\"schemaVersion\":2,\"mediaType\":\"" INK_MT_OCI_MANIFEST "\","
             "\"config\":{\"mediaType\":\"" INK_MT_OCI_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[{\"mediaType\":\"" OCI_LAYER_GZ "\",\"digest\":\"%s\",\"size\":%zu},"
             "{\"mediaType\":\"" OCI_LAYER_GZ "\",\"digest\":\"%s\",\"size\":%zu}]}",
             cdigest, strlen(cfg), l1, strlen(layer1), l2, strlen(layer2));
    put(s, man, mdigest);
}

static void test_store_load(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    char m[INK_DIGEST_MAX], c[INK_DIGEST_MAX], l1[INK_DIGEST_MAX], l2[INK_DIGEST_MAX];
    make_image(f->s, "a", m, c, l1, l2);
    ink_image img;
    if (ink_image_load(f->s, m, &img, &err) < 0)
        fail_msg("load: %s", err.msg);
    assert_string_equal(img.manifest_digest, m);
    assert_string_equal(img.config_digest, c);
    assert_int_equal(img.nlayers, 2);
    assert_string_equal(img.layers[0], l1);
    assert_string_equal(img.layers[1], l2);
    assert_string_equal(img.layer_media_types[0], OCI_LAYER_GZ);
    assert_int_equal(img.total_bytes, strlen("layer-one-a") + strlen("shared layer"));
    assert_int_equal(img.config.ncmd, 1);
    assert_string_equal(img.config.env[0], "TAG=a");
    assert_int_equal(img.config.nexposed_ports, 1);
    assert_int_equal(img.config.exposed_ports[0], 80);
    ink_image_free(&img);
    ink_image_free(&img); /* twice is harmless */

    /* Through an index. */
    char idx[512], id[INK_DIGEST_MAX];
    snprintf(idx, sizeof idx,
             "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" INK_MT_OCI_MANIFEST
             "\",\"digest\":\"%s\",\"size\":1,\"platform\":{\"os\":\"linux\","
             "\"architecture\":\"amd64\"}}]}",
             m);
    put(f->s, idx, id);
    assert_int_equal(ink_image_load(f->s, id, &img, &err), 0);
    assert_string_equal(img.manifest_digest, m);
    ink_image_free(&img);

    assert_int_equal(ink_image_load(f->s, D1, &img, &err), -1);
    assert_non_null(strstr(err.msg, "not in the cache"));
    assert_int_equal(ink_image_load(f->s, "sha256:../x", &img, &err), -1);
    assert_non_null(strstr(err.msg, "invalid manifest digest"));

    /* A missing layer is named. */
    char *p = ink_image_blob_path(f->s, l1);
    unlink(p);
    free(p);
    assert_int_equal(ink_image_load(f->s, m, &img, &err), -1);
    assert_non_null(strstr(err.msg, l1));
    assert_non_null(strstr(err.msg, "missing"));
}

static void test_store_gc(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    const char *root = ink_image_store_root(f->s);
    char ma[INK_DIGEST_MAX], ca[INK_DIGEST_MAX], la[INK_DIGEST_MAX], shared[INK_DIGEST_MAX];
    char mb[INK_DIGEST_MAX], cb[INK_DIGEST_MAX], lb[INK_DIGEST_MAX];
    make_image(f->s, "a", ma, ca, la, shared);
    make_image(f->s, "b", mb, cb, lb, shared);
    char junk[INK_DIGEST_MAX];
    put(f->s, "unreferenced junk", junk);
    assert_int_equal(ink_store_set_ref(f->s, "r/a:latest", ma, &err), 0);
    assert_int_equal(ink_store_set_ref(f->s, "r/b:latest", mb, &err), 0);
    assert_int_equal(count_dir(root, "blobs/sha256"), 8);

    struct stat st;
    int64_t expect = 0;
    const char *gone[] = {mb, cb, lb, junk};
    for (size_t i = 0; i < INK_ARRAY_LEN(gone); i++) {
        char *p = ink_image_blob_path(f->s, gone[i]);
        assert_int_equal(stat(p, &st), 0);
        expect += st.st_size;
        free(p);
    }
    char refb[300];
    snprintf(refb, sizeof refb, "%s/refs/r%%2Fb%%3Alatest", root);
    assert_int_equal(stat(refb, &st), 0);
    expect += st.st_size;

    const char *keep[] = {ma};
    int64_t freed = ink_image_gc(f->s, keep, 1, &err);
    assert_int_equal(freed, expect);
    assert_int_equal(count_dir(root, "blobs/sha256"), 4);
    assert_int_equal(count_dir(root, "refs"), 1);
    assert_int_equal(ink_store_has_blob(f->s, shared, UINT64_MAX, &err), 1);
    assert_int_equal(ink_store_has_blob(f->s, lb, UINT64_MAX, &err), 0);
    ink_image img;
    assert_int_equal(ink_image_load(f->s, ma, &img, &err), 0);
    ink_image_free(&img);

    /* Again: nothing left to free. A missing kept manifest is no error. */
    const char *keep2[] = {ma, D1};
    assert_int_equal(ink_image_gc(f->s, keep2, 2, &err), 0);
    const char *badkeep[] = {"sha256:zz"};
    assert_int_equal(ink_image_gc(f->s, badkeep, 1, &err), -1);
    assert_non_null(strstr(err.msg, "invalid digest"));
    assert_int_equal(count_dir(root, "blobs/sha256"), 4);

    /* Keeping nothing frees everything. */
    assert_true(ink_image_gc(f->s, NULL, 0, &err) > 0);
    assert_int_equal(count_dir(root, "blobs/sha256"), 0);
    assert_int_equal(count_dir(root, "refs"), 0);
}

static void test_pull_errors_offline(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    ink_image img;
    assert_int_equal(ink_image_pull(f->s, "Bad/Ref", NULL, &img, &err), -1);
    assert_non_null(strstr(err.msg, "lowercase"));
    /* Nothing listens on port 1: a clear transport error naming the URL. */
    const char *plain[] = {"127.0.0.1:1"};
    ink_registry_opts o = {.plain_http = plain, .nplain_http = 1, .timeout_ms = 2000};
    assert_int_equal(ink_image_pull(f->s, "127.0.0.1:1/app:v1", &o, &img, &err), -1);
    assert_non_null(strstr(err.msg, "pulling 127.0.0.1:1/app:v1"));
    assert_non_null(strstr(err.msg, "http://127.0.0.1:1/v2/app/manifests/v1"));
    assert_int_equal(count_dir(ink_image_store_root(f->s), "blobs/sha256"), 0);
    assert_int_equal(count_dir(ink_image_store_root(f->s), "tmp"), 0);
}

/* --------------------------------------------- a hostile registry, in-process */

/* A canned HTTP/1.1 server on 127.0.0.1: one response per path, every
 * request logged as "METHOD PATH auth=<Authorization or ->". */
typedef struct route {
    const char *path;
    int status;
    const char *headers; /* extra header lines, each ending in \r\n */
    const char *body;
    size_t body_len; /* 0: strlen(body) */
    bool needs_auth; /* 401 + Basic challenge without Authorization */
} route;

typedef struct fake_server {
    int fd, port;
    pthread_t thread;
    route routes[12];
    size_t nroutes;
    pthread_mutex_t mu;
    char log[64][256];
    size_t nlog;
} fake_server;

static void fake_log(fake_server *f, const char *line)
{
    pthread_mutex_lock(&f->mu);
    if (f->nlog < INK_ARRAY_LEN(f->log))
        snprintf(f->log[f->nlog++], sizeof f->log[0], "%s", line);
    pthread_mutex_unlock(&f->mu);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void fake_serve(fake_server *f, int c)
{
    char req[8192];
    size_t n = 0;
    req[0] = '\0';
    while (n < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
        ssize_t r = read(c, req + n, sizeof req - 1 - n);
        if (r <= 0)
            return;
        n += (size_t)r;
        req[n] = '\0';
    }
    char method[8] = "", path[512] = "", auth[200] = "-";
    sscanf(req, "%7s %511s", method, path);
    char *a = strcasestr(req, "\r\nAuthorization: ");
    if (a)
        sscanf(a + 17, "%199[^\r]", auth);
    char line[256];
    snprintf(line, sizeof line, "%s %s auth=%s", method, path, auth);
    fake_log(f, line);
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';
    const route *rt = NULL;
    for (size_t i = 0; i < f->nroutes; i++) {
        if (strcmp(f->routes[i].path, path) == 0)
            rt = &f->routes[i];
    }
    route notfound = {.status = 404, .body = "{\"errors\":[{\"code\":\"NOT_FOUND\"}]}"};
    route challenge = {
        .status = 401, .headers = "WWW-Authenticate: Basic realm=\"fake\"\r\n", .body = "{}"};
    if (!rt)
        rt = &notfound;
    else if (rt->needs_auth && !a)
        rt = &challenge;
    size_t blen = rt->body_len ? rt->body_len : strlen(rt->body ? rt->body : "");
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
                      rt->status, blen, rt->headers ? rt->headers : "");
    write_all(c, head, (size_t)hl);
    if (strcmp(method, "HEAD") != 0 && blen)
        write_all(c, rt->body, blen);
}

static void *fake_main(void *arg)
{
    fake_server *f = arg;
    for (;;) {
        int c = accept(f->fd, NULL, NULL);
        if (c < 0)
            return NULL; /* shut down */
        fake_serve(f, c);
        shutdown(c, SHUT_WR);
        close(c);
    }
}

static void fake_start(fake_server *f)
{
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->fd, 16), 0);
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
    pthread_mutex_init(&f->mu, NULL);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(fake_server *f)
{
    shutdown(f->fd, SHUT_RDWR);
    pthread_join(f->thread, NULL);
    close(f->fd);
    pthread_mutex_destroy(&f->mu);
}

static void fake_route(fake_server *f, route r)
{
    assert_true(f->nroutes < INK_ARRAY_LEN(f->routes));
    f->routes[f->nroutes++] = r;
}

/* The first logged request containing needle, or NULL. */
static const char *fake_find(fake_server *f, const char *needle)
{
    for (size_t i = 0; i < f->nlog; i++) {
        if (strstr(f->log[i], needle))
            return f->log[i];
    }
    return NULL;
}

typedef struct hostile {
    char dir[128];
    ink_image_store *s;
    fake_server reg, other;
    char reg_host[32], other_host[32];
    const char *plain[2];
    ink_registry_opts opts;
    /* a small valid image */
    char config[256], layer[32], manifest[1024];
    char cdigest[INK_DIGEST_MAX], ldigest[INK_DIGEST_MAX], mdigest[INK_DIGEST_MAX];
    char paths[4][160];
} hostile;

static int hostile_setup(void **state)
{
    hostile *h = ink_xcalloc(1, sizeof *h);
    ink_err err = {0};
    if (test_mkdtemp(h->dir, sizeof h->dir, "image-hostile") < 0)
        return -1;
    char root[160];
    snprintf(root, sizeof root, "%s/images", h->dir);
    if (ink_image_store_open(root, &h->s, &err) < 0)
        return -1;
    fake_start(&h->reg);
    fake_start(&h->other);
    snprintf(h->reg_host, sizeof h->reg_host, "127.0.0.1:%d", h->reg.port);
    snprintf(h->other_host, sizeof h->other_host, "127.0.0.1:%d", h->other.port);
    h->plain[0] = h->reg_host;
    h->plain[1] = h->other_host;
    h->opts = (ink_registry_opts){.plain_http = h->plain, .nplain_http = 2, .timeout_ms = 5000};
    snprintf(h->config, sizeof h->config,
             "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"x\"]}}");
    snprintf(h->layer, sizeof h->layer, "layer bytes");
    ink_sha256_digest(h->config, strlen(h->config), h->cdigest);
    ink_sha256_digest(h->layer, strlen(h->layer), h->ldigest);
    snprintf(h->manifest, sizeof h->manifest,
             "{\"schemaVersion\":2,\"mediaType\":\"" INK_MT_OCI_MANIFEST "\","
             "\"config\":{\"mediaType\":\"" INK_MT_OCI_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[{\"mediaType\":\"" OCI_LAYER_GZ "\",\"digest\":\"%s\",\"size\":%zu}]}",
             h->cdigest, strlen(h->config), h->ldigest, strlen(h->layer));
    ink_sha256_digest(h->manifest, strlen(h->manifest), h->mdigest);
    snprintf(h->paths[0], sizeof h->paths[0], "/v2/app/blobs/%s", h->cdigest);
    snprintf(h->paths[1], sizeof h->paths[1], "/v2/app/blobs/%s", h->ldigest);
    *state = h;
    return 0;
}

static int hostile_teardown(void **state)
{
    hostile *h = *state;
    fake_stop(&h->reg);
    fake_stop(&h->other);
    ink_image_store_close(h->s);
    test_rmtree(h->dir);
    free(h);
    return 0;
}

static char *pull_error(hostile *h, const char *repo_tag)
{
    ink_err err = {0};
    ink_image img;
    char ref[128];
    snprintf(ref, sizeof ref, "%s/%s", h->reg_host, repo_tag);
    if (ink_image_pull(h->s, ref, &h->opts, &img, &err) == 0) {
        ink_image_free(&img);
        fail_msg("pull %s succeeded", ref);
    }
    assert_int_equal(count_dir(ink_image_store_root(h->s), "tmp"), 0);
    return ink_xstrdup(err.msg);
}

static void expect_error(hostile *h, const char *repo_tag, const char *needle)
{
    char *msg = pull_error(h, repo_tag);
    if (!strstr(msg, needle))
        fail_msg("pull %s: '%s' lacks '%s'", repo_tag, msg, needle);
    free(msg);
}

static void test_hostile_manifests(void **state)
{
    hostile *h = *state;
    static char big[INK_MANIFEST_MAX + 2];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    char wrong_digest_hdr[256];
    snprintf(wrong_digest_hdr, sizeof wrong_digest_hdr,
             "Content-Type: " INK_MT_OCI_MANIFEST "\r\nDocker-Content-Digest: " D1 "\r\n");
    fake_route(&h->reg, (route){.path = "/v2/app/manifests/lying",
                                .status = 200,
                                .headers = wrong_digest_hdr,
                                .body = h->manifest});
    fake_route(&h->reg, (route){.path = "/v2/app/manifests/big", .status = 200, .body = big});
    fake_route(&h->reg, (route){.path = "/v2/app/manifests/html",
                                .status = 200,
                                .headers = "Content-Type: text/html\r\n",
                                .body = "<html>hi</html>"});
    fake_route(&h->reg,
               (route){.path = "/v2/app/manifests/traversal",
                       .status = 200,
                       .body = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" INK_MT_OCI_CONFIG
                               "\",\"digest\":\"sha256:../../../../tmp/x\",\"size\":1},"
                               "\"layers\":[]}"});
    char pinned[128];
    snprintf(pinned, sizeof pinned, "/v2/app/manifests/%s", D2);
    fake_route(&h->reg, (route){.path = pinned, .status = 200, .body = h->manifest});
    fake_route(
        &h->reg,
        (route){.path = "/v2/app/manifests/err",
                .status = 500,
                .body = "{\"errors\":[{\"code\":\"X\\u0007\",\"message\":\"bad\\nthing\"}]}"});

    expect_error(h, "app:lying", "says its digest is " D1 " but the content hashes to");
    expect_error(h, "app:big", "larger than 4194304 bytes");
    expect_error(h, "app:html", "not valid JSON");
    expect_error(h, "app:traversal", "digest 'sha256:../../../../tmp/x' is not sha256");
    expect_error(h, "app@" D2, "manifest " D2 " failed verification");
    char *msg = pull_error(h, "app:err");
    assert_non_null(strstr(msg, "HTTP 500 Internal Server Error: X?: bad?thing"));
    free(msg);
    assert_int_equal(count_dir(ink_image_store_root(h->s), "blobs/sha256"), 0);
    assert_int_equal(access("/tmp/x", F_OK), -1);
}

static void test_hostile_blobs(void **state)
{
    hostile *h = *state;
    fake_route(&h->reg,
               (route){.path = "/v2/app/manifests/v1", .status = 200, .body = h->manifest});
    fake_route(&h->reg, (route){.path = h->paths[0], .status = 200, .body = h->config});
    /* The layer with extra bytes after the descriptor's size. */
    fake_route(&h->reg,
               (route){.path = h->paths[1], .status = 200, .body = "layer bytes and more"});
    char *msg = pull_error(h, "app:v1");
    assert_non_null(strstr(msg, h->ldigest));
    assert_non_null(strstr(msg, "more data than the descriptor's 11 bytes"));
    free(msg);
    char *p = ink_image_blob_path(h->s, h->ldigest);
    assert_int_equal(access(p, F_OK), -1);
    free(p);
    /* The config (verified) stays; the layer can be fetched once fixed. */
    h->reg.routes[2].body = h->layer;
    ink_err err = {0};
    ink_image img;
    char ref[128];
    snprintf(ref, sizeof ref, "%s/app:v1", h->reg_host);
    if (ink_image_pull(h->s, ref, &h->opts, &img, &err) < 0)
        fail_msg("%s", err.msg);
    assert_string_equal(img.manifest_digest, h->mdigest);
    ink_image_free(&img);
}

static void test_hostile_redirects_and_auth(void **state)
{
    hostile *h = *state;
    char loc[4][256];
    snprintf(loc[0], sizeof loc[0], "Location: http://%s/storage/config\r\n", h->other_host);
    snprintf(loc[1], sizeof loc[1], "Location: http://%s/storage/layer\r\n", h->other_host);
    fake_route(&h->reg, (route){.path = "/v2/app/manifests/v1",
                                .status = 200,
                                .body = h->manifest,
                                .needs_auth = true});
    fake_route(&h->reg,
               (route){.path = h->paths[0], .status = 307, .headers = loc[0], .needs_auth = true});
    fake_route(&h->reg,
               (route){.path = h->paths[1], .status = 302, .headers = loc[1], .needs_auth = true});
    fake_route(&h->other, (route){.path = "/storage/config", .status = 200, .body = h->config});
    fake_route(&h->other, (route){.path = "/storage/layer", .status = 200, .body = h->layer});
    h->opts.username = "user";
    h->opts.password = "secret";
    ink_err err = {0};
    ink_image img;
    char ref[128];
    snprintf(ref, sizeof ref, "%s/app:v1", h->reg_host);
    if (ink_image_pull(h->s, ref, &h->opts, &img, &err) < 0)
        fail_msg("%s", err.msg);
    ink_image_free(&img);
    /* base64("user:secret") went to the registry, nothing to the other host. */
    const char *l = fake_find(&h->reg, h->paths[1] + 1);
    assert_non_null(l);
    assert_non_null(strstr(l, "auth=Basic dXNlcjpzZWNyZXQ="));
    l = fake_find(&h->other, "GET /storage/layer");
    assert_non_null(l);
    assert_non_null(strstr(l, "auth=-"));
    l = fake_find(&h->other, "GET /storage/config");
    assert_non_null(l);
    assert_non_null(strstr(l, "auth=-"));
}

static void test_hostile_redirect_targets(void **state)
{
    hostile *h = *state;
    char self[256];
    snprintf(self, sizeof self, "Location: http://%s/v2/app/manifests/loop\r\n", h->reg_host);
    fake_route(&h->reg, (route){.path = "/v2/app/manifests/loop", .status = 302, .headers = self});
    fake_route(&h->reg, (route){.path = "/v2/app/manifests/file",
                                .status = 302,
                                .headers = "Location: file:///etc/passwd\r\n"});
    fake_route(&h->reg, (route){.path = "/v2/app/manifests/gopher",
                                .status = 301,
                                .headers = "Location: gopher://127.0.0.1/x\r\n"});
    expect_error(h, "app:loop", "more than 5 redirects");
    expect_error(h, "app:file", "refusing redirect to 'file:///etc/passwd'");
    expect_error(h, "app:gopher", "refusing redirect");
}

static void test_hostile_tokens(void **state)
{
    hostile *h = *state;
    char challenge[256];
    snprintf(challenge, sizeof challenge,
             "WWW-Authenticate: Bearer realm=\"http://%s/token\",service=\"fake\"\r\n",
             h->other_host);
    fake_route(
        &h->reg,
        (route){.path = "/v2/app/manifests/v1", .status = 401, .headers = challenge, .body = "{}"});
    fake_route(
        &h->other,
        (route){.path = "/token", .status = 200, .body = "{\"token\":\"abc\\r\\nX-Injected: 1\"}"});
    expect_error(h, "app:v1", "no usable token");
    const char *l = fake_find(&h->other, "GET /token?service=fake&scope=repository%3Aapp%3Apull");
    assert_non_null(l);
    assert_non_null(strstr(l, "auth=-"));
    /* Credentials go to the realm as basic auth. */
    h->opts.username = "u";
    h->opts.password = "p";
    h->other.routes[0].body = "{\"access_token\":\"tok.en-1\"}";
    expect_error(h, "app:v1", "401 Unauthorized");
    l = fake_find(&h->other, "auth=Basic dTpw");
    assert_non_null(l);
    l = fake_find(&h->reg, "auth=Bearer tok.en-1");
    assert_non_null(l);
}

static void test_store_open_errors(void **state)
{
    (void)state;
    ink_err err = {0};
    ink_image_store *s;
    assert_int_equal(ink_image_store_open("relative/dir", &s, &err), -1);
    assert_non_null(strstr(err.msg, "not an absolute path"));
    assert_int_equal(ink_image_store_open("/proc/version/x", &s, &err), -1);
    assert_non_null(strstr(err.msg, "opening image store"));
}

int main(void)
{
    ink_log_init("test", INK_LOG_ERROR, INK_LOG_LOGFMT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_docker_hub),
        cmocka_unit_test(test_ref_registries),
        cmocka_unit_test(test_ref_digests),
        cmocka_unit_test(test_ref_errors),
        cmocka_unit_test(test_digest_valid),
        cmocka_unit_test(test_manifest_kind),
        cmocka_unit_test(test_manifest_parse),
        cmocka_unit_test(test_index_select),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_www_authenticate),
        cmocka_unit_test(test_same_origin),
        cmocka_unit_test_setup_teardown(test_store_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_errors_offline, setup, teardown),
        cmocka_unit_test(test_store_open_errors),
        cmocka_unit_test_setup_teardown(test_hostile_manifests, hostile_setup, hostile_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_blobs, hostile_setup, hostile_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_redirects_and_auth, hostile_setup,
                                        hostile_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_redirect_targets, hostile_setup,
                                        hostile_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_tokens, hostile_setup, hostile_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
