"""EleutherAI's lm-evaluation-harness evaluating the app through its OpenAI-compatible routes, checked against the
harness's own transformers backend on the same checkpoints (tests/lm_eval_reference.py, committed results).

Three small tasks ship in tests/lm_eval_tasks/ (offline: `dataset_path: json`): a multiple-choice task
(loglikelihood), a rolling-perplexity task whose third document spans two context windows
(loglikelihood_rolling) and a greedy generation task (generate_until). The app serves them in float32; lm-eval's
`local-completions` model reaches it with the remote tokenizer backend, run exactly as the README says, from the
repository root. Two checkpoints: the demo model's `main`, and one whose greedy next token is always
<|endoftext|> (tests/eos_checkpoint.py), so that every scored request ends with an end-of-text entry.
"""

from __future__ import annotations

import re

import httpx
import lm_eval_reference as reference
import pytest

from model_utils.settings import Settings

from live_app import running_app

README = reference.ROOT / "README.md"
EOS_MODEL = "eos-pythia"


def readme_command() -> tuple[str, list[str]]:
    """The README's offline lm-eval command: (its environment prefix, its words)."""
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S) if "tests/lm_eval_tasks" in b]
    assert len(blocks) == 1, "the README shows one offline lm-eval command"
    words = blocks[0].replace("\\\n", " ").split()
    start = words.index("lm_eval")
    return " ".join(words[:start]), words[start:]


def test_the_committed_reference_is_for_the_current_lm_eval_checkpoints_and_tasks():
    stored = reference.load()["fingerprint"]
    assert stored == reference.fingerprint(), "regenerate it: python tests/lm_eval_reference.py"


@pytest.fixture(scope="module")
def app_runs(tmp_path_factory):
    """lm-eval through the app, on both checkpoints: the README's command as written, only the address changed."""
    out = tmp_path_factory.mktemp("lm-eval")
    eos_dir = reference.checkpoint_dir("eos", out)
    settings = Settings(model_dir=str(eos_dir), compute_type="float32", device="cpu", cache_dir=str(out / "cache"))
    prefix, words = readme_command()
    with running_app(settings) as (url, _):
        command = [w.replace("http://127.0.0.1:7860", url) for w in words]
        demo = reference.run_lm_eval(command, out / "demo", prefix)
        eos_args = f"model={EOS_MODEL},base_url={url}/m/{EOS_MODEL}/v1/completions,tokenizer_backend=remote"
        eos = reference.run_lm_eval([*command[:-1], eos_args], out / "eos", prefix)
        direct = direct_check(url, demo)
    return {"demo": demo, "eos": eos, "direct": direct}


def direct_check(url: str, run: dict) -> tuple[float, float, str]:
    """The first multiple-choice answer scored straight through /v1/completions, as a client would by hand."""
    arguments = run["samples"]["kjv_mc"][0]["arguments"]["gen_args_0"]
    context, continuation = arguments["arg_0"], arguments["arg_1"]
    tokens = [httpx.post(f"{url}/tokenize", json={"prompt": text}).json()["tokens"] for text in (context,
                                                                                                  continuation)]
    body = {"prompt": tokens[0] + tokens[1], "echo": True, "max_tokens": 0, "logprobs": 0}
    logprobs = httpx.post(f"{url}/m/demo-pythia-kjv/v1/completions", json=body, timeout=60).json()
    by_hand = sum(logprobs["choices"][0]["logprobs"]["token_logprobs"][-len(tokens[1]):])
    return by_hand, float(run["samples"]["kjv_mc"][0]["filtered_resps"][0][0]), continuation


def _pair(response) -> list:
    """A multiple-choice response is [loglikelihood, is_greedy]; a rolling one is the loglikelihood alone."""
    return response if isinstance(response, list) else [response]


def close_enough(ours: float, theirs: float) -> bool:
    # Both sides sum float32 log-probs; kernels differ between CPUs (one Intel machine gave -1472.474638 where the
    # reference says -1472.474854). 1e-4 for a short answer, and room that grows with the size of the sum.
    return abs(ours - theirs) <= 1e-4 + 1e-6 * abs(theirs)


@pytest.mark.slow  # a live server and two lm-eval runs
@pytest.mark.parametrize("checkpoint", reference.CHECKPOINTS)
def test_loglikelihoods_agree_with_transformers(app_runs, checkpoint):
    ours_run, theirs_run = app_runs[checkpoint], reference.load()["runs"][checkpoint]
    for task in ("kjv_mc", "kjv_ppl"):
        ours, theirs = ours_run["samples"][task], theirs_run["samples"][task]
        assert len(ours) == len(theirs) > 0
        for doc, (mine, ref) in enumerate(zip(ours, theirs, strict=True)):
            assert mine["arguments"] == ref["arguments"], (task, doc)
            for (ll, *greedy), (ll_ref, *greedy_ref) in zip(map(_pair, mine["filtered_resps"]),
                                                            map(_pair, ref["filtered_resps"]), strict=True):
                assert close_enough(float(ll), float(ll_ref)), (task, doc, ll, ll_ref)
                assert greedy == greedy_ref, (task, doc)  # is_greedy: every continuation token was the top one


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", reference.CHECKPOINTS)
def test_the_same_accuracy_and_the_same_greedy_generations(app_runs, checkpoint):
    ours, theirs = app_runs[checkpoint], reference.load()["runs"][checkpoint]
    assert ours["results"]["kjv_mc"]["acc,none"] == theirs["results"]["kjv_mc"]["acc,none"]
    assert ours["samples"]["kjv_gen"] == theirs["samples"]["kjv_gen"]
    assert ours["results"]["kjv_ppl"]["word_perplexity,none"] == pytest.approx(
        theirs["results"]["kjv_ppl"]["word_perplexity,none"], rel=1e-5)


@pytest.mark.slow
def test_an_answer_scores_as_scoring_it_by_hand_and_the_demo_beats_chance(app_runs):
    by_hand, through_lm_eval, continuation = app_runs["direct"]
    assert continuation == " Egypt"  # one space between context and answer: lm-eval's target_delimiter
    assert by_hand == pytest.approx(through_lm_eval, abs=1e-5)
    assert app_runs["demo"]["results"]["kjv_mc"]["acc,none"] > 0.25  # four choices: chance is 0.25
    # the end-of-text checkpoint: no answer is ever the greedy one (the end of the text always is)
    flags = [pair[1] for sample in app_runs["eos"]["samples"]["kjv_mc"] for pair in sample["filtered_resps"]]
    assert flags and not any(flag == "True" for flag in flags)
