/*
 * main.c: the postino daemon's master process.
 *
 * Start-up (every failure stops here with a clear message and exit code 1; a config error
 * is "file:line: reason" and exit code 2): read the config, create the data folder and lock
 * it (one daemon per data folder), make or load the TLS certificate, start the embedded Redis
 * (or check that the configured one is durable), bind every listening socket once per worker
 * with SO_REUSEPORT so the kernel spreads connections over the workers, fork the workers.
 *
 * Then the master only supervises: a worker that dies is restarted (its connection counts
 * cleared first), the embedded Redis is restarted if it dies, and SIGTERM/SIGINT stop the
 * workers (bounded wait, then SIGKILL) and then Redis.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "dkim/dkkeys.h"
#include "dkim/dksign.h"
#include "queue/queue.h"
#include "relay/buf.h"
#include "relay/config.h"
#include "relay/connlimit.h"
#include "relay/dkimwatch.h"
#include "relay/log.h"
#include "relay/server.h"
#include "relay/tls.h"

#define MASTER_STOP_SECONDS  15
#define REDIS_START_SECONDS  120
#define WORKER_RESTART_DELAY 1

struct master {
	struct config cfg;
	char redis_address[PATH_MAX + 8];
	pid_t redis_pid;
	pid_t *workers;
	struct server_listener *listeners; /* workers * per_worker */
	size_t per_worker;
	SSL_CTX *tls;
	struct connlimit *limits;
	struct event_base *base;
	struct event *restart_timer;
	struct event *stop_timer;
	bool stopping;
};

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	int n = snprintf(tmp, sizeof tmp, "%s", path);
	if (n < 0 || (size_t)n >= sizeof tmp)
		return -1;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

static int lock_data_dir(const struct config *cfg)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/postino.lock", cfg->data_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1) {
		fprintf(stderr, "postino: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		fprintf(stderr, "postino: another postino is running with data_dir %s\n",
		        cfg->data_dir);
		close(fd);
		return -1;
	}
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || write(fd, pid, (size_t)n) != n)
		fprintf(stderr, "postino: cannot write %s: %s\n", path, strerror(errno));
	return fd; /* kept open (and locked) for the life of the master */
}

static void reset_signals_in_child(void)
{
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
}

