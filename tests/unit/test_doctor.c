/* Unit tests for node-agent/doctor.c: the report (text and JSON) from
 * made-up results, running a subset of the checks, the certificate check
 * against certificates made here and the policy check against policy
 * directories made here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "doctor.h"
#include "pki.h"
#include "testlib.h"
#include "util.h"

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("'%s' not in '%s'", (needle), (hay));                                         \
    } while (0)

static ink_agent_config default_config(void)
{
    ink_agent_config cfg = {0};
    ink_err err = {0};
    assert_int_equal(ink_config_defaults(ink_agent_options, &cfg, &err), 0);
    return cfg;
}

/* A config option replaced (freed with the config). */
static void set_opt(ink_agent_config *cfg, const char *name, const char *value)
{
    ink_err err = {0};
    if (ink_config_set(ink_agent_options, cfg, name, value, &err) < 0)
        fail_msg("%s=%s: %s", name, value, err.msg);
}

/* ------------------------------------------------------------ report */

static void fabricate(ink_doc_result r[3])
{
    memset(r, 0, 3 * sizeof *r);
    r[0].name = "root";
    ink_doc_note(&r[0], INK_DOC_PASS, NULL, "running as root");
    r[1].name = "clock";
    ink_doc_note(&r[1], INK_DOC_WARN, "enable chrony", "not \"synchronised\"");
    r[2].name = "runsc";
    ink_doc_note(&r[2], INK_DOC_PASS, NULL, "first");
    ink_doc_note(&r[2], INK_DOC_FAIL, "install runsc", "second");
    ink_doc_note(&r[2], INK_DOC_WARN, "install runsc", "third");
}

static char *text_of(const ink_doc_result *r, size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    ink_doctor_print_text(f, r, n);
    fclose(f);
    return buf;
}

static void test_report_text(void **state)
{
    (void)state;
    ink_doc_result r[3];
    fabricate(r);
    /* Findings add up; the worst status wins; a fix is given once. */
    assert_int_equal(r[2].status, INK_DOC_FAIL);
    assert_string_equal(r[2].detail, "first; second; third");
    assert_string_equal(r[2].fix, "install runsc");
    assert_false(ink_doctor_ok(r, 3));
    assert_true(ink_doctor_ok(r, 2));

    cleanup_free char *all = text_of(r, 3);
    assert_string_equal(all, "PASS  root          running as root\n"
                             "WARN  clock         not \"synchronised\"\n"
                             "  fix: enable chrony\n"
                             "FAIL  runsc         first; second; third\n"
                             "  fix: install runsc\n"
                             "1 passed, 1 warning, 1 failed\n");
}

static void test_report_json(void **state)
{
    (void)state;
    ink_doc_result r[3];
    fabricate(r);
    for (size_t n = 2; n <= 3; n++) {
        cleanup_free char *text = ink_doctor_json(r, n);
        json_error_t jerr;
        json_t *root = json_loads(text, 0, &jerr);
        assert_non_null(root);
        assert_true(json_is_boolean(json_object_get(root, "ok")));
        assert_int_equal(json_is_true(json_object_get(root, "ok")), n == 2);
        json_t *checks = json_object_get(root, "checks");
        assert_int_equal(json_array_size(checks), n);
        json_t *c = json_array_get(checks, 1);
        assert_string_equal(json_string_value(json_object_get(c, "name")), "clock");
        assert_string_equal(json_string_value(json_object_get(c, "status")), "warn");
        assert_string_equal(json_string_value(json_object_get(c, "detail")),
                            "not \"synchronised\"");
        assert_string_equal(json_string_value(json_object_get(c, "fix")), "enable chrony");
        c = json_array_get(checks, 0);
        assert_string_equal(json_string_value(json_object_get(c, "status")), "pass");
        assert_string_equal(json_string_value(json_object_get(c, "fix")), "");
        if (n == 3)
            assert_string_equal(
                json_string_value(json_object_get(json_array_get(checks, 2), "status")), "fail");
        json_decref(root);
    }
}

static void test_run_subset(void **state)
{
    (void)state;
    ink_agent_config cfg = default_config();
    ink_doc_result *r = ink_xcalloc(ink_doctor_nchecks, sizeof *r);
    ink_err err = {0};
    assert_int_equal(ink_doctor_run(&cfg, "clock,root", r, &err), 2);
    /* In table order, whatever the order asked. */
    assert_string_equal(r[0].name, "root");
    assert_string_equal(r[1].name, "clock");
    assert_int_equal(r[0].status, geteuid() == 0 ? INK_DOC_PASS : INK_DOC_FAIL);
    assert_true(r[1].detail[0] != '\0');
    assert_int_equal(ink_doctor_run(&cfg, "root,nosuch", r, &err), -1);
    assert_contains(err.msg, "nosuch");
    /* Every check has a distinct name. */
    for (size_t i = 0; i < ink_doctor_nchecks; i++)
        for (size_t k = i + 1; k < ink_doctor_nchecks; k++)
            assert_string_not_equal(ink_doctor_checks[i].name, ink_doctor_checks[k].name);
    free(r);
    ink_config_free(ink_agent_options, &cfg);
}

