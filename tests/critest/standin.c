/* Stand-ins for the programs critest's images run (no registry is reachable here), one static
 * binary named after what it plays:
 *   nnp    prints its effective uid (run setuid-root: the no_new_privs tests)
 *   ipcs   lists System V shared memory as `ipcs -m` does (the host IPC tests read the ids)
 *   nginx  an HTTP server answering "Welcome to nginx!" on $PORT (80), with nginx's pid file and
 *          its master process title (the pid namespace tests look for both)
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int serve(int port) {
    FILE *pid = fopen("/var/run/nginx.pid", "w");
    if (pid) { fprintf(pid, "%d\n", (int)getpid()); fclose(pid); }
    int s = socket(AF_INET6, SOCK_STREAM, 0), one = 1, zero = 0;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 a = {0};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64)) { perror("listen"); return 1; }
    printf("nginx stand-in listening on %d\n", port);
    fflush(stdout);
    const char *r = "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: 18\r\n\r\nWelcome to nginx!\n";
    for (;;) {
        int c = accept(s, 0, 0);
        if (c < 0) continue;
        char buf[2048];
        (void)read(c, buf, sizeof buf);
        (void)write(c, r, strlen(r));
        close(c);
    }
}

int main(int argc, char **argv) {
    const char *me = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (!strcmp(me, "nnp")) { printf("Effective uid: %d\n", (int)geteuid()); return 0; }
    if (!strcmp(me, "ipcs")) {
        FILE *f = fopen("/proc/sysvipc/shm", "r");
        char line[512];
        printf("------ Shared Memory Segments --------\n");
        while (f && fgets(line, sizeof line, f)) fputs(line, stdout);
        return 0;
    }
    if (strstr(argv[0], "master process")) {
        const char *p = getenv("PORT");
        return serve(p ? atoi(p) : 80);
    }
    if (!strcmp(me, "nginx")) {
        char *args[] = {"nginx: master process nginx -g daemon off;", 0};
        execv("/proc/self/exe", args);
        perror("execv");
        return 1;
    }
    fprintf(stderr, "unknown stand-in %s\n", me);
    return 127;
}
