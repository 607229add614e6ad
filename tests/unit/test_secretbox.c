/* Unit tests for coordinator/secretbox.c: sealing, the key file, and the
 * keyed fingerprints and MACs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "secretbox.h"
#include "testlib.h"
#include "util.h"

#define DAMAGED "cannot decrypt secret: wrong key file or damaged data"

static char *key_path(const test_scratch *t, const char *name)
{
    return ink_xasprintf("%s/%s", t->dir, name);
}

static ink_secretbox *open_ok(const char *path)
{
    ink_secretbox *b = NULL;
    ink_err err = {0};
    if (ink_secretbox_open(path, &b, &err) < 0)
        fail_msg("open %s: %s", path ? path : "(memory)", err.msg);
    return b;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void test_round_trip(void **state)
{
    test_scratch *t = *state;
    cleanup_free char *path = key_path(t, "secret.key");
    ink_secretbox *b = open_ok(path);
    const char *values[] = {"hunter2", "", "a value with spaces, = signs and ünïcödé", NULL};
    char long_value[5000];
    memset(long_value, 'q', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    values[3] = long_value;
    for (size_t i = 0; i < INK_ARRAY_LEN(values); i++) {
        cleanup_free char *sealed = ink_secretbox_seal(b, values[i], strlen(values[i]));
        assert_non_null(sealed);
        assert_memory_equal(sealed, "v1:", 3);
        if (*values[i])
            assert_null(strstr(sealed, values[i]));
        char *plain = NULL;
        size_t len = 99;
        ink_err err = {0};
        assert_int_equal(ink_secretbox_unseal(b, sealed, &plain, &len, &err), 0);
        assert_int_equal(len, strlen(values[i]));
        assert_string_equal(plain, values[i]);
        free(plain);
    }
    /* Bytes, not only strings: NULs inside survive, len says where it ends. */
    const char bin[] = {'a', 0, 'b', 0};
    cleanup_free char *sealed = ink_secretbox_seal(b, bin, sizeof bin);
    char *plain = NULL;
    size_t len = 0;
    ink_err err = {0};
    assert_int_equal(ink_secretbox_unseal(b, sealed, &plain, &len, &err), 0);
    assert_int_equal(len, sizeof bin);
    assert_memory_equal(plain, bin, sizeof bin);
    assert_int_equal(plain[len], '\0');
    free(plain);
    ink_secretbox_free(b);
}

static void test_nonces_differ(void **state)
{
    (void)state;
    ink_secretbox *b = open_ok(NULL); /* in-memory key */
    enum { N = 200 };
    char *sealed[N];
    for (int i = 0; i < N; i++) {
        sealed[i] = ink_secretbox_seal(b, "same", 4);
        assert_non_null(sealed[i]);
    }
    /* The first 16 base64 digits are exactly the 12-byte nonce. */
    for (int i = 0; i < N; i++) {
        for (int j = i + 1; j < N; j++)
            assert_true(strncmp(sealed[i] + 3, sealed[j] + 3, 16) != 0);
    }
    for (int i = 0; i < N; i++)
        free(sealed[i]);
    ink_secretbox_free(b);
}

static void expect_refused(const ink_secretbox *b, const char *sealed, const char *msg)
{
    char *plain = (char *)"untouched";
    ink_err err = {0};
    assert_int_equal(ink_secretbox_unseal(b, sealed, &plain, NULL, &err), -1);
    assert_null(plain);
    assert_string_equal(err.msg, msg);
}

static void test_tampering_detected(void **state)
{
    (void)state;
    ink_secretbox *b = open_ok(NULL);
    cleanup_free char *sealed = ink_secretbox_seal(b, "hunter2-SECRET", 14);
    size_t n = strlen(sealed);
    /* Any one digit changed, in the nonce, the ciphertext or the tag
     * (12 + 14 + 16 bytes: no padding, every digit carries only data). */
    assert_null(strchr(sealed, '='));
    for (size_t i = 3; i < n; i++) {
        cleanup_free char *bad = ink_xstrdup(sealed);
        bad[i] = bad[i] == 'A' ? 'g' : 'A';
        expect_refused(b, bad, DAMAGED);
    }
    /* Cut short, extended, not base64, nothing at all. */
    cleanup_free char *cut = ink_xstrdup(sealed);
    cut[n - 4] = '\0';
    expect_refused(b, cut, DAMAGED);
    cleanup_free char *longer = ink_xasprintf("%sAAAA", sealed);
    expect_refused(b, longer, DAMAGED);
    cleanup_free char *space = ink_xstrdup(sealed);
    space[10] = ' ';
    expect_refused(b, space, DAMAGED);
    expect_refused(b, "v1:", DAMAGED);
    expect_refused(b, "v1:AAAA", DAMAGED);
    expect_refused(b, "hunter2", "cannot decrypt secret: not a sealed value");
    expect_refused(b, "v2:AAAA", "cannot decrypt secret: not a sealed value");
    expect_refused(b, NULL, "cannot decrypt secret: not a sealed value");
    ink_secretbox_free(b);
}

