#!/usr/bin/env python3
"""Table of bench/long-context.sh's runs (benchmark driver, not product code).

Usage: long-context-table.py DIR md|csv|json
DIR holds decode-METHOD-N.json (batch 1 at context N) and batched-METHOD-N.json (the largest
batch in the KV budget), each one `moa bench decode --format json` run. Methods missing a run
get an empty cell; ratios are against dense at the same context.
"""
import csv
import glob
import io
import json
import os
import sys

ORDER = ["dense", "uniform50", "plan50", "uniform25", "plan25"]
LABEL = {"dense": "dense", "uniform50": "uniform 50%", "plan50": "MoA plan 50%",
         "uniform25": "uniform 25%", "plan25": "MoA plan 25%"}


NEEDED = ("tok_s", "stddev", "kv_bytes_per_seq", "attention_s_per_step", "peak_rss_mib", "batch")


def load(d):
    runs = {}
    for p in glob.glob(os.path.join(d, "*.json")):
        base = os.path.basename(p)[:-5]
        parts = base.split("-")
        if len(parts) != 3 or parts[0] not in ("decode", "batched") or parts[1] not in ORDER:
            continue
        try:
            r = json.load(open(p))
            row = r["results"][0]
            for k in NEEDED:
                if not isinstance(row[k], (int, float)):
                    raise ValueError("%s is not a number" % k)
            runs[(parts[0], parts[1], int(parts[2]))] = (r, row)
        except (ValueError, KeyError, IndexError, TypeError, OSError) as e:
            print("long-context-table: skipping %s: %s" % (p, e), file=sys.stderr)
    return runs


PARTS = (("decode", "decode, batch 1"), ("batched", "batched, one KV budget"))


def ratio(a, b):
    return a / b if b else None


def rows(runs):
    out = []
    for kind, part in PARTS:
        for c in sorted({c for (k, _, c) in runs if k == kind}):
            dense = runs.get((kind, "dense", c), (None, {}))[1]
            for m in ORDER:
                if (kind, m, c) not in runs:
                    continue
                r, row = runs[(kind, m, c)]
                out.append({"part": part, "context": c, "method": LABEL[m], "batch": row["batch"],
                            "tok_s": row["tok_s"], "stddev": row["stddev"],
                            "x_dense": ratio(row["tok_s"], dense.get("tok_s")),
                            "kv_mib": row["kv_bytes_per_seq"] / 1048576.0,
                            "kv_x_dense": ratio(row["kv_bytes_per_seq"], dense.get("kv_bytes_per_seq")),
                            "attention_ms_per_token": 1e3 * row["attention_s_per_step"],
                            "prefill_s": row.get("fill_s"), "peak_rss_mib": row["peak_rss_mib"],
                            "load": r.get("load_at_end"), "end_utc": r.get("end_utc")})
    return out


def fmt(v, spec):
    return "" if v is None else spec % v


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("md", "csv", "json"):
        sys.exit("usage: long-context-table.py DIR md|csv|json")
    d, f = sys.argv[1], sys.argv[2]
    out = rows(load(d))
    if f == "json":
        json.dump(out, sys.stdout, indent=1)
        print()
        return
    if f == "csv":
        buf = io.StringIO()
        keys = ["part", "context", "method", "batch", "tok_s", "stddev", "x_dense", "kv_mib", "kv_x_dense",
                "attention_ms_per_token", "prefill_s", "peak_rss_mib", "load", "end_utc"]
        w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in out:
            w.writerow(r)
        sys.stdout.write(buf.getvalue())
        return
    print("| part | context | attention | batch | tok/s | x dense | KV MiB / seq | KV x dense "
          "| attention ms / token | prompt prefill s | peak RSS MiB | load at end |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in out:
        print("| %s | %d | %s | %d | %.1f +- %.1f | %s | %.1f | %s | %.1f | %s | %.0f | %s |" % (
            r["part"], r["context"], r["method"], r["batch"], r["tok_s"], r["stddev"],
            fmt(r["x_dense"], "%.2fx"), r["kv_mib"], fmt(r["kv_x_dense"], "%.2f"),
            r["attention_ms_per_token"], fmt(r["prefill_s"], "%.1f"), r["peak_rss_mib"], r["load"] or ""))


if __name__ == "__main__":
    main()
