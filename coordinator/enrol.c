/* `ink-coordinator pki enrol`: see enrol.h. */
#include "enrol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ink_version.h"
#include "pki.h"
#include "util.h"

#define PEM_MAX (64 * 1024)

int ink_enrol_check_coordinator(const char *hostport, ink_err *err)
{
    if (!hostport || !*hostport)
        return ink_err_set(err, EINVAL, "no coordinator address (--coordinator HOST:PORT)");
    const char *s = hostport, *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        char v6[INET6_ADDRSTRLEN];
        struct in6_addr a;
        size_t n = close ? (size_t)(close - s - 1) : 0;
        if (!close || n == 0 || n >= sizeof v6)
            return ink_err_set(err, EINVAL, "bad coordinator address '%s': want [IPv6]:PORT",
                               hostport);
        memcpy(v6, s + 1, n);
        v6[n] = '\0';
        if (inet_pton(AF_INET6, v6, &a) != 1)
            return ink_err_set(err, EINVAL, "bad coordinator address '%s': '%s' is not IPv6",
                               hostport, v6);
        colon = close + 1;
        if (*colon != ':')
            return ink_err_set(err, EINVAL, "bad coordinator address '%s': want [IPv6]:PORT",
                               hostport);
    } else {
        colon = strchr(s, ':');
        size_t n = colon ? (size_t)(colon - s) : 0;
        if (!colon || n == 0 || n > 253 || strchr(colon + 1, ':'))
            return ink_err_set(err, EINVAL,
                               "bad coordinator address '%s': want HOST:PORT (an IPv6 address "
                               "in brackets)",
                               hostport);
        if (s[0] == '-' || s[0] == '.')
            return ink_err_set(err, EINVAL, "bad coordinator address '%s': bad host name",
                               hostport);
        for (size_t i = 0; i < n; i++) {
            char c = s[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-'))
                return ink_err_set(err, EINVAL,
                                   "bad coordinator address '%s': the host may only have "
                                   "letters, digits, '.' and '-'",
                                   hostport);
        }
    }
    const char *p = colon + 1;
    size_t digits = strspn(p, "0123456789");
    long port = digits > 0 && digits <= 5 && p[digits] == '\0' ? strtol(p, NULL, 10) : 0;
    if (port < 1 || port > 65535)
        return ink_err_set(err, EINVAL, "bad coordinator address '%s': port must be 1..65535",
                           hostport);
    return 0;
}

/* Printable ASCII lines, ending in a newline, none of them the
 * here-document's terminator. */
static int check_pem(const char *what, const char *pem, ink_err *err)
{
    size_t len = strlen(pem);
    if (len == 0 || pem[len - 1] != '\n' || strncmp(pem, "-----BEGIN ", 11) != 0)
        return ink_err_set(err, EINVAL, "%s: not a PEM text", what);
    for (const char *c = pem; *c; c++)
        if (*c != '\n' && (*c < 0x20 || *c > 0x7e))
            return ink_err_set(err, EINVAL, "%s: a byte that is not printable ASCII", what);
    size_t tl = strlen(INK_ENROL_HEREDOC_END);
    for (const char *line = pem; *line; line = strchr(line, '\n') + 1)
        if (strncmp(line, INK_ENROL_HEREDOC_END, tl) == 0 && line[tl] == '\n')
            return ink_err_set(err, EINVAL, "%s: holds the line " INK_ENROL_HEREDOC_END, what);
    return 0;
}

