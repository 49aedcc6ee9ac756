"""CPU benchmarks for the course's MNIST models, measured side by side in one run.

    python bench/run.py            # the default run (~12 minutes on a 2-core laptop CPU; book recipe time extrapolated)
    python bench/run.py --full     # also trains the seed CNN with the full book recipe (2 epochs, ~8 more minutes); `make bench`
    python bench/run.py --smoke    # a 1-minute plumbing check on a small subset (numbers meaningless)
    python bench/run.py --replot   # redraw bench/time_vs_accuracy.png from bench/results.json

Prints a table and writes bench/results.json and bench/time_vs_accuracy.png. Every ratio is measured in this run,
on this machine, on the same data. Needs the full MNIST (IMGCLS_DATA pointing at a folder with mnist/*.gz).
"""
from __future__ import annotations
import argparse, copy, json, os, platform, resource, sys, time, warnings
from pathlib import Path
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

warnings.filterwarnings('ignore')
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from imgcls.core import set_seed, Timer
from imgcls.data import load_arrays, to_tensors, tensor_dls, get_dataset
from imgcls.cnn import seed_cnn, lean_cnn, count_params, flops_per_image, random_shift

MEAN, STD = 0.1307, 0.3081
# The lean CNN's recipe in chapter 06 (`fit_cnn` with RandomShift and label smoothing), as plain-loop arguments
LEAN_RECIPE = dict(bs=512, lr=2e-2, shift=2, label_smoothing=0.1)
LEAN_NAME = 'in-memory, bs 512, lr 2e-2, one-cycle, label smoothing 0.1, ±2px shifts'


def peak_rss_mb():
    "Peak resident memory of this process so far, in MB."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def attainable_gflops(n=2048, reps=10, dtype=torch.float32):
    "FLOP/s that a large matmul reaches on this machine: the practical roof for dense work."
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2): a @ b
    with Timer() as t:
        for _ in range(reps): a @ b
    return 2 * n**3 * reps / t.seconds / 1e9


def bf16_supported():
    try:
        with torch.autocast('cpu', dtype=torch.bfloat16): torch.randn(8, 8) @ torch.randn(8, 8)
        return 'avx512_bf16' in open('/proc/cpuinfo').read() or 'amx_bf16' in open('/proc/cpuinfo').read()
    except Exception: return False


def normalize(x): return (x - MEAN) / STD


@torch.inference_mode()
def test_accuracy(model, x, y, bs=1000, channels_last=False, bf16=False):
    "Accuracy of `model` on raw [0, 1] images `x` (normalised here, batch by batch)."
    model.eval(); correct = 0
    for i in range(0, len(x), bs):
        xb = normalize(x[i:i+bs])
        if channels_last: xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            correct += (model(xb).argmax(1) == y[i:i+bs]).sum().item()
    return correct / len(x)


def train_run(name, model, xt, yt, xv, yv, epochs, bs, lr, schedule='onecycle', opt='adam', channels_last=False,
              bf16=False, compile=False, max_batches=None, eval_every_epoch=True, shift=0, label_smoothing=0.0, log=print):
    """Train `model` on in-memory raw [0, 1] images (shifted, then normalised, per batch); return a dict with training
    seconds, images/s and the accuracy curve. Only training steps are timed (a `torch.compile` warm-up included);
    evaluation after each epoch is excluded from the clock."""
    set_seed(0)
    if channels_last: model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile else model
    n_batches = len(xt) // bs if max_batches is None else min(max_batches, len(xt) // bs)
    total = n_batches * epochs
    optim = torch.optim.Adam(model.parameters(), lr=lr) if opt == 'adam' else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=lr, total_steps=total) if schedule == 'onecycle' else None
    curve, train_s, seen = [], 0.0, 0
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        t0 = time.perf_counter()
        for i in range(n_batches):
            idx = perm[i*bs:(i+1)*bs]
            xb, yb = xt[idx], yt[idx]
            if shift: xb = random_shift(xb, shift)     # pads with 0 = black background, before normalising
            xb = normalize(xb)
            if channels_last: xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(step_model(xb), yb, label_smoothing=label_smoothing)
            optim.zero_grad(set_to_none=True); loss.backward(); optim.step()
            if sched: sched.step()
        train_s += time.perf_counter() - t0; seen += n_batches * bs
        if eval_every_epoch or ep == epochs - 1:
            acc = test_accuracy(model, xv, yv, channels_last=channels_last, bf16=bf16)
            curve.append((round(train_s, 2), acc))
            log(f"  {name}: epoch {ep+1}/{epochs}  train {train_s:6.1f}s  test acc {acc:.4f}")
    return dict(name=name, train_seconds=train_s, images_per_s=seen / train_s, curve=curve, final_acc=curve[-1][1], model=model,
                bf16=bf16)


