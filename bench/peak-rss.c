/* Runs a command and prints the peak RSS (KiB) of that process to stderr's last line.
 * A tiny static launcher, because ru_maxrss inherits the high-water mark of whoever
 * forked the process (a Python benchmark driver would dominate it). */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pid_t pid = fork();
    if (pid == 0) { execvp(argv[1], argv + 1); _exit(127); }
    int status; struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return 2;
    fprintf(stderr, "peak-rss-kib %ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
