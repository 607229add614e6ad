#include <grpc/grpc_security.h>
#include <stdlib.h>

#include "pki.h"
#include "rpc.h"
#include "util.h"

typedef struct {
    char *ca, *cert, *key;
} tls_pem;

static void tls_pem_free(tls_pem *p)
{
    free(p->ca);
    free(p->cert);
    free(p->key);
}

/* Checks the files before gRPC sees them: gRPC only logs a vague handshake
 * failure later, while an operator needs "tls_cert: certificate has
 * expired" at start-up. */
static int load_tls(const ink_tls_files *tls, tls_pem *out, ink_err *err)
{
    *out = (tls_pem){0};
    if (!tls->ca || !*tls->ca || !tls->cert || !*tls->cert || !tls->key || !*tls->key)
        return ink_err_set(err, 0, "TLS needs tls_ca, tls_cert and tls_key (or --insecure-dev)");
    if (ink_pki_verify(tls->ca, tls->cert, tls->key, err) < 0)
        return -1;
    if (ink_read_file(tls->ca, 1 << 20, &out->ca, NULL, err) < 0 ||
        ink_read_file(tls->cert, 1 << 20, &out->cert, NULL, err) < 0 ||
        ink_read_file(tls->key, 1 << 20, &out->key, NULL, err) < 0) {
        tls_pem_free(out);
        return -1;
    }
    return 0;
}

grpc_channel_credentials *ink_rpc_channel_creds(const ink_tls_files *tls, ink_err *err)
{
    if (!tls)
        return grpc_insecure_credentials_create();
    tls_pem pem;
    if (load_tls(tls, &pem, err) < 0)
        return NULL;
    grpc_ssl_pem_key_cert_pair pair = {.private_key = pem.key, .cert_chain = pem.cert};
    grpc_channel_credentials *creds = grpc_ssl_credentials_create(pem.ca, &pair, NULL, NULL);
    tls_pem_free(&pem);
    if (!creds)
        ink_err_set(err, 0, "gRPC refused the TLS credentials");
    return creds;
}

grpc_server_credentials *ink_rpc_server_creds(const ink_tls_files *tls, ink_err *err)
{
    if (!tls)
        return grpc_insecure_server_credentials_create();
    tls_pem pem;
    if (load_tls(tls, &pem, err) < 0)
        return NULL;
    grpc_ssl_pem_key_cert_pair pair = {.private_key = pem.key, .cert_chain = pem.cert};
    grpc_server_credentials *creds = grpc_ssl_server_credentials_create_ex(
        pem.ca, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
    tls_pem_free(&pem);
    if (!creds)
        ink_err_set(err, 0, "gRPC refused the TLS server credentials");
    return creds;
}
