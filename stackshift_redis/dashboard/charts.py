"""Server-side SVG charts of the overview: per queue, runs completed and failed per minute
over the last hour (bars; no script, no library)."""

from __future__ import annotations

from markupsafe import Markup, escape

from .._client.views import MinuteSeries

W, H, PAD_L, PAD_B, PAD_T = 600, 120, 34, 18, 8


def minute_chart(series: MinuteSeries) -> Markup:
    """An SVG of one queue's last hour: completed (green) and failed (red, stacked) runs
    per minute, a y axis with the peak, and minute marks every 10 minutes."""
    n = len(series.completed)
    peak = max([c + f for c, f in zip(series.completed, series.failed, strict=True)] + [1])
    plot_w, plot_h = W - PAD_L - 4, H - PAD_B - PAD_T
    bw = plot_w / max(n, 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" width="100%" role="img" '
        f'data-queue="{escape(series.queue)}" data-completed="{sum(series.completed)}" '
        f'data-failed="{sum(series.failed)}">',
        f"<title>{escape(series.queue)}: {sum(series.completed)} completed, "
        f"{sum(series.failed)} failed in the last hour</title>",
        f'<line x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{W - 4}" y2="{PAD_T + plot_h}" '
        'class="axis"/>',
        f'<text x="{PAD_L - 4}" y="{PAD_T + 8}" class="lbl" text-anchor="end">{peak}</text>',
        f'<text x="{PAD_L - 4}" y="{PAD_T + plot_h}" class="lbl" text-anchor="end">0</text>',
    ]
    for i, (c, f) in enumerate(zip(series.completed, series.failed, strict=True)):
        x = PAD_L + i * bw + 0.5
        hc, hf = plot_h * c / peak, plot_h * f / peak
        base = PAD_T + plot_h
        if c:
            parts.append(
                f'<rect class="ok" x="{x:.1f}" y="{base - hc:.1f}" width="{bw - 1:.1f}" '
                f'height="{hc:.1f}"><title>{c} completed</title></rect>'
            )
        if f:
            parts.append(
                f'<rect class="bad" x="{x:.1f}" y="{base - hc - hf:.1f}" width="{bw - 1:.1f}" '
                f'height="{hf:.1f}"><title>{f} failed</title></rect>'
            )
    for i in range(0, n + 1, 10):
        x = PAD_L + i * bw
        label, anchor = ("now", "end") if i == n else (f"-{n - i} m", "middle")
        parts.append(
            f'<text x="{x:.1f}" y="{H - 4}" class="lbl" text-anchor="{anchor}">{label}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
