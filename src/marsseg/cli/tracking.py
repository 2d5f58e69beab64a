"""Leaderboard-tracking commands: `track`, `leaderboard`, `history`, `plot`."""

from __future__ import annotations

from pathlib import Path

from marsseg.competition import MARS
from marsseg.errors import UserError
from marsseg.tracking.parse import parse_interval
from marsseg.tracking.plots import plot_history
from marsseg.tracking.store import read_history
from marsseg.tracking.track import track
from marsseg.tracking.views import format_history, format_leaderboard


def _add_history_dir(p):
    p.add_argument(
        "--history-dir",
        type=Path,
        default=Path("submissions"),
        help="where the leaderboard history lives (default submissions/)",
    )
    p.add_argument("--competition", default=None, help="competition slug (default: the profile's)")


def _competition(args) -> str:

    return args.competition or MARS.slug


def add_track(sub):
    p = sub.add_parser("track", help="snapshot the public leaderboard and own submissions into the history")
    _add_history_dir(p)
    p.add_argument("--team", help="the team's name on the leaderboard (default: from the own submissions)")
    p.add_argument("--watch", metavar="INTERVAL", help="repeat every INTERVAL (e.g. 900, 15m, 1h) until stopped")
    p.add_argument("--count", type=int, help="with --watch: stop after this many snapshots")
    p.set_defaults(func=cmd_track)


def cmd_track(args) -> int:

    watch = parse_interval(args.watch) if args.watch else None
    if args.count is not None and args.count < 1:
        raise UserError("--count must be at least 1")
    track(_competition(args), args.history_dir, team=args.team, watch=watch, count=args.count)
    return 0


def add_leaderboard(sub):
    p = sub.add_parser("leaderboard", help="the top N of the latest snapshot, the team's rank and best score")
    _add_history_dir(p)
    p.add_argument("--top", type=int, default=10, help="how many teams to list (default 10)")
    p.add_argument("--fetch", action="store_true", help="take a snapshot first (`marsseg track`)")
    p.set_defaults(func=cmd_leaderboard)


def cmd_leaderboard(args) -> int:

    if args.fetch:
        track(_competition(args), args.history_dir)
    print(format_leaderboard(read_history(args.history_dir, _competition(args)), args.top))
    return 0


def add_history(sub):
    p = sub.add_parser("history", help="the team's submissions with local and public scores")
    _add_history_dir(p)
    p.set_defaults(func=cmd_history)


def cmd_history(args) -> int:

    print(format_history(read_history(args.history_dir, _competition(args))))
    return 0


def add_plot(sub):
    p = sub.add_parser("plot", help="PNG plots of the leaderboard history under submissions/")
    _add_history_dir(p)
    p.add_argument("--out", type=Path, help="folder for the PNGs (default: the history folder)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:

    for path in plot_history(args.history_dir, args.out, _competition(args)):
        print(f"wrote {path}")
    return 0