/* Forks with signals blocked so the child cannot run the master's handlers. */
static pid_t fork_clean(void)
{
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid_t pid = fork();
	if (pid == 0) {
		reset_signals_in_child();
		return 0;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	return pid;
}

static pid_t redis_start(struct master *m)
{
	const struct config *cfg = &m->cfg;
	char dir[PATH_MAX + 16], sock[PATH_MAX], logf[PATH_MAX + 16], maxmem[32];
	snprintf(dir, sizeof dir, "%s/redis", cfg->data_dir);
	snprintf(logf, sizeof logf, "%s/redis.log", cfg->data_dir);
	if (config_embedded_redis_path(cfg, sock, sizeof sock) == -1) {
		fprintf(stderr, "postino: data_dir too long for a unix socket path\n");
		return -1;
	}
	if (mkdir_p(dir, 0700) == -1) {
		fprintf(stderr, "postino: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	uint64_t mem = cfg->redis_maxmemory;
	if (mem == 0) /* half of the machine's memory */
		mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) / 2;
	snprintf(maxmem, sizeof maxmem, "%llu", (unsigned long long)mem);
	pid_t pid = fork_clean();
	if (pid == -1) {
		fprintf(stderr, "postino: fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the master */
		const char *argv[] = {cfg->redis_server,
		                      "--port",
		                      "0",
		                      "--unixsocket",
		                      sock,
		                      "--unixsocketperm",
		                      "700",
		                      "--dir",
		                      dir,
		                      "--appendonly",
		                      "yes",
		                      "--appendfsync",
		                      "always",
		                      "--maxmemory-policy",
		                      "noeviction",
		                      "--maxmemory",
		                      maxmem,
		                      "--save",
		                      "",
		                      "--daemonize",
		                      "no",
		                      "--logfile",
		                      logf,
		                      NULL};
		execvp(cfg->redis_server, (char *const *)(uintptr_t)argv);
		fprintf(stderr, "postino: cannot run %s: %s\n", cfg->redis_server, strerror(errno));
		_exit(127);
	}
	log_info(0, "event=redis_started pid=%ld socket=%s maxmemory=%s", (long)pid, sock, maxmem);
	return pid;
}

/* Waits (bounded) until Redis answers and is durable. Returns 0 or -1 (printed). */
static int redis_wait_ready(struct master *m, int seconds)
{
	struct queue_settings qs = {m->redis_address, m->cfg.redis_password, 2000};
	char err[512] = "";
	for (int i = 0; i < seconds * 10; i++) {
		if (m->redis_pid > 0 && waitpid(m->redis_pid, NULL, WNOHANG) == m->redis_pid) {
			fprintf(
			    stderr,
			    "postino: embedded redis-server exited at start; see %s/redis.log\n",
			    m->cfg.data_dir);
			m->redis_pid = 0;
			return -1;
		}
		struct queue_admin *a = queue_admin_connect(&qs, err, sizeof err);
		if (a == NULL &&
		    (strstr(err, "WRONGPASS") != NULL || strstr(err, "NOAUTH") != NULL ||
		     strstr(err, "invalid password") != NULL)) {
			fprintf(stderr, "postino: Redis at %s refuses our credentials: %s\n",
			        m->redis_address, err);
			return -1;
		}
		if (a != NULL) {
			int rc = queue_admin_check_durable(a, err, sizeof err);
			queue_admin_free(a);
			if (rc == 0)
				return 0;
			if (strstr(err, "LOADING") == NULL) {
				if (m->cfg.redis_unsafe_ok) {
					log_warn(0,
					         "event=redis_unsafe reason=\"%s\" "
					         "override=redis_unsafe_ok",
					         err);
					return 0;
				}
				fprintf(stderr,
				        "postino: Redis at %s is not durable: %s (fix it, or set "
				        "redis_unsafe_ok = yes to run anyway)\n",
				        m->redis_address, err);
				return -1;
			}
		}
		usleep(100 * 1000);
	}
	fprintf(stderr, "postino: Redis at %s not ready after %d s: %s\n", m->redis_address,
	        seconds, err);
	return -1;
}

/* Every accepted message is signed. Unless the policy refuses unknown domains, the relay's own
 * dkim_domain signs for domains without keys, so it needs an active key of each configured
 * algorithm: made at first start (like the self-signed TLS pair), with the records to publish
 * logged. Then the whole store is loaded once, so a corrupt key stops start-up here. */
static int dkim_prepare(const struct config *cfg)
{
	char err[512];
	size_t dl = strlen(cfg->dkim_domain);
	if (cfg->dkim_unknown_domain == CONFIG_DKIM_UNKNOWN_SIGN && dl > 8 &&
	    strcmp(cfg->dkim_domain + dl - 8, ".invalid") == 0)
		log_warn(0,
		         "event=dkim_domain domain=%s reason=\"hostname has no domain: mail "
		         "signed with it cannot verify; set dkim_domain or hostname\"",
		         cfg->dkim_domain);
	if (cfg->dkim_unknown_domain == CONFIG_DKIM_UNKNOWN_SIGN) {
		struct dkkeys_domain d;
		if (dkkeys_domain_read(cfg->data_dir, cfg->dkim_domain, &d, err, sizeof err) ==
		    -1) {
			fprintf(stderr, "postino: DKIM keys of %s: %s\n", cfg->dkim_domain, err);
			return -1;
		}
		static const enum dkkeys_algorithm algs[] = {DKKEYS_ALG_RSA, DKKEYS_ALG_ED25519};
		for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
			if (((unsigned)cfg->dkim_algorithms & (unsigned)algs[i]) == 0)
				continue;
			bool active = false;
			for (size_t k = 0; k < d.count; k++)
				active |= d.sel[k].algorithm == algs[i] &&
				          d.sel[k].state == DKKEYS_STATE_ACTIVE;
			if (active)
				continue;
			struct dkkeys_selector sel;
			if (dkkeys_key_generate(cfg->data_dir, cfg->dkim_domain, NULL, algs[i],
			                        DKKEYS_RSA_BITS_DEFAULT, (int64_t)time(NULL), &sel,
			                        err, sizeof err) == -1) {
				fprintf(stderr, "postino: DKIM key for %s: %s\n", cfg->dkim_domain,
				        err);
				return -1;
			}
			struct buf rec = BUF_INIT;
			char esc[2048];
			if (dkkeys_record_format(cfg->dkim_domain, &sel, &rec) == 0 && rec.len > 0)
				log_info(0,
				         "event=dkim_keygen domain=%s selector=%s algorithm=%s "
				         "publish=\"%s\"",
				         cfg->dkim_domain, sel.name,
				         dkkeys_algorithm_name(sel.algorithm),
				         log_escape(rec.data, rec.len - 1, esc, sizeof esc));
			buf_free(&rec);
		}
	}
	struct dksign_ctx *ctx = dksign_ctx_new(cfg->data_dir, err, sizeof err);
	if (ctx == NULL) {
		fprintf(stderr, "postino: DKIM key store: %s\n", err);
		return -1;
	}
	size_t domains, keys;
	dksign_ctx_counts(ctx, &domains, &keys);
	log_info(0, "event=dkim_store domains=%zu keys=%zu fallback=%s", domains, keys,
	         cfg->dkim_unknown_domain == CONFIG_DKIM_UNKNOWN_SIGN ? cfg->dkim_domain
	                                                              : "refuse");
	dksign_ctx_free(ctx);
	return 0;
}

static int bind_one(const struct config_listen_addr *a)
{
	int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == -1 ||
	    (a->addr.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == -1) ||
	    bind(fd, (const struct sockaddr *)&a->addr, a->len) == -1 || listen(fd, 1024) == -1) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int bind_all(struct master *m)
{
	const struct config *cfg = &m->cfg;
	m->per_worker = cfg->listen_submission.count + cfg->listen_smtps.count;
	m->listeners = calloc((size_t)cfg->workers * (m->per_worker ? m->per_worker : 1),
	                      sizeof *m->listeners);
	if (m->listeners == NULL)
		return -1;
	for (int w = 0; w < cfg->workers; w++) {
		size_t k = 0;
		for (int pass = 0; pass < 2; pass++) {
			const struct config_listen *l =
			    pass == 0 ? &cfg->listen_submission : &cfg->listen_smtps;
			for (size_t i = 0; i < l->count; i++, k++) {
				int fd = bind_one(&l->a[i]);
				if (fd == -1) {
					fprintf(stderr, "postino: cannot listen on %s: %s\n",
					        l->a[i].text, strerror(errno));
					return -1;
				}
				m->listeners[(size_t)w * m->per_worker + k] =
				    (struct server_listener){fd, pass == 1};
			}
		}
	}
	for (int pass = 0; pass < 2; pass++) {
		const struct config_listen *l =
		    pass == 0 ? &cfg->listen_submission : &cfg->listen_smtps;
		for (size_t i = 0; i < l->count; i++)
			log_info(0, "event=listening address=%s tls=%s", l->a[i].text,
			         pass == 0 ? "starttls" : "implicit");
	}
	return 0;
}

static pid_t worker_start(struct master *m, int w)
{
	pid_t pid = fork_clean();
	if (pid == -1) {
		log_error(0, "event=worker_fork error=\"%s\"", strerror(errno));
		return -1;
	}
	if (pid != 0)
		return pid;
	/* The master's event base came with fork and shares its epoll instance with the master:
	 * reinit gives the child its own before freeing, so the master's registrations stay. */
	if (m->base != NULL) {
		if (event_reinit(m->base) == 0)
			event_base_free(m->base);
		m->base = NULL;
	}
	char name[24];
	snprintf(name, sizeof name, "worker%d", w);
	log_setup(m->cfg.log_level, name);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	size_t total = (size_t)m->cfg.workers * m->per_worker;
	for (size_t i = 0; i < total; i++)
		if (i / (m->per_worker ? m->per_worker : 1) != (size_t)w)
			close(m->listeners[i].fd);
	int rc = server_run(&m->cfg, w, m->redis_address, m->tls, m->limits,
	                    m->listeners + (size_t)w * m->per_worker, m->per_worker);
	_exit(rc == 0 ? 0 : 1);
}

static void stop_children(struct master *m, int sig)
{
	for (int w = 0; w < m->cfg.workers; w++)
		if (m->workers[w] > 0)
			kill(m->workers[w], sig);
}

static bool workers_alive(const struct master *m)
{
	for (int w = 0; w < m->cfg.workers; w++)
		if (m->workers[w] > 0)
			return true;
	return false;
}

static void redis_stop(struct master *m)
{
	if (m->redis_pid <= 0)
		return;
	kill(m->redis_pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(m->redis_pid, NULL, WNOHANG) == m->redis_pid) {
			m->redis_pid = 0;
			log_info(0, "event=redis_stopped");
			return;
		}
		usleep(100 * 1000);
	}
	log_warn(0, "event=redis_kill reason=\"no exit after SIGTERM\"");
	kill(m->redis_pid, SIGKILL);
	waitpid(m->redis_pid, NULL, 0);
	m->redis_pid = 0;
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	log_warn(0, "event=workers_kill reason=\"no exit in %d s\"", MASTER_STOP_SECONDS);
	stop_children(m, SIGKILL);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;
	if (m->stopping)
		return;
	m->stopping = true;
	log_info(0, "event=stopping signal=%d", (int)sig);
	stop_children(m, SIGTERM);
	struct timeval tv = {MASTER_STOP_SECONDS, 0};
	evtimer_add(m->stop_timer, &tv);
	if (!workers_alive(m))
		event_base_loopexit(m->base, NULL);
}

static void on_restart_timer(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	if (m->stopping)
		return;
	if (m->cfg.redis[0] == '\0' && m->redis_pid <= 0) {
		m->redis_pid = redis_start(m);
		if (m->redis_pid <= 0) {
			struct timeval tv = {WORKER_RESTART_DELAY, 0};
			evtimer_add(m->restart_timer, &tv);
			return;
		}
	}
	for (int w = 0; w < m->cfg.workers; w++) {
		if (m->workers[w] > 0)
			continue;
		connlimit_reset_worker(m->limits, w);
		m->workers[w] = worker_start(m, w);
		log_info(0, "event=worker_restarted worker=%d pid=%ld", w, (long)m->workers[w]);
	}
}

static void on_child(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;
	int status;
	pid_t pid;
	bool restart = false;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		const char *how = WIFSIGNALED(status) ? "signal" : "exit";
		int code = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
		if (pid == m->redis_pid) {
			m->redis_pid = 0;
			if (!m->stopping) {
				log_error(0, "event=redis_died %s=%d action=restart", how, code);
				restart = true;
			}
			continue;
		}
		for (int w = 0; w < m->cfg.workers; w++) {
			if (m->workers[w] != pid)
				continue;
			m->workers[w] = 0;
			if (m->stopping) {
				log_info(0, "event=worker_exited worker=%d %s=%d", w, how, code);
			} else {
				log_error(0, "event=worker_died worker=%d %s=%d action=restart", w,
				          how, code);
				restart = true;
			}
		}
	}
	if (restart) {
		struct timeval tv = {WORKER_RESTART_DELAY, 0};
		evtimer_add(m->restart_timer, &tv);
	}
	if (m->stopping && !workers_alive(m))
		event_base_loopexit(m->base, NULL);
}