/* The script's fixed part, after its settings and embedded files. */
static const char *const script_body[] = {
    "",
    "PKI=/etc/ink/pki",
    "CONF=/etc/ink/agent.conf",
    "TMPS=",
    "CHANGED=",
    "",
    "say() { printf 'ink-enrol: %s\\n' \"$*\"; }",
    "die() {",
    "\tprintf 'ink-enrol: %s\\n' \"$*\" >&2",
    "\texit 1",
    "}",
    "cleanup() {",
    "\tfor t in $TMPS; do rm -f \"$t\"; done",
    "}",
    "",
    "# t = a new temporary file (mode 0600) in the directory of $1, removed on",
    "# exit unless it was moved into place.",
    "tmp_beside() {",
    "\tt=$(mktemp \"$(dirname \"$1\")/.ink-enrol.XXXXXX\") || die \"cannot create a file in "
    "$(dirname \"$1\")\"",
    "\tTMPS=\"$TMPS $t\"",
    "}",
    "",
    "# PATH FUNCTION MODE: writes what FUNCTION prints to PATH, root-owned with",
    "# MODE, atomically (a file beside it, then mv); an identical file is kept",
    "# and its directory left untouched.",
    "put_file() {",
    "\tif [ -f \"$1\" ] && \"$2\" | cmp -s - \"$1\"; then",
    "\t\tchown 0:0 \"$1\"",
    "\t\tchmod \"$3\" \"$1\"",
    "\t\tsay \"$1: unchanged\"",
    "\t\treturn 0",
    "\tfi",
    "\ttmp_beside \"$1\"",
    "\t\"$2\" >\"$t\"",
    "\tchown 0:0 \"$t\"",
    "\tchmod \"$3\" \"$t\"",
    "\tmv -f \"$t\" \"$1\"",
    "\tCHANGED=1",
    "\tsay \"$1: written (mode $3)\"",
    "}",
    "",
    "# KEY: its value in agent.conf (the first line setting it), empty if unset.",
    "conf_value() {",
    "\t[ -f \"$CONF\" ] || return 0",
    "\tawk -v k=\"$1\" '",
    "\t\t{ line = $0; sub(/^[ \\t]+/, \"\", line) }",
    "\t\tline ~ /^[#;]/ || index(line, k) != 1 { next }",
    "\t\t{",
    "\t\t\trest = substr(line, length(k) + 1)",
    "\t\t\tif (rest !~ /^[ \\t]*=/) next",
    "\t\t\tsub(/^[ \\t]*=[ \\t]*/, \"\", rest)",
    "\t\t\tif (rest ~ /^\"/) { sub(/^\"/, \"\", rest); sub(/\".*$/, \"\", rest) }",
    "\t\t\telse { sub(/[ \\t]*#.*$/, \"\", rest); sub(/[ \\t]+$/, \"\", rest) }",
    "\t\t\tprint rest",
    "\t\t\texit",
    "\t\t}' \"$CONF\" </dev/null",
    "}",
    "",
    "is_loopback() {",
    "\tcase $1 in 127.* | localhost:* | '[::1]:'*) return 0 ;; esac",
    "\treturn 1",
    "}",
    "",
    "main() {",
    "\ttrap cleanup EXIT",
    "\ttrap 'exit 130' INT TERM",
    "\t[ \"$(id -u)\" = 0 ] || die \"run this as root on the node (ssh root@$INK_NODE sh -s < "
    "$INK_SCRIPT)\"",
    "",
    "\t# 1. the package",
    "\tif [ -n \"${INK_AGENT_DEB:-}\" ]; then",
    "\t\t[ -f \"$INK_AGENT_DEB\" ] || die \"INK_AGENT_DEB=$INK_AGENT_DEB: no such file\"",
    "\t\tcase $INK_AGENT_DEB in",
    "\t\t/* | ./* | ../*) deb=$INK_AGENT_DEB ;;",
    "\t\t*) deb=./$INK_AGENT_DEB ;;",
    "\t\tesac",
    "\t\tsay \"installing $deb\"",
    "\t\tDEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confdef "
    "\\",
    "\t\t\t-o Dpkg::Options::=--force-confold \"$deb\" </dev/null || die \"apt-get install $deb "
    "failed\"",
    "\tfi",
    "\tif ! command -v ink-agent >/dev/null 2>&1; then",
    "\t\tarch=$(dpkg --print-architecture 2>/dev/null) || arch=ARCH",
    "\t\tdie \"install the ink-agent package first: apt-get install "
    "./ink-agent_$INK_VERSION-1_$arch.deb\" \\",
    "\t\t\t\"(or run this script with INK_AGENT_DEB=/path/to/ink-agent.deb to install it)\"",
    "\tfi",
    "",
    "\t# 2. the certificates",
    "\tif [ ! -d \"$PKI\" ]; then",
    "\t\tmkdir -p \"$PKI\"",
    "\t\tchmod 0750 \"$PKI\"",
    "\t\tsay \"created $PKI (mode 0750)\"",
    "\tfi",
    "\tif [ -e \"$PKI/node.key\" ] && ! ink_node_key | cmp -s - \"$PKI/node.key\"; then",
    "\t\tif [ \"${INK_ENROL_FORCE:-}\" != 1 ]; then",
    "\t\t\t{",
    "\t\t\t\techo \"ink-enrol: $PKI/node.key is there already and is not the key of this script.\"",
    "\t\t\t\techo \"What is installed now:\"",
    "\t\t\t\tls -l \"$PKI\"",
    "\t\t\t\tink-agent --config \"$CONF\" doctor --check=certificates </dev/null || true",
    "\t\t\t\techo \"This node was enrolled before (another name, another certificate, or another\"",
    "\t\t\t\techo \"run of pki enrol). To replace its key and certificates, run this again with\"",
    "\t\t\t\techo \"INK_ENROL_FORCE=1: INK_ENROL_FORCE=1 sh $INK_SCRIPT, or\"",
    "\t\t\t\techo \"ssh root@$INK_NODE INK_ENROL_FORCE=1 sh -s < $INK_SCRIPT\"",
    "\t\t\t} >&2",
    "\t\t\texit 1",
    "\t\tfi",
    "\t\tsay \"replacing a different $PKI/node.key (INK_ENROL_FORCE=1)\"",
    "\tfi",
    "\tput_file \"$PKI/ca.crt\" ink_ca_crt 0644",
    "\tput_file \"$PKI/node.crt\" ink_node_crt 0644",
    "\tput_file \"$PKI/node.key\" ink_node_key 0600",
    "",
    "\t# 3. agent.conf: coordinator and node_id, and listen on every address",
    "\t# when it is the loopback default (the coordinator dials AgentService);",
    "\t# every other line stays as it is.",
    "\tlisten=$(conf_value listen)",
    "\tnew_listen=",
    "\tcase $listen in '' | 127.0.0.1:7442) new_listen=0.0.0.0:7442 ;; esac",
    "\ttmp_beside \"$CONF\"",
    "\tsrc=/dev/null",
    "\tif [ -f \"$CONF\" ]; then",
    "\t\tcp -p \"$CONF\" \"$t\"",
    "\t\tsrc=$CONF",
    "\telse",
    "\t\tchmod 0644 \"$t\"",
    "\tfi",
    "\tawk -v coord=\"$INK_COORDINATOR\" -v node=\"$INK_NODE\" -v listen=\"$new_listen\" '",
    "\t\tfunction is(k,   line) {",
    "\t\t\tline = $0",
    "\t\t\tsub(/^[ \\t]+/, \"\", line)",
    "\t\t\treturn line ~ (\"^\" k \"[ \\t]*=\")",
    "\t\t}",
    "\t\tis(\"coordinator\") { if (!c++) print \"coordinator = \" coord; next }",
    "\t\tis(\"node_id\") { if (!n++) print \"node_id = \" node; next }",
    "\t\tlisten != \"\" && is(\"listen\") { if (!l++) print \"listen = \" listen; next }",
    "\t\t{ print }",
    "\t\tEND {",
    "\t\t\tif (!c) print \"coordinator = \" coord",
    "\t\t\tif (!n) print \"node_id = \" node",
    "\t\t\tif (listen != \"\" && !l) print \"listen = \" listen",
    "\t\t}' \"$src\" >\"$t\" </dev/null",
    "\twhat=\"coordinator = $INK_COORDINATOR, node_id = $INK_NODE\"",
    "\t[ -z \"$new_listen\" ] || what=\"$what, listen = $new_listen\"",
    "\tif [ -f \"$CONF\" ] && cmp -s \"$t\" \"$CONF\"; then",
    "\t\trm -f \"$t\"",
    "\t\tsay \"$CONF: unchanged ($what)\"",
    "\telse",
    "\t\tif [ -f \"$CONF\" ]; then",
    "\t\t\tcp -p \"$CONF\" \"$CONF.ink-enrol.bak\"",
    "\t\t\tsay \"$CONF: the previous version is in $CONF.ink-enrol.bak\"",
    "\t\tfi",
    "\t\tmv -f \"$t\" \"$CONF\"",
    "\t\tCHANGED=1",
    "\t\tsay \"$CONF: set $what\"",
    "\tfi",
    "\t[ -z \"$new_listen\" ] ||",
    "\t\tsay \"listen was the loopback default: AgentService now listens on every address (port "
    "7442), so that the coordinator can reach it\"",
    "\tif [ -z \"$new_listen\" ] && is_loopback \"$listen\"; then",
    "\t\tsay \"warning: listen = $listen is a loopback address: a coordinator on another machine "
    "cannot reach this agent (set listen = 0.0.0.0:7442)\"",
    "\tfi",
    "\tfor kv in \"tls_ca $PKI/ca.crt\" \"tls_cert $PKI/node.crt\" \"tls_key $PKI/node.key\"; do",
    "\t\tv=$(conf_value \"${kv% *}\")",
    "\t\t[ -z \"$v\" ] || [ \"$v\" = \"${kv#* }\" ] ||",
    "\t\t\tsay \"warning: $CONF sets ${kv% *} = $v: the agent does not use ${kv#* }\"",
    "\tdone",
    "",
    "\t# 4. the preflight",
    "\tsay \"ink-agent doctor:\"",
    "\trc=0",
    "\tink-agent --config \"$CONF\" doctor </dev/null || rc=$?",
    "\t[ \"$rc\" -eq 0 ] ||",
    "\t\tdie \"ink-agent doctor failed (exit $rc, see above): fix what it says and run this script "
    "again; nothing was started\"",
    "",
    "\t# 5. the service",
    "\tif [ -d /run/systemd/system ]; then",
    "\t\tif systemctl is-active --quiet ink-agent </dev/null; then",
    "\t\t\tsystemctl enable --quiet ink-agent </dev/null",
    "\t\t\tif [ -n \"$CHANGED\" ]; then",
    "\t\t\t\tsystemctl restart ink-agent </dev/null",
    "\t\t\t\tsay \"restarted ink-agent\"",
    "\t\t\telse",
    "\t\t\t\tsay \"ink-agent runs already and nothing changed: not restarted\"",
    "\t\t\tfi",
    "\t\telse",
    "\t\t\tsystemctl enable --now --quiet ink-agent </dev/null",
    "\t\t\tsay \"enabled and started ink-agent\"",
    "\t\tfi",
    "\t\t# active for 3 checks in a row (not crashing at start), within 30 s",
    "\t\ti=0",
    "\t\tup=0",
    "\t\twhile [ \"$up\" -lt 3 ]; do",
    "\t\t\tif [ \"$i\" -ge 30 ]; then",
    "\t\t\t\tjournalctl -u ink-agent -n 20 --no-pager </dev/null || true",
    "\t\t\t\tdie \"ink-agent is not active after 30 s: see systemctl status ink-agent and "
    "journalctl -u ink-agent\"",
    "\t\t\tfi",
    "\t\t\tsleep 1",
    "\t\t\ti=$((i + 1))",
    "\t\t\tif systemctl is-active --quiet ink-agent </dev/null; then up=$((up + 1)); else up=0; fi",
    "\t\tdone",
    "\t\tsay \"ink-agent is active\"",
    "\t\tsay \"done: on the coordinator, 'ink-coordinator nodes' shows $INK_NODE ready within a "
    "few seconds\"",
    "\telse",
    "\t\tsay \"systemd is not running on this machine (PID 1 is $(cat /proc/1/comm 2>/dev/null || "
    "echo unknown)): start the agent under your init system with\"",
    "\t\tsay \"  $(command -v ink-agent) --config $CONF run\"",
    "\t\tsay \"then, on the coordinator, 'ink-coordinator nodes' shows $INK_NODE ready\"",
    "\tfi",
    "}",
    "",
    "main \"$@\"",
};

