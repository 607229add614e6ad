/* Helpers shared by the unit tests: scratch directories and a small cluster
 * PKI (CA, coordinator and node certificates, and a foreign CA). */
#ifndef INK_TESTLIB_H
#define INK_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>

typedef struct test_pki {
    char dir[128]; /* scratch dir holding everything below */
    char ca[192];  /* pki/ca.crt */
    char coord_crt[192], coord_key[192];
    char node_crt[192], node_key[192];       /* node "n1" */
    char node2_crt[192], node2_key[192];     /* node "n2" */
    char foreign_ca[192];                    /* another CA */
    char foreign_crt[192], foreign_key[192]; /* "n1" signed by the other CA */
} test_pki;

/* mkdtemp under /tmp with the given tag; returns 0 on success. */
int test_mkdtemp(char *out, size_t outlen, const char *tag);
/* rm -rf */
int test_rmtree(const char *path);
/* Blocks SIGPIPE in the calling thread and the threads it creates later:
 * a write to a vanished reader fails with EPIPE instead of killing the
 * test. Call first thing in main(). */
void test_block_sigpipe(void);
/* cmocka fixtures for a scratch directory. test_scratch_setup allocates a
 * test_scratch; test_scratch_teardown removes the directory and frees the
 * state of any fixture struct whose first member is `char dir[128]`. */
typedef struct test_scratch {
    char dir[128];
} test_scratch;

int test_scratch_setup(void **state);
int test_scratch_teardown(void **state);

/* Brings lo up in the current network namespace (a new one has it down);
 * -1 with errno on failure. */
int test_lo_up(void);

/* A copy of s with every ' turned into ", so JSON in tests can be written
 * with single quotes and stay readable. Caller frees. */
char *test_requote(const char *s);

/* Creates dir and the PKI in it; aborts the test on failure. */
void test_pki_create(test_pki *p, const char *tag);
void test_pki_destroy(test_pki *p);

#endif
