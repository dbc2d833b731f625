/*
 * peak-rss: runs a command and reports the command's own peak RSS, CPU time and wall time.
 *
 *   peak-rss OUT_FILE COMMAND [ARG ...]
 *
 * Why a launcher: the kernel's peak RSS for a process (ru_maxrss from wait4) is the largest
 * resident set of any memory image the process had, and that includes the image it had between
 * fork and exec, which is a copy of its parent's. A benchmark that spawns the measured command
 * from a process of 200 MiB therefore reads 200 MiB for /bin/true. This launcher is a static
 * program of a few KiB: the benchmark spawns it, it forks (a copy of itself, ~0.1 MiB) and that
 * child execs COMMAND, so the pre-exec image that the kernel folds into COMMAND's peak is this
 * launcher's, not the benchmark's. It waits for COMMAND with wait4 and writes one line to
 * OUT_FILE:
 *
 *   maxrss_kib=N user_us=N sys_us=N wall_us=N
 *
 * wall is from just before fork to just after wait4. It exits with COMMAND's exit code, or
 * 128 + the signal that ended it. scripts/peak-rss.sh builds it (`musl-gcc -static -Os`);
 * examples/bench.rs runs its control: /bin/true spawned from a 64 MiB parent.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long us(struct timeval t) { return (long long)t.tv_sec * 1000000 + t.tv_usec; }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: peak-rss OUT_FILE COMMAND [ARG ...]\n");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("peak-rss: fork");
        return 1;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror("peak-rss: exec");
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) {
        perror("peak-rss: wait4");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long wall = (long long)(t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
    FILE *out = fopen(argv[1], "w");
    if (!out) {
        perror("peak-rss: OUT_FILE");
        return 1;
    }
    fprintf(out, "maxrss_kib=%ld user_us=%lld sys_us=%lld wall_us=%lld\n", ru.ru_maxrss, us(ru.ru_utime),
            us(ru.ru_stime), wall);
    fclose(out);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
}