/* Appends to a buffer sized beforehand: with buf NULL it only counts, so
 * the text holding the key is built once, without reallocations leaving
 * copies of it behind. */
typedef struct {
    char *buf;
    size_t len;
} sink;

static void put(sink *s, const char *text)
{
    size_t n = strlen(text);
    if (s->buf)
        memcpy(s->buf + s->len, text, n);
    s->len += n;
}

static void put_heredoc(sink *s, const char *fn, const char *pem)
{
    put(s, fn);
    put(s, "() {\n\tcat <<'" INK_ENROL_HEREDOC_END "'\n");
    put(s, pem);
    put(s, INK_ENROL_HEREDOC_END "\n}\n\n");
}

/* A file name that is safe in single quotes and in messages. */
static bool plain_file_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 100 || s[0] == '-' || s[0] == '.')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static void emit(sink *s, const char *node, const char *coordinator, const char *script,
                 const char *ca_pem, const char *crt_pem, const char *key_pem)
{
    put(s, "#!/bin/sh\n# Enrols the node ");
    put(s, node);
    put(s, " in the Ink cluster whose coordinator is ");
    put(s, coordinator);
    put(s, ".\n# Written by `ink-coordinator pki enrol` (Ink " INK_VERSION "). Run it as root on "
           "the node:\n#     ssh root@");
    put(s, node);
    put(s, " sh -s < ");
    put(s, script);
    put(s, "    (or, there: sh ");
    put(s, script);
    put(s, ")\n"
           "# It installs /etc/ink/pki/{ca.crt,node.crt,node.key}, sets coordinator and\n"
           "# node_id (and listen = 0.0.0.0:7442 when it is the loopback default) in\n"
           "# /etc/ink/agent.conf, runs `ink-agent doctor` and starts ink-agent.\n"
           "# INK_AGENT_DEB=/path/to/ink-agent.deb installs the package first;\n"
           "# INK_ENROL_FORCE=1 replaces a different node key that is there already.\n"
           "#\n"
           "# THIS FILE HOLDS THE NODE'S PRIVATE KEY: keep it 0600, delete it once used.\n"
           "set -eu\n\nINK_NODE='");
    put(s, node);
    put(s, "'\nINK_COORDINATOR='");
    put(s, coordinator);
    put(s, "'\nINK_VERSION='" INK_VERSION "'\nINK_SCRIPT='");
    put(s, script);
    put(s, "'\n\n");
    put_heredoc(s, "ink_ca_crt", ca_pem);
    put_heredoc(s, "ink_node_crt", crt_pem);
    put_heredoc(s, "ink_node_key", key_pem);
    put(s, "# Below: functions, then main, which runs once the whole script has been\n"
           "# read (a transfer cut short runs nothing).");
    for (size_t i = 0; i < INK_ARRAY_LEN(script_body); i++) {
        put(s, script_body[i]);
        put(s, "\n");
    }
}

