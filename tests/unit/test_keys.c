/* Unit tests for API keys (coordinator/keys.c): creation, verification,
 * revocation and the `keys` CLI, on a real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "coordinator.h"
#include "keys.h"
#include "cli_fixture.h"
#include "testlib.h"
#include "util.h"

typedef cli_fixture fixture;
#define setup cli_fixture_setup
#define teardown cli_fixture_teardown
/* Runs the command with ARGS..., keeping its output in f->out, f->err. */
#define RUN(f, ...) cli_fixture_run(f, ink_cmd_keys, (const char *[]){__VA_ARGS__, NULL})

static void create(fixture *f, const char *project, ink_key_role role, char key[INK_KEY_LEN + 1],
                   ink_key_info *info)
{
    ink_err err = {0};
    assert_int_equal(ink_keys_create(f->store, project, role, "label", 1000, key, info, &err), 0);
    assert_int_equal(strlen(key), INK_KEY_LEN);
    assert_memory_equal(key, "ink_", 4);
    assert_memory_equal(key + 4, info->keyid, INK_KEYID_LEN);
}

static void test_create_verify(void **state)
{
    fixture *f = *state;
    char key[INK_KEY_LEN + 1];
    ink_key_info info, got;
    create(f, "demo", INK_ROLE_DEPLOYER, key, &info);
    ink_err err = {0};
    assert_int_equal(ink_keys_verify(f->store, key, &got, &err), 1);
    assert_string_equal(got.keyid, info.keyid);
    assert_string_equal(got.project, "demo");
    assert_int_equal(got.role, INK_ROLE_DEPLOYER);
    assert_string_equal(got.name, "label");
    assert_int_equal(got.created_ms, 1000);

    /* Another handle on the file (another process) sees it too. */
    ink_store *other;
    assert_int_equal(ink_store_open(f->db, &other, &err), 0);
    assert_int_equal(ink_keys_verify(other, key, NULL, &err), 1);
    ink_store_close(other);
}

static void test_roles_kept(void **state)
{
    fixture *f = *state;
    char k1[INK_KEY_LEN + 1], k2[INK_KEY_LEN + 1];
    ink_key_info i1, i2, got;
    create(f, "alpha", INK_ROLE_READER, k1, &i1);
    create(f, "beta", INK_ROLE_DEPLOYER, k2, &i2);
    ink_err err = {0};
    assert_int_equal(ink_keys_verify(f->store, k1, &got, &err), 1);
    assert_int_equal(got.role, INK_ROLE_READER);
    assert_string_equal(got.project, "alpha");
    assert_int_equal(ink_keys_verify(f->store, k2, &got, &err), 1);
    assert_int_equal(got.role, INK_ROLE_DEPLOYER);
    assert_string_equal(got.project, "beta");

    ink_key_info *rows;
    size_t n;
    assert_int_equal(ink_keys_list(f->store, &rows, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].project, "alpha");
    assert_int_equal(rows[0].role, INK_ROLE_READER);
    assert_int_equal(rows[1].role, INK_ROLE_DEPLOYER);
    free(rows);
}

static void test_wrong_secret(void **state)
{
    fixture *f = *state;
    char key[INK_KEY_LEN + 1], bad[INK_KEY_LEN + 1];
    ink_key_info info;
    create(f, "demo", INK_ROLE_DEPLOYER, key, &info);
    ink_err err = {0};
    /* Last digit of the secret changed. */
    memcpy(bad, key, sizeof bad);
    bad[INK_KEY_LEN - 1] = bad[INK_KEY_LEN - 1] == '0' ? '1' : '0';
    assert_int_equal(ink_keys_verify(f->store, bad, NULL, &err), 0);
    /* Right secret, another key id. */
    memcpy(bad, key, sizeof bad);
    bad[4] = bad[4] == 'a' ? 'b' : 'a';
    assert_int_equal(ink_keys_verify(f->store, bad, NULL, &err), 0);
    /* Secret of one key under the id of another. */
    char key2[INK_KEY_LEN + 1];
    ink_key_info info2;
    create(f, "demo", INK_ROLE_DEPLOYER, key2, &info2);
    memcpy(bad, key, sizeof bad);
    memcpy(bad + 4, info2.keyid, INK_KEYID_LEN);
    assert_int_equal(ink_keys_verify(f->store, bad, NULL, &err), 0);
    assert_int_equal(ink_keys_verify(f->store, key, NULL, &err), 1);
}

