"""The report's Pareto-front section (``<section id="pareto_front">``): the metric against the first
cost objective for every completed trial, the front drawn as a staircase, and the latency budget as
a vertical line when the study has one (``--max-latency-ms``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from automl.report._sections import Section, _table, build_sections

if TYPE_CHECKING:
    import optuna

KEY = "pareto_front"
TITLE = "Pareto front"


def report_sections(study: optuna.Study) -> list[Section]:
    """The report's sections: the Pareto front first for a multi-objective study, then ``build_sections``
    (a single-objective study's report is unchanged)."""
    if len(study.directions) < 2:
        return build_sections(study)
    return [pareto_section(study), *build_sections(study)]


def pareto_section(study: optuna.Study) -> Section:
    """The front of a multi-objective study as a plot and a table."""
    import plotly.graph_objects as go

    from automl.runtime.latency import stored_max_latency_ms
    from automl.search.moo import COSTS, UNITS, maximizes, pareto_front, study_objectives

    title = TITLE
    objectives = study_objectives(study)
    if len(objectives) < 2:
        objectives = ("value", *[f"objective {i}" for i in range(1, len(study.directions))])
    front = pareto_front(study)
    if not front:
        return Section(KEY, title, note="no completed trial yet")
    from optuna.trial import TrialState

    metric, cost = objectives[0], objectives[1]
    unit = UNITS.get(cost, "")
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    on_front = {t.number for t in front}
    others = [t for t in done if t.number not in on_front]
    fig = go.Figure()
    if others:
        fig.add_trace(go.Scatter(
            x=[t.values[1] for t in others], y=[t.values[0] for t in others], mode="markers", name="other trials",
            text=[f"trial {t.number}" for t in others], marker={"color": "#bbbbbb", "size": 8},
            hovertemplate=f"%{{text}}: {metric} %{{y:.4f}}, {cost} %{{x:.4g}} {unit}<extra></extra>",
        ))
    by_cost = sorted(front, key=lambda t: (t.values[1], t.number))
    fig.add_trace(go.Scatter(
        x=[t.values[1] for t in by_cost], y=[t.values[0] for t in by_cost], mode="lines+markers",
        name="Pareto front", line={"shape": "hv" if maximizes(study) else "vh", "color": "#1f77b4"},
        text=[f"trial {t.number}" for t in by_cost], marker={"size": 11, "color": "#1f77b4"},
        hovertemplate=f"%{{text}}: {metric} %{{y:.4f}}, {cost} %{{x:.4g}} {unit}<extra></extra>",
    ))
    config = study.user_attrs.get("automl") or {}
    max_latency_ms = stored_max_latency_ms(config)
    over = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("over_budget")]
    if max_latency_ms is not None and cost == "latency":
        fig.add_vline(x=max_latency_ms, line={"dash": "dash", "color": "crimson"},
                      annotation_text=f"budget {max_latency_ms:g} ms", annotation_position="top right")
    fig.update_layout(title=f"{metric} against {cost} ({len(front)} front members of {len(done)} completed trials)",
                      xaxis_title=f"{cost} ({unit})", yaxis_title=f"val {metric}", height=480)
    names = list(objectives)
    rows = [[t.number, *[t.values[i] for i in range(len(names))],
             *[t.user_attrs.get(COSTS[c], "") for c in ("latency", "size", "params") if c not in names[1:]]]
            for t in front]
    extra = [c for c in ("latency", "size", "params") if c not in names[1:]]
    header = ["trial", f"val {metric}", *[f"{n} ({UNITS.get(n, '')})" for n in names[1:]],
              *[f"{c} ({UNITS[c]})" for c in extra]]
    table = _table(header, rows, "pareto")
    note = (f"every completed trial's val {metric} against its {cost}, measured before training; the front's "
            f"members are what `automl trials --pareto` lists")
    if max_latency_ms is not None:
        note += f"; budget {max_latency_ms:g} ms ({len(over)} trials over it never trained)"
    return Section(KEY, title, figures=[fig], html=table, note=note)
