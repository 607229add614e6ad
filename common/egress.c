#include "egress.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool ink_egress_valid_policy_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > INK_EGRESS_POLICY_NAME_MAX || name[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

/* A DNS name of at least two labels: letters, digits and inner hyphens,
 * 1-63 characters a label. Lower-cased into out. */
static bool parse_host(const char *s, size_t len, char *out)
{
    if (len == 0 || len > INK_EGRESS_HOST_MAX)
        return false;
    size_t label = 0, labels = 1;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            out[i] = '.';
            label = 0;
            labels++;
            continue;
        }
        if (!isalnum((unsigned char)c) && !(c == '-' && label > 0))
            return false;
        if (++label > 63)
            return false;
        out[i] = (char)tolower((unsigned char)c);
    }
    out[len] = '\0';
    /* No top-level domain is numeric: "10.1.0.300" is a mistyped address. */
    bool numeric_tld = true;
    for (size_t i = len - label; i < len; i++)
        numeric_tld = numeric_tld && isdigit((unsigned char)s[i]);
    return label > 0 && s[len - 1] != '-' && labels >= 2 && !numeric_tld;
}

static bool parse_u16(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static int parse_ports(const char *entry, const char *p, ink_egress_allow *out, ink_err *err)
{
    const char *dash = strchr(p, '-');
    size_t len = strlen(p);
    bool ok = dash ? parse_u16(p, (size_t)(dash - p), &out->port_min) &&
                         parse_u16(dash + 1, len - (size_t)(dash - p) - 1, &out->port_max)
                   : parse_u16(p, len, &out->port_min);
    if (!dash)
        out->port_max = out->port_min;
    if (!ok)
        return ink_err_set(err, 0,
                           "egress_allow entry '%s': '%s' is not a port (1-65535) or a range "
                           "of ports (8000-8099)",
                           entry, p);
    if (out->port_min > out->port_max)
        return ink_err_set(err, 0, "egress_allow entry '%s': the port range '%s' is backwards",
                           entry, p);
    return 0;
}

int ink_egress_allow_parse(const char *entry, ink_egress_allow *out, ink_err *err)
{
    *out = (ink_egress_allow){.prefix = 32, .port_min = 0, .port_max = 65535};
    if (!entry || !*entry)
        return ink_err_set(err, 0, "egress_allow entry is empty");
    size_t n = strlen(entry);
    if (n > INK_EGRESS_ALLOW_TEXT_MAX)
        return ink_err_set(err, 0, "egress_allow entry '%.40s...' is too long", entry);
    const char *colon = strchr(entry, ':');
    if (entry[0] == '[' || (colon && strchr(colon + 1, ':')))
        return ink_err_set(err, 0,
                           "egress_allow entry '%s': IPv6 destinations are not supported "
                           "(workloads have IPv4 only)",
                           entry);
    size_t tlen = colon ? (size_t)(colon - entry) : n;
    char target[INK_EGRESS_ALLOW_TEXT_MAX + 1];
    memcpy(target, entry, tlen);
    target[tlen] = '\0';
    if (colon && parse_ports(entry, colon + 1, out, err) < 0)
        return -1;

    char *slash = strchr(target, '/');
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, target, &out->addr) == 1) {
        if (slash) {
            char *end = NULL;
            long prefix = strtol(slash + 1, &end, 10);
            if (!isdigit((unsigned char)slash[1]) || *end || prefix < 0 || prefix > 32)
                return ink_err_set(err, 0,
                                   "egress_allow entry '%s': '/%s' is not a prefix length "
                                   "(0-32)",
                                   entry, slash + 1);
            out->prefix = (int)prefix;
        }
        uint32_t mask = out->prefix ? htonl(~0u << (32 - out->prefix)) : 0;
        if ((out->addr.s_addr & ~mask) != 0) {
            struct in_addr net = {.s_addr = out->addr.s_addr & mask};
            char text[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &net, text, sizeof text);
            return ink_err_set(err, 0,
                               "egress_allow entry '%s': host bits are set; did you mean "
                               "%s/%d?",
                               entry, text, out->prefix);
        }
        return 0;
    }
    if (slash)
        return ink_err_set(err, 0, "egress_allow entry '%s': '%s' is not an IPv4 address", entry,
                           target);
    if (!parse_host(target, tlen, out->host))
        return ink_err_set(err, 0,
                           "egress_allow entry '%s': '%s' is neither an IPv4 address, a CIDR "
                           "nor a host name with a dot (api.example.com)",
                           entry, target);
    size_t hl = strlen(out->host);
    if (hl >= 9 && strcmp(out->host + hl - 9, ".internal") == 0)
        return ink_err_set(err, 0,
                           "egress_allow entry '%s': .internal names are the project's own "
                           "apps, which every policy already reaches by name",
                           entry);
    out->is_host = true;
    return 0;
}

void ink_egress_allow_format(const ink_egress_allow *a, char *out, size_t outlen)
{
    char target[INK_EGRESS_HOST_MAX + 4];
    if (a->is_host) {
        snprintf(target, sizeof target, "%s", a->host);
    } else {
        char addr[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a->addr, addr, sizeof addr);
        if (a->prefix == 32)
            snprintf(target, sizeof target, "%s", addr);
        else
            snprintf(target, sizeof target, "%s/%d", addr, a->prefix);
    }
    if (a->port_min == 0 && a->port_max == 65535)
        snprintf(out, outlen, "%s", target);
    else if (a->port_min == a->port_max)
        snprintf(out, outlen, "%s:%u", target, a->port_min);
    else
        snprintf(out, outlen, "%s:%u-%u", target, a->port_min, a->port_max);
}
