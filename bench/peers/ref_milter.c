/* The C libmilter reference milter of bench/peers/run.py (issue 15): the benchmark's job, an
 * X-Load header added at end-of-message, with a callback registered for every event so the MTA
 * sends (and waits for) every packet, as milterkit's "every handler" style does. With "needed"
 * after the spec it registers only end-of-message and asks the MTA to skip every other event
 * (bench/postfix_bench.py's bound for the "only needed" style).
 *
 *   cc -O2 -o ref_milter ref_milter.c -lmilter -lpthread
 *   ./ref_milter inet:10026@127.0.0.1 [needed]     (or unix:/path/m.sock)
 */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct counts { long headers; long size; };

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr) {
    struct counts *c = calloc(1, sizeof *c);
    if (c == NULL) return SMFIS_TEMPFAIL;
    smfi_setpriv(ctx, c);
    return SMFIS_CONTINUE;
}
static sfsistat on_helo(SMFICTX *ctx, char *name) { return SMFIS_CONTINUE; }
static sfsistat on_envfrom(SMFICTX *ctx, char **argv) {
    struct counts *c = smfi_getpriv(ctx);
    if (c != NULL) c->headers = c->size = 0;
    return SMFIS_CONTINUE;
}
static sfsistat on_envrcpt(SMFICTX *ctx, char **argv) { return SMFIS_CONTINUE; }
static sfsistat on_data(SMFICTX *ctx) { return SMFIS_CONTINUE; }
static sfsistat on_header(SMFICTX *ctx, char *name, char *value) {
    struct counts *c = smfi_getpriv(ctx);
    if (c != NULL) c->headers++;
    return SMFIS_CONTINUE;
}
static sfsistat on_eoh(SMFICTX *ctx) { return SMFIS_CONTINUE; }
static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t len) {
    struct counts *c = smfi_getpriv(ctx);
    if (c != NULL) c->size += (long)len;
    return SMFIS_CONTINUE;
}
static sfsistat on_eom(SMFICTX *ctx) {
    struct counts *c = smfi_getpriv(ctx);
    char value[64];
    snprintf(value, sizeof value, "%ld %ld", c ? c->headers : 0, c ? c->size : 0);
    if (smfi_addheader(ctx, "X-Load", value) != MI_SUCCESS) return SMFIS_TEMPFAIL;
    return SMFIS_CONTINUE;
}
static sfsistat on_abort(SMFICTX *ctx) { return SMFIS_CONTINUE; }
static sfsistat on_close(SMFICTX *ctx) {
    free(smfi_getpriv(ctx));
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

/* "needed": every step the MTA offers to skip is skipped; only end-of-message is sent. */
static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                             unsigned long f2, unsigned long f3, unsigned long *pf0,
                             unsigned long *pf1, unsigned long *pf2, unsigned long *pf3) {
    const unsigned long skip = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT
        | SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA;
    *pf0 = SMFIF_ADDHDRS;
    *pf1 = f1 & skip;
    *pf2 = *pf3 = 0;
    return SMFIS_CONTINUE;
}
static sfsistat on_needed_eom(SMFICTX *ctx) {
    return smfi_addheader(ctx, "X-Load", "1") == MI_SUCCESS ? SMFIS_CONTINUE : SMFIS_TEMPFAIL;
}

int main(int argc, char **argv) {
    struct smfiDesc every = {
        "ref_milter", SMFI_VERSION, SMFIF_ADDHDRS,
        on_connect, on_helo, on_envfrom, on_envrcpt, on_header, on_eoh, on_body, on_eom,
        on_abort, on_close, NULL, on_data, NULL,
    };
    struct smfiDesc needed = {
        "ref_milter", SMFI_VERSION, SMFIF_ADDHDRS,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, on_needed_eom,
        NULL, NULL, NULL, NULL, on_negotiate,
    };
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "needed") != 0)) {
        fprintf(stderr, "usage: %s SPEC [needed] (SPEC: inet:PORT@HOST or unix:/path)\n",
                argv[0]);
        return 2;
    }
    struct smfiDesc desc = argc == 3 ? needed : every;
    if (smfi_setconn(argv[1]) == MI_FAILURE || smfi_register(desc) == MI_FAILURE) {
        fprintf(stderr, "ref_milter: cannot set up %s\n", argv[1]);
        return 1;
    }
    smfi_setbacklog(1024);
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
