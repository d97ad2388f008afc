// The workload of `cargo xtask bench placement` in the VM (see placement_vm.rs). One program,
// two names: run as `pmb-work` (what the placement rules match) it forks PMB_KIDS children right
// after exec, and the odd ones exec `pmb-kid` (the same file under another name, matching no
// rule) at once; then every process sleeps PMB_HOLD_MS and appends where it is to PMB_OUT:
//   P <pid> <cgroup>                      the exec'd process
//   C <pid> <parent> fork|exec <cgroup>   a child
// It is C, not Rust, because under TCG the exec of a 20 MB debug Rust binary costs more CPU than
// the daemons being measured; this one is tiny and starts at once.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long env_num(const char *k, long d)
{
	const char *v = getenv(k);
	return v ? atol(v) : d;
}

static void hold(void)
{
	long ms = env_num("PMB_HOLD_MS", 2000);
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

// Appends one line: prefix + this process's cgroup v2 path, in one O_APPEND write.
static void report(const char *prefix)
{
	char cg[512] = "?", line[700];
	FILE *f = fopen("/proc/self/cgroup", "r");
	if (f) {
		char l[512];
		while (fgets(l, sizeof l, f))
			if (!strncmp(l, "0::", 3)) {
				l[strcspn(l, "\n")] = 0;
				snprintf(cg, sizeof cg, "%s", l + 3);
			}
		fclose(f);
	}
	const char *out = getenv("PMB_OUT");
	int fd = open(out ? out : "/dev/null", O_WRONLY | O_APPEND);
	if (fd < 0)
		return;
	int n = snprintf(line, sizeof line, "%s %s\n", prefix, cg);
	if (write(fd, line, n) != n)
		perror("pmb-work: write");
	close(fd);
}

int main(int argc, char **argv)
{
	char prefix[64];
	const char *name = strrchr(argv[0], '/');
	name = name ? name + 1 : argv[0];
	(void)argc;
	if (!strcmp(name, "pmb-kid")) {
		hold();
		snprintf(prefix, sizeof prefix, "C %d %d exec", getpid(), getppid());
		report(prefix);
		return 0;
	}
	char kid[4096];
	snprintf(kid, sizeof kid, "%s", argv[0]);
	char *slash = strrchr(kid, '/');
	snprintf(slash ? slash + 1 : kid, sizeof kid - (slash ? slash + 1 - kid : 0), "pmb-kid");
	long kids = env_num("PMB_KIDS", 4);
	int me = getpid();
	for (long i = 0; i < kids; i++) {
		pid_t p = fork();
		if (p == 0) {
			if (i % 2 == 1) {
				execl(kid, "pmb-kid", (char *)NULL);
				_exit(127);
			}
			hold();
			snprintf(prefix, sizeof prefix, "C %d %d fork", getpid(), me);
			report(prefix);
			_exit(0);
		}
		if (p < 0)
			break;
	}
	hold();
	snprintf(prefix, sizeof prefix, "P %d", me);
	report(prefix);
	while (wait(NULL) > 0)
		;
	return 0;
}
