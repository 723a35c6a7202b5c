"""The benchmark runner, generation helper and comparison on real parts (tiny random model, real SmolLM2)."""

from __future__ import annotations

import json

import pytest

from saerl_hf.evaluation import cli_main, compare_main, compare_results, evaluate_model, pass_at_k, summarize
from saerl_hf.generation import generate

ROWS = [
    {"id": "a", "problem": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "7",
     "source": "mawps"},
    {"id": "b", "problem": "A box holds 12 eggs. How many eggs are in 2 boxes?", "answer": "24", "source": "mawps"},
    {"id": "c", "problem": "Sara had 10 pens and gave away 3. How many are left?", "answer": "7", "source": "mawps"},
]
COMPETITION = [
    {"id": "m1", "problem": "What is $1+1$?", "answer": "2", "source": "math500", "level": 1.0, "subject": "Algebra"},
    {"id": "m2", "problem": "Compute $\\frac{1}{2}+\\frac{1}{4}$.", "answer": "\\frac34", "source": "math500",
     "level": 2.0, "subject": "Prealgebra"},
]


def test_evaluate_in_memory_model_writes_everything(tiny, tmp_path):
    model, tokenizer = tiny
    results = evaluate_model(model, tokenizer, ["toy", "comp"], datasets={"toy": ROWS, "comp": COMPETITION},
                             max_new_tokens=4, batch_size=2, output_dir=tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["benchmarks"] == results["benchmarks"]
    assert saved["settings"]["seed"] == 0 and saved["settings"]["temperature"] == 0.0
    assert {"torch", "transformers", "math-verify"} <= set(saved["versions"])
    toy = saved["benchmarks"]["toy"]
    assert toy["family"] == "elementary" and toy["n_items"] == 3 and toy["max_new_tokens"] == 4
    assert saved["benchmarks"]["comp"]["family"] == "competition"
    assert saved["benchmarks"]["comp"]["by_level"] == {"1": 0.0, "2": 0.0}
    items = saved["items"]["toy"]
    assert [item["id"] for item in items] == ["a", "b", "c"]  # dataset order, whatever the generation order
    assert all(len(item["outputs"]) == 1 and item["verdicts"] == [False] for item in items)
    assert all(item["new_tokens"] == [4] and item["truncated"] == 1 for item in items)
    assert "| toy | elementary | 3 | 4 | 0.0 |" in (tmp_path / "results.md").read_text()
    assert {"accuracy.png", "comp_by_level.png", "comp_by_subject.png"} <= {p.name for p in tmp_path.iterdir()}


def test_rerun_skips_scored_items(tiny, tmp_path):
    """Resume: items already in results.json are kept as they are, only new ones are generated."""
    model, tokenizer = tiny
    kwargs = dict(datasets={"toy": ROWS}, max_new_tokens=3, output_dir=tmp_path, progress=False, make_plots=False)
    evaluate_model(model, tokenizer, ["toy"], limit=2, **kwargs)
    path = tmp_path / "results.json"
    saved = json.loads(path.read_text())
    assert [item["id"] for item in saved["items"]["toy"]] == ["a", "b"]
    # Mark item "a" as solved: a rerun that regenerated it would get the tiny model's wrong output back.
    saved["items"]["toy"][0].update(outputs=["Answer: 7"], verdicts=[True])
    path.write_text(json.dumps(saved))
    results = evaluate_model(model, tokenizer, ["toy"], **kwargs)
    assert [item["id"] for item in results["items"]["toy"]] == ["a", "b", "c"]
    assert results["items"]["toy"][0]["outputs"] == ["Answer: 7"]
    assert results["benchmarks"]["toy"]["accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="overwrite"):
        evaluate_model(model, tokenizer, ["toy"], **{**kwargs, "max_new_tokens": 5})
    fresh = evaluate_model(model, tokenizer, ["toy"], **{**kwargs, "overwrite": True})
    assert fresh["benchmarks"]["toy"]["accuracy"] == 0.0


def test_sampling_reports_avg_and_pass_at_k(tiny):
    model, tokenizer = tiny
    results = evaluate_model(model, tokenizer, ["toy"], datasets={"toy": ROWS[:2]}, n_samples=3, temperature=1.0,
                             max_new_tokens=3, progress=False)
    bench = results["benchmarks"]["toy"]
    assert bench["n_samples"] == 3 and {"avg@3", "pass@3"} <= set(bench)
    assert all(len(item["outputs"]) == 3 for item in results["items"]["toy"])
    again = evaluate_model(model, tokenizer, ["toy"], datasets={"toy": ROWS[:2]}, n_samples=3, temperature=1.0,
                           max_new_tokens=3, progress=False)
    assert [i["outputs"] for i in again["items"]["toy"]] == [i["outputs"] for i in results["items"]["toy"]]
    with pytest.raises(ValueError, match="temperature"):
        evaluate_model(model, tokenizer, ["toy"], datasets={"toy": ROWS}, n_samples=2, progress=False)


def test_pass_at_k_and_summary():
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    items = [{"verdicts": [True, False], "level": 1.0}, {"verdicts": [False, False], "level": 1.0},
             {"verdicts": [True, True], "level": 2.0}]
    summary = summarize(items, 2)
    assert summary["accuracy"] == pytest.approx(0.5) and summary["pass@2"] == pytest.approx(2 / 3)
    assert summary["by_level"] == {"1": 0.25, "2": 1.0} and summary["count_by_level"] == {"1": 2, "2": 1}
    assert summarize([], 1)["accuracy"] == 0.0


def test_bad_rows_give_clear_errors_or_documented_zeros(tiny):
    model, tokenizer = tiny
    rows = [{"id": "x", "problem": "What is 2+2?", "answer": None, "source": "mawps"}, *ROWS[:1]]
    results = evaluate_model(model, tokenizer, ["toy"], datasets={"toy": rows}, max_new_tokens=2, progress=False)
    assert results["items"]["toy"][0]["error"].startswith("missing gold")
    held_out = evaluate_model(model, tokenizer, datasets={"held": ROWS[:1]}, max_new_tokens=2, progress=False)
    assert list(held_out["benchmarks"]) == ["held"]  # benchmarks default to the given datasets
    assert results["benchmarks"]["toy"]["n_items"] == 2
    with pytest.raises(ValueError, match="row 1 has no 'problem'"):
        evaluate_model(model, tokenizer, ["toy"], datasets={"toy": [ROWS[0], {"problem": " ", "answer": "1"}]},
                       progress=False)
    with pytest.raises(ValueError, match="duplicate 'id'"):
        evaluate_model(model, tokenizer, ["toy"], datasets={"toy": [ROWS[0], ROWS[0]]}, progress=False)
    with pytest.raises(ValueError, match="no rows for"):
        evaluate_model(model, tokenizer, ["toy", "other"], datasets={"toy": ROWS}, progress=False)
    with pytest.raises(ValueError, match="tokenizer"):
        evaluate_model(model, None, ["toy"], datasets={"toy": ROWS}, progress=False)


def test_generate_rejects_bad_prompts(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        generate(model, tokenizer, ["ok", ""], max_new_tokens=2)
    with pytest.raises(TypeError, match="list of strings"):
        generate(model, tokenizer, "one prompt", max_new_tokens=2)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, tokenizer, ["ok"], max_new_tokens=2, top_p=0)
    assert generate(model, tokenizer, [], max_new_tokens=2) == []


def test_cli_benchmark_run_yaml_and_compare(tiny_model_dir, data_dir, tmp_path):
    """`saerl-hf evaluate` on the real data files (YAML config + overrides), then `saerl-hf compare`."""
    config = tmp_path / "eval.yaml"
    config.write_text(f"model: {tiny_model_dir}\nbenchmarks: gsm8k,math500\nlimit: 2\nmax_new_tokens: 3\n")
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    assert cli_main(["--config", str(config), "--output-dir", str(out_a)]) == 0
    assert cli_main(["--config", str(config), "--output-dir", str(out_b), "--limit", "1"]) == 0
    results = json.loads((out_a / "results.json").read_text())
    assert results["settings"]["max_new_tokens"] == 3 and results["settings"]["limit"] == 2
    assert [i["id"] for i in results["items"]["math500"]] == ["math500/test/precalculus/807.json",
                                                              "math500/test/intermediate_algebra/1994.json"]
    assert results["items"]["gsm8k"][0]["answer"] == "18"
    assert compare_main(["--results", str(out_a), str(out_b / "results.json"), "--names", "base,other",
                         "--output-dir", str(tmp_path / "cmp")]) == 0
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| benchmark | base | other |" in table and "| gsm8k | 0.0 (n=2) | 0.0 (n=1) +0.0 |" in table
    assert (tmp_path / "cmp" / "compare.png").is_file()
    with pytest.raises(FileNotFoundError, match="results.json"):
        compare_results([tmp_path / "missing"])
    with pytest.raises(ValueError, match="names"):
        compare_results([out_a, out_b], names=["one"])


@pytest.mark.slow
def test_batched_generation_equals_one_at_a_time_on_smollm2(smollm2_path, data_dir):
    """Left padding and dropping finished rows must not change greedy outputs: batched == single ==
    plain ``model.generate``, on the real model."""
    import torch

    from saerl_hf.data import load_math_dataset
    from saerl_hf.models import load_model, load_tokenizer
    from saerl_hf.prompts import render_prompt

    model, tokenizer = load_model(smollm2_path), load_tokenizer(smollm2_path)
    # MAWPS items whose greedy answers end after 12-20 tokens: rows leave the batch at different steps.
    rows = load_math_dataset("mawps", limit=7).select([0, 1, 4, 6])
    prompts = [render_prompt(tokenizer, row["problem"], row["source"]) for row in rows]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 busy shared cores: one thread is several times faster (docs/evaluation.md)
    try:
        batched, counts, finished = generate(model, tokenizer, prompts, max_new_tokens=24, batch_size=4,
                                             progress=False, return_details=True)
        single = [generate(model, tokenizer, [p], max_new_tokens=24, progress=False)[0] for p in prompts]
        reference = []
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            out = model.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            reference.append([tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)])
    finally:
        torch.set_num_threads(threads)
    assert batched == single == reference
    assert sum(f[0] for f in finished) >= 2 and len({c[0] for c in counts}) >= 3  # compaction was exercised
    assert all(out[0].strip() for out in batched)
