/* A load generator for the socket API and the container endpoint: N threads, each opening a
 * new connection per request (what shells calling rolecache do), sending one request and
 * reading the answer to EOF. Written in C so that on a 2-core machine the generator costs
 * far less CPU than the daemon it measures (a Python generator was the bottleneck).
 *
 *   loadgen unix:/path/to.sock|tcp:127.0.0.1:PORT CLIENTS TOTAL REQUEST_FILE
 *
 * Prints one line: requests seconds rps p50_ms p99_ms max_ms non200
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_storage addr;
static socklen_t addr_len;
static int family;
static char *request;
static size_t request_len;
static int per_thread;
static double *latencies;
static int errors;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *client(void *arg) {
    long index = (long)arg;
    char buf[65536];
    int bad = 0;
    for (int i = 0; i < per_thread; i++) {
        double start = now();
        int fd = socket(family, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, addr_len) < 0) { bad++; if (fd >= 0) close(fd); continue; }
        size_t sent = 0;
        while (sent < request_len) {
            ssize_t n = write(fd, request + sent, request_len - sent);
            if (n <= 0) break;
            sent += n;
        }
        ssize_t got = 0, n;
        char first[13] = {0};
        while ((n = read(fd, buf, sizeof buf)) > 0) {
            if (got < 12) memcpy(first + got, buf, (size_t)(n < 12 - got ? n : 12 - got));
            got += n;
        }
        close(fd);
        if (strncmp(first, "HTTP/1.1 200", 12) != 0) bad++;
        latencies[index * per_thread + i] = now() - start;
    }
    pthread_mutex_lock(&lock);
    errors += bad;
    pthread_mutex_unlock(&lock);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: loadgen unix:PATH|tcp:HOST:PORT CLIENTS TOTAL REQUEST_FILE\n"); return 2; }
    memset(&addr, 0, sizeof addr);
    if (strncmp(argv[1], "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&addr;
        un->sun_family = family = AF_UNIX;
        strncpy(un->sun_path, argv[1] + 5, sizeof un->sun_path - 1);
        addr_len = sizeof *un;
    } else if (strncmp(argv[1], "tcp:", 4) == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)&addr;
        char *colon = strrchr(argv[1] + 4, ':');
        *colon = 0;
        in->sin_family = family = AF_INET;
        in->sin_port = htons(atoi(colon + 1));
        inet_pton(AF_INET, argv[1] + 4, &in->sin_addr);
        addr_len = sizeof *in;
    } else { fprintf(stderr, "bad target\n"); return 2; }
    int clients = atoi(argv[2]), total = atoi(argv[3]);
    FILE *f = fopen(argv[4], "rb");
    if (!f) { perror("request file"); return 2; }
    fseek(f, 0, SEEK_END); request_len = ftell(f); fseek(f, 0, SEEK_SET);
    request = malloc(request_len);
    if (fread(request, 1, request_len, f) != request_len) { perror("read"); return 2; }
    fclose(f);
    per_thread = total / clients;
    int n = per_thread * clients;
    latencies = calloc(n, sizeof *latencies);
    pthread_t *threads = calloc(clients, sizeof *threads);
    double start = now();
    for (long i = 0; i < clients; i++) pthread_create(&threads[i], NULL, client, (void *)i);
    for (int i = 0; i < clients; i++) pthread_join(threads[i], NULL);
    double elapsed = now() - start;
    qsort(latencies, n, sizeof *latencies, cmp);
    printf("%d %.3f %.1f %.3f %.3f %.3f %d\n", n, elapsed, n / elapsed,
           latencies[n / 2] * 1000, latencies[(int)(n * 0.99)] * 1000, latencies[n - 1] * 1000, errors);
    return 0;
}