static void test_wrong_key(void **state)
{
    test_scratch *t = *state;
    cleanup_free char *p1 = key_path(t, "one.key");
    cleanup_free char *p2 = key_path(t, "two.key");
    ink_secretbox *b1 = open_ok(p1), *b2 = open_ok(p2);
    cleanup_free char *sealed = ink_secretbox_seal(b1, "hunter2", 7);
    expect_refused(b2, sealed, DAMAGED);
    /* The same file opened again is the same key. */
    ink_secretbox *again = open_ok(p1);
    char *plain = NULL;
    ink_err err = {0};
    assert_int_equal(ink_secretbox_unseal(again, sealed, &plain, NULL, &err), 0);
    assert_string_equal(plain, "hunter2");
    free(plain);
    ink_secretbox_free(again);
    ink_secretbox_free(b1);
    ink_secretbox_free(b2);
}

static void test_creates_key_file_0600(void **state)
{
    test_scratch *t = *state;
    cleanup_free char *path = key_path(t, "secret.key");
    mode_t old = umask(022); /* the usual umask: 0600 must not depend on it */
    ink_secretbox *b = open_ok(path);
    umask(old);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, 32);
    /* Nothing else left behind (the temporary name it was written under). */
    DIR *d = opendir(t->dir);
    assert_non_null(d);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            assert_string_equal(e->d_name, "secret.key");
            entries++;
        }
    }
    closedir(d);
    assert_int_equal(entries, 1);
    ink_secretbox_free(b);
}

static void expect_open_refused(const char *path, const char *needle)
{
    ink_secretbox *b = NULL;
    ink_err err = {0};
    assert_int_equal(ink_secretbox_open(path, &b, &err), -1);
    assert_null(b);
    if (!strstr(err.msg, needle))
        fail_msg("'%s' does not say '%s'", err.msg, needle);
}

static void test_refuses_open_permissions(void **state)
{
    test_scratch *t = *state;
    cleanup_free char *path = key_path(t, "secret.key");
    ink_secretbox_free(open_ok(path));
    assert_int_equal(chmod(path, 0644), 0);
    expect_open_refused(path, "mode 0644, open to group or others: refusing to use it (chmod 600");
    assert_int_equal(chmod(path, 0640), 0);
    expect_open_refused(path, "mode 0640");
    assert_int_equal(chmod(path, 0604), 0);
    expect_open_refused(path, "mode 0604");
    /* Refused, not repaired: the mode is as it was. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0604);
    /* Owner-only modes are fine, read-only too. */
    assert_int_equal(chmod(path, 0400), 0);
    ink_secretbox_free(open_ok(path));
}