def time_to(curve, target):
    "Training seconds at the first evaluation reaching `target` accuracy, or None."
    return next((t for t, a in curve if a is not None and a >= target), None)


def fastai_default_epoch(model_fn, epochs, n_train=None, log=print):
    "The same model the way fastbook writes it: PNG folders, a `DataBlock` of grey-scale images, `fit_one_cycle`."
    from fastai.vision.all import (DataBlock, ImageBlock, PILImageBW, CategoryBlock, get_image_files, GrandparentSplitter,
                                   parent_label, Normalize, Learner, accuracy, CrossEntropyLossFlat)
    ds = get_dataset('mnist', verbose=False)
    items = lambda p: get_image_files(p)[slice(None) if n_train is None else slice(0, None, 60000 // n_train)]
    block = DataBlock(blocks=(ImageBlock(PILImageBW), CategoryBlock), get_items=items, get_y=parent_label,
                      splitter=GrandparentSplitter(train_name='training', valid_name='testing'),
                      batch_tfms=Normalize.from_stats(MEAN, STD))
    dls = block.dataloaders(ds.path, bs=64, num_workers=0)
    learn = Learner(dls, model_fn(), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        with Timer() as t: learn.fit_one_cycle(epochs, 1e-2)
        acc = float(learn.validate()[1])
    log(f"  fastai default pipeline (PNG folders, DataBlock, bs 64): {epochs} epoch(s) in {t.seconds:.1f}s, test acc {acc:.4f}")
    return dict(name='lean CNN, fastai default pipeline (PNG files)', train_seconds=t.seconds,
                images_per_s=len(dls.train_ds) * epochs / t.seconds, curve=[(round(t.seconds, 2), acc)], final_acc=acc)


def fastai_course_pipeline(model_fn, data, epochs, bs, lr, n_train=None, log=print):
    "The course's pipeline: fastai `Learner` over in-memory tensors (`imgcls.data.tensor_dls`), shifts, label smoothing."
    from fastai.vision.all import Learner, accuracy
    from imgcls.cnn import RandomShift
    set_seed(0)
    dls = tensor_dls(data, bs=bs, n_train=n_train)
    learn = Learner(dls, model_fn(), loss_func=nn.CrossEntropyLoss(label_smoothing=LEAN_RECIPE['label_smoothing']),
                    metrics=accuracy, cbs=RandomShift(LEAN_RECIPE['shift']))
    with learn.no_bar(), learn.no_logging():
        with Timer() as t: learn.fit_one_cycle(epochs, lr)
        acc = float(learn.validate()[1])
    log(f"  course pipeline (fastai Learner + tensor_dls): {epochs} epoch(s) in {t.seconds:.1f}s, test acc {acc:.4f}")
    return dict(name='lean CNN, course pipeline (fastai + in-memory tensors)', train_seconds=t.seconds,
                images_per_s=len(dls.train_ds) * epochs / t.seconds, curve=[(round(t.seconds, 2), acc)], final_acc=acc)


@torch.inference_mode()
def inference_throughput(model, x, bs=256, reps=3, channels_last=False, bf16=False, trace=False):
    model.eval()
    m = model.to(memory_format=torch.channels_last) if channels_last else model
    xb = x[:bs].contiguous(memory_format=torch.channels_last) if channels_last else x[:bs]
    if trace: m = torch.jit.trace(m, xb)
    def run():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16): return m(xb)
    run(); run()
    with Timer() as t:
        for _ in range(reps): out = run()
    return bs * reps / t.seconds, out.float()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--full', action='store_true', help='also run the seed CNN book recipe to the end (2 epochs)')
    p.add_argument('--smoke', action='store_true', help='tiny plumbing check on 3,000 images; numbers are meaningless')
    p.add_argument('--out', default=str(HERE/'results.json'))
    p.add_argument('--replot', action='store_true', help='only redraw the figure from the results JSON (--out), training nothing')
    a = p.parse_args(argv)
    if a.replot:
        plot(json.loads(Path(a.out).read_text()), Path(a.out).with_name('time_vs_accuracy.png')); return
    torch.set_num_threads(os.cpu_count() or 1)
    data = load_arrays('mnist', verbose=True)
    if data.subset and not a.smoke:
        sys.exit("bench/run.py needs the full MNIST: set IMGCLS_DATA to a folder holding mnist/*.gz (see README).")
    xt, yt = to_tensors(data.train); xv, yv = to_tensors(data.test)     # raw [0, 1]; normalised per batch
    if a.smoke: xt, yt, xv, yv = xt[:3000], yt[:3000], xv[:1000], yv[:1000]
    info = dict(date=time.strftime('%Y-%m-%d'), cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                torch=torch.__version__, threads=torch.get_num_threads(), bf16=bf16_supported(), smoke=a.smoke,
                cpu_model=next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?'))
    print(f"Machine: {info['cpu_model']}, {info['cores']} cores, torch {info['torch']}, bf16 autocast: {info['bf16']}")
    peak32 = attainable_gflops(); peak16 = attainable_gflops(dtype=torch.bfloat16) if info['bf16'] else None
    print(f"Attainable: {peak32:.0f} GFLOP/s fp32 matmul" + (f", {peak16:.0f} GFLOP/s bf16" if peak16 else ''))
    ep_lean = 1 if a.smoke else 8
    # flops_per_image counts multiply-adds (MACs) of one forward pass; a training step costs ≈ 3 forward passes, 2 FLOPs per MAC
    lean_flops = 6 * flops_per_image(lean_cnn(), (1, 28, 28))
    seed_flops = 6 * flops_per_image(seed_cnn(), (1, 28, 28))
    runs = {}

    print("\n(a) lean CNN: our recipe vs the same model in fastai's default pipeline")
    runs['lean_first'] = train_run('lean CNN, first course recipe (in-memory, bs 128, lr 1e-2, one-cycle, ±2px shifts)', lean_cnn(),
                                   xt, yt, xv, yv, epochs=ep_lean, bs=128, lr=1e-2, shift=2)
    runs['lean_ours'] = train_run(f'lean CNN, course recipe ({LEAN_NAME})', lean_cnn(), xt, yt, xv, yv, epochs=ep_lean, **LEAN_RECIPE)
    runs['lean_ours_cl'] = train_run(f'lean CNN, course recipe + channels_last', lean_cnn(), xt, yt, xv, yv, epochs=ep_lean,
                                     channels_last=True, **LEAN_RECIPE)
    n_sub = 3000 if a.smoke else None
    runs['lean_course_fastai'] = fastai_course_pipeline(lean_cnn, data, 1, LEAN_RECIPE['bs'], LEAN_RECIPE['lr'], n_train=n_sub)
    runs['lean_fastai_default'] = fastai_default_epoch(lean_cnn, 1, n_train=n_sub)

    print("\n(b) seed-book CNN: the book recipe vs our best recipe for the same architecture")
    book_probe = train_run('seed CNN, book recipe (Adam 1e-3, bs 128, fp32)', seed_cnn(), xt, yt, xv, yv, epochs=1, bs=128,
                           lr=1e-3, schedule='constant', max_batches=20 if a.smoke else 60, eval_every_epoch=False)
    book_epoch_s = (len(xt) // 128) * 128 / book_probe['images_per_s']
    print(f"  book recipe throughput {book_probe['images_per_s']:.0f} img/s -> 2 epochs = {2*book_epoch_s:.0f}s (extrapolated)")
    if a.full:
        runs['seed_book'] = train_run('seed CNN, book recipe (Adam 1e-3, bs 128, fp32, 2 epochs)', seed_cnn(), xt, yt, xv, yv,
                                      epochs=2, bs=128, lr=1e-3, schedule='constant')
    else:
        runs['seed_book'] = dict(name='seed CNN, book recipe (2 epochs; time extrapolated from 60 measured batches)',
                                 train_seconds=2 * book_epoch_s, images_per_s=book_probe['images_per_s'],
                                 curve=[(round(2 * book_epoch_s, 1), None)], final_acc=None, extrapolated=True)   # accuracy not measured
    best_kw = dict(channels_last=True, bf16=info['bf16'])
    runs['seed_best'] = train_run('seed CNN, our recipe (one-cycle 2 epochs, bs 256, channels_last' + (', bf16' if info['bf16'] else '') + ')',
                                  seed_cnn(), xt, yt, xv, yv, epochs=2, bs=256, lr=2e-3, **best_kw,
                                  max_batches=10 if a.smoke else None)

    print("\n(c) inference throughput: eager fp32 vs the fastest safe option")
    model = runs['lean_ours']['model']
    xv_n = normalize(xv)
    eager, ref = inference_throughput(model, xv_n)
    opts = {'channels_last': dict(channels_last=True), 'torchscript trace': dict(trace=True),
            'channels_last + trace': dict(channels_last=True, trace=True)}
    inf = {'eager fp32': dict(images_per_s=eager, agree=1.0)}
    for k, kw in opts.items():
        ips, out = inference_throughput(copy.deepcopy(model), xv_n, **kw)
        inf[k] = dict(images_per_s=ips, agree=float((out.argmax(1) == ref.argmax(1)).float().mean()))
    fastest = max((k for k in inf if inf[k]['agree'] == 1.0), key=lambda k: inf[k]['images_per_s'])

    # ---- report ----
    rows = []
    for key, r in runs.items():
        fl = seed_flops if key.startswith('seed') else lean_flops
        rows.append(dict(run=r['name'], precision='bf16' if r.get('bf16') else 'fp32', train_s=round(r['train_seconds'], 1),
                         img_per_s=round(r['images_per_s']),
                         pct_peak=round(100 * r['images_per_s'] * fl / 1e9 / (peak16 if r.get('bf16') else peak32), 1),
                         t_to_99_0=time_to(r['curve'], 0.99), t_to_99_4=time_to(r['curve'], 0.994),
                         final_acc=r['final_acc']))
    ratios = dict(
        lean_course_vs_fastai_default_img_per_s=runs['lean_course_fastai']['images_per_s'] / runs['lean_fastai_default']['images_per_s'],
        lean_ours_vs_fastai_default_img_per_s=runs['lean_ours']['images_per_s'] / runs['lean_fastai_default']['images_per_s'],
        seed_book_time_over_best_time=(runs['seed_book']['train_seconds'] / runs['seed_best']['train_seconds']),
        inference_fastest_over_eager=inf[fastest]['images_per_s'] / eager)
    targets = dict(
        lean_99_4_within_30s=any(t is not None and t <= 30 for t in (time_to(runs[k]['curve'], 0.994) for k in ('lean_ours', 'lean_ours_cl'))),
        seed_99_0_in_half_book_time=(lambda t: t is not None and t <= runs['seed_book']['train_seconds'] / 2)(time_to(runs['seed_best']['curve'], 0.99)),
        course_pipeline_not_slower_than_fastai_default=ratios['lean_course_vs_fastai_default_img_per_s'] >= 1.0,
        lean_training_30pct_of_peak=max(r['pct_peak'] for k, r in zip(runs, rows) if k in ('lean_ours', 'lean_ours_cl')) >= 30)
    print("\n" + fmt_table(rows))
    print("\nInference (lean CNN, batch 256):")
    for k, v in inf.items(): print(f"  {k:24s} {v['images_per_s']:9.0f} img/s  predictions equal to eager: {v['agree']:.4f}")
    print(f"  fastest safe option: {fastest}")
    print("\nRatios:"); [print(f"  {k}: {v:.2f}") for k, v in ratios.items()]
    print("Targets:"); [print(f"  {k}: {'MET' if v else 'NOT MET'}") for k, v in targets.items()]
    print(f"Peak memory (RSS): {peak_rss_mb():.0f} MB")
    res = dict(info=info, attainable_gflops=dict(fp32=peak32, bf16=peak16), flops_per_train_image=dict(lean=lean_flops, seed=seed_flops),
               params=dict(lean=count_params(lean_cnn()), seed=count_params(seed_cnn())), runs=rows,
               curves={r['name']: r['curve'] for r in runs.values()}, inference=inf, fastest_inference=fastest,
               ratios=ratios, targets=targets, peak_rss_mb=peak_rss_mb())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1, default=str))
    fig_path = Path(a.out).with_name('time_vs_accuracy.png')     # beside the JSON, so a --smoke run to /tmp leaves bench/ alone
    plot(res, fig_path)
    print(f"Wrote {a.out} and {fig_path}")


def fmt_table(rows):
    cols = list(rows[0]); s = lambda v: '-' if v is None else (f'{v:.4f}' if isinstance(v, float) and v < 1 else str(v))
    w = {c: max(len(c), *(len(s(r[c])) for r in rows)) for c in cols}
    out = ['  '.join(c.ljust(w[c]) for c in cols), '  '.join('-' * w[c] for c in cols)]
    return '\n'.join(out + ['  '.join(s(r[c]).ljust(w[c]) for c in cols) for r in rows])


def plot(res, path):
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 6.5))
    for name, curve in res['curves'].items():
        t, acc = zip(*curve)
        if acc[-1] is None: ax.axvline(t[-1], color='black', ls='--', lw=1, label=name + ': accuracy not measured'); continue
        ax.plot(t, [100 * x for x in acc], marker='o', label=name)
    for y in (99.0, 99.4): ax.axhline(y, color='grey', ls=':', lw=1)
    ax.set_xscale('log'); ax.set_ylim(97, 100); ax.set_xlabel('training wall time (s, log scale)'); ax.set_ylabel('MNIST test accuracy (%)')
    ax.set_title(f"MNIST on {res['info']['cores']} CPU cores ({res['info']['cpu_model']}, {res['info']['date']})", fontsize=10)
    ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)
    fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)


if __name__ == '__main__': main()
