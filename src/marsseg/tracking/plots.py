"""Pictures of the leaderboard history (`marsseg plot`): four PNGs written next to the history.

- `score_over_time.png`: the team's public score per submission over time, with the best-so-far line;
  pending and failed submissions as markers on the bottom axis.
- `rank_over_time.png`: the team's public rank at each snapshot (1 at the top).
- `top10_threshold.png`: the score needed for the top 10 at each snapshot, with the leader and the team.
- `local_vs_public.png`: local validation mIoU against public score, with Pearson r and n.

matplotlib is imported inside the functions (Agg backend), so importing this module costs nothing.
"""

from __future__ import annotations

import io
import math
from datetime import timedelta
from pathlib import Path

from marsseg.files import atomic_write_bytes
from marsseg.tracking.parse import TrackingError, parse_time
from marsseg.tracking.store import History, read_history

PLOTS = ("score_over_time.png", "rank_over_time.png", "top10_threshold.png", "local_vs_public.png")


def plot_history(history_dir="submissions", out_dir=None, competition: str | None = None) -> list[Path]:
    """Draw the four plots from the committed history; returns the PNG paths."""
    history = read_history(history_dir, competition)
    if history.empty:
        raise TrackingError(f"no leaderboard snapshots in {Path(history_dir)}/ to plot; take one with `marsseg track`")
    competitions = {s.competition for s in history.snapshots}
    if len(competitions) > 1:
        raise TrackingError(
            f"{Path(history_dir)}/ holds several competitions ({', '.join(sorted(competitions))}); "
            "pick one with --competition"
        )
    out = Path(out_dir or history_dir)
    drawers = (score_over_time, rank_over_time, top10_threshold, local_vs_public)
    return [_save(draw(history), out / name) for draw, name in zip(drawers, PLOTS)]