static void test_refuses_wrong_size_or_kind(void **state)
{
    test_scratch *t = *state;
    cleanup_free char *path = key_path(t, "secret.key");
    uint8_t bytes[64] = {1, 2, 3};
    write_file(path, bytes, 31, 0600);
    expect_open_refused(path, "is 31 bytes, a key is exactly 32: refusing to use it");
    write_file(path, bytes, 33, 0600);
    expect_open_refused(path, "is 33 bytes");
    write_file(path, bytes, 0, 0600);
    expect_open_refused(path, "is 0 bytes");
    /* Still the operator's file: not overwritten with a new key. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    write_file(path, bytes, 32, 0600);
    ink_secretbox_free(open_ok(path));

    cleanup_free char *dir = key_path(t, "dir.key");
    assert_int_equal(mkdir(dir, 0700), 0);
    expect_open_refused(dir, "not a regular file");
    cleanup_free char *fifo = key_path(t, "fifo.key");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_open_refused(fifo, "not a regular file");
    cleanup_free char *missing_dir = key_path(t, "nope/secret.key");
    expect_open_refused(missing_dir, "nope/secret.key");
}

/* Child: waits for the start signal, opens (creating) the key, and sends
 * back a value sealed with it. */
static void racer(const char *path, int start_fd, int out_fd)
{
    char c;
    if (read(start_fd, &c, 1) != 0)
        _exit(2);
    ink_secretbox *b = NULL;
    ink_err err = {0};
    if (ink_secretbox_open(path, &b, &err) < 0) {
        fprintf(stderr, "racer: %s\n", err.msg);
        _exit(1);
    }
    char *sealed = ink_secretbox_seal(b, "raced", 5);
    ink_secretbox_free(b);
    if (!sealed)
        _exit(1);
    size_t len = strlen(sealed) + 1;
    int rc = write(out_fd, sealed, len) == (ssize_t)len ? 0 : 1;
    free(sealed);
    _exit(rc);
}

static void test_concurrent_create_one_key(void **state)
{
    test_scratch *t = *state;
    enum { ROUNDS = 10, RACERS = 4 };
    for (int round = 0; round < ROUNDS; round++) {
        cleanup_free char *path = ink_xasprintf("%s/race-%d.key", t->dir, round);
        int start[2];
        assert_int_equal(pipe(start), 0);
        int outs[RACERS];
        pid_t pids[RACERS];
        for (int i = 0; i < RACERS; i++) {
            int out[2];
            assert_int_equal(pipe(out), 0);
            pids[i] = fork();
            assert_true(pids[i] >= 0);
            if (pids[i] == 0) {
                close(start[1]);
                close(out[0]);
                racer(path, start[0], out[1]);
            }
            close(out[1]);
            outs[i] = out[0];
        }
        close(start[0]);
        close(start[1]); /* everyone starts at once */
        for (int i = 0; i < RACERS; i++) {
            int status;
            assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
            assert_true(WIFEXITED(status));
            assert_int_equal(WEXITSTATUS(status), 0);
        }
        /* Whoever won, every racer sealed with the key now in the file. */
        ink_secretbox *b = open_ok(path);
        for (int i = 0; i < RACERS; i++) {
            char buf[256] = {0};
            assert_true(read(outs[i], buf, sizeof buf - 1) > 0);
            close(outs[i]);
            char *plain = NULL;
            ink_err err = {0};
            if (ink_secretbox_unseal(b, buf, &plain, NULL, &err) < 0)
                fail_msg("round %d racer %d: %s", round, i, err.msg);
            assert_string_equal(plain, "raced");
            free(plain);
        }
        ink_secretbox_free(b);
    }
    /* And no temporary files left: ROUNDS keys, nothing else. */
    DIR *d = opendir(t->dir);
    assert_non_null(d);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] != '.') {
            assert_non_null(strstr(e->d_name, ".key"));
            assert_null(strstr(e->d_name, ".tmp"));
            entries++;
        }
    }
    closedir(d);
    assert_int_equal(entries, ROUNDS);
}

/* The first 16 hex digits of plain SHA-256 of value: what fingerprints
 * were before they were keyed, and must never be again. */
static void plain_prefix(const void *value, size_t len, char out[17])
{
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256(value, len, d);
    ink_hex(d, 8, out);
}

static void fingerprint_ok(const ink_secretbox *b, const void *value, size_t len, char out[17])
{
    assert_int_equal(ink_secretbox_fingerprint(b, value, len, out), 0);
    assert_int_equal(strlen(out), 16);
    assert_int_equal(strspn(out, "0123456789abcdef"), 16);
}

