"""The dashboard's two views with matplotlib (imported only here): the best objective so
far against compute spent, one line per scale, and the loss curves coloured by scale."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # optional dependency
        raise ImportError("plots need matplotlib: pip install matplotlib (or apt-get install python3-matplotlib)") from e
    return plt


def _scale_flops(study) -> Dict[str, float]:
    return {s["name"]: float(s.get("flops_per_step", 0)) for s in study.spec.get("scales", [])}


def _order(study) -> List[str]:
    return [s["name"] for s in study.spec.get("scales", [])]


def best_so_far(study, trials: Sequence) -> Dict[str, List[tuple]]:
    """Per scale, (cumulative FLOPs of the study when the trial ended, best objective so far)
    over the trials with a value, in the order they ended. The objective's direction comes
    from the spec."""
    maximize = bool(study.spec.get("objective", {}).get("maximize", False))
    flops = _scale_flops(study)
    ended = sorted((t for t in trials if t.value is not None and t.ended is not None), key=lambda t: t.ended)
    spent = 0.0
    best: Dict[str, Optional[float]] = {}
    out: Dict[str, List[tuple]] = {}
    for t in ended:
        spent += t.steps_done * flops.get(t.scale, 0.0)
        b = best.get(t.scale)
        if b is None or (t.value > b if maximize else t.value < b):
            best[t.scale] = t.value
        out.setdefault(t.scale, []).append((spent, best[t.scale]))
    return out


def plot_regret(study, trials: Sequence, ax=None, metric_label: Optional[str] = None):
    """Best objective so far against compute spent, a step line per scale. Returns the Axes."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    series = best_so_far(study, trials)
    for scale in _order(study):
        pts = series.get(scale)
        if pts:
            ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", marker="o", label=scale)
    ax.set_xscale("log")
    ax.set_xlabel("compute spent (FLOPs)")
    ax.set_ylabel(metric_label or f"best {study.spec.get('objective', {}).get('metric', 'objective')}")
    ax.set_title(f"study {study.id} {study.name}: best so far by scale")
    if series:
        ax.legend(title="scale")
    return ax


def plot_curves(study, points: Sequence, ax=None, metric: Optional[str] = None):
    """Every trial's curve of the objective metric (or the one named) against step, coloured
    by scale. Returns the Axes."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    metric = metric or study.spec.get("objective", {}).get("metric", "train_loss")
    by_trial: Dict[int, List] = {}
    for p in points:
        by_trial.setdefault(p.trial_id, []).append(p)
    trials = {t.id: t for t in study.trials()} if by_trial else {}
    colours = {s: f"C{i % 10}" for i, s in enumerate(_order(study))}
    labelled = set()
    for tid, pts in sorted(by_trial.items()):
        xy = [(p.step, p.value(metric)) for p in pts if p.value(metric) is not None]
        if not xy:
            continue
        scale = trials[tid].scale if tid in trials else "?"
        label = scale if scale not in labelled else None
        labelled.add(scale)
        ax.plot([x for x, _ in xy], [y for _, y in xy], color=colours.get(scale, "k"), alpha=0.7, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"study {study.id} {study.name}: curves by scale")
    if labelled:
        ax.legend(title="scale")
    return ax
