"""Execute notebooks in place, as CI runs them: cells flagged with a `tst_flags` directive (e.g. `#| slow`) are skipped
unless that flag is passed, so the committed outputs match what `nbdev_test` runs by default.

    python tools/execute_nb.py nbs/06_cnn.ipynb [more.ipynb ...] [--flags slow] [--timeout 1800]
"""
import argparse, re, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient

FLAGS = ('slow',)   # keep in sync with `tst_flags` in settings.ini


def skipped(src, flags):
    "Is this cell flagged with a test flag that was not asked for?"
    for line in src.splitlines():
        m = re.match(r'\s*#\|\s*([\w-]+)\s*$', line)
        if m and m.group(1) in FLAGS and m.group(1) not in flags: return True
        if not line.lstrip().startswith('#|'): break
    return False


def execute(path, flags=(), timeout=1800):
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}})
    t0 = time.time()
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != 'code': continue
            if skipped(cell.source, flags):
                cell.outputs, cell.execution_count = [], None
                continue
            client.execute_cell(cell, i)
    nbformat.write(nb, path)
    print(f"{path}: executed in {time.time() - t0:.0f}s")


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('notebooks', nargs='+'); p.add_argument('--flags', nargs='*', default=[]); p.add_argument('--timeout', type=int, default=1800)
    a = p.parse_args()
    for nb in a.notebooks: execute(nb, a.flags, a.timeout)