char *ink_enrol_script(const char *node, const char *coordinator, const char *script_name,
                       const char *ca_pem, const char *crt_pem, const char *key_pem, ink_err *err)
{
    if (!ink_valid_name(node)) {
        ink_err_set(err, EINVAL, "bad node name '%s'", node ? node : "");
        return NULL;
    }
    if (ink_enrol_check_coordinator(coordinator, err) < 0 || check_pem("ca.crt", ca_pem, err) < 0 ||
        check_pem("node certificate", crt_pem, err) < 0 || check_pem("node key", key_pem, err) < 0)
        return NULL;
    cleanup_free char *fallback = ink_xasprintf("enrol-%s.sh", node);
    const char *script = script_name && plain_file_name(script_name) ? script_name : fallback;
    sink s = {0};
    emit(&s, node, coordinator, script, ca_pem, crt_pem, key_pem);
    size_t size = s.len;
    s = (sink){.buf = ink_xmalloc(size + 1)};
    emit(&s, node, coordinator, script, ca_pem, crt_pem, key_pem);
    s.buf[s.len] = '\0';
    return s.buf;
}

static void wipe_free(char *text)
{
    if (text) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
}

/* Creates path (mode 0600, never over an existing file) holding text. */
static int write_new(const char *path, const char *text, ink_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return ink_err_set(err, errno, "create %s%s", path,
                           errno == EEXIST ? " (not overwriting it: remove it or choose --out)"
                                           : "");
    size_t len = strlen(text), off = 0;
    int e = fchmod(fd, 0600) < 0 ? errno : 0;
    while (!e && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            e = w < 0 ? errno : EIO;
        else
            off += (size_t)w;
    }
    if (!e && fsync(fd) < 0)
        e = errno;
    if (close(fd) < 0 && !e)
        e = errno;
    if (e) {
        unlink(path);
        return ink_err_set(err, e, "write %s", path);
    }
    return 0;
}

