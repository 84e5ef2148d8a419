"""Run every benchmark, print the table, write benchmarks/results.json.

    python -m benchmarks.run              # the full set (`make bench`), ~10-15 min on 2 cores
    python -m benchmarks.run --quick      # a short smoke run
    python -m benchmarks.run --only lm    # one group: cnn | lm | precision | sharding | data | race

jaxdl and its PyTorch peer run in separate processes, interleaved (A B A B) after
warm-up; a figure is the median over repetitions and a ratio the median of the
per-repetition ratios (jaxdl / peer), so slow drift of the machine cancels out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import (
    bench_cnn,
    bench_data,
    bench_lm,
    bench_precision,
    bench_sharding,
    hf_export_check,
    lm_race,
    optim_vs_torch,
)

RESULTS = Path(__file__).resolve().parent / "results.json"


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "python": platform.python_version(),
            "loadavg_start": os.getloadavg()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "Flags"):
                value = value.strip()
                if key.strip() == "Flags":
                    value = " ".join(f for f in value.split()
                                     if f.startswith(("avx512", "amx", "avx2", "fma")))
                info[key.strip().lower().replace(" ", "_")] = value
    except OSError:
        pass
    for mod in ("jax", "jaxlib", "flax", "torch"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            info[mod] = None
    return info


def _fmt(x, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def table(cnn: dict | None, lm: dict | None, precision: dict | None = None
          ) -> list[tuple[str, str, str, str]]:
    """Rows of (figure, jaxdl, peer, jaxdl/peer)."""
    rows = []
    if precision:
        j, t = precision["jaxdl"], precision["torch"]
        rows.append(("bf16 matmul peak, 2048^3 (GFLOP/s)", _fmt(j["matmul_gflops"]["bfloat16"]),
                     _fmt(t["matmul_gflops"]["bfloat16"]),
                     _fmt(j["matmul_gflops"]["bfloat16"] / t["matmul_gflops"]["bfloat16"], 2)))
        for what in ("train", "infer"):
            jj, tt = j["cnn"]["bfloat16"][f"{what}_img_per_s"], t["cnn"]["bfloat16"][
                f"{what}_img_per_s"]
            rows.append((f"CNN {what}, batch 64, bf16 (img/s)", _fmt(jj), _fmt(tt),
                         _fmt(jj / tt, 2)))
        for key, label in (("matmul", "matmul"), ("train", "CNN train b64"),
                           ("infer", "CNN inference b64")):
            rows.append((f"{label}: bf16 / f32 speed, each side its own", _fmt(
                j["bf16_over_f32"][key], 2), _fmt(t["bf16_over_f32"][key], 2), "-"))
    if cnn:
        for key, label in (("train_b64", "CNN train step, batch 64 (img/s)"),
                           ("train_b64_dp", "CNN train step, batch 64, jaxdl data-parallel "
                            "over the cores (img/s)"),
                           ("train_b256", "CNN train step, batch 256 (img/s)"),
                           ("infer_b256", "CNN inference, batch 256 (img/s)"),
                           ("epoch", "CNN epoch of mnist_5k with augmentation (img/s)")):
            r = cnn[key]
            rows.append((label, _fmt(r["jaxdl"]), _fmt(r["torch"]), _fmt(r["ratio"], 2)))
        e = cnn["epoch"]
        rows.append(("CNN epoch / bare step throughput", _fmt(e["jaxdl_vs_step"], 2),
                     _fmt(e["torch_vs_step"], 2), "-"))
        s = cnn["train_b64"]["setup"]
        rows.append(("CNN train step b64: compile (jaxdl) / first step (s)",
                     _fmt(s["jaxdl"]["compile_s"]), _fmt(s["torch"]["first_step_s"]), "-"))
        rows.append(("fp32 matmul peak, 2048^3 (GFLOP/s)",
                     _fmt(cnn["matmul_peak_gflops"]["jaxdl"]),
                     _fmt(cnn["matmul_peak_gflops"]["torch"]), "-"))
        f = cnn["peak_fraction_train_b64"]
        rows.append((f"CNN train b64: fraction of own matmul peak "
                     f"({cnn['mynet_mflop_train']:.0f} MFLOP/img)",
                     f"{100 * f['jaxdl']:.0f}%", f"{100 * f['torch']:.0f}%", "-"))
        m = cnn["train_b64"].get("peak_rss_mb")
        if m:
            rows.append(("peak RSS after the batch-64 train step (MB)", _fmt(m["jaxdl"], 0),
                         _fmt(m["torch"], 0), "-"))
        rows.append(("peak RSS, CNN process, all cases (MB)", _fmt(cnn["peak_rss_mb"]["jaxdl"], 0),
                     _fmt(cnn["peak_rss_mb"]["torch"], 0), "-"))
    if lm:
        for key, label in (("train", "decoder LM train (tokens/s)"),
                           ("train_dp", "decoder LM train, jaxdl data-parallel over the cores "
                            "(tokens/s)"),
                           ("generate", "decoder LM generation, KV cache (tokens/s)")):
            r = lm[key]
            rows.append((label, _fmt(r["jaxdl"]), _fmt(r["torch"]), _fmt(r["ratio"], 2)))
        rows.append(("decoder LM generation, nanoGPT's no-cache (tokens/s)", "-",
                     _fmt(lm["generate_nocache"]["torch"]), "-"))
        s = lm["train"]["setup"]
        rows.append(("decoder LM train step: compile (jaxdl) / first step (s)",
                     _fmt(s["jaxdl"]["compile_s"]), _fmt(s["torch"]["first_step_s"]), "-"))
        rows.append(("peak RSS, LM process (MB)", _fmt(lm["peak_rss_mb"]["jaxdl"], 0),
                     _fmt(lm["peak_rss_mb"]["torch"], 0), "-"))
    return rows


def render(rows) -> str:
    head = ("figure", "jaxdl", "PyTorch peer", "jaxdl/peer")
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def headline(cnn: dict | None, lm: dict | None) -> dict:
    out = {}
    if cnn:
        out.update(cnn_train_ratio_b64=cnn["train_b64"]["ratio"],
                   cnn_train_ratio_b64_dp=cnn["train_b64_dp"]["ratio"],
                   cnn_train_ratio_b256=cnn["train_b256"]["ratio"],
                   cnn_infer_ratio_b256=cnn["infer_b256"]["ratio"],
                   epoch_vs_step=cnn["epoch"]["jaxdl_vs_step"],
                   cnn_epoch_ratio=cnn["epoch"]["ratio"])
    if lm:
        out.update(lm_train_ratio=lm["train"]["ratio"],
                   lm_train_ratio_dp=lm["train_dp"]["ratio"],
                   lm_generate_ratio=lm["generate"]["ratio"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="jaxdl vs PyTorch benchmarks (see benchmarks/)")
    p.add_argument("--quick", action="store_true", help="a short smoke run (~2-3 min)")
    p.add_argument("--only", choices=("cnn", "lm", "precision", "sharding", "data", "race",
                                      "optim", "export"),
                   help="run one group only")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"results file ({RESULTS.name})")
    p.add_argument("--omp-passive", action="store_true",
                   help="OMP_WAIT_POLICY=PASSIVE for the peer: on a loaded machine PyTorch's "
                        "spinning OpenMP threads can slow it several-fold")
    args = p.parse_args(argv)
    if args.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # inherited by both workers
    t0 = time.perf_counter()
    info = machine()
    log_path = Path(tempfile.gettempdir()) / "jaxdl-bench-workers.log"
    print(f"{info.get('model_name', platform.processor())}, {info['nproc']} CPUs, load "
          f"{info['loadavg_start'][0]:.1f}; jax {info['jax']}, torch {info['torch']}; "
          f"worker logs: {log_path}", flush=True)
    say = lambda s: print(s, flush=True)  # noqa: E731
    cnn = lm = precision = sharded = data = race = optim = export = None
    with open(log_path, "w") as log:
        if args.only in (None, "cnn"):
            cnn = bench_cnn.run(args.quick, say=say, log=log)
        if args.only in (None, "lm"):
            lm = bench_lm.run(args.quick, say=say, log=log)
        if args.only in (None, "precision"):
            precision = bench_precision.run(args.quick, say=say, log=log)
        if args.only in (None, "sharding"):
            sharded = bench_sharding.run(args.quick, say=say, log=log)
        if args.only in (None, "data"):
            data = bench_data.run(args.quick, say=say, log=log)
        if args.only in (None, "optim"):  # torch.optim itself, not a transcription
            optim = optim_vs_torch.main()
        if args.only in (None, "export"):  # the GPT-2 export, loaded by transformers
            export = hf_export_check.main()
        if args.only in (None, "race"):  # seed 0; `python -m benchmarks.lm_race --seeds 0,1,2`
            race = lm_race.race([0], quick=args.quick, say=say,
                                png=str(RESULTS.parent / "lm_race.png"))
    rows = table(cnn, lm, precision)
    info["loadavg_end"] = os.getloadavg()
    results = {**headline(cnn, lm), "date": datetime.date.today().isoformat(),
               "quick": args.quick, "omp_passive": args.omp_passive,
               "seconds": time.perf_counter() - t0, "machine": info,
               "cnn": cnn, "lm": lm, "precision": precision, "sharding": sharded, "data": data,
               "race": race, "optim_vs_torch": optim, "hf_export": export,
               "table": rows}
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if rows:  # `--only` a group without peer-timed figures prints its own lines only
        print()
        print(render(rows))
    if sharded:
        print()
        print(bench_sharding.table(sharded))
    if data:
        print()
        print(bench_data.table(data))
    if race:
        print()
        print(race["table"])
    if heads := headline(cnn, lm):
        print(f"\n{', '.join(f'{k} {v:.2f}' for k, v in heads.items() if v)}")
    print(f"wrote {args.out} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
