/* es_delay: one hop of an edgesim testbed link, both directions: serialisation at the rate, then propagation.
 *
 * Joins two network namespaces by a TUN device in each (created here, so they vanish when this process ends)
 * and copies every IP packet read from one device to the other, in order. Each direction is simulator/link.py's
 * link (STYLE.md rule 11): a FIFO server at the current rate (a packet's serialisation starts when it has been
 * read and the one before it is serialised; bits left when the rate changes go at the new rate, as
 * RateTrace.transfer_end integrates it), then the one-way delay after its serialisation ends (propagation; never
 * released before the packet ahead of it). The queue is here, not in the kernel: this process runs SCHED_FIFO
 * with 1 ns timer slack, so a busy host delays it little, where a qdisc's timers (tc tbf, run from softirqs that
 * compete with the host's other work) cost a loaded 2-core host 3.1-4.6 % of the rate (measured: README, the testbed).
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

/* ring slots head .. head+done-1 are serialised (due_ns set), slot head+done (if < count) is being serialised
 * until end_ns, the rest wait for it */
struct slot { int64_t read_ns, due_ns; int len; unsigned char data[PKT_MAX]; };
struct queue {
    struct slot *s;
    int head, count, done;
    int64_t delay_ns, last_due_ns, end_ns;
    double rate_bps;
    int out_fd;
};

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

static struct slot *at(struct queue *q, int k) { return &q->s[(q->head + k) % SLOTS]; }

/* the first packet not yet serialised starts at `start`: it ends after its bits at the current rate */
static void begin(struct queue *q, int64_t start) {
    q->end_ns = start + (int64_t)(at(q, q->done)->len * 8e9 / q->rate_bps);
}

/* every serialisation that has ended by `now`: its packet propagates (due after the delay, FIFO); the next starts */
static void advance(struct queue *q, int64_t now) {
    while (q->done < q->count && q->end_ns <= now) {
        struct slot *s = at(q, q->done);
        int64_t due = q->end_ns + q->delay_ns;
        s->due_ns = q->last_due_ns = due > q->last_due_ns ? due : q->last_due_ns;
        if (++q->done < q->count) {
            int64_t read = at(q, q->done)->read_ns;
            begin(q, read > q->end_ns ? read : q->end_ns);
        }
    }
}

/* read every packet waiting on fd into q */
static void take(int fd, struct queue *q) {
    for (;;) {
        if (q->count == SLOTS) {  /* full: drop as a queue would (never at the rates the testbed uses) */
            unsigned char sink[PKT_MAX];
            if (read(fd, sink, sizeof sink) < 0) return;
            continue;
        }
        struct slot *s = at(q, q->count);
        ssize_t n = read(fd, s->data, PKT_MAX);
        if (n < 0) { if (errno == EAGAIN || errno == EINTR) return; die("read"); }
        int64_t t = now_ns();
        s->read_ns = t;
        s->len = (int)n;
        if (q->count++ == q->done) begin(q, t > q->end_ns ? t : q->end_ns);  /* nothing on the wire: it goes next */
    }
}

/* the rate from now on: the packet being serialised sends its bits left at the new rate */
static void set_rate(struct queue *q, double rate_bps, int64_t now) {
    advance(q, now);
    if (q->done < q->count && q->end_ns > now)
        q->end_ns = now + (int64_t)((q->end_ns - now) * (q->rate_bps / rate_bps));
    q->rate_bps = rate_bps;
}

/* write every packet of q that is due; the time until q's next event (-1: none) */
static int64_t release(struct queue *q) {
    int64_t now = now_ns();
    advance(q, now);
    while (q->done) {
        struct slot *s = at(q, 0);
        if (s->due_ns > now) break;
        if (write(q->out_fd, s->data, s->len) < 0 && errno != EAGAIN && errno != EIO) die("write");
        q->head = (q->head + 1) % SLOTS;
        q->count--;
        q->done--;
    }
    int64_t wait = q->done ? at(q, 0)->due_ns - now : -1;  /* both are after now: advanced and released above */
    if (q->done < q->count && (wait < 0 || q->end_ns - now < wait)) wait = q->end_ns - now;
    return wait;
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
    struct queue ab = { calloc(SLOTS, sizeof(struct slot)), 0, 0, 0, atoll(argv[5]) * 1000LL, 0, 0, atof(argv[7]), fb };
    struct queue ba = { calloc(SLOTS, sizeof(struct slot)), 0, 0, 0, atoll(argv[6]) * 1000LL, 0, 0, atof(argv[8]), fa };
    if (ab.rate_bps <= 0 || ba.rate_bps <= 0) { fprintf(stderr, "es_delay: rates must be > 0\n"); return 2; }
    if (!ab.s || !ba.s) die("calloc");
    printf("ready\n");
    fflush(stdout);
    char line[128];
    size_t used = 0;
    for (;;) {
        int64_t wa = release(&ab), wb = release(&ba);
        int64_t wait = wa < 0 ? wb : (wb < 0 || wa < wb ? wa : wb);
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
                    int64_t t = now_ns();
                    set_rate(&ab, r_ab, t);  /* what ended serialising before now propagates with the old delay */
                    set_rate(&ba, r_ba, t);
                    ab.delay_ns = d_ab * 1000LL; ba.delay_ns = d_ba * 1000LL;
                }
                used -= (size_t)(nl + 1 - line);
                memmove(line, nl + 1, used + 1);
            }
            if (used == sizeof line - 1) used = 0;
        }
    }
}
