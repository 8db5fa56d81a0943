"""Mixing curated sets: per-source weights, target thinking share, self-contained images, the data card."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from r4b_trl.data.io import DataError, read_jsonl, write_jsonl
from r4b_trl.data.mixing import MixConfig, build_data_card, load_curated, mix

ROOT = Path(__file__).resolve().parents[1]
CURATED = ROOT / "r4b_trl" / "data" / "samples" / "curated_sample"  # 12 thinking, 11 non-thinking, 4 with images


def _text_set(tmp_path, n_think, n_direct, source="text"):
    from r4b_trl.modes import ModePrefixes

    P = ModePrefixes()
    rows = []
    for i in range(n_think + n_direct):
        think = i < n_think
        rows.append({"id": f"{source}{i}", "source": source, "mode": "thinking" if think else "non_thinking",
                     "prompt": [{"role": "user", "content": f"q{i}"}],
                     "completion": [{"role": "assistant", "content": P.thinking_answer("r " * (i + 1), "a") if think
                                     else P.non_thinking_answer("a")}],
                     "solution": "", "evidence": {"pass_count": 0 if think else 8, "n_samples": 8}})
    p = tmp_path / f"{source}.jsonl"
    write_jsonl(p, rows)
    return p


def test_weights_and_thinking_share(tmp_path):
    text = _text_set(tmp_path, 10, 30)
    cfg = MixConfig(sources=[{"path": str(CURATED), "weight": 2.0}, {"path": str(text), "weight": 0.5, "name": "t"}],
                    output_dir=str(tmp_path / "mix"), seed=1)
    card = mix(cfg)
    assert card["by_source"]["sample"]["total"] == 46 and card["by_source"]["t"]["total"] == 20
    assert card["rows"] == 66
    rows = read_jsonl(tmp_path / "mix" / "mix.jsonl")
    assert len(rows) == 66
    # every row in block form (images present in the mix); text rows get an empty images list
    assert all(isinstance(r["prompt"][0]["content"], list) for r in rows)
    assert sum(bool(r["images"]) for r in rows) == 8
    for r in rows:
        for img in r["images"]:
            assert (tmp_path / "mix" / img).is_file()

    card = mix(MixConfig(sources=[str(CURATED), str(text)], output_dir=str(tmp_path / "mix2"), thinking_share=1 / 3,
                         seed=0))
    assert card["thinking_share"] == pytest.approx(1 / 3, abs=0.02)
    assert card["non_thinking"] == 41 and card["thinking"] == round(41 / 2)
    again = mix(MixConfig(sources=[str(CURATED), str(text)], output_dir=str(tmp_path / "mix3"), thinking_share=1 / 3,
                          seed=0))
    assert (tmp_path / "mix2" / "mix.jsonl").read_bytes() == (tmp_path / "mix3" / "mix.jsonl").read_bytes()
    assert again["rows"] == card["rows"]


def test_data_card(tmp_path, text_tokenizer):
    rows = load_curated(CURATED)
    card = build_data_card(rows, tokenizer=text_tokenizer, title="t")
    assert card["by_source"] == {"sample": {"thinking": 12, "non_thinking": 11, "total": 23, "thinking_share": 0.5217}}
    assert card["pass_count_histogram"]["0"] == 10 and sum(card["pass_count_histogram"].values()) == 17
    assert card["judge_verdicts"] == {"DIRECT": 4, "REASONING": 2}
    assert card["length_unit"] == "tokens"
    t, n = card["completion_length"]["thinking"], card["completion_length"]["non_thinking"]
    assert t["count"] == 12 and n["count"] == 11 and t["median"] > n["median"]
    mix(MixConfig(sources=[str(CURATED)], output_dir=str(tmp_path / "m")))
    md = (tmp_path / "m" / "data_card.md").read_text()
    assert "| sample | 12 | 11 | 23 | 0.5217 |" in md and "## Completion length per mode (characters)" in md
    assert json.loads((tmp_path / "m" / "data_card.json").read_text())["rows"] == 23


def test_bad_mix_configs(tmp_path):
    with pytest.raises(DataError, match="thinking_share must be strictly between 0 and 1"):
        MixConfig(sources=["x"], output_dir="o", thinking_share=1.0)
    with pytest.raises(DataError, match="unknown key"):
        MixConfig(sources=[{"path": "x", "weigth": 1}], output_dir="o")
    with pytest.raises(DataError, match="not found"):
        mix(MixConfig(sources=[str(tmp_path / "missing.jsonl")], output_dir=str(tmp_path / "o")))
    only_thinking = _text_set(tmp_path, 3, 0, source="only")
    with pytest.raises(DataError, match="needs both modes"):
        mix(MixConfig(sources=[str(only_thinking)], output_dir=str(tmp_path / "o"), thinking_share=0.3))


def test_mix_cli_and_parquet_roundtrip(tmp_path):
    import datasets

    cfg = tmp_path / "mix.yaml"
    cfg.write_text(f"sources:\n  - path: {CURATED}\n    weight: 1.0\nthinking_share: 0.4\nseed: 0\n"
                   f"output_dir: {tmp_path / 'out'}\noutput_format: both\n")
    res = subprocess.run([sys.executable, str(ROOT / "data_prep" / "mix.py"), "--config", str(cfg)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["non_thinking"] == 11 and summary["thinking"] == round(0.4 * 11 / 0.6)
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "mix.parquet"), split="train")
    assert len(ds) == summary["rows"] and isinstance(ds.features["images"].feature, datasets.Image)
    # a Parquet mix is itself a valid mix source
    card = mix(MixConfig(sources=[str(tmp_path / "out" / "mix.parquet")], output_dir=str(tmp_path / "again")))
    assert card["rows"] == summary["rows"] and card["rows_with_images"] == sum(bool(x) for x in ds["images"]) > 0
