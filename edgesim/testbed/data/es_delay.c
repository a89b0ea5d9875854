/* es_delay: the one-way delay of an edgesim testbed link, for kernels without netem.
 *
 * Joins two network namespaces by a TUN device in each (created here, so they vanish when this process ends)
 * and copies every IP packet read from one device to the other, in order (FIFO: a packet is never released
 * before the one read before it). The rate of each direction is set by a tc tbf qdisc on the sending
 * namespace's TUN device. tbf hands over the first packet after idle when its serialisation begins, later ones
 * when theirs ends; a link delivers every packet when its serialisation ends and it has propagated (STYLE.md
 * rule 11). So here each direction is also a FIFO server at the same rate, as simulator/link.py's link:
 * serialised_k = max(read_k, serialised_{k-1}) + len_k * 8 / rate, released at serialised_k + the one-way delay.
 * (tbf keeps the rate over time; this server only puts each packet's delivery at the end of its serialisation.)
 *
 * usage: es_delay NETNS_A DEV_A NETNS_B DEV_B DELAY_AB_US DELAY_BA_US RATE_AB_BPS RATE_BA_BPS
 * stdin: lines "DELAY_AB_US DELAY_BA_US RATE_AB_BPS RATE_BA_BPS" change them (traces); EOF on stdin ends it.
 * stdout: "ready\n" once both devices exist; stderr: one line on any error, exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 8192
#define PKT_MAX 2048

struct slot { int64_t due_ns; int len; unsigned char data[PKT_MAX]; };
struct queue { struct slot *s; int head, count; int64_t delay_ns, last_due_ns, serialised_ns; double rate_bps; int out_fd; };

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) { fprintf(stderr, "es_delay: %s: %s\n", what, strerror(errno)); exit(1); }

static int open_tun(const char *netns, const char *dev) {
    char path[256];
    snprintf(path, sizeof path, "/var/run/netns/%s", netns);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0) die(path);
    if (setns(ns, CLONE_NEWNET) < 0) die("setns");
    close(ns);
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("/dev/net/tun");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) die(dev);
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) die("O_NONBLOCK");
    return fd;
}

/* read every packet waiting on fd into q, stamped with its release time */
static void take(int fd, struct queue *q) {
    for (;;) {
        if (q->count == SLOTS) {  /* full: drop as a queue would (never at the rates the testbed uses) */
            unsigned char sink[PKT_MAX];
            if (read(fd, sink, sizeof sink) < 0) return;
            continue;
        }
        struct slot *s = &q->s[(q->head + q->count) % SLOTS];
        ssize_t n = read(fd, s->data, PKT_MAX);
        if (n < 0) { if (errno == EAGAIN || errno == EINTR) return; die("read"); }
        int64_t t = now_ns();
        q->serialised_ns = (t > q->serialised_ns ? t : q->serialised_ns) + (int64_t)(n * 8e9 / q->rate_bps);
        int64_t due = q->serialised_ns + q->delay_ns;
        if (due < q->last_due_ns) due = q->last_due_ns;  /* FIFO */
        s->due_ns = q->last_due_ns = due;
        s->len = (int)n;
        q->count++;
    }
}

/* write every packet of q that is due; the time until the next one is due (-1: none waiting) */
static int64_t release(struct queue *q) {
    while (q->count) {
        struct slot *s = &q->s[q->head];
        int64_t wait = s->due_ns - now_ns();
        if (wait > 0) return wait;
        if (write(q->out_fd, s->data, s->len) < 0 && errno != EAGAIN && errno != EIO) die("write");
        q->head = (q->head + 1) % SLOTS;
        q->count--;
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: es_delay NETNS_A DEV_A NETNS_B DEV_B DELAY_AB_US DELAY_BA_US RATE_AB_BPS RATE_BA_BPS\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL);  /* wake up on time, not up to 50 us late */
    prctl(PR_SET_PDEATHSIG, SIGTERM);  /* the testbed that started it is gone: end, and the devices go with us */
    int fa = open_tun(argv[1], argv[2]), fb = open_tun(argv[3], argv[4]);
    struct sched_param sp = { .sched_priority = 10 };
    sched_setscheduler(0, SCHED_FIFO, &sp);  /* best effort: a loaded host delays packets less */
    struct queue ab = { calloc(SLOTS, sizeof(struct slot)), 0, 0, atoll(argv[5]) * 1000LL, 0, 0, atof(argv[7]), fb };
    struct queue ba = { calloc(SLOTS, sizeof(struct slot)), 0, 0, atoll(argv[6]) * 1000LL, 0, 0, atof(argv[8]), fa };
    if (ab.rate_bps <= 0 || ba.rate_bps <= 0) { fprintf(stderr, "es_delay: rates must be > 0\n"); return 2; }
    if (!ab.s || !ba.s) die("calloc");
    printf("ready\n");
    fflush(stdout);
    char line[128];
    size_t used = 0;
    for (;;) {
        int64_t wa = release(&ab), wb = release(&ba), wait = wa < 0 ? wb : (wb < 0 || wa < wb ? wa : wb);
        struct pollfd p[3] = { { fa, POLLIN, 0 }, { fb, POLLIN, 0 }, { 0, POLLIN, 0 } };
        struct timespec ts = { wait / 1000000000LL, wait % 1000000000LL };
        if (ppoll(p, 3, wait < 0 ? NULL : &ts, NULL) < 0 && errno != EINTR) die("ppoll");
        if (p[0].revents & POLLIN) take(fa, &ab);
        if (p[1].revents & POLLIN) take(fb, &ba);
        if (p[2].revents & (POLLIN | POLLHUP)) {
            ssize_t n = read(0, line + used, sizeof line - 1 - used);
            if (n <= 0) return 0;
            used += (size_t)n;
            line[used] = 0;
            char *nl;
            while ((nl = strchr(line, '\n'))) {
                long long d_ab, d_ba;
                double r_ab, r_ba;
                *nl = 0;
                if (sscanf(line, "%lld %lld %lf %lf", &d_ab, &d_ba, &r_ab, &r_ba) == 4 && r_ab > 0 && r_ba > 0) {
                    ab.delay_ns = d_ab * 1000LL; ba.delay_ns = d_ba * 1000LL; ab.rate_bps = r_ab; ba.rate_bps = r_ba;
                }
                used -= (size_t)(nl + 1 - line);
                memmove(line, nl + 1, used + 1);
            }
            if (used == sizeof line - 1) used = 0;
        }
    }
}
