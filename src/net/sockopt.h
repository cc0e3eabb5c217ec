/* TCP socket options pgmux sets on client and server connections:
 * TCP_NODELAY always, keepalive and TCP_USER_TIMEOUT as configured, so that
 * a peer that vanishes without a RST (a dead host, a dropped route) is
 * noticed by the kernel. */
#pragma once

struct sockopt_tcp {
	int keepalive;       /* 1: SO_KEEPALIVE */
	int keepidle;        /* seconds; 0: leave the OS default */
	int keepintvl;       /* seconds; 0: leave the OS default */
	int keepcnt;         /* probes; 0: leave the OS default */
	int user_timeout_ms; /* TCP_USER_TIMEOUT; 0: leave the OS default */
};

/* Apply O to the TCP socket FD. Failures are ignored (a unix socket, or an
 * option the kernel lacks, leaves the defaults): returns the number of
 * options that could not be set, for logs and tests. */
int sockopt_tune_tcp(int fd, const struct sockopt_tcp *o);
