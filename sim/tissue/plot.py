"""The ``--plot`` figure of ``rfa lesion``: tip temperature, impedance and power against time, and the
lesion contour around the electrode. matplotlib is imported here only, and with the Agg backend, so
the simulator never needs a display or the plotting dependency unless a plot is asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.tissue.estimate import LesionRun


def save_lesion_plot(run: LesionRun, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 8), constrained_layout=True)
    (ax_t, ax_z), (ax_p, ax_c) = axes
    ax_t.plot(run.times_s, run.tip_temp_c, color="tab:red")
    ax_t.axhline(run.set_temp_c, color="grey", linestyle=":")
    ax_t.set(xlabel="time (s)", ylabel="tip temperature (°C)", title="Thermocouple")
    ax_z.plot(run.times_s, run.impedance_ohm, color="tab:blue")
    ax_z.set(xlabel="time (s)", ylabel="impedance (Ω)", title="Impedance")
    ax_p.plot(run.times_s, run.power_w, color="tab:green")
    ax_p.set(xlabel="time (s)", ylabel="power (W)", title="Delivered power")

    snap = run.snapshot
    r = np.concatenate([-snap.r_centres_mm[::-1], snap.r_centres_mm])
    mirror = np.hstack
    temp = np.where(snap.tissue > 0.0, snap.temp_c, np.nan)
    damage = np.where(snap.tissue > 0.0, snap.damage, 0.0)
    temp_full = mirror([temp[:, ::-1], temp])
    damage_full = mirror([damage[:, ::-1], damage])
    shown = np.abs(r) <= 15.0
    rows = np.abs(snap.z_centres_mm - snap.active_tip_mm / 2.0) <= 15.0
    mesh = ax_c.pcolormesh(
        r[shown], snap.z_centres_mm[rows], temp_full[np.ix_(rows, shown)], cmap="inferno", shading="auto"
    )
    fig.colorbar(mesh, ax=ax_c, label="temperature (°C)")
    ax_c.contour(
        r[shown], snap.z_centres_mm[rows], damage_full[np.ix_(rows, shown)], levels=[1.0], colors="cyan"
    )
    ax_c.contour(
        r[shown],
        snap.z_centres_mm[rows],
        temp_full[np.ix_(rows, shown)],
        levels=[run.lesion.isotherm_c],
        colors="white",
        linestyles="--",
    )
    a = snap.electrode_radius_mm
    top = float(snap.z_centres_mm[rows][-1])
    ax_c.fill_between([-a, a], [0.0, 0.0], [snap.active_tip_mm] * 2, color="silver")
    ax_c.fill_between([-a, a], [snap.active_tip_mm] * 2, [top, top], color="dimgrey")
    ax_c.set(
        xlabel="r (mm)",
        ylabel="z (mm)",
        aspect="equal",
        title=f"Lesion {run.lesion.width_mm:.1f} × {run.lesion.length_mm:.1f} mm "
        f"(Ω=1 cyan, {run.lesion.isotherm_c:g} °C dashed)",
    )
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