static void test_revoke(void **state)
{
    fixture *f = *state;
    char key[INK_KEY_LEN + 1], other[INK_KEY_LEN + 1];
    ink_key_info info, oinfo;
    create(f, "demo", INK_ROLE_DEPLOYER, key, &info);
    create(f, "demo", INK_ROLE_READER, other, &oinfo);
    ink_err err = {0};
    assert_int_equal(ink_keys_revoke(f->store, info.keyid, 5000, &err), 0);
    assert_int_equal(ink_keys_verify(f->store, key, NULL, &err), 0);
    /* Idempotent, and the first revocation time is kept. */
    assert_int_equal(ink_keys_revoke(f->store, info.keyid, 9000, &err), 1);
    assert_int_equal(ink_keys_revoke(f->store, "0123456789ab", 9000, &err), 2);
    assert_int_equal(ink_keys_revoke(f->store, "not-a-key", 9000, &err), 2);
    ink_key_info *rows;
    size_t n;
    assert_int_equal(ink_keys_list(f->store, &rows, &n, &err), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].keyid, info.keyid) == 0)
            assert_int_equal(rows[i].revoked_ms, 5000);
        else
            assert_int_equal(rows[i].revoked_ms, 0);
    }
    free(rows);
    /* Only that key. */
    assert_int_equal(ink_keys_verify(f->store, other, NULL, &err), 1);
}

static void test_malformed(void **state)
{
    fixture *f = *state;
    char key[INK_KEY_LEN + 1];
    ink_key_info info;
    create(f, "demo", INK_ROLE_DEPLOYER, key, &info);
    ink_err err = {0};
    char buf[256];
    const char *fixed[] = {
        "",
        "ink_",
        "ink__",
        "Bearer x",
        "ink_0123456789ab_",
        "ink_0123456789ab_zz",
        "\xff\xfe",
        "ink_0123456789ab_0000000000000000000000000000000000000000000000000000000000000000",
    };
    assert_int_equal(ink_keys_verify(f->store, NULL, NULL, &err), 0);
    for (size_t i = 0; i < INK_ARRAY_LEN(fixed); i++)
        assert_int_equal(ink_keys_verify(f->store, fixed[i], NULL, &err), 0);
    /* The real key with one thing wrong. */
    struct {
        size_t at;
        char c;
    } edits[] = {
        {0, 'I'},                 /* prefix */
        {3, '-'},                 /* separator after the prefix */
        {4 + INK_KEYID_LEN, '-'}, /* separator after the id */
        {5, 'G'},                 /* id not hex */
        {INK_KEY_LEN - 2, 'A'},   /* uppercase is not the printed spelling */
        {INK_KEY_LEN - 3, '_'},   /* secret not hex */
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(edits); i++) {
        memcpy(buf, key, INK_KEY_LEN + 1);
        buf[edits[i].at] = edits[i].c;
        assert_int_equal(ink_keys_verify(f->store, buf, NULL, &err), 0);
    }
    /* Too long, too short. */
    snprintf(buf, sizeof buf, "%s0", key);
    assert_int_equal(ink_keys_verify(f->store, buf, NULL, &err), 0);
    memcpy(buf, key, INK_KEY_LEN - 1);
    buf[INK_KEY_LEN - 1] = '\0';
    assert_int_equal(ink_keys_verify(f->store, buf, NULL, &err), 0);
    assert_int_equal(ink_keys_verify(f->store, key, NULL, &err), 1);
}

static void test_create_rejects_bad_input(void **state)
{
    fixture *f = *state;
    char key[INK_KEY_LEN + 1];
    ink_err err = {0};
    assert_int_equal(
        ink_keys_create(f->store, "Bad_Project", INK_ROLE_READER, NULL, 1, key, NULL, &err), -1);
    assert_int_equal(ink_keys_create(f->store, "demo", 7, NULL, 1, key, NULL, &err), -1);
    assert_int_equal(ink_keys_create(f->store, "demo", INK_ROLE_READER, "a\nb", 1, key, NULL, &err),
                     -1);
    ink_key_info *rows;
    size_t n;
    assert_int_equal(ink_keys_list(f->store, &rows, &n, &err), 0);
    assert_int_equal(n, 0);
    free(rows);
}

