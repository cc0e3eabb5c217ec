/* pgmux: process lifecycle. Parses arguments, loads the configuration and
 * the auth_file, starts the worker threads with their listeners, and owns
 * the signals: SIGTERM drains (running transactions finish, up to
 * shutdown_timeout), SIGINT exits at once. */
#include "core/authfile.h"
#include "core/config.h"
#include "core/log.h"
#include "net/listener.h"
#include "net/tls.h"
#include "net/worker.h"
#include "pool/client.h"
#include "pool/pool.h"

#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
	struct config *cfg;
	struct authfile *af;
	struct worker **workers;
	struct listener **listeners;
	int nworkers;
	struct event_base *base;   /* main thread: signals and the shutdown clock */
	struct event *drain_timer;
	struct timeval drain_started;
	bool draining;
} m;

static void usage(FILE *f)
{
	fprintf(f, "Usage: pgmux [OPTIONS] CONFIG\n"
		   "PostgreSQL connection multiplexer (transaction pooling).\n\n"
		   "  -c, --check     validate CONFIG and its auth_file, print problems, exit 0 or 1\n"
		   "  -d, --daemon    run in the background\n"
		   "  -V, --version   print the version and exit\n"
		   "  -h, --help      print this help and exit\n\n"
		   "Signals: SIGTERM drains (up to shutdown_timeout), SIGINT exits at once.\n"
		   "See pgmux(1) and pgmux.ini(5).\n");
}

static void print_error(void *arg, const char *file, int line, const char *reason)
{
	int *count = arg;
	(*count)++;
	if (line > 0)
		fprintf(stderr, "%s:%d: %s\n", file, line, reason);
	else
		fprintf(stderr, "%s: %s\n", file, reason);
}

/* Load the config and auth_file; print every problem. Returns 0 / -1. */
static int load_all(const char *path)
{
	int errors = 0;
	m.cfg = config_load(path, print_error, &errors);
	if (!m.cfg)
		return -1;
	if (m.cfg->auth_file) {
		m.af = authfile_load(m.cfg->auth_file, print_error, &errors);
		if (!m.af)
			return -1;
	}
	char err[512];
	SSL_CTX *ctx = tls_accept_ctx_new(m.cfg, err, sizeof(err));
	if (!ctx && err[0])
		print_error(&errors, m.cfg->path, 0, err);
	tls_accept_ctx_install(ctx);
	ctx = tls_connect_ctx_new(m.cfg, err, sizeof(err));
	if (!ctx && err[0])
		print_error(&errors, m.cfg->path, 0, err);
	tls_connect_ctx_install(ctx, m.cfg->server_tls_sslmode == TLS_VERIFY_FULL);
	return errors ? -1 : 0;
}

static void shutdown_job(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	listener_disable(m.listeners[w->id]);
	pool_worker_shutdown(w);
}

static void finish(int code)
{
	for (int i = 0; i < m.nworkers; i++)
		worker_stop(m.workers[i]);
	for (int i = 0; i < m.nworkers; i++)
		worker_join(m.workers[i]);
	log_info("shutdown_done", "clients_left=%d", client_count());
	exit(code);
}

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct timeval now, el;
	gettimeofday(&now, NULL);
	timersub(&now, &m.drain_started, &el);
	if (client_count() == 0)
		finish(0);
	if (el.tv_sec >= m.cfg->shutdown_timeout) {
		log_warn("shutdown_timeout", "clients_left=%d", client_count());
		finish(0);
	}
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGINT) {
		log_info("shutdown_immediate", "signal=SIGINT");
		_exit(0);
	}
	if (m.draining)
		return;
	m.draining = true;
	log_info("shutdown_begin", "signal=SIGTERM shutdown_timeout=%d clients=%d",
		 m.cfg->shutdown_timeout, client_count());
	struct timeval zero = {0, 0};
	for (int i = 0; i < m.nworkers; i++)
		event_base_once(m.workers[i]->base, -1, EV_TIMEOUT, shutdown_job, m.workers[i], &zero);
	gettimeofday(&m.drain_started, NULL);
	m.drain_timer = event_new(m.base, -1, EV_PERSIST, drain_tick, NULL);
	struct timeval tv = {0, 50 * 1000};
	event_add(m.drain_timer, &tv);
}

static int start_workers(void)
{
	m.nworkers = m.cfg->workers;
	m.workers = calloc((size_t)m.nworkers, sizeof(*m.workers));
	m.listeners = calloc((size_t)m.nworkers, sizeof(*m.listeners));
	if (!m.workers || !m.listeners)
		return -1;
	for (int i = 0; i < m.nworkers; i++) {
		m.workers[i] = worker_new(i);
		if (!m.workers[i] || pool_worker_attach(m.workers[i]) < 0)
			return -1;
	}
	pool_global_init(m.cfg, m.af, m.workers, m.nworkers);
	for (int i = 0; i < m.nworkers; i++) {
		m.listeners[i] = listener_new(m.workers[i], m.cfg->listen_addr, m.cfg->listen_port,
					      client_accept);
		if (!m.listeners[i])
			return -1;
	}
	/* every client and server connection is one fd, on any worker */
	long nfds = (long)m.cfg->max_client_conn + 64;
	for (int i = 0; i < m.cfg->ndbs; i++)
		nfds += 2L * m.cfg->dbs[i].pool_size;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)nfds > rl.rlim_cur)
		nfds = (long)rl.rlim_cur;
	for (int i = 0; i < m.nworkers; i++)
		worker_reserve_fds(m.workers[i], (int)nfds);
	for (int i = 0; i < m.nworkers; i++)
		if (worker_start(m.workers[i]) < 0)
			return -1;
	return 0;
}

static int daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		if (fd > 2)
			close(fd);
	}
	return chdir("/");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"check", no_argument, NULL, 'c'}, {"daemon", no_argument, NULL, 'd'},
		{"version", no_argument, NULL, 'V'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	bool check = false, daemon_mode = false;
	int o;
	while ((o = getopt_long(argc, argv, "cdVh", opts, NULL)) != -1) {
		switch (o) {
		case 'c': check = true; break;
		case 'd': daemon_mode = true; break;
		case 'V': printf("pgmux %s\n", PGMUX_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 1;
	}
	if (load_all(argv[optind]) < 0)
		return 1;
	if (check) {
		printf("%s: configuration is valid\n", m.cfg->path);
		return 0;
	}
	log_set_level((enum log_level)m.cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if (daemon_mode && daemonize() < 0) {
		perror("pgmux: daemon");
		return 1;
	}
	if (worker_global_init() < 0 || !(m.base = event_base_new())) {
		fprintf(stderr, "pgmux: cannot initialise libevent\n");
		return 1;
	}
	struct event *sigterm = evsignal_new(m.base, SIGTERM, signal_cb, NULL);
	struct event *sigint = evsignal_new(m.base, SIGINT, signal_cb, NULL);
	if (!sigterm || !sigint || event_add(sigterm, NULL) < 0 || event_add(sigint, NULL) < 0)
		return 1;
	if (start_workers() < 0) {
		log_error("startup_failed", "reason=\"could not start workers or listeners\"");
		return 1;
	}
	log_info("listen", "addr=%s port=%d workers=%d pool_mode=%s version=%s", m.cfg->listen_addr,
		 m.cfg->listen_port, m.nworkers, config_pool_mode_name(m.cfg->pool_mode), PGMUX_VERSION);
	event_base_loop(m.base, EVLOOP_NO_EXIT_ON_EMPTY);
	return 0;
}