static void usage(void)
{
	fprintf(stderr, "usage: postino -c FILE [-t]\n"
	                "  -c FILE  configuration file (see deploy/postino.conf)\n"
	                "  -t       check the configuration and exit\n");
}

int main(int argc, char **argv)
{
	const char *conf = NULL;
	bool check_only = false;
	int opt;
	while ((opt = getopt(argc, argv, "c:th")) != -1) {
		switch (opt) {
		case 'c':
			conf = optarg;
			break;
		case 't':
			check_only = true;
			break;
		default:
			usage();
			return opt == 'h' ? 0 : 2;
		}
	}
	if (conf == NULL || optind != argc) {
		usage();
		return 2;
	}
	static struct master m;
	char err[1024];
	if (config_load(conf, &m.cfg, err, sizeof err) == -1) {
		fprintf(stderr, "postino: %s\n", err);
		return 2;
	}
	if (check_only) {
		printf("postino: %s: configuration ok\n", conf);
		return 0;
	}
	log_setup(m.cfg.log_level, "master");
	signal(SIGPIPE, SIG_IGN);
	/* A fixed threshold: large short-lived buffers (scrypt's 16 MiB, big messages) are
	 * mmapped and given back on free, instead of glibc raising its threshold and keeping
	 * them in each thread's arena for the life of the process. */
	if (mallopt(M_MMAP_THRESHOLD, 1024 * 1024) != 1)
		log_warn(0, "event=start call=mallopt failed");
	if (mkdir_p(m.cfg.data_dir, 0700) == -1) {
		fprintf(stderr, "postino: data_dir %s: %s\n", m.cfg.data_dir, strerror(errno));
		return 1;
	}
	/* Redis changes its working folder to its own: every path handed to it is absolute */
	char absolute[PATH_MAX];
	if (realpath(m.cfg.data_dir, absolute) == NULL ||
	    strlen(absolute) >= sizeof m.cfg.data_dir) {
		fprintf(stderr, "postino: data_dir %s: %s\n", m.cfg.data_dir, strerror(errno));
		return 1;
	}
	memcpy(m.cfg.data_dir, absolute, strlen(absolute) + 1);
	if (lock_data_dir(&m.cfg) == -1)
		return 1;

	char cert[PATH_MAX], key[PATH_MAX];
	if (m.cfg.tls_cert[0] == '\0') {
		char tlsdir[PATH_MAX];
		int n = snprintf(tlsdir, sizeof tlsdir, "%.3800s/tls", m.cfg.data_dir);
		if (n < 0 || strlen(m.cfg.data_dir) > 3800) {
			fprintf(stderr, "postino: data_dir too long\n");
			return 1;
		}
		snprintf(cert, sizeof cert, "%.3800s/cert.pem", tlsdir);
		snprintf(key, sizeof key, "%.3800s/key.pem", tlsdir);
		if (mkdir_p(tlsdir, 0700) == -1 ||
		    tls_selfsigned_ensure(cert, key, m.cfg.hostname, err, sizeof err) == -1) {
			fprintf(stderr, "postino: %s\n", err);
			return 1;
		}
		log_info(0, "event=tls_certificate cert=%s key=%s selfsigned=yes", cert, key);
	} else {
		snprintf(cert, sizeof cert, "%s", m.cfg.tls_cert);
		snprintf(key, sizeof key, "%s", m.cfg.tls_key);
	}
	m.tls = tls_server_ctx_new(cert, key, err, sizeof err);
	if (m.tls == NULL) {
		fprintf(stderr, "postino: TLS: %s\n", err);
		return 1;
	}

	if (dkim_prepare(&m.cfg) == -1)
		return 1;

	if (m.cfg.redis[0] == '\0') {
		char sock[PATH_MAX];
		if (config_embedded_redis_path(&m.cfg, sock, sizeof sock) == -1) {
			fprintf(stderr, "postino: data_dir too long for a unix socket path\n");
			return 1;
		}
		snprintf(m.redis_address, sizeof m.redis_address, "unix:%s", sock);
		m.redis_pid = redis_start(&m);
		if (m.redis_pid <= 0)
			return 1;
	} else {
		snprintf(m.redis_address, sizeof m.redis_address, "%s", m.cfg.redis);
	}
	if (redis_wait_ready(&m, REDIS_START_SECONDS) == -1) {
		redis_stop(&m);
		return 1;
	}

	m.limits = connlimit_new(m.cfg.workers);
	m.workers = calloc((size_t)m.cfg.workers, sizeof *m.workers);
	if (m.limits == NULL || m.workers == NULL || bind_all(&m) == -1) {
		redis_stop(&m);
		return 1;
	}
	m.base = event_base_new();
	if (m.base == NULL) {
		fprintf(stderr, "postino: event_base_new failed\n");
		redis_stop(&m);
		return 1;
	}
	struct event *ev_term = evsignal_new(m.base, SIGTERM, on_stop, &m);
	struct event *ev_int = evsignal_new(m.base, SIGINT, on_stop, &m);
	struct event *ev_chld = evsignal_new(m.base, SIGCHLD, on_child, &m);
	m.restart_timer = evtimer_new(m.base, on_restart_timer, &m);
	m.stop_timer = evtimer_new(m.base, on_stop_timer, &m);
	if (!ev_term || !ev_int || !ev_chld || !m.restart_timer || !m.stop_timer ||
	    event_add(ev_term, NULL) == -1 || event_add(ev_int, NULL) == -1 ||
	    event_add(ev_chld, NULL) == -1) {
		fprintf(stderr, "postino: cannot set up signal handling\n");
		redis_stop(&m);
		return 1;
	}
	for (int w = 0; w < m.cfg.workers; w++)
		m.workers[w] = worker_start(&m, w);
	log_info(0, "event=started workers=%d redis=%s hostname=%s", m.cfg.workers, m.redis_address,
	         m.cfg.hostname);
	/* Activates pending DKIM selectors once their records are in DNS (relay/dkimwatch.h).
	 * Without it keys still sign; rotations wait for "postinoctl dkim activate". */
	struct dkimwatch *dkimwatch = dkimwatch_new(m.base, &m.cfg, err, sizeof err);
	if (dkimwatch == NULL)
		log_warn(0, "event=dkimwatch_off reason=\"%s\"", err);
	event_base_dispatch(m.base);
	dkimwatch_free(dkimwatch);
	redis_stop(&m);
	log_info(0, "event=stopped");
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_chld);
	event_free(m.restart_timer);
	event_free(m.stop_timer);
	event_base_free(m.base);
	SSL_CTX_free(m.tls);
	connlimit_free(m.limits);
	free(m.workers);
	free(m.listeners);
	return 0;
}