static void test_cli_list_hides_secrets(void **state)
{
    fixture *f = *state;
    assert_int_equal(RUN(f, "create", "--project", "demo", "--role", "deployer", "--name", "ci"),
                     0);
    char key[INK_KEY_LEN + 2];
    snprintf(key, sizeof key, "%s", f->out);
    assert_int_equal(strlen(key), INK_KEY_LEN + 1); /* the key and a newline, nothing else */
    key[INK_KEY_LEN] = '\0';
    assert_non_null(strstr(f->err, "only time"));
    ink_err err = {0};
    ink_key_info info;
    assert_int_equal(ink_keys_verify(f->store, key, &info, &err), 1);
    assert_string_equal(info.name, "ci");
    const char *secret = key + 4 + INK_KEYID_LEN + 1;

    assert_int_equal(RUN(f, "create", "--project=demo", "--role=reader"), 0);
    assert_int_equal(RUN(f, "list"), 0);
    assert_non_null(strstr(f->out, info.keyid));
    assert_non_null(strstr(f->out, "reader"));
    assert_null(strstr(f->out, secret));
    assert_int_equal(RUN(f, "list", "--json"), 0);
    assert_null(strstr(f->out, secret));
    json_t *arr = json_loads(f->out, 0, NULL);
    assert_non_null(arr);
    assert_int_equal(json_array_size(arr), 2);
    size_t i;
    json_t *k;
    json_array_foreach(arr, i, k)
    {
        assert_null(json_object_get(k, "hash"));
        assert_null(json_object_get(k, "salt"));
        assert_null(json_object_get(k, "secret"));
        assert_non_null(json_object_get(k, "keyid"));
    }
    json_decref(arr);

    assert_int_equal(RUN(f, "revoke", info.keyid), 0);
    assert_non_null(strstr(f->out, "revoked"));
    assert_int_equal(RUN(f, "revoke", info.keyid), 0);
    assert_non_null(strstr(f->out, "already revoked"));
    assert_int_equal(ink_keys_verify(f->store, key, NULL, &err), 0);
    assert_int_equal(RUN(f, "revoke", "0123456789ab"), 1);
}

static void test_cli_usage(void **state)
{
    fixture *f = *state;
    assert_int_equal(RUN(f, "create", "--project", "demo"), 2);
    assert_int_equal(RUN(f, "create", "--project", "Demo", "--role", "reader"), 2);
    assert_int_equal(RUN(f, "create", "--project", "demo", "--role", "admin"), 2);
    assert_int_equal(RUN(f, "create", "--project", "demo", "--role"), 2);
    assert_int_equal(RUN(f, "create", "--project", "demo", "--role", "reader", "extra"), 2);
    assert_int_equal(RUN(f, "list", "--yaml"), 2);
    assert_int_equal(RUN(f, "revoke"), 2);
    assert_int_equal(RUN(f, "revoke", "xyz"), 2);
    assert_int_equal(RUN(f, "frobnicate"), 2);
    ink_key_info *rows;
    size_t n;
    ink_err err = {0};
    assert_int_equal(ink_keys_list(f->store, &rows, &n, &err), 0);
    assert_int_equal(n, 0);
    free(rows);
}

/* The budget is < 50 ms per verification on the 2-core CI VM; a fast hash
 * should be far below it, even under valgrind. */
static void test_verify_is_fast(void **state)
{
    fixture *f = *state;
    char key[INK_KEY_LEN + 1];
    ink_key_info info;
    create(f, "demo", INK_ROLE_DEPLOYER, key, &info);
    ink_err err = {0};
    int64_t t0 = ink_mono_ns();
    for (int i = 0; i < 20; i++)
        assert_int_equal(ink_keys_verify(f->store, key, NULL, &err), 1);
    int64_t per_ms = (ink_mono_ns() - t0) / 20 / 1000000;
    assert_true(per_ms < 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roles_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_rejects_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_list_hides_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_is_fast, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
