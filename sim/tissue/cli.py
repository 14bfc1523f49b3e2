"""``rfa lesion``: the lesion-size estimate from the tissue model, for planning (ARCHITECTURE.md section 11).

``control/cli.py`` wires it as a subcommand: ``add_arguments`` fills the subparser, ``run`` executes it
and returns the exit code (0 done, 2 usage or configuration error: the refused field is named).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from sim.tissue.estimate import LesionRun, estimate_lesion
from sim.tissue.kernels import warm_up_kernels
from sim.tissue.params import TISSUES, ElectrodeSpec, GridSettings, LesionModelConfig

EXIT_OK = 0
EXIT_USAGE = 2
FLAGS = {"gauge": "--gauge", "active_tip_mm": "--tip", "spacing_mm": "--spacing"}
"""Model fields set straight from a command-line option, so a refusal names the option too."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Predict the lesion of one RF electrode under tip-temperature control."
    parser.add_argument("--gauge", type=int, default=18, help="cannula gauge, 16..22 (default 18)")
    parser.add_argument("--tip", type=float, default=10.0, metavar="MM",
                        help="active tip length, 5..15 mm (default %(default)g)")
    parser.add_argument("--temp", type=float, default=80.0, metavar="C",
                        help="set tip temperature, °C (default %(default)g)")
    parser.add_argument("--time", type=float, default=90.0, metavar="S",
                        help="lesion time at power, s (default %(default)g)")
    parser.add_argument("--tissue", choices=sorted(TISSUES), default="muscle", help="default %(default)s")
    parser.add_argument("--ex-vivo", action="store_true", help="no perfusion (tissue on the bench)")
    parser.add_argument(
        "--start-temp", type=float, default=37.0, metavar="C",
        help="tissue temperature at start, °C (default %(default)g)"
    )
    parser.add_argument("--cooled", action="store_true", help="internally cooled electrode")
    parser.add_argument("--max-power", type=float, default=30.0, metavar="W",
                        help="power cap of the loop, W (default %(default)g)")
    parser.add_argument("--ramp", type=float, default=5.0, metavar="C/S",
                        help="set-point ramp, °C/s (default 5, the fastest a plan may ask). A plan's ramp_rate_c_per_s "
                        "and power_cap_w here give the size `rfa run` predicts for its lesion")
    parser.add_argument(
        "--spacing", type=float, default=0.25, metavar="MM", help="grid spacing (default 0.25)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--plot", type=Path, metavar="FILE", help="save temperature, impedance, power, contour (PNG)"
    )


def run(args: argparse.Namespace) -> int:
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:  # before the work, not after
        print("rfa lesion: --plot needs matplotlib, the 'plot' extra: .venv/bin/pip install -e '.[plot]'",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        config = LesionModelConfig(
            electrode=ElectrodeSpec(gauge=args.gauge, active_tip_mm=args.tip, cooled=args.cooled),
            tissue=TISSUES[args.tissue],
            grid=GridSettings(spacing_mm=args.spacing),
            perfused=not args.ex_vivo,
        )
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "configuration"
            flag = f" ({FLAGS[field]})" if field in FLAGS else ""
            print(f"rfa lesion: invalid {field}{flag}: {error['msg']}", file=sys.stderr)
        return EXIT_USAGE
    show_progress = sys.stderr.isatty()
    warm_up_kernels()
    try:
        result = estimate_lesion(
            config,
            args.temp,
            args.time,
            start_temp_c=args.start_temp,
            max_power_w=args.max_power,
            ramp_c_per_s=args.ramp,
            progress=_print_progress if show_progress else None,
        )
    except ValueError as exc:
        print(f"rfa lesion: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if show_progress:
        print(file=sys.stderr)
    title = _title(args)
    if args.plot is not None:
        from sim.tissue.plot import save_lesion_plot

        save_lesion_plot(result, args.plot, title)
    if args.json:
        print(json.dumps({"setup": vars_for_json(args), "result": result.summary()}, indent=2))
    else:
        print(_report(title, result))
    return EXIT_OK


def vars_for_json(args: argparse.Namespace) -> dict[str, object]:
    """The settings echoed with the result, so a JSON file says what it predicts."""
    return {
        "gauge": args.gauge,
        "tip_mm": args.tip,
        "set_temp_c": args.temp,
        "time_s": args.time,
        "tissue": args.tissue,
        "ex_vivo": args.ex_vivo,
        "start_temp_c": args.start_temp,
        "cooled": args.cooled,
        "max_power_w": args.max_power,
        "ramp_c_per_s": args.ramp,
        "spacing_mm": args.spacing,
    }


def _title(args: argparse.Namespace) -> str:
    kind = "cooled " if args.cooled else ""
    where = "ex vivo" if args.ex_vivo else "perfused"
    electrode = f"{args.gauge} G {kind}{args.tip:g} mm tip"
    heating = f"{args.temp:g} °C (ramped at {args.ramp:g} °C/s) for {args.time:g} s"
    return f"{electrode}, {heating} in {args.tissue} ({where})"


def _report(title: str, run: LesionRun) -> str:
    s = run.summary()
    reached = "not reached" if s["time_to_set_temp_s"] is None else f"{s['time_to_set_temp_s']} s"
    lines = [
        title,
        f"  lesion (Ω ≥ 1)       {s['lesion_width_mm']:.1f} mm wide × {s['lesion_length_mm']:.1f} mm long",
        f"  {run.lesion.isotherm_c:g} °C isotherm       {s['isotherm_width_mm']:.1f} mm wide × "
        f"{s['isotherm_length_mm']:.1f} mm long",
        f"  time to set temp     {reached}",
        f"  impedance            {s['final_impedance_ohm']:.0f} Ω at the end "
        f"(lowest {s['min_impedance_ohm']:.0f} Ω)",
        f"  power                peak {s['peak_power_w']:.1f} W, mean {s['mean_power_w']:.1f} W, "
        f"holding {s['final_power_w']:.1f} W; {s['energy_j']:.0f} J",
        f"  hottest              tip {s['max_tip_temp_c']:.1f} °C, tissue {s['max_tissue_temp_c']:.1f} °C"
        + ("  (boiling at the tip)" if run.boiled else ""),
    ]
    return "\n".join(lines)


def _print_progress(elapsed_s: float, duration_s: float) -> None:
    print(f"\rrfa lesion: {elapsed_s:5.0f} / {duration_s:g} s simulated", end="", file=sys.stderr, flush=True)
