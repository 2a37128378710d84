/* stage-ledger.h - internal to pipeline/: the time each stage of `moa compress` has cost
 * across all the runs that worked in one work directory (a long job is a series of
 * interrupted, resumed runs; the report of the last run alone would show ~0 s for every stage
 * it reused). Kept in WORKDIR/stage-times.tsv (docs/formats.md), written atomically at every
 * stage boundary and at most every MOA_LEDGER_FLUSH_S seconds while a stage runs, so a killed
 * run loses at most that much of its time.
 *
 * Not thread-safe: one ledger per compress job, used from the job's thread (the progress
 * callbacks that flush it run on that thread). */
#ifndef MOA_STAGE_LEDGER_H
#define MOA_STAGE_LEDGER_H

#define MOA_LEDGER_MAX_STAGES 16
#define MOA_LEDGER_NAME_MAX 64
#define MOA_LEDGER_FLUSH_S 30.0

typedef struct {
    char name[MOA_LEDGER_NAME_MAX];
    double seconds;      /* all runs, this one included so far */
    int runs;            /* runs that spent more than MOA_LEDGER_WORK_S on it */
    double this_run;     /* seconds of this run */
} moa_ledger_row;

typedef struct {
    char *path;          /* the file (malloc'd); NULL: in memory only */
    moa_ledger_row row[MOA_LEDGER_MAX_STAGES];
    int n;
    int cur;             /* the stage being timed, -1 none */
    double since;        /* moa_time_now() of the last accounting */
    double saved;        /* moa_time_now() of the last write */
} moa_stage_ledger;

/* Loads the ledger at path (missing file: empty). Lines it cannot read (another version, a
 * damaged or hostile file) are dropped with a warning: the ledger is an account, never an
 * input of a stage. Returns 0, or -1 out of memory. */
int moa_ledger_open(moa_stage_ledger *lg, const char *path);
/* Accounts the running stage and starts timing `name` (added if new; a full table times
 * nothing). Writes the file. */
void moa_ledger_enter(moa_stage_ledger *lg, const char *name);
/* The running stage starts its work from scratch (its output and checkpoint were of other
 * inputs, or absent): the earlier runs' time no longer counts. */
void moa_ledger_restart(moa_stage_ledger *lg);
/* Accounts the time since the last call to the running stage; writes the file when `force`
 * or MOA_LEDGER_FLUSH_S have passed since the last write. */
void moa_ledger_flush(moa_stage_ledger *lg, int force);
/* The row of `name`, or NULL. */
const moa_ledger_row *moa_ledger_find(const moa_stage_ledger *lg, const char *name);
void moa_ledger_close(moa_stage_ledger *lg);   /* flushes (forced) and frees */

#endif
