#!/usr/bin/env python3
"""Table of bench/vs-llamacpp.sh: reads the raw results in its work directory (meta.txt,
llama-bench*.json, llama-batched-bench.jsonl, moa-*.json) and prints one table, llama.cpp
against moa (dense f16, 50%, 25%, 25% with a q8_0 cache) with ratios, as md, csv or json.
Usage: vs-llamacpp-table.py WORKDIR md|csv|json   (stdlib only)"""
import csv
import io
import json
import os
import sys

CFGS = ["dense", "p50", "p25", "p25q8"]
KEYS = {"dense": "moa_dense", "p50": "moa_50", "p25": "moa_25", "p25q8": "moa_25_q8_0"}   # csv/json


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_jsonl(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return rows


def moa_result(w, name):
    """First result of a moa bench JSON (None if the run failed)."""
    j = load_json(os.path.join(w, name))
    if not j or not j.get("results"):
        return None
    return j["results"][0]


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("md", "csv", "json"):
        sys.exit("usage: vs-llamacpp-table.py WORKDIR md|csv|json")
    w, fmt = sys.argv[1], sys.argv[2]
    meta = {}
    with open(os.path.join(w, "meta.txt")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    I = lambda k: int(meta[k])
    pp, tg, btg, reps, warm = I("pp"), I("tg"), I("btg"), I("repeats"), I("moa_warmup")
    depths = [int(d) for d in meta["depths"].split(",")]
    llama_tok = I("llama_kv_bytes_per_token")

    def label(kind, lab, pct):
        return "moa uniform %s" % pct if kind == "uniform" else "moa plan %s" % pct
    cols = {"dense": "moa dense",
            "p50": label(meta["p50_kind"], meta["p50_label"], "50%"),
            "p25": label(meta["p25_kind"], meta["p25_label"], "25%"),
            "p25q8": label(meta["p25_kind"], meta["p25_label"], "25%") + " q8_0"}

    lb = (load_json(os.path.join(w, "llama-bench.json")) or []) + \
        (load_json(os.path.join(w, "llama-bench-pp.json")) or [])
    fa = sorted({str(r.get("flash_attn")) for r in lb}) or ["?"]
    if meta.get("llama_commit", "unknown") == "unknown" and lb:
        meta["llama_commit"] = lb[0].get("build_commit", "unknown")

    def llama_test(n_prompt, n_gen, depth):   # the faster of flash attention off / on
        best = None
        for r in lb:
            if r.get("n_prompt") == n_prompt and r.get("n_gen") == n_gen and r.get("n_depth") == depth:
                if best is None or r["avg_ts"] > best[0]:
                    best = (r["avg_ts"], r["stddev_ts"])
        return best

    rows = []   # (test, unit, better, llama (v, sd) | None, {cfg: (v, sd) | None})

    # prompt processing: moa bench prefill has no depth, so only depth 0 is compared
    r = moa_result(w, "moa-pp.json")
    rows.append(("pp%d" % pp, "tok/s", "higher", llama_test(pp, 0, 0),
                 {"dense": (r["tok_s"], r["stddev"]) if r else None}))
    for d in depths:
        if d > 0:
            rows.append(("pp%d @ d%d" % (pp, d), "tok/s", "higher", llama_test(pp, 0, d), {}))

    # generation at each depth, and the KV bytes per token of the same runs
    kv_rows = []
    for d in depths:
        cells, kv = {}, {}
        for c in CFGS:
            r = moa_result(w, "moa-tg-%s-d%d.json" % (c, d))
            cells[c] = (r["tok_s"], r["stddev"]) if r else None
            if r:
                n_ctx = r.get("n_ctx", d + tg * (warm + reps))
                b = r.get("kv_bytes_per_seq", r["kv_mib_per_seq"] * 1048576.0)
                kv[c] = (b / n_ctx, None)
            else:
                kv[c] = None
        rows.append(("tg%d @ d%d" % (tg, d), "tok/s", "higher", llama_test(0, tg, d), cells))
        kv_rows.append(("KV bytes/token @ d%d" % d, "bytes", "lower", (float(llama_tok), None), kv))
    rows.extend(kv_rows)

    # batched decode in the KV budget: the largest batch that fits and its total tok/s
    bb = []
    for f in ("llama-batched-bench.jsonl", "llama-batched-bench-fa-off.jsonl", "llama-batched-bench-fa-on.jsonl"):
        bb += load_jsonl(os.path.join(w, f)) or []
    big = max(bb, key=lambda x: (x["pl"], x["speed_tg"])) if bb else None   # largest batch, faster setting
    seqs, tps = {}, {}
    for c in CFGS:
        r = moa_result(w, "moa-batched-%s.json" % c)
        seqs[c] = (float(r["batch"]), None) if r else None
        tps[c] = (r["tok_s"], r["stddev"]) if r else None
    bname = "batched tg%d @ %d, %.0f MiB KV" % (btg, I("batch_context"), I("kv_budget") / 1048576.0)
    rows.append((bname + ": sequences", "seqs", "higher", (float(big["pl"]), None) if big else None, seqs))
    rows.append((bname + ": total tok/s", "tok/s", "higher", (big["speed_tg"], None) if big else None, tps))

    fmtv = lambda v, unit: "%.0f" % v if unit in ("bytes", "seqs") else "%.1f" % v if v >= 10 else "%.2f" % v

    def cell(x, unit):
        if x is None:
            return "-"
        v, sd = x
        return fmtv(v, unit) + ("" if sd is None or reps < 2 else " ± " + fmtv(sd, unit))

    def ratio(x, ref):
        if x is None or ref is None or not ref[0]:
            return None
        return x[0] / ref[0]

    uniform = [p for p in ("p50", "p25") if meta[p + "_kind"] == "uniform"]
    notes = [
        "moa columns use an f16 KV cache unless marked q8_0. tok/s: mean ± sample stddev over %d repeat(s); llama-bench does its own warm-up, moa bench %d "
        "untimed warm-up run(s). Ratios are moa / llama.cpp: higher is better for tok/s and sequences, "
        "lower for KV bytes." % (reps, warm),
        "pp%d: prompt of %d tokens into an empty cache; llama-bench also reports it at each depth "
        "(pp%d @ dN rows, llama.cpp only: moa bench prefills from an empty cache)." % (pp, pp, pp),
        "tg%d @ dN: %d tokens generated one at a time after N tokens in the cache (batch 1)." % (tg, tg),
        "KV bytes/token, llama.cpp: dense f16 from the hyperparameters, n_layer*2*n_head_kv*head_dim*2 "
        "= %s*2*%s*%s*2 = %d bytes. moa: the real bytes of the cache of one sequence (kv_bytes_per_seq "
        "of moa bench) / the positions it was created for (depth + %d*(%d warm-up + %d repeats))."
        % (meta["n_layer"], meta["n_head_kv"], meta["head_dim"], llama_tok, tg, warm, reps),
        "batched: KV budget %s bytes. llama-batched-bench -c %s (budget / %d bytes per token, rounded "
        "down to 256) -no-kvu -pps -npp %s -ntg %d -npl %s (the prompt prefilled once and copied into one stream per sequence: each sequence its own KV bytes); the row "
        "shows its largest npl that ran and its S_TG (one timed run). moa bench decode --context %s "
        "--tokens %d --kv-budget: the largest batch whose caches (%d + %d*%d positions each) fit the budget; "
        "total tok/s over all sequences." % (meta["kv_budget"], meta["llama_c"], llama_tok, meta["batch_context"],
                                             btg, meta["npl"], meta["batch_context"], btg, I("batch_context"),
                                             btg, warm + reps),
        "llama.cpp: every row is the faster of flash attention off and on (runs with flash_attn %s), KV f16 (its default)." % ",".join(fa),
    ]
    if uniform:
        notes.append("%s: UNIFORM WINDOWS (StreamingLLM: 64 sinks + one window per KV head, `moa bench "
                     "--uniform D`), NOT MoA plans: no plans/%s-50.json / -25.json found and no --plan50 / "
                     "--plan25 given." % (" and ".join(cols[p] for p in uniform), meta["model_name"]))
    for p in ("p50", "p25"):
        if meta[p + "_kind"] == "plan":
            notes.append("%s: MoA plan %s." % (cols[p], meta[p + "_label"]))
    failed = sorted(f for f in os.listdir(w) if f.endswith(".failed"))
    if failed:
        notes.append("failed runs (cells '-'; see their .err files in the work dir): %s"
                     % ", ".join(f[:-len(".failed")] for f in failed))
    if meta.get("quick") == "1":
        notes.append("--quick: script test only (1 repeat, short tests); not a measurement. Short contexts "
                     "(depth 0 here plans %d positions) cannot hold a window of 64 sinks + 64 tokens at "
                     "50%%/25%%: those cells fail by design." % (tg * (warm + reps)))

    header = [("date (UTC)", "%s to %s" % (meta["date_utc"], meta["end_utc"])),
              ("model", "%s (%s; n_ctx %s, %s layers, %s KV heads, head dim %s)" % (
                  meta["model_name"], meta["model"], meta["n_ctx"], meta["n_layer"], meta["n_head_kv"], meta["head_dim"])),
              ("moa commit", meta["moa_commit"]),
              ("llama.cpp commit", "%s (%s)" % (meta["llama_commit"], meta["llama_version"])),
              ("CPU", meta["cpu"]), ("cores", meta["cores"]), ("threads", meta["threads"]),
              ("load average", "%s at start, %s at end" % (meta["load_start"], meta["load_end"])),
              ("OMP_WAIT_POLICY", meta["omp_wait_policy"]), ("llama.cpp --poll", meta["llama_poll"]),
              ("raw results", meta["workdir"])]

    colnames = ["llama.cpp"] + [cols[c] for c in CFGS]
    if fmt == "json":
        out = {"meta": dict(header), "meta_raw": meta,
               "columns": dict([("llamacpp", "llama.cpp")] + [(KEYS[c], cols[c]) for c in CFGS]),
               "rows": [], "notes": notes}
        for test, unit, better, ref, cells in rows:
            row = {"test": test, "unit": unit, "better": better,
                   "llamacpp": None if ref is None else {"value": ref[0], "stddev": ref[1]}}
            for c in CFGS:
                x = cells.get(c)
                row[KEYS[c]] = None if x is None else {"value": x[0], "stddev": x[1], "ratio": ratio(x, ref)}
            out["rows"].append(row)
        json.dump(out, sys.stdout, indent=2)
        print()
    elif fmt == "csv":
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        for k, v in header:
            buf.write("# %s: %s\n" % (k, v))
        buf.write("# columns: %s\n" % ", ".join("%s = %s" % (KEYS[c], cols[c]) for c in CFGS))
        hdr = ["test", "unit", "llamacpp", "llamacpp_stddev"]
        for c in CFGS:
            hdr += [KEYS[c], KEYS[c] + "_stddev", KEYS[c] + "_ratio"]
        wr.writerow(hdr)
        for test, unit, better, ref, cells in rows:
            line = [test, unit, "" if ref is None else ref[0], "" if ref is None or ref[1] is None else ref[1]]
            for c in CFGS:
                x = cells.get(c)
                rr = ratio(x, ref)
                line += ["" if x is None else x[0], "" if x is None or x[1] is None else x[1],
                         "" if rr is None else "%.4f" % rr]
            wr.writerow(line)
        sys.stdout.write(buf.getvalue())
    else:
        print("## moa vs llama.cpp: %s, %s threads\n" % (meta["model_name"], meta["threads"]))
        for k, v in header:
            print("- %s: %s" % (k, v))
        print()
        hdr = ["test", "llama.cpp"]
        for c in CFGS:
            hdr += [cols[c], "x"]
        print("| " + " | ".join(hdr) + " |")
        print("|---|" + "---:|" * (len(hdr) - 1))
        for test, unit, better, ref, cells in rows:
            line = ["%s (%s)" % (test, unit), cell(ref, unit)]
            for c in CFGS:
                x = cells.get(c)
                rr = ratio(x, ref)
                line += [cell(x, unit), "" if rr is None else "%.2fx" % rr]
            print("| " + " | ".join(line) + " |")
        print()
        for n in notes:
            print("- " + n)


if __name__ == "__main__":
    main()
