"""Inline SVG charts for the review pages: candidate scores, and the canary's error-rate bound and accuracy per
arm over its requests with the gate thresholds drawn in.

Plain strings built here, every piece of text escaped here (the templates insert them as they are), so a page
needs no JavaScript and no image requests. Pure; must not import SQL, FastAPI or HTTP.
"""

from __future__ import annotations

from html import escape

from overnight.domain.review import ArmSeries, CanarySection, CompileSection

ARM_COLOUR = {"control": "#6b7280", "candidate": "#2563eb"}
THRESHOLD = "#dc2626"


def candidate_chart(section: CompileSection, *, width: int = 720) -> str:
    """One row per candidate: its train score (light bar) and holdout score (dark bar) on a 0..1 axis."""
    row, left, top = 26, 190, 24
    plot = width - left - 20
    height = top + row * len(section.candidates) + 28
    parts = [_open(width, height, "candidate-chart", f"scores of {len(section.candidates)} candidates"),
             _text(left, 14, "train (light) and holdout (dark) score, 0 to 1", size=12)]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + tick * plot
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 24}" stroke="#e5e7eb"/>')
        parts.append(_text(x, height - 8, f"{tick:g}", anchor="middle"))
    for i, c in enumerate(section.candidates):
        y = top + i * row
        best = "best" in c.roles
        label = c.compiled_id[:12] + (f" ({', '.join(c.roles)})" if c.roles else "")
        parts.append(_text(left - 6, y + 15, label, anchor="end", weight="bold" if best else "normal"))
        colour = "#16a34a" if best else "#2563eb"
        for score, offset, opacity in ((c.train_score, 2, 0.35), (c.holdout_score, 11, 1.0)):
            if score is not None:
                parts.append(f'<rect x="{left}" y="{y + offset}" width="{score * plot:.1f}" height="8" '
                             f'fill="{colour}" fill-opacity="{opacity}"><title>{escape(label)}: '
                             f'{score:.3f}</title></rect>')
    return "".join(parts) + "</svg>"


def canary_chart(section: CanarySection, *, width: int = 720) -> str:
    """Two panels over each arm's requests: the error-rate upper bound against the gate's maximum (with the pass
    look marked), and accuracy with the non-inferiority line (control's accuracy minus the margin)."""
    height, panel, first, second = 380, 130, 44, 214
    parts = [_open(width, height, "canary-chart", "canary error-rate bound and accuracy per arm over requests")]
    x_max = max([p.n for s in section.series for p in s.points] + [section.targets[-1], 1])
    y_err = max(3 * section.max_error_rate, 0.1)
    parts += _panel(section.series, "error_upper", top=first, height=panel, width=width, x_max=x_max, y_max=y_err,
                    title=f"error-rate upper bound ({1 - section.alpha:.0%}), gate: under {section.max_error_rate:g}")
    parts.append(_hline(section.max_error_rate, top=first, height=panel, width=width, y_max=y_err,
                        label=f"max {section.max_error_rate:g}"))
    parts.append(_vline(section.targets[-1], top=first, height=panel, width=width, x_max=x_max,
                        label=f"pass look at {section.targets[-1]}"))
    parts += _panel(section.series, "accuracy", top=second, height=panel, width=width, x_max=x_max, y_max=1.0,
                    title="accuracy on labeled requests")
    control = next((a for a in section.arms if a.arm == "control"), None)
    if control is not None and control.accuracy is not None and section.quality_margin is not None:
        floor = max(0.0, control.accuracy - section.quality_margin)
        parts.append(_hline(floor, top=second, height=panel, width=width, y_max=1.0,
                            label=f"control - {section.quality_margin:g}"))
    parts += [_legend(width)]
    return "".join(parts) + "</svg>"


_LEFT, _RIGHT = 50, 130


def _panel(series: list[ArmSeries], field: str, *, top: int, height: int, width: int, x_max: int, y_max: float,
           title: str) -> list[str]:
    plot = width - _LEFT - _RIGHT
    parts = [_text(_LEFT, top - 6, title, size=12),
             f'<rect x="{_LEFT}" y="{top}" width="{plot}" height="{height}" fill="none" stroke="#d1d5db"/>',
             _text(_LEFT - 4, top + 10, f"{y_max:.2g}", anchor="end"), _text(_LEFT - 4, top + height, "0",
                                                                               anchor="end"),
             _text(_LEFT + plot, top + height + 14, f"{x_max} requests", anchor="end")]
    for arm in series:
        points = [(p.n, getattr(p, field)) for p in arm.points if getattr(p, field) is not None]
        if not points:
            continue
        path = " ".join(f"{_LEFT + plot * n / x_max:.1f},{top + height * (1 - min(v, y_max) / y_max):.1f}"
                        for n, v in points)
        parts.append(f'<polyline class="arm-{escape(arm.arm)}" fill="none" stroke="{ARM_COLOUR.get(arm.arm, "#000")}"'
                     f' stroke-width="2" points="{path}"><title>{escape(arm.arm)}: {points[-1][1]:.3f} after '
                     f'{points[-1][0]} requests</title></polyline>')
    return parts


def _hline(value: float, *, top: int, height: int, width: int, y_max: float, label: str) -> str:
    y = top + height * (1 - min(value, y_max) / y_max)
    return (f'<line class="threshold" x1="{_LEFT}" y1="{y:.1f}" x2="{width - _RIGHT}" y2="{y:.1f}" '
            f'stroke="{THRESHOLD}" stroke-dasharray="6 4"/>'
            + _text(width - _RIGHT + 4, y + 4, label, colour=THRESHOLD))


def _vline(n: int, *, top: int, height: int, width: int, x_max: int, label: str) -> str:
    x = _LEFT + (width - _LEFT - _RIGHT) * n / x_max
    return (f'<line class="look" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + height}" stroke="#9333ea" '
            f'stroke-dasharray="3 3"/>' + _text(x + 3, top + 12, label, colour="#9333ea"))


def _legend(width: int) -> str:
    """Across the top, clear of the threshold labels in the right margin."""
    x = width - _RIGHT - 190
    return "".join(f'<rect x="{x + i * 95}" y="8" width="14" height="4" fill="{colour}"/>'
                   + _text(x + i * 95 + 18, 13, arm) for i, (arm, colour) in enumerate(ARM_COLOUR.items()))


def _open(width: int, height: int, kind: str, label: str) -> str:
    return (f'<svg class="chart {kind}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>')


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 11, weight: str = "normal",
          colour: str = "#374151") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" font-family="sans-serif" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{colour}">{escape(text)}</text>')
