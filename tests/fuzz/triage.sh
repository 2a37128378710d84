#!/usr/bin/env bash
# triage.sh - classifies the inputs a fork-mode run of an HDF5 harness kept (docs/fuzzing.md).
#
#   tests/fuzz/triage.sh BINARY ARTIFACT_DIR [REPORT_DIR [CORPUS_DIR]]
#
# BINARY is the in-process harness of the fuzz build (build-fuzz/tests/fuzz/fuzz_profile_inproc
# or fuzz_calib_inproc: ASan + UBSan, no guard), ARTIFACT_DIR the run's -artifact_prefix
# directory (crash-*, timeout-*, oom-*, leak-*, slow-unit-*). Every input is run again, alone,
# in a fresh process of BINARY, and its sanitizer / libFuzzer report is classified by the
# innermost stack frame that is neither libc nor sanitizer/libFuzzer runtime:
#   hdf5      a frame of libhdf5 (module libhdf5*, or a function H5*): a libhdf5 bug, which moa
#             refuses through its guard (docs/formats.md, "Untrusted HDF5 files");
#   ours      a frame of this repository (a source path under it, moa_*, LLVMFuzzerTestOneInput):
#             a finding, to fix;
#   unknown   a report without such a frame (e.g. an RSS-limit OOM);
#   norepro   no report when run alone, nor (with CORPUS_DIR, the run's corpus) when run after
#             every corpus input in one process: to look at by hand. An input classified only
#             after the corpus has "(after the corpus)" in its kind;
#   slow      a timeout-* or slow-unit-* input (more than 10 s of wall-clock time in its job)
#             that finishes without a report within 300 s: its CPU time is listed; on a loaded
#             machine this is the machine, not a hang (a real hang times out again here and is
#             classified by the frame it hangs in).
# A libhdf5 crash site is the innermost libhdf5 frame (function, or module+offset for its
# static functions, with the nearest named libhdf5 caller). Prints one line per input and a
# summary; REPORT_DIR (default ARTIFACT_DIR.triage) gets each input's report (<input>.txt, with
# the CPU time of the rerun in <input>.txt.cpu: an input that has both is not run again, so a
# directory can be triaged while the run still adds to it) and one example report per site
# (site-<n>.txt). Exit status 0 when every input is `hdf5` (or `slow`).
# The runs are niced (MOA_TRIAGE_NICE, default 10) and two at a time (MOA_TRIAGE_JOBS).
set -u
if [ $# -lt 2 ]; then
    echo "usage: $0 BINARY ARTIFACT_DIR [REPORT_DIR [CORPUS_DIR]]" >&2
    exit 2
fi
bin=$(readlink -f "$1")
art=$(readlink -f "$2")
rep=${3:-$art.triage}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mkdir -p "$rep"
rep=$(readlink -f "$rep")
export TMPDIR=${TMPDIR:-/dev/shm}
export LSAN_OPTIONS=suppressions=$here/lsan-hdf5.supp
export MOA_TRIAGE_BIN=$bin MOA_TRIAGE_REP=$rep MOA_TRIAGE_ROOT=$root
if [ -n "${4:-}" ]; then export MOA_TRIAGE_CORPUS; MOA_TRIAGE_CORPUS=$(readlink -f "$4"); fi

# The classification of one report: "class<TAB>kind<TAB>site<TAB>named<TAB>input<TAB>CPU seconds of
# the rerun" (a timeout of libFuzzer's wall-clock -timeout on a loaded machine may be a slow
# input: its CPU time tells).
parse_report() {   # REPORT INPUT CPU
    awk -v root="$MOA_TRIAGE_ROOT/" -v input="$2" -v cpu="$3" '
    function decide(fn, loc,   m) {
        if (loc ~ /libhdf5/ || fn ~ /^H5/) return "hdf5"
        if (index(loc, root) == 1 || fn ~ /^moa_/ || fn == "LLVMFuzzerTestOneInput") return "ours"
        return ""
    }
    BEGIN { cls = ""; kind = ""; site = ""; named = ""; instack = 0; done = 0 }
    # the first report only
    kind == "" && /runtime error:/ {
        kind = "UBSan: " substr($0, index($0, "runtime error:") + 15)
        loc = $1; sub(/:$/, "", loc)
        if (index(loc, root) == 1) { cls = "ours"; site = loc; done = 1 }
        next
    }
    kind == "" && /ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer):/ {
        kind = substr($0, index($0, "ERROR: ") + 7)
        sub(/ on (unknown )?address.*/, "", kind); sub(/ \(pc .*/, "", kind); sub(/ at pc .*/, "", kind)
        next
    }
    kind != "" && /^ *#[0-9]+ 0x[0-9a-f]+ / {
        instack = 1
        if (done) next
        fn = ""; loc = ""
        if (match($0, / in [^ ]+/)) { fn = substr($0, RSTART + 4, RLENGTH - 4); loc = substr($0, RSTART + RLENGTH + 1) }
        else { loc = $3 }
        c = decide(fn, loc)
        if (c == "hdf5" && site == "") {
            mod = loc; sub(/ \(BuildId.*/, "", mod); gsub(/[()]/, "", mod); n = split(mod, parts, "/"); mod = parts[n]
            site = fn != "" ? fn : mod
        }
        if (c == "hdf5" && named == "" && fn != "") named = fn
        if (c == "ours" && site == "") { cls = "ours"; site = fn " " loc; done = 1 }
        else if (c == "hdf5" && cls == "") cls = "hdf5"
        if (cls == "hdf5" && named != "") done = 1
        next
    }
    instack && /^ *$/ { done = 1 }
    END {
        if (kind == "" && input ~ /\/(slow-unit|timeout)-[^\/]*$/) cls = "slow"
        else if (kind == "") cls = "norepro"
        else if (cls == "") cls = "unknown"
        gsub(/\t/, " ", kind)
        printf "%s\t%s\t%s\t%s\t%s\t%s\n", cls, kind, site == "" ? "-" : site, named == "" ? "-" : named, input, cpu
    }' "$1"
}
export -f parse_report

# One input: its report (run alone, then, if that shows nothing and a corpus is given, run
# after the whole corpus in one process: libhdf5's crashes on freed memory depend on what the
# process did before), then its classification.
classify_one() {
    f=$1
    out=$MOA_TRIAGE_REP/$(basename "$f").txt
    # the run's -timeout=10 is wall-clock time: on a loaded machine an input of well under a
    # second of CPU can exceed it, so timeouts and slow units get 300 s here
    t=10
    case $(basename "$f") in timeout-* | slow-unit-*) t=300 ;; esac
    if [ ! -s "$out.cpu" ]; then   # a report of an earlier triage of the same directory is kept
        /usr/bin/time -f '%U %S' -o "$out.cpu" timeout $((t + 60)) nice -n "${MOA_TRIAGE_NICE:-10}" "$MOA_TRIAGE_BIN" \
            -timeout=$t -rss_limit_mb=2048 "$f" >"$out" 2>&1
    fi
    cpu=$(tail -n 1 "$out.cpu" 2>/dev/null | awk '{ printf "%.2f", $1 + $2 }')
    res=$(parse_report "$out" "$f" "${cpu:-?}")
    case $res in
    norepro*)
        [ -n "${MOA_TRIAGE_CORPUS:-}" ] || { echo "$res"; return; }
        ctx=$out.after-corpus
        if [ ! -s "$ctx.cpu" ]; then
            /usr/bin/time -f '%U %S' -o "$ctx.cpu" timeout 300 nice -n "${MOA_TRIAGE_NICE:-10}" "$MOA_TRIAGE_BIN" \
                -timeout=$t -rss_limit_mb=2048 "$MOA_TRIAGE_CORPUS"/* "$f" >"$ctx" 2>&1
        fi
        last=$(grep '^Running: ' "$ctx" | tail -n 1)
        if [ "$last" = "Running: $f" ]; then
            sed -n "\|^Running: $f\$|,\$p" "$ctx" >"$ctx.tail"
            res2=$(parse_report "$ctx.tail" "$f" "${cpu:-?}")
            case $res2 in
            norepro*) ;;
            *) res=$(printf '%s' "$res2" | awk -F'\t' -v OFS='\t' '{ $2 = $2 " (after the corpus)"; print }') ;;
            esac
        fi
        echo "$res" ;;
    *) echo "$res" ;;
    esac
}
export -f classify_one

list=$rep/classified.tsv
find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \
    -o -name 'slow-unit-*' \) -print0 | sort -z |
    xargs -0 -r -n 1 -P "${MOA_TRIAGE_JOBS:-2}" bash -c 'classify_one "$1"' _ >"$list"
cat "$list"
total=$(wc -l <"$list")
echo
echo "triage: $total inputs of $art, rerun with $(basename "$bin")${MOA_TRIAGE_CORPUS:+ (alone, then after the corpus $MOA_TRIAGE_CORPUS)}:"
cut -f1 "$list" | sort | uniq -c | sed 's/^/  /'
echo "libhdf5 crash sites (innermost libhdf5 frame; nearest named libhdf5 function; reports):"
awk -F'\t' '$1 == "hdf5" { k = $3 " (" $4 ")"; n[k]++; if (!(k in ex)) ex[k] = $5; kinds[k] = kinds[k] "|" $2 }
    END { for (k in n) printf "%d\t%s\t%s\t%s\n", n[k], k, ex[k], kinds[k] }' "$list" | sort -t"$(printf '\t')" -k1,1nr |
    { i=0; while IFS=$'\t' read -r n k ex kinds; do
        i=$((i + 1))
        cp "$rep/$(basename "$ex").txt" "$rep/site-$i.txt"
        kl=$(printf '%s' "$kinds" | tr '|' '\n' | sed '/^$/d' | sed 's/ of size [0-9]*//; s/after [0-9]* seconds/after N seconds/' |
             sort | uniq -c | sort -rn | awk '{c=$1; $1=""; printf "%s%s x%d", (NR>1?";":""), $0, c}')
        printf '  site %d: %5d  %s  [%s ]  e.g. %s (report: site-%d.txt)\n' "$i" "$n" "$k" "$kl" "$(basename "$ex")" "$i"
      done; }
bad=$(awk -F'\t' '$1 != "hdf5" && $1 != "slow"' "$list" | wc -l)
if [ "$bad" -gt 0 ]; then
    echo "triage: $bad inputs not classified as libhdf5 bugs (ours / unknown / norepro): see above and $rep"
    exit 1
fi
echo "triage: every crash, timeout or OOM input of the $total fails inside libhdf5; none in our code"
