/*
 * StreamClone test-guest workload (built by GuestBuilder with `gcc -static -O2`, run by /init).
 *
 * Its whole state is a deterministic function of its tick counter, so a clone can be checked
 * from its console alone:
 *   - memory: sc.fill MiB (kernel command line, default 16) in 4 KiB pages. Page p holds the
 *     xorshift64 stream seeded by (p, version[p]); version[p] is the tick that last rewrote it
 *     (0 = initial fill). Every word is non-zero, so zero-page elision cannot hide a lost page.
 *   - every tick n (100 ms): pages (n*4+j)*GOLDEN % npages, j < 4, are rewritten with version n.
 *   - mem=  XOR of the CRC-32 of every page, kept incrementally (old page crc out, new crc in):
 *     equal on a source and its clone at the same tick.
 *   - chk=  each tick re-reads VERIFY_PAGES pages (a rolling window) from memory, recomputes
 *     their CRC and compares it with both the stored per-page CRC and a fresh regeneration of the
 *     expected content: "ok" or "BAD". sweep= counts completed passes over the whole region, so
 *     a test that waits for sweep to grow knows every page was re-read after a restore.
 *   - disk: /data/sc.dat is 1024 records of 64 bytes; tick n rewrites record n % 1024 and
 *     fdatasyncs; disk= is the CRC-32 of the whole file read back (0 when /data is not
 *     mounted); a read-back that differs from the workload's own copy also makes chk=BAD.
 * Line: SC tick=<n> mem=<hex> disk=<hex> chk=ok|BAD sweep=<k> t=<monotonic ms>
 *
 * A line "full" written to the serial console asks for a full pass after the current tick: the
 * XOR of the CRC-32 of every filled page, recomputed from memory (not from the per-page CRCs or
 * the running mem=), so it equals the mem= a source printed at that tick only if every page is
 * intact. Asked for, not periodic: under TCG a pass over 32 MiB takes seconds, and a periodic one
 * would show as gaps between ticks in every live-snapshot measurement.
 * Line: SC full tick=<n> mem=<hex> pages=<npages> ms=<duration>
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define WORDS (PAGE / 8u)
#define WRITES_PER_TICK 4u
#define VERIFY_PAGES 256u
#define RECORDS 1024u
#define RECORD 64u
#define TICK_NS 100000000L

static uint32_t crc_table[256];
/* Slicing-by-8 tables (crc_slice[0] = crc_table) for the full pass: 8 bytes per step, same CRC-32. */
static uint32_t crc_slice[8][256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
        crc_slice[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (uint32_t i = 0; i < 256; i++)
            crc_slice[t][i] = (crc_slice[t - 1][i] >> 8) ^ crc_table[crc_slice[t - 1][i] & 0xFF];
}

/* CRC-32 of one page read as little-endian words (x86): equal to crc32_buf(page, PAGE). */
static uint32_t crc32_page(const uint64_t *page)
{
    uint32_t c = 0xFFFFFFFFu;
    for (unsigned i = 0; i < WORDS; i++) {
        uint32_t lo = (uint32_t)page[i] ^ c, hi = (uint32_t)(page[i] >> 32);
        c = crc_slice[7][lo & 0xFF] ^ crc_slice[6][(lo >> 8) & 0xFF] ^ crc_slice[5][(lo >> 16) & 0xFF] ^
            crc_slice[4][lo >> 24] ^ crc_slice[3][hi & 0xFF] ^ crc_slice[2][(hi >> 8) & 0xFF] ^
            crc_slice[1][(hi >> 16) & 0xFF] ^ crc_slice[0][hi >> 24];
    }
    return c ^ 0xFFFFFFFFu;
}

static uint32_t crc32_buf(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;
    while (len--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Expected content of page p at version v: an xorshift64 stream, never zero. */
static void gen_page(uint64_t *dst, uint64_t p, uint64_t v)
{
    uint64_t s = mix64((p << 24) ^ v ^ 0x5C5C5C5C00000000ULL);
    if (s == 0)
        s = 1;
    for (unsigned i = 0; i < WORDS; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        dst[i] = s;
    }
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned long fill_mib_from_cmdline(void)
{
    char buf[4096];
    unsigned long fill = 16;
    int fd = open("/proc/cmdline", O_RDONLY);
    if (fd < 0)
        return fill;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return fill;
    buf[n] = 0;
    char *p = strstr(buf, "sc.fill=");
    if (p)
        fill = strtoul(p + 8, NULL, 10);
    return fill ? fill : 1;
}

static void say(const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t w = write(1, s, len);
        if (w <= 0)
            return;
        s += w;
        len -= (size_t)w;
    }
}

/* The console carries requests in and ticks out: no echo, so a request never lands inside a tick line. */
static void console_input_init(void)
{
    struct termios t;
    if (tcgetattr(0, &t) == 0) {
        t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        tcsetattr(0, TCSANOW, &t);
    }
}

/* True when a "full" line arrived since the last call; never blocks (canonical mode: whole lines). */
static int full_pass_requested(void)
{
    char buf[128];
    int asked = 0;
    struct pollfd in = {.fd = 0, .events = POLLIN};
    while (poll(&in, 1, 0) > 0 && (in.revents & POLLIN)) {
        ssize_t n = read(0, buf, sizeof buf - 1);
        if (n <= 0)
            break;
        buf[n] = 0;
        if (strstr(buf, "full"))
            asked = 1;
    }
    return asked;
}

int main(void)
{
    char line[256];
    crc_init();
    console_input_init();

    unsigned long fill = fill_mib_from_cmdline();
    uint64_t npages = (uint64_t)fill * (1024 * 1024 / PAGE);
    uint64_t *mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    uint64_t *version = calloc(npages, sizeof *version);
    uint32_t *page_crc = calloc(npages, sizeof *page_crc);
    uint64_t scratch[WORDS];
    if (mem == MAP_FAILED || !version || !page_crc) {
        say("SC error=oom\n");
        return 1;
    }

    uint32_t mem_crc = 0;
    for (uint64_t p = 0; p < npages; p++) {
        gen_page(mem + p * WORDS, p, 0);
        page_crc[p] = crc32_buf(mem + p * WORDS, PAGE);
        mem_crc ^= page_crc[p];
    }

    int disk = open("/data/sc.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    static uint8_t file[RECORDS * RECORD];
    memset(file, '.', sizeof file);
    if (disk >= 0) {
        if (pwrite(disk, file, sizeof file, 0) != (ssize_t)sizeof file)
            say("SC warn=disk-init\n");
        fsync(disk);
    }

    snprintf(line, sizeof line, "SC ready fill=%lu pages=%llu mem=%08x disk=%s\n", fill,
             (unsigned long long)npages, mem_crc, disk >= 0 ? "yes" : "no");
    say(line);

    uint64_t tick = 0, verify_next = 0, sweep = 0;
    int bad = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        next.tv_nsec += TICK_NS;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec + 1)
            next = now; /* resumed after a long pause (restore): do not burst to catch up */

        tick++;
        for (unsigned j = 0; j < WRITES_PER_TICK; j++) {
            uint64_t p = ((tick * WRITES_PER_TICK + j) * 0x9E3779B97F4A7C15ULL) % npages;
            uint64_t *page = mem + p * WORDS;
            gen_page(page, p, tick);
            version[p] = tick;
            uint32_t c = crc32_buf(page, PAGE);
            mem_crc ^= page_crc[p] ^ c;
            page_crc[p] = c;
        }

        for (unsigned k = 0; k < VERIFY_PAGES && k < npages; k++) {
            uint64_t p = verify_next;
            const uint64_t *page = mem + p * WORDS;
            gen_page(scratch, p, version[p]);
            if (crc32_buf(page, PAGE) != page_crc[p] || memcmp(page, scratch, PAGE) != 0)
                bad = 1;
            if (++verify_next == npages) {
                verify_next = 0;
                sweep++;
            }
        }

        uint32_t disk_crc = 0;
        if (disk >= 0) {
            char *rec = (char *)file + (tick % RECORDS) * RECORD;
            snprintf(rec, RECORD, "tick=%020llu mem=%08x", (unsigned long long)tick, mem_crc);
            memset(rec + strlen(rec), '.', RECORD - 1 - strlen(rec));
            rec[RECORD - 1] = '\n';
            if (pwrite(disk, rec, RECORD, (off_t)((tick % RECORDS) * RECORD)) != RECORD)
                bad = 1;
            fdatasync(disk);
            static uint8_t back[RECORDS * RECORD];
            if (pread(disk, back, sizeof back, 0) != (ssize_t)sizeof back ||
                memcmp(back, file, sizeof back) != 0)
                bad = 1;
            disk_crc = crc32_buf(back, sizeof back);
        }

        snprintf(line, sizeof line, "SC tick=%llu mem=%08x disk=%08x chk=%s sweep=%llu t=%lld\n",
                 (unsigned long long)tick, mem_crc, disk_crc, bad ? "BAD" : "ok",
                 (unsigned long long)sweep, now_ms());
        say(line);

        if (full_pass_requested()) {
            long long started = now_ms();
            uint32_t full = 0;
            for (uint64_t p = 0; p < npages; p++)
                full ^= crc32_page(mem + p * WORDS);
            snprintf(line, sizeof line, "SC full tick=%llu mem=%08x pages=%llu ms=%lld\n",
                     (unsigned long long)tick, full, (unsigned long long)npages, now_ms() - started);
            say(line);
        }
    }
}
