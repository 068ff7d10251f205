"""The report's figures (matplotlib, Agg), each returned as PNG bytes."""

from __future__ import annotations

import io

import numpy as np


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(*args, **kwargs)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _series(events: list[dict], getter) -> np.ndarray:
    out = []
    for e in events:
        try:
            v = getter(e)
        except (KeyError, TypeError, IndexError):
            v = None
        out.append(np.nan if v is None else float(v))
    return np.array(out, float)


def timelines_png(events: list[dict]) -> bytes:
    """Peak widths (relative to the first scan), strain energy, voltage and defect count against capacity."""
    cap = _series(events, lambda e: e["capacity_mah_g"])
    x = cap if np.isfinite(cap).all() else np.arange(len(events), dtype=float)
    xlabel = "specific capacity (mAh/g)" if np.isfinite(cap).all() else "scan"
    fig = _figure(figsize=(7.5, 9.0))
    axes = fig.subplots(4, 1, sharex=True)
    for key, label, colour in (("parallel", "along q", "tab:blue"), ("perpendicular", "perpendicular to q", "tab:red")):
        w = _series(events, lambda e, k=key: e["peak"][f"width_{k}"])
        err = _series(events, lambda e, k=key: e["peak"].get(f"width_{k}_error"))
        first = w[np.isfinite(w)][0] if np.isfinite(w).any() else np.nan
        rel = 100 * (w / first - 1)
        axes[0].errorbar(x, rel, yerr=np.where(np.isfinite(err), 100 * err / first, 0), marker="o", ms=3,
                         color=colour, label=label, capsize=2)
    axes[0].set_ylabel("peak width change (%)")
    axes[0].legend(fontsize=8)
    energy = _series(events, lambda e: e["strain"]["energy_j"])
    lo = _series(events, lambda e: e["strain"]["energy_j_range"][0])
    hi = _series(events, lambda e: e["strain"]["energy_j_range"][1])
    yerr = np.vstack([np.nan_to_num(energy - lo), np.nan_to_num(hi - energy)])
    axes[1].errorbar(x, energy, yerr=yerr, marker="s", ms=3, color="tab:green", capsize=2)
    axes[1].set_ylabel("strain energy (J)")
    axes[2].plot(x, _series(events, lambda e: e["voltage_v"]), marker="o", ms=3, color="k")
    axes[2].set_ylabel("voltage (V)")
    axes[3].step(x, [len(e.get("vortices", [])) for e in events], where="mid", label="vortex lines", color="tab:purple")
    axes[3].step(x, [len(e.get("domain_boundaries", [])) for e in events], where="mid", label="domain boundaries",
                 color="tab:orange")
    axes[3].set_ylabel("defects")
    axes[3].legend(fontsize=8)
    axes[3].set_xlabel(xlabel)
    for xi, e in zip(x, events):
        if e.get("flags"):
            for ax in axes:
                ax.axvline(xi, color="0.8", lw=0.8, zorder=0)
    return _png(fig)


def slices_png(amplitude: np.ndarray, phase: np.ndarray, strain: np.ndarray, vortices: list[dict],
               *, voxel_nm: float, title: str) -> bytes:
    """Central slices (z = mid: the layer plane; y = mid: across the layers) of amplitude, displacement
    phase G.u (= -arg(rho), docs/conventions.md) and strain, with the vortex lines' points near each slice
    marked (+: winding +1, x: -1)."""
    fig = _figure(figsize=(11, 6.4), layout="constrained")
    axes = fig.subplots(2, 3)
    mid = [n // 2 for n in amplitude.shape]
    views = [(0, mid[0], "z", ("x (nm)", "y (nm)")), (1, mid[1], "y", ("x (nm)", "z (nm)"))]
    fields = [(amplitude, "amplitude", "gray", None), (phase, "phase G.u (rad)", "twilight", None),
              (strain, "strain along q", "coolwarm", "sym")]
    for row, (axis, index, name, labels) in enumerate(views):
        for col, (arr, label, cmap, sym) in enumerate(fields):
            ax = axes[row, col]
            img = np.take(arr, index, axis=axis)
            kw = {}
            if sym and np.isfinite(img).any():
                v = np.nanpercentile(np.abs(img), 99) or 1e-12
                kw = {"vmin": -v, "vmax": v}
            n0, n1 = img.shape
            extent = [-(n1 // 2) * voxel_nm, (n1 - n1 // 2) * voxel_nm, -(n0 // 2) * voxel_nm, (n0 - n0 // 2) * voxel_nm]
            im = ax.imshow(img, origin="lower", cmap=cmap, extent=extent, **kw)
            fig.colorbar(im, ax=ax, shrink=0.8)
            ax.set_title(f"{label}, {name} = mid", fontsize=9)
            ax.set_xlabel(labels[0], fontsize=8)
            ax.set_ylabel(labels[1], fontsize=8)
            for v in vortices:
                pts = np.asarray(v.get("points") or [v["position"]], float)
                near = pts[np.abs(pts[:, axis] - index) <= 1.0]
                if len(near):
                    other = [a for a in range(3) if a != axis]
                    ax.plot((near[:, other[1]] - amplitude.shape[other[1]] // 2) * voxel_nm,
                            (near[:, other[0]] - amplitude.shape[other[0]] // 2) * voxel_nm,
                            "+" if v["winding"] > 0 else "x", color="lime", ms=7, mew=1.5)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def peak_images_png(images: dict[str, np.ndarray], title: str) -> bytes:
    """Projected peak images (log scale)."""
    fig = _figure(figsize=(10, 3.4))
    axes = fig.subplots(1, len(images))
    for ax, (name, img) in zip(np.atleast_1d(axes), images.items()):
        im = ax.imshow(np.log10(np.maximum(img, 1e-3)), origin="lower", cmap="magma")
        fig.colorbar(im, ax=ax, shrink=0.8, label="log10 counts")
        ax.set_title(name.replace("_", " "), fontsize=9)
        rows, cols = name.rsplit("_", 1)[1]
        ax.set_xlabel(f"q_{cols} (pixels)", fontsize=8)
        ax.set_ylabel(f"q_{rows} (pixels)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _png(fig)
