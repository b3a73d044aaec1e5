"""Memory under growth: peak RSS of `train.py` and of `analyze.py` at N and 10*N, each in a fresh subprocess.

    python -m bench.bench_memory --quick    # train.py on 400 / 4,000 synthetic questions; analyze.py on 4 / 40, m = 4
    python -m bench.bench_memory --full     # 2,000 / 20,000 questions; 20 / 200 examples, m = 8

Training: `python train.py` on the synthetic set (the default config) with N and 10*N training
questions, a few steps each, the same dev split (10 * the analysis N, so analyze.py can use it).
Analysis: `python analyze.py --run RUN_DIR --layers all --num-examples N --out DIR --steps M` (every
analysis, W&B offline) on the run trained at N, with N and 10*N examples (skipped with a message while
analyze.py does not exist). What could grow with N is per-example state, not the integration: a few
steps (m = 4 in --quick) run the same code at a fraction of the time (with m = 8 the two analyze.py runs
took 17 of the quick suite's 46 minutes on 2 loaded cores; with m = 4 this whole bench took 6 minutes).
Even without per-example state the peak is that of the longest example's IG (attention maps grow with
its length squared), so 10*N, with longer examples among them, may sit a little above N.
Each command runs under a small wrapper process that reports `getrusage(RUSAGE_CHILDREN).ru_maxrss`,
the peak resident set of the command (and of any process it waited for). Target: the 10*N peak is
within 10 % of the N peak (ratio N / 10N >= 1 / 1.1).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.result import result, row
from lit_rcqa.paths import REPO_ROOT

TITLE = "Peak RSS under growth (N vs 10*N)"
_MEASURE = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
            "print('MAXRSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


# Step 1: run one command in a fresh process and read its peak RSS.
def peak_rss_mib(command: list[str], log: Path) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of `command`; its output goes to `log`; a failure raises with the log's tail."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
           "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-c", _MEASURE, *command], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=out, text=True)
    seconds = time.perf_counter() - start
    lines = proc.stdout.splitlines()
    with open(log, "a") as out:
        out.write("\n".join(line for line in lines if not line.startswith("MAXRSS_KIB")))
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(command[:3])} ... failed (exit {proc.returncode}): " + " | ".join(tail))
    kib = int(next(line.split()[1] for line in lines if line.startswith("MAXRSS_KIB")))
    return kib / 1024, seconds


# Step 2: the two commands.
def train_command(root: Path, name: str, train_size: int, dev_size: int, steps: int) -> list[str]:
    return [sys.executable, "train.py", "--run.root", str(root), "--run.name", name, "--run.logger", "none",
            "--trainer.max_steps", str(steps), "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
            "--data.synthetic_train_size", str(train_size), "--data.synthetic_dev_size", str(dev_size)]


def analyze_command(run_dir: Path, n: int, out: Path, steps: int) -> list[str]:
    return [sys.executable, "analyze.py", "--run", str(run_dir), "--layers", "all", "--num-examples", str(n),
            "--out", str(out), "--steps", str(steps)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="train 400 / 4,000 questions; analyze 4 / 40 examples with m = 4")
    size.add_argument("--full", action="store_true",
                      help="train 2,000 / 20,000 questions; analyze 20 / 200 examples with m = 8")
    parser.add_argument("--train-n", type=int, default=None)
    parser.add_argument("--analyze-n", type=int, default=None)
    parser.add_argument("--analyze-steps", type=int, default=None, help="IG steps m for analyze.py (4 quick, 8 full)")
    parser.add_argument("--train-steps", type=int, default=8,
                        help="optimizer steps per training run (the peak includes the widest batch's activations)")
    parser.add_argument("--skip-train", action="store_true", help="only analyze.py (needs --run)")
    parser.add_argument("--run", default=None, help="an existing complete run for analyze.py (default: train one)")
    args = parser.parse_args(argv)
    train_n = args.train_n or (2000 if args.full else 400)
    analyze_n = args.analyze_n or (20 if args.full else 4)
    analyze_steps = args.analyze_steps or (8 if args.full else 4)
    work = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    rows, notes = [], []
    details = {"train_n": train_n, "analyze_n": analyze_n, "analyze_steps": analyze_steps, "work_dir": str(work)}

    # Step 3: training at N and 10*N (the same dev split, the same steps).
    run_dir = Path(args.run) if args.run else None
    if not args.skip_train:
        for n in (train_n, 10 * train_n):
            name = f"train_{n}"
            mib, seconds = peak_rss_mib(train_command(work / "runs", name, n, 10 * analyze_n, args.train_steps),
                                        work / f"{name}.log")
            details[f"train_peak_rss_mib_{n}"] = mib
            details[f"train_seconds_{n}"] = seconds
            print(f"  train.py, {n:6d} training questions: peak RSS {mib:7.0f} MiB ({seconds:.0f} s)", flush=True)
        run_dir = run_dir or work / "runs" / f"train_{train_n}"
        small, large = details[f"train_peak_rss_mib_{train_n}"], details[f"train_peak_rss_mib_{10 * train_n}"]
        rows.append(row(f"train.py peak RSS, {10 * train_n} vs {train_n} questions (ours = 10N, ref = N)", "MiB",
                        large, small, higher_is_better=False, target=1 / 1.1))

    # Step 4: analyze.py at N and 10*N examples (when it exists).
    if not (REPO_ROOT / "analyze.py").is_file():
        notes.append("analyze.py does not exist yet: its memory check is skipped")
    elif run_dir is None:
        notes.append("no run for analyze.py (--skip-train needs --run DIR)")
    else:
        try:
            for n in (analyze_n, 10 * analyze_n):
                mib, seconds = peak_rss_mib(analyze_command(run_dir, n, work / f"analysis_{n}", analyze_steps),
                                            work / f"analyze_{n}.log")
                details[f"analyze_peak_rss_mib_{n}"] = mib
                details[f"analyze_seconds_{n}"] = seconds
                print(f"  analyze.py, {n:5d} examples: peak RSS {mib:7.0f} MiB ({seconds:.0f} s)", flush=True)
        except RuntimeError as err:  # keep the training numbers; say why the analysis has none
            notes.append(f"analyze.py failed, its memory check is skipped: {err}")
        else:
            small = details[f"analyze_peak_rss_mib_{analyze_n}"]
            large = details[f"analyze_peak_rss_mib_{10 * analyze_n}"]
            rows.append(row(f"analyze.py peak RSS, {10 * analyze_n} vs {analyze_n} examples, m = {analyze_steps} "
                            "(ours = 10N, ref = N)", "MiB", large, small, higher_is_better=False, target=1 / 1.1))

    details["notes"] = notes
    for note in notes:
        print(f"  note: {note}")
    for r in rows:
        growth = 100 * (r["ours"] / r["reference"] - 1)
        print(f"  {r['comparison']}: {r['reference']:.0f} -> {r['ours']:.0f} MiB ({growth:+.1f} %, target <= +10 %, "
              f"met: {r['met']})")
    return result("memory", TITLE, rows, details, skipped=None if rows else "; ".join(notes) or "nothing measured")


if __name__ == "__main__":
    main()
