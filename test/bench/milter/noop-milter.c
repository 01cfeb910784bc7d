/*
 * The baseline for the milter benchmark: a libmilter filter that does nothing, negotiating
 * what authban negotiates (no message events; a reply at CONNECT only, none for HELO, MAIL,
 * RCPT), so both see the same bytes and the benchmark measures protocol and connection
 * handling alone.
 *
 * Usage: noop-milter SOCKET   (SOCKET as sendmail writes it: inet:PORT@127.0.0.1)
 */
#include <stdio.h>
#include <stdlib.h>
#include <libmilter/mfapi.h>

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
	(void)ctx; (void)host; (void)addr;
	return SMFIS_CONTINUE;
}

static sfsistat on_helo(SMFICTX *ctx, char *helo)
{
	(void)ctx; (void)helo;
	return SMFIS_NOREPLY;
}

static sfsistat on_envelope(SMFICTX *ctx, char **argv)
{
	(void)ctx; (void)argv;
	return SMFIS_NOREPLY;
}

/* The steps authban turns off and the replies it declines, as far as the MTA offers them. */
#define WANTED_STEPS (SMFIP_NOHDRS | SMFIP_NOBODY | SMFIP_NOEOH | SMFIP_NODATA | SMFIP_NOUNKNOWN | \
	SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | \
	SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_HDR)

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
	unsigned long f2, unsigned long f3, unsigned long *pf0, unsigned long *pf1,
	unsigned long *pf2, unsigned long *pf3)
{
	(void)ctx; (void)f0; (void)f2; (void)f3;
	*pf0 = 0;
	*pf1 = f1 & WANTED_STEPS;
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_CONTINUE;
}

static struct smfiDesc noop_desc = {
	"noop-milter",      /* filter name */
	SMFI_VERSION,       /* version code */
	0,                  /* flags: modifies nothing */
	on_connect,         /* connection info */
	on_helo,            /* SMTP HELO */
	on_envelope,        /* envelope sender */
	on_envelope,        /* envelope recipient */
	NULL,               /* header */
	NULL,               /* end of header */
	NULL,               /* body block */
	NULL,               /* end of message */
	NULL,               /* message aborted */
	on_close,           /* connection closed */
	NULL,               /* unknown SMTP command */
	NULL,               /* DATA */
	on_negotiate        /* option negotiation */
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s inet:PORT@HOST\n", argv[0]);
		return 2;
	}
	if (smfi_setconn(argv[1]) == MI_FAILURE) {
		fprintf(stderr, "smfi_setconn(%s) failed\n", argv[1]);
		return 1;
	}
	/* A deep accept backlog, as the 512-connection run would otherwise overflow the default. */
	if (smfi_setbacklog(1024) == MI_FAILURE) {
		fprintf(stderr, "smfi_setbacklog failed\n");
		return 1;
	}
	if (smfi_register(noop_desc) == MI_FAILURE) {
		fprintf(stderr, "smfi_register failed\n");
		return 1;
	}
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