/* ------------------------------------------------------------ certificates */

static inline void t_x509_freep(X509 **p)
{
    X509_free(*p);
}
static inline void t_pkey_freep(EVP_PKEY **p)
{
    EVP_PKEY_free(*p);
}
#define cleanup_x509 __attribute__((cleanup(t_x509_freep)))
#define cleanup_pkey __attribute__((cleanup(t_pkey_freep)))

/* A node certificate "old" signed by the CA of ca_dir that expired a day
 * ago: dir/old.crt and dir/old.key (0600). */
static void make_expired(const char *ca_dir, const char *dir)
{
    cleanup_free char *ca_crt = ink_xasprintf("%s/ca.crt", ca_dir);
    cleanup_free char *ca_key = ink_xasprintf("%s/ca.key", ca_dir);
    cleanup_fclose FILE *cf = fopen(ca_crt, "r");
    cleanup_fclose FILE *kf = fopen(ca_key, "r");
    assert_non_null(cf);
    assert_non_null(kf);
    cleanup_x509 X509 *ca = PEM_read_X509(cf, NULL, NULL, NULL);
    cleanup_pkey EVP_PKEY *cakey = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
    cleanup_pkey EVP_PKEY *key = EVP_EC_gen("P-256");
    cleanup_x509 X509 *x = X509_new();
    assert_non_null(ca);
    assert_non_null(cakey);
    assert_non_null(key);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 77), 1);
    assert_non_null(X509_time_adj_ex(X509_getm_notBefore(x), -20, 0, NULL));
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), -1, 0, NULL));
    X509_NAME *subj = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8,
                                                (const unsigned char *)"old", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(ca)), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    assert_true(X509_sign(x, cakey, EVP_sha256()) > 0);
    cleanup_free char *crt = ink_xasprintf("%s/old.crt", dir);
    cleanup_free char *kp = ink_xasprintf("%s/old.key", dir);
    cleanup_fclose FILE *out = fopen(crt, "w");
    assert_non_null(out);
    assert_int_equal(PEM_write_X509(out, x), 1);
    int fd = open(kp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    cleanup_fclose FILE *kout = fdopen(fd, "w");
    assert_non_null(kout);
    assert_int_equal(PEM_write_PrivateKey(kout, key, NULL, NULL, 0, NULL, NULL), 1);
}

static ink_doc_result certs_with(ink_agent_config *cfg, const char *ca, const char *crt,
                                 const char *key)
{
    set_opt(cfg, "tls_ca", ca);
    set_opt(cfg, "tls_cert", crt);
    set_opt(cfg, "tls_key", key);
    ink_doc_result r = {.name = "certificates"};
    ink_doctor_check_certs(cfg, &r);
    return r;
}

static void test_certs(void **state)
{
    (void)state;
    test_pki p;
    test_pki_create(&p, "doctor");
    ink_agent_config cfg = default_config();
    ink_err err = {0};
    cleanup_free char *pki = ink_xasprintf("%s/pki", p.dir);
    cleanup_free char *out = ink_xasprintf("%s/out", p.dir);
    assert_int_equal(ink_mkdir_p(out, 0700, &err), 0);
    assert_int_equal(ink_pki_issue(pki, "good", INK_ROLE_NODE, NULL, 0, 365, out, &err), 0);
    assert_int_equal(ink_pki_issue(pki, "soon", INK_ROLE_NODE, NULL, 0, 10, out, &err), 0);
    make_expired(pki, out);
    cleanup_free char *good_crt = ink_xasprintf("%s/good.crt", out);
    cleanup_free char *good_key = ink_xasprintf("%s/good.key", out);
    cleanup_free char *soon_crt = ink_xasprintf("%s/soon.crt", out);
    cleanup_free char *soon_key = ink_xasprintf("%s/soon.key", out);
    cleanup_free char *old_crt = ink_xasprintf("%s/old.crt", out);
    cleanup_free char *old_key = ink_xasprintf("%s/old.key", out);

    /* Valid for a year: PASS, with what it is. */
    ink_doc_result r = certs_with(&cfg, p.ca, good_crt, good_key);
    assert_int_equal(r.status, INK_DOC_PASS);
    assert_contains(r.detail, "CN good");
    assert_contains(r.detail, "matches tls_key");
    assert_string_equal(r.fix, "");

    /* 10 days left: WARN, renew. */
    r = certs_with(&cfg, p.ca, soon_crt, soon_key);
    assert_int_equal(r.status, INK_DOC_WARN);
    assert_contains(r.detail, "expires in 10 days");
    assert_contains(r.fix, "pki issue soon");

    /* Expired: FAIL. */
    r = certs_with(&cfg, p.ca, old_crt, old_key);
    assert_int_equal(r.status, INK_DOC_FAIL);
    assert_contains(r.detail, "expired");
    assert_contains(r.fix, "pki issue old");

    /* Signed by another CA. */
    r = certs_with(&cfg, p.ca, p.foreign_crt, p.foreign_key);
    assert_int_equal(r.status, INK_DOC_FAIL);
    assert_contains(r.detail, "against CA");
    assert_contains(r.fix, "ca.crt");

    /* The key of another certificate. */
    r = certs_with(&cfg, p.ca, good_crt, soon_key);
    assert_int_equal(r.status, INK_DOC_FAIL);
    assert_contains(r.detail, "key does not match");
    assert_contains(r.fix, "key that belongs");

    /* Readable by everyone: FAIL; by the group: WARN; chmod fixes. */
    assert_int_equal(chmod(good_key, 0644), 0);
    r = certs_with(&cfg, p.ca, good_crt, good_key);
    assert_int_equal(r.status, INK_DOC_FAIL);
    assert_contains(r.detail, "mode 644");
    assert_contains(r.fix, "chmod 600");
    assert_int_equal(chmod(good_key, 0640), 0);
    r = certs_with(&cfg, p.ca, good_crt, good_key);
    assert_int_equal(r.status, INK_DOC_WARN);
    assert_contains(r.fix, "chmod 600");

    /* Missing files. */
    cleanup_free char *none = ink_xasprintf("%s/none.crt", out);
    r = certs_with(&cfg, p.ca, none, good_key);
    assert_int_equal(r.status, INK_DOC_FAIL);
    assert_contains(r.detail, "none.crt");
    assert_contains(r.fix, "pki issue");

    /* insecure_dev: nothing checked, WARN. */
    set_opt(&cfg, "insecure_dev", "true");
    r = certs_with(&cfg, none, none, none);
    assert_int_equal(r.status, INK_DOC_WARN);
    assert_contains(r.detail, "insecure_dev");

    ink_config_free(ink_agent_options, &cfg);
    test_pki_destroy(&p);
}