def pearson(xs, ys) -> float | None:
    """Pearson correlation, or None when undefined (fewer than 2 points or no spread)."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.sqrt(sxx * syy)


# ------------------------------------------------------------------------------------------ helpers
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(title: str):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110, layout="constrained")
    ax.set_title(title, fontsize=12)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _date_axis(ax) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")


def _note(ax, text: str) -> None:
    ax.text(0.01, 0.01, text, transform=ax.transAxes, fontsize=8, color="0.35", va="bottom", ha="left")


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=11, color="0.35", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _pad_single_time(ax, times) -> None:
    """One instant gives matplotlib a zero-width date range: widen it to a day. (A span of seconds, as in a
    dry run against the emulator, keeps matplotlib's own margins, so the points stay apart.)"""
    if times and max(times) == min(times):
        ax.set_xlim(min(times) - timedelta(hours=12), max(times) + timedelta(hours=12))


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _times(history: History):
    return [parse_time(s.taken_at) for s in history.snapshots]


# -------------------------------------------------------------------------------------------- plots
def score_over_time(history: History):
    subs = [s for s in history.submissions() if parse_time(s.date)]
    team = history.latest.team or "team"
    fig, ax = _figure(f"{team}: public score per submission")
    scored = [s for s in subs if s.public_score is not None]
    unscored = [s for s in subs if s.public_score is None]
    if not subs:
        _empty(ax, "no own submissions in the history yet")
        return fig
    marker_size = 36 if len(subs) <= 20 else 14
    if scored:
        times = [parse_time(s.date) for s in scored]
        scores = [s.public_score for s in scored]
        ax.scatter(times, scores, s=marker_size, color="tab:blue", zorder=3, label=f"public score ({len(scored)})")
        best, best_so_far = -math.inf, []
        for score in scores:
            best = max(best, score)
            best_so_far.append(best)
        end = max(parse_time(s.date) for s in subs)
        ax.step(
            times + [end],
            best_so_far + [best_so_far[-1]],
            where="post",
            color="tab:orange",
            lw=2,
            label=f"best so far ({best:.4f})",
        )
        low, high = min(scores), max(scores)
        span = max(high - low, 0.01)
        ax.set_ylim(low - 0.15 * span, high + 0.1 * span)
    else:
        ax.set_ylim(0, 1)
    # No score yet (pending) or none ever (error): markers on the bottom axis, so they stay visible.
    for status, style in (
        ("PENDING", dict(marker="o", facecolors="none", edgecolors="0.4")),
        ("ERROR", dict(marker="x", color="tab:red")),
    ):
        group = [s for s in unscored if (s.status == "ERROR") == (status == "ERROR")]
        if group:
            ax.scatter(
                [parse_time(s.date) for s in group],
                [0.0] * len(group),
                s=marker_size + 10,
                clip_on=False,
                zorder=4,
                transform=ax.get_xaxis_transform(),
                label=f"{status.lower()}, no score ({len(group)})",
                **style,
            )
    _pad_single_time(ax, [parse_time(s.date) for s in subs])
    _date_axis(ax)
    ax.set_ylabel("public score (mIoU)")
    ax.legend(loc="lower right", fontsize=9)
    return fig


def rank_over_time(history: History):
    team = history.latest.team or "team"
    fig, ax = _figure(f"{team}: public leaderboard rank")
    points = []
    for index, moment in enumerate(_times(history)):
        rank, _ = history.team_entry(index)
        if moment and rank:
            points.append((moment, rank, history.snapshots[index].teams))
    if not points:
        _empty(ax, f"team {team!r} is not on any leaderboard snapshot yet")
        return fig
    times, ranks, teams = zip(*points)
    ax.step(times, ranks, where="post", color="tab:blue", lw=2)
    ax.scatter(times, ranks, s=14 if len(points) > 30 else 30, color="tab:blue", zorder=3)
    ax.set_ylim(max(max(ranks), 1) + 0.5 + 0.05 * max(ranks), 0.5)  # rank 1 at the top
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.annotate(
        f"rank {ranks[-1]} of {teams[-1]}",
        (times[-1], ranks[-1]),
        textcoords="offset points",
        xytext=(-8, 8),
        ha="right",
        fontsize=9,
    )
    missing = len(history.snapshots) - len(points)
    _note(ax, f"{len(points)} snapshot(s)" + (f"; team absent from {missing}" if missing else ""))
    _pad_single_time(ax, list(times))
    _date_axis(ax)
    ax.set_ylabel("rank (1 = first)")
    return fig


def top10_threshold(history: History):
    fig, ax = _figure("score needed for the top 10 of the public leaderboard")
    times, threshold, leader, mine = [], [], [], []
    for index, moment in enumerate(_times(history)):
        board = [e for e in history.boards[index] if e.score is not None]
        if not moment or not board:
            continue
        times.append(moment)
        threshold.append(board[min(10, len(board)) - 1].score)
        leader.append(board[0].score)
        _, entry = history.team_entry(index)
        mine.append(entry.score if entry and entry.score is not None else math.nan)
    if not times:
        _empty(ax, "no leaderboard scores in the history yet")
        return fig
    small = len(history.boards[-1]) < 10
    ax.step(
        times,
        threshold,
        where="post",
        color="tab:red",
        lw=2,
        label="10th place" + (" (fewer than 10 teams: last place)" if small else ""),
    )
    ax.step(times, leader, where="post", color="0.5", lw=1, ls="--", label="leader")
    if any(not math.isnan(v) for v in mine):
        ax.step(times, mine, where="post", color="tab:blue", lw=1.5, label=history.latest.team or "team")
    if len(times) <= 30:
        ax.scatter(times, threshold, s=20, color="tab:red", zorder=3)
    ax.annotate(
        f"{threshold[-1]:.4f}",
        (times[-1], threshold[-1]),
        textcoords="offset points",
        xytext=(6, 0),
        ha="left",
        va="center",
        fontsize=9,
        color="tab:red",
        annotation_clip=False,
    )
    _pad_single_time(ax, times)
    _date_axis(ax)
    ax.set_ylabel("public score (mIoU)")
    ax.legend(loc="best", fontsize=9)
    return fig


def local_vs_public(history: History):
    fig, ax = _figure("local validation mIoU vs public score")
    subs = history.submissions()
    pairs = [
        (s.val_miou_final, s.public_score) for s in subs if s.val_miou_final is not None and s.public_score is not None
    ]
    skipped = len(subs) - len(pairs)
    if not pairs:
        _empty(
            ax,
            "no submission has both a local validation mIoU and a public score yet"
            + (f"\n({len(subs)} submission(s) seen)" if subs else ""),
        )
        return fig
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    ax.scatter(xs, ys, s=36 if len(pairs) <= 20 else 16, color="tab:blue", alpha=0.8, zorder=3)
    low = min(min(xs), min(ys))
    high = max(max(xs), max(ys))
    pad = max(high - low, 0.02) * 0.1
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="0.6", ls=":", lw=1, label="public = local")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    r = pearson(xs, ys)
    text = f"Pearson r = {r:.3f}, n = {len(pairs)}" if r is not None else f"Pearson r undefined, n = {len(pairs)}"
    # In the title, so no point can hide it.
    ax.set_title(f"local validation mIoU vs public score\n{text}", fontsize=12)
    if skipped:
        _note(ax, f"{skipped} submission(s) without both scores not shown (pending, failed or no run record)")
    ax.set_xlabel("local validation mIoU (final)")
    ax.set_ylabel("public score (mIoU)")
    ax.legend(loc="lower right", fontsize=9)
    return fig
