"""Time every chapter the way CI runs it: nbdev's notebook runner, one notebook after another, cells flagged `slow` skipped.

    python bench/course_time.py                  # all notebooks in nbs/, writes bench/course_time.json
    python bench/course_time.py --flags slow     # include the long replications (cells flagged `#| slow`)

Prints a per-notebook table, the total, and whether the course meets its budget (15 minutes on the 2-core CI machine).
Run it on an otherwise idle machine: the numbers are wall-clock seconds.
"""
from __future__ import annotations
import argparse, json, os, platform, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUDGET_S = 15 * 60


def notebooks(nbs=ROOT/'nbs') -> list:
    "The course's notebooks in chapter order (nbdev skips files starting with `_` or `.`)."
    return sorted(p for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))


def time_notebooks(files, flags=()) -> list:
    "Run each notebook with nbdev's `test_nb`; a list of dicts (notebook, seconds, passed)."
    from nbdev.config import get_config
    from nbdev.test import test_nb
    cfg = get_config()
    skip = [f for f in cfg.tst_flags.split() if f not in flags]
    rows = []
    for f in files:     # one process, one notebook after another, like `nbdev_test --n_workers 1`
        ok, secs = test_nb(f, skip_flags=skip, force_flags=list(flags), basepath=cfg.config_path, do_print=False)
        rows.append(dict(notebook=f.name, seconds=round(secs, 1), passed=bool(ok)))
        print(f"  {f.name:28s} {secs:7.1f} s  {'ok' if ok else 'FAILED'}", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--flags', nargs='*', default=[], help='test flags to run as well (e.g. slow)')
    p.add_argument('--out', default=str(HERE/'course_time.json'))
    a = p.parse_args(argv)
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.machine())
    print(f"Timing {len(notebooks())} notebooks on {cpu}, {os.cpu_count()} cores" + (f", flags {a.flags}" if a.flags else ''))
    rows = time_notebooks(notebooks(), tuple(a.flags))
    total = sum(r['seconds'] for r in rows)
    res = dict(date=time.strftime('%Y-%m-%d'), cpu=cpu, cores=os.cpu_count(), flags=a.flags, total_seconds=round(total, 1),
               budget_seconds=BUDGET_S, within_budget=total <= BUDGET_S, all_passed=all(r['passed'] for r in rows), notebooks=rows)
    print(f"\nTotal {total:.0f} s ({total/60:.1f} min); budget {BUDGET_S/60:.0f} min: {'MET' if res['within_budget'] else 'NOT MET'}")
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"Wrote {a.out}")
    return 0 if res['all_passed'] else 1


if __name__ == '__main__': sys.exit(main())
