/* `ink-agent doctor`: a preflight of a node for operators and security
 * teams. Each check exercises one facility the agent relies on (runsc,
 * cgroups, nftables, eBPF, network namespaces, policies, certificates,
 * the clock, directories, listen addresses, the resolver's user) with the
 * configuration `ink-agent run` would use, and says PASS, WARN or FAIL
 * with what it found and, when not PASS, how to fix it.
 *
 * Every check is safe on a production node: it creates only private,
 * temporary things (a cgroup /ink/doctor-<pid>, a pin directory
 * ink-doctor-<pid> on the BPF file system, a network namespace of a
 * thread, an nftables dry run) and removes them; it touches no workload. */
#ifndef INK_DOCTOR_H
#define INK_DOCTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "agent.h"

typedef enum { INK_DOC_PASS, INK_DOC_WARN, INK_DOC_FAIL } ink_doc_status;

#define INK_DOC_DETAIL_MAX 1536
#define INK_DOC_FIX_MAX 768

typedef struct ink_doc_result {
    const char *name; /* the check's */
    ink_doc_status status;
    char detail[INK_DOC_DETAIL_MAX]; /* what was found */
    char fix[INK_DOC_FIX_MAX];       /* what to do; "" when PASS */
} ink_doc_result;

typedef void (*ink_doc_fn)(const ink_agent_config *cfg, ink_doc_result *r);

typedef struct ink_doc_check {
    const char *name;
    ink_doc_fn fn;
} ink_doc_check;

/* Every check, in the order they run. */
extern const ink_doc_check ink_doctor_checks[];
extern const size_t ink_doctor_nchecks;

const char *ink_doc_status_name(ink_doc_status s); /* "PASS", "WARN", "FAIL" */

/* Adds a finding to r: detail and fix (NULL: none) are appended ("; "
 * between findings) and the status raised to at least s. */
void ink_doc_note(ink_doc_result *r, ink_doc_status s, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Runs the checks named in only (NULL: every check; else a comma-separated
 * list), into out (ink_doctor_nchecks entries); returns how many ran, or
 * -1 when only names an unknown check (err says which). */
int ink_doctor_run(const ink_agent_config *cfg, const char *only, ink_doc_result *out,
                   ink_err *err);

/* No FAIL among them. */
bool ink_doctor_ok(const ink_doc_result *r, size_t n);

/* "PASS  name  detail" lines, "  fix: ..." after WARN and FAIL. */
void ink_doctor_print_text(FILE *out, const ink_doc_result *r, size_t n);
/* {"ok": bool, "checks": [{"name", "status", "detail", "fix"}]}; caller
 * frees. */
char *ink_doctor_json(const ink_doc_result *r, size_t n);

/* The checks the unit tests drive directly. */
void ink_doctor_check_policies(const ink_agent_config *cfg, ink_doc_result *r);
void ink_doctor_check_certs(const ink_agent_config *cfg, ink_doc_result *r);

/* `ink-agent doctor [--json] [--check=NAME,...] [--OPTION=VALUE ...]`:
 * argv[0] is "doctor". Returns the exit status: 0 no FAIL, 1 any FAIL, 2
 * usage. */
int ink_doctor_cli(ink_agent_config *cfg, int argc, char **argv);

#endif
