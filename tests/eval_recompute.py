"""An independent re-implementation of the evaluation metrics, used by the tests to check results.json against
generations.jsonl. Deliberately written apart from r4b_trl.evaluation (do not import it here)."""

import pytest


def _div(a, b):
    return None if (a is None or b is None or b == 0) else a / b


def recompute_mode(rows):
    scored = [r for r in rows if r["correct"] in (True, False)]
    generated = [r for r in rows if isinstance(r["num_tokens"], int)]
    toks = sorted(r["num_tokens"] for r in generated)
    median = None
    if toks:
        mid = len(toks) // 2
        median = float(toks[mid]) if len(toks) % 2 else (toks[mid - 1] + toks[mid]) / 2
    reasons = {}
    for r in rows:
        if r["correct"] is None:
            code = r["unscorable_reason"].split(":")[0]
            reasons[code] = reasons.get(code, 0) + 1
    n_correct = len([r for r in scored if r["correct"]])
    return {
        "n": len(rows), "n_scored": len(scored), "n_unscorable": len(rows) - len(scored),
        "unscorable_reasons": reasons, "n_correct": n_correct, "accuracy": _div(n_correct, len(scored)),
        "n_generated": len(generated),
        "think_rate": _div(len([r for r in generated if r["parsed_mode"] == "thinking"]), len(generated)),
        "truncation_rate": _div(len([r for r in generated if r["finished"] is False
                                     or r["parsed_mode"] == "truncated"]), len(generated)),
        "mean_tokens": _div(sum(toks), len(toks)) if toks else None, "median_tokens": median,
    }


def recompute_auto(by_mode, mets):
    a, t = mets["auto"], mets.get("thinking")
    out = {"accuracy_vs_thinking": _div(a["accuracy"], t["accuracy"]) if t else None,
           "tokens_vs_thinking": _div(a["mean_tokens"], t["mean_tokens"]) if t else None,
           "oracle_gap": None, "oracle_n": 0}
    if "thinking" in by_mode and "non_thinking" in by_mode:
        th = {r["item_id"]: r["correct"] for r in by_mode["thinking"]}
        nt = {r["item_id"]: r["correct"] for r in by_mode["non_thinking"]}
        n = gap = 0
        for r in by_mode["auto"]:
            i = r["item_id"]
            if r["correct"] is None or th.get(i) is None or nt.get(i) is None:
                continue
            n += 1
            chose_thinking = r["parsed_mode"] != "non_thinking"
            if not r["correct"] and ((chose_thinking and nt[i]) or (not chose_thinking and th[i])):
                gap += 1
        out["oracle_n"], out["oracle_gap"] = n, _div(gap, n)
    return out


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def recompute_gate(gate_rows):
    """The gate / sampled-auto metrics from auto_gate.jsonl rows."""
    gen = [r for r in gate_rows if r["sampled_mode"] is not None]
    scored = [r for r in gen if r["sampled_correct"] in (True, False)]
    notes = sorted({r["gate_note"] for r in gate_rows if r["gate_note"]})
    return {
        "gate": _mean([r["gate"] for r in gate_rows]), "gate_n": len([r for r in gate_rows if r["gate"] is not None]),
        "gate_other_mass": _mean([r["other_mass"] for r in gate_rows]), "gate_note": "; ".join(notes) or None,
        "sampled_think_rate": _div(len([r for r in gen if r["sampled_mode"] == "thinking"]), len(gen)),
        "sampled_accuracy": _div(len([r for r in scored if r["sampled_correct"]]), len(scored)),
        "sampled_mean_tokens": _mean([r["sampled_tokens"] for r in gen]), "sampled_n": len(gen),
        "sampled_temperature": gen[0]["temperature"] if gen else None,
    }


def recompute_all(rows, gate_rows=None):
    """Metrics per mode from generations.jsonl rows (and, for auto, auto_gate.jsonl rows when given)."""
    mets = {}
    by_mode = {}
    for r in rows:
        by_mode.setdefault(r["mode"], []).append(r)
    for m, rs in by_mode.items():
        mets[m] = recompute_mode(rs)
    if "auto" in mets:
        mets["auto"].update(recompute_auto(by_mode, mets))
        if gate_rows:
            ids = {r["item_id"] for r in by_mode["auto"]}
            mets["auto"].update(recompute_gate([g for g in gate_rows if g["item_id"] in ids]))
    return mets


def assert_same(expected, got, where):
    assert set(expected) == set(got) - {"groups"}, f"{where}: metric keys differ"
    for k, v in expected.items():
        if isinstance(v, float):
            assert got[k] == pytest.approx(v), f"{where}.{k}"
        else:
            assert got[k] == v, f"{where}.{k}"
