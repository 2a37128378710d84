/* progress.c - a progress bar with rate and ETA on stderr (the CLI's moa_progress_fn). */
#include "moa/common.h"

#include <string.h>
#include <unistd.h>

void moa_progress_bar_init(moa_progress_bar *pb, const char *label, const char *unit) {
    memset(pb, 0, sizeof *pb);
    pb->label = label ? label : "";
    pb->unit = unit ? unit : "it";
    pb->t_start = moa_time_now();
    pb->t_last = 0;
    pb->is_tty = isatty(2);
}

static void fmt_eta(double s, char *buf, size_t n) {
    if (s < 0 || s > 1e7) { snprintf(buf, n, "--:--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

void moa_progress_bar_cb(void *data, double done, double total, double extra,
                         const char *extra_unit) {
    moa_progress_bar *pb = data;
    double now = moa_time_now();
    int last = total > 0 && done >= total;
    /* TTY: redraw at most 10x/s; log files: one line every 10 s. */
    double min_gap = pb->is_tty ? 0.1 : 10.0;
    if (!last && now - pb->t_last < min_gap) return;
    pb->t_last = now;
    double el = now - pb->t_start;
    double rate = el > 0 ? done / el : 0;
    char eta[32], els[32];
    fmt_eta(total > 0 && rate > 0 ? (total - done) / rate : -1, eta, sizeof eta);
    fmt_eta(el, els, sizeof els);
    char extra_s[64] = "";
    if (extra_unit && el > 0)
        snprintf(extra_s, sizeof extra_s, " %.1f %s/s", extra / el, extra_unit);
    char bar[32];
    int width = 24;
    int fill = total > 0 ? (int)(width * (done / total)) : 0;
    if (fill > width) fill = width;
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    if (total > 0)
        fprintf(stderr, "%s%s [%s] %.0f/%.0f %s %.2f %s/s%s elapsed %s ETA %s%s",
                pb->is_tty ? "\r" : "", pb->label, bar, done, total, pb->unit, rate, pb->unit,
                extra_s, els, eta, pb->is_tty ? "\033[K" : "\n");
    else
        fprintf(stderr, "%s%s %.0f %s %.2f %s/s%s elapsed %s%s", pb->is_tty ? "\r" : "",
                pb->label, done, pb->unit, rate, pb->unit, extra_s, els,
                pb->is_tty ? "\033[K" : "\n");
    if (last && pb->is_tty && !pb->finished) { fputc('\n', stderr); pb->finished = 1; }
    fflush(stderr);
}

void moa_progress_bar_finish(moa_progress_bar *pb) {
    if (pb->is_tty && !pb->finished && pb->t_last > 0) fputc('\n', stderr);
    pb->finished = 1;
}