/* ------------------------------------------------------------ policies */

static void write_policy(const char *dir, const char *file, const char *text)
{
    cleanup_free char *path = ink_xasprintf("%s/%s", dir, file);
    ink_err err = {0};
    assert_int_equal(ink_write_file_atomic(path, text, strlen(text), 0644, &err), 0);
}

static ink_doc_result policies_in(ink_agent_config *cfg, const char *dir)
{
    set_opt(cfg, "policy_dir", dir);
    ink_doc_result r = {.name = "policies"};
    ink_doctor_check_policies(cfg, &r);
    return r;
}

static void test_policies(void **state)
{
    (void)state;
    char dir[128];
    assert_int_equal(test_mkdtemp(dir, sizeof dir, "doctor-pol"), 0);
    ink_agent_config cfg = default_config();

    /* Empty: the default policy is required. */
    ink_doc_result r = policies_in(&cfg, dir);
    assert_int_equal(r.status, INK_DOC_FAIL);
    assert_contains(r.detail, "no *.policy");
    assert_contains(r.fix, "default.policy");

    /* Missing directory. */
    cleanup_free char *missing = ink_xasprintf("%s/nope", dir);
    r = policies_in(&cfg, missing);
    assert_int_equal(r.status, INK_DOC_FAIL);
    assert_contains(r.detail, "does not exist");

    /* Valid. */
    write_policy(dir, "default.policy", "# test\nresolve any\nallow any\n");
    write_policy(dir, "strict.policy", "deny any\n");
    r = policies_in(&cfg, dir);
    assert_int_equal(r.status, INK_DOC_PASS);
    assert_contains(r.detail, "2 policies");
    assert_contains(r.detail, "default, strict");

    /* A lint warning: WARN with FILE:LINE. */
    write_policy(dir, "lint.policy", "allow 10.0.0.1, 10.0.0.1\n");
    r = policies_in(&cfg, dir);
    assert_int_equal(r.status, INK_DOC_WARN);
    assert_contains(r.detail, "lint.policy:1: warning:");
    assert_contains(r.fix, "policy check");

    /* A syntax error: FAIL with FILE:LINE. */
    write_policy(dir, "bad.policy", "# fine\n\nallow nowhere-at-all ports\n");
    r = policies_in(&cfg, dir);
    assert_int_equal(r.status, INK_DOC_FAIL);
    assert_contains(r.detail, "bad.policy:3:");
    assert_contains(r.fix, "FILE:LINE");

    /* Without default.policy. */
    cleanup_free char *bad = ink_xasprintf("%s/bad.policy", dir);
    cleanup_free char *def = ink_xasprintf("%s/default.policy", dir);
    assert_int_equal(unlink(bad), 0);
    assert_int_equal(unlink(def), 0);
    r = policies_in(&cfg, dir);
    assert_int_equal(r.status, INK_DOC_FAIL);
    assert_contains(r.detail, "no usable default.policy");

    ink_config_free(ink_agent_options, &cfg);
    test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_text), cmocka_unit_test(test_report_json),
        cmocka_unit_test(test_run_subset),  cmocka_unit_test(test_certs),
        cmocka_unit_test(test_policies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
