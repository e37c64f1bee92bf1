"""``rtcal config [--config FILE.toml] [flags]``: print the full effective configuration."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Print, as TOML, every setting `rtcal run` would use: the defaults, replaced by
--config FILE.toml, replaced by the flags below. Save the output, edit it and
pass it back with `rtcal run MOVIE --config FILE.toml`. Unknown keys, wrong
types and impossible values are reported with the file, table and key.
"""


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("--config", metavar="FILE.toml", help="config file to start from")
    p.add_argument("--fps", type=float, metavar="HZ", help="frame rate (default 30)")
    p.add_argument("--neuron-radius", type=float, metavar="PX", help="soma radius (default 6)")
    p.add_argument("--mode", choices=("2p", "1p"), help="2p (default) or 1p (ring background)")
    p.add_argument("--out", metavar="FILE.toml", help="write it here instead of printing it")
    return p


def run(args: argparse.Namespace) -> int:
    from rtcal.config import dump_config, load_config

    text = dump_config(
        load_config(args.config, fps_hz=args.fps, radius_px=args.neuron_radius, mode=args.mode)
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