/* Issues the certificate into tmpdir and writes the script. */
static int issue_and_write(const ink_enrol_opts *o, const char *tmpdir, char *path, size_t pathlen,
                           ink_err *err)
{
    if (ink_pki_issue(o->pki_dir, o->node, INK_ROLE_NODE, o->sans, o->nsans, o->days, tmpdir, err) <
        0)
        return -1;
    int n = o->out ? snprintf(path, pathlen, "%s", o->out)
                   : snprintf(path, pathlen, "enrol-%s.sh", o->node);
    if (n < 0 || (size_t)n >= pathlen)
        return ink_err_set(err, ENAMETOOLONG, "script path");
    cleanup_free char *ca_path = ink_xasprintf("%s/ca.crt", o->pki_dir);
    cleanup_free char *crt_path = ink_xasprintf("%s/%s.crt", tmpdir, o->node);
    cleanup_free char *key_path = ink_xasprintf("%s/%s.key", tmpdir, o->node);
    cleanup_free char *ca = NULL, *crt = NULL;
    char *key = NULL;
    if (ink_read_file(ca_path, PEM_MAX, &ca, NULL, err) < 0 ||
        ink_read_file(crt_path, PEM_MAX, &crt, NULL, err) < 0 ||
        ink_read_file(key_path, PEM_MAX, &key, NULL, err) < 0) {
        wipe_free(key);
        return -1;
    }
    cleanup_free char *copy = ink_xstrdup(path);
    char *script = ink_enrol_script(o->node, o->coordinator, basename(copy), ca, crt, key, err);
    wipe_free(key);
    if (!script)
        return -1;
    int rc = write_new(path, script, err);
    wipe_free(script);
    return rc;
}

int ink_enrol_write(const ink_enrol_opts *o, char *path, size_t pathlen, ink_err *err)
{
    if (ink_enrol_check_coordinator(o->coordinator, err) < 0)
        return -1;
    if (!o->node || !*o->node)
        return ink_err_set(err, EINVAL, "no node name");
    /* The key is written by ink_pki_issue into a private directory beside
     * the script (the same file system), read back, and removed. */
    cleanup_free char *copy = ink_xstrdup(o->out ? o->out : "./enrol.sh");
    const char *dir = dirname(copy);
    cleanup_free char *tmpdir = ink_xasprintf("%s/.ink-enrol-XXXXXX", dir);
    if (!mkdtemp(tmpdir))
        return ink_err_set(err, errno, "create a temporary directory in %s", dir);
    int rc = issue_and_write(o, tmpdir, path, pathlen, err);
    if (ink_rmtree(tmpdir) < 0 && rc == 0)
        rc = ink_err_set(err, errno, "remove %s", tmpdir);
    return rc;
}