static void test_fingerprint_keyed(void **state)
{
    test_scratch *t = *state;
    cleanup_free char *p1 = key_path(t, "one.key");
    cleanup_free char *p2 = key_path(t, "two.key");
    ink_secretbox *b1 = open_ok(p1), *b2 = open_ok(p2);
    char f1[17], f1b[17], f2[17], plain[17];

    /* Equal values, equal fingerprints under one key, also after the key
     * file is opened again (a restarted coordinator). */
    fingerprint_ok(b1, "hunter2", 7, f1);
    fingerprint_ok(b1, "hunter2", 7, f1b);
    assert_string_equal(f1, f1b);
    ink_secretbox *again = open_ok(p1);
    fingerprint_ok(again, "hunter2", 7, f1b);
    assert_string_equal(f1, f1b);
    ink_secretbox_free(again);

    /* Another key, another fingerprint of the same value. */
    fingerprint_ok(b2, "hunter2", 7, f2);
    assert_string_not_equal(f1, f2);

    /* Not the plain hash: it cannot be checked against a guess without
     * the key. */
    plain_prefix("hunter2", 7, plain);
    assert_string_not_equal(f1, plain);
    assert_string_not_equal(f2, plain);

    /* Other values differ; the length counts, NULs included; NULL is "". */
    fingerprint_ok(b1, "hunter3", 7, f2);
    assert_string_not_equal(f1, f2);
    fingerprint_ok(b1, "a\0b", 3, f1);
    fingerprint_ok(b1, "a", 1, f2);
    assert_string_not_equal(f1, f2);
    fingerprint_ok(b1, NULL, 0, f1);
    fingerprint_ok(b1, "", 0, f2);
    assert_string_equal(f1, f2);
    ink_secretbox_free(b1);
    ink_secretbox_free(b2);
}

/* Known answers (computed with Python's hmac module) pin the derivation:
 * fingerprints stored in a database must still compare after an upgrade. */
static void test_fingerprint_known_answer(void **state)
{
    test_scratch *t = *state;
    cleanup_free char *path = key_path(t, "secret.key");
    uint8_t key[INK_SECRETBOX_KEY_LEN];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)i;
    write_file(path, key, sizeof key, 0600);
    ink_secretbox *b = open_ok(path);
    char fp[17], mac[65];
    /* HMAC(HMAC(key, "ink fingerprint v1"), value), first 8 bytes */
    fingerprint_ok(b, "hunter2", 7, fp);
    assert_string_equal(fp, "e83b57b23e179c10");
    fingerprint_ok(b, "", 0, fp);
    assert_string_equal(fp, "0f5ef04cc3ae6098");
    /* HMAC(HMAC(key, "ink mac v1"), data) */
    assert_int_equal(ink_secretbox_mac_hex(b, "hunter2", 7, mac), 0);
    assert_string_equal(mac, "e23f4402122718da76d89c0cd7234b5ed631d91c7485c3baa94d654b1e273087");
    ink_secretbox_free(b);
}

static void test_mac_hex(void **state)
{
    (void)state;
    ink_secretbox *b1 = open_ok(NULL), *b2 = open_ok(NULL);
    char m1[65], m1b[65], m2[65], fp[17], plain[65];
    assert_int_equal(ink_secretbox_mac_hex(b1, "{\"k\":\"pw\"}", 10, m1), 0);
    assert_int_equal(strlen(m1), 64);
    assert_int_equal(strspn(m1, "0123456789abcdef"), 64);
    assert_int_equal(ink_secretbox_mac_hex(b1, "{\"k\":\"pw\"}", 10, m1b), 0);
    assert_string_equal(m1, m1b);
    /* Keyed: two in-memory keys (random each) disagree. */
    assert_int_equal(ink_secretbox_mac_hex(b2, "{\"k\":\"pw\"}", 10, m2), 0);
    assert_string_not_equal(m1, m2);
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)"{\"k\":\"pw\"}", 10, d);
    ink_hex(d, sizeof d, plain);
    assert_string_not_equal(m1, plain);
    /* Another subkey than fingerprints: neither says anything about the
     * other. */
    fingerprint_ok(b1, "{\"k\":\"pw\"}", 10, fp);
    assert_false(strncmp(m1, fp, 16) == 0);
    ink_secretbox_free(b1);
    ink_secretbox_free(b2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, test_scratch_setup, test_scratch_teardown),
        cmocka_unit_test(test_nonces_differ),
        cmocka_unit_test(test_tampering_detected),
        cmocka_unit_test_setup_teardown(test_wrong_key, test_scratch_setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_creates_key_file_0600, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_refuses_open_permissions, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_refuses_wrong_size_or_kind, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_create_one_key, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_fingerprint_keyed, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_fingerprint_known_answer, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test(test_mac_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
