"""Train the offline demo model: a tiny GPT-NeoX with Pythia's architecture, on the King James Bible,
saved at Pythia-named checkpoints. Dev only (torch, transformers); the app never imports this.

    python tools/train_demo.py            # about 17 minutes on 2 CPU cores; rewrites model_utils/store/data/demo/
    python tools/train_demo.py --smoke OUT_DIR   # seconds: 4 steps on the shipped passages, into OUT_DIR

The corpus comes from Debian's packages ``bible-kjv`` and ``bible-kjv-text`` (the KJV text is in the
public domain; the package's retrieval program is GPL-2+ and is only run here, never shipped):
``apt-get download`` fetches them, ``dpkg -x`` unpacks them into a temporary folder, and the
package's ``bible`` program prints every verse. Every 40th chapter is held out from training.

Architecture exactly as Pythia's (config keys as in EleutherAI's repos): rotary on 25% of each head,
parallel residual, untied input/output embeddings, GELU, 4x MLP; a byte-level BPE tokenizer with
``<|endoftext|>`` as id 0. Each training document is one chapter, separated by ``<|endoftext|>`` as
Pythia's were. Checkpoints are written as float16 safetensors, which the app converts with its own
converter on first use; TRAINING.json records the seed, the command, the corpus hash and the
held-out perplexity at each checkpoint (torch, float32, the app's scoring windows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from model_utils.store.tiny_model import TinyShape, gpt_neox_config, train_tokenizer  # noqa: E402

OUT = ROOT / "model_utils" / "store" / "data" / "demo"
SEED = 1234
SHAPE = TinyShape(num_layers=3, hidden_size=96, num_heads=3)  # head size 32: vLLM's CPU attention needs >= 32
VOCAB = 1024
SEQ_LEN, BATCH = 512, 8  # texts up to 512 tokens are what the model saw: the shipped passages fit
STEPS = 3000
LR, WARMUP, MIN_LR_FRACTION = 2e-3, 100, 0.1
# Pythia's schedule in miniature: step0, log-spaced early steps, then evenly spaced; the last is "main".
CHECKPOINTS = (0, 1, 16, 64, 256, 512, 1000, 2000, STEPS)
HELD_OUT_EVERY = 40  # every 40th chapter is never trained on
HELD_OUT_SAMPLE_CHARS = 1600  # the shipped held-out passage: under SEQ_LEN tokens
TRAIN_SAMPLE_CHARS = 1600  # a shipped passage the model did train on (memorization studies)


@dataclass(frozen=True)
class Plan:
    """What one run trains: the shipped model's plan, or --smoke's few steps on the shipped passages."""

    out: Path = OUT
    steps: int = STEPS
    checkpoints: tuple[int, ...] = CHECKPOINTS
    seq_len: int = SEQ_LEN
    batch: int = BATCH
    vocab: int = VOCAB
    smoke: bool = False


SMOKE = Plan(steps=4, checkpoints=(0, 1, 4), seq_len=32, batch=2, vocab=300, smoke=True)


def smoke_corpus() -> str:
    """A verse listing made of the demo's shipped passages (80 chapters of short verses), in the format the Debian
    program prints: what --smoke trains on, offline."""
    demo = OUT
    sentences = [t.strip() for f in ("heldout.txt", "trained_passage.txt")
                 for t in re.split(r"(?<=[.:;])\s+", (demo / f).read_text()) if t.strip()]
    return "".join(f"Sm{i // 4 + 1}:{i % 4 + 1} {sentences[i % len(sentences)]}\n" for i in range(320))


def fetch_corpus(work: Path) -> str:
    """The KJV text, one verse per line, from Debian's packages."""
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "bible-kjv", "bible-kjv-text"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    for deb in work.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(work / "root")], check=True, timeout=120)
    listing = work / "kjv.txt"
    with open(listing, "w") as out:  # the program wants a file (or a terminal) to write to, not a pipe
        # relative paths: the 1989 program keeps the data file's name in a short buffer
        subprocess.run(["root/usr/bin/bible", "-f", "-d", "root/usr/lib/bible.data", "Gen1:1-Rev22:21"], cwd=work,
                       check=True, stdout=out, stdin=subprocess.DEVNULL, timeout=120)
    return listing.read_text()


def chapters(verses_text: str) -> list[str]:
    """Group 'Ge1:1 In the beginning ...' lines into chapters of plain text (references dropped)."""
    groups: dict[str, list[str]] = {}
    for line in verses_text.splitlines():
        m = re.match(r"^(\S+?\d+):\d+ (.*)$", line)
        if m:
            groups.setdefault(m.group(1), []).append(m.group(2).strip())
    return [" ".join(v) for v in groups.values()]


# transformers 5 calls the output embedding lm_head; EleutherAI's checkpoints (and our converter) say embed_out
PYTHIA_NAMES = {"lm_head.weight": "embed_out.weight"}


def corpus_words(docs: list[str]) -> str:
    """Every distinct word of the corpus, lower case, one per line: what 'writes English words' is checked against."""
    return "\n".join(sorted({w for d in docs for w in re.findall(r"[a-z]+", d.lower())})) + "\n"


def checkpoint_state(model) -> dict[str, torch.Tensor]:
    """The float16 weights under the names a Pythia checkpoint uses (buffers such as rotary tables left out)."""
    names = set(dict(model.named_parameters()))
    return {PYTHIA_NAMES.get(k, k): v.detach().to(torch.float16).contiguous()
            for k, v in model.state_dict().items() if k in names}


def save_revision(model, tokenizer_dir: Path, config: dict, directory: Path) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({**config, "torch_dtype": "float16"}, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, directory / name)
    save_file(checkpoint_state(model), str(directory / "model.safetensors"), metadata={"format": "pt"})


def held_out_perplexity(model, ids: list[int], eos_id: int) -> float:
    """exp(mean NLL) of ``ids`` after <|endoftext|>, with the weights rounded to float16 as shipped,
    computed in float32 in windows of 2047 tokens: the app's own scoring rule."""
    import copy

    ref = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))
        total, count = 0.0, 0
        for start in range(0, len(ids), 2047):
            window = ids[start:start + 2047]
            logits = ref(torch.tensor([[eos_id, *window]])).logits[0, :-1].float()
            logp = torch.log_softmax(logits, -1)
            total -= float(logp[torch.arange(len(window)), torch.tensor(window)].sum())
            count += len(window)
    return math.exp(total / count)


def main(plan: Plan = Plan()) -> int:
    from tokenizers import Tokenizer
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    rng = np.random.default_rng(SEED)
    verses = smoke_corpus() if plan.smoke else fetch_corpus(ROOT / "tools" / ".work")
    corpus_sha = hashlib.sha256(verses.encode()).hexdigest()
    docs = chapters(verses)
    train_docs = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    held_docs = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    print(f"{len(docs)} chapters: {len(train_docs)} for training, {len(held_docs)} held out", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp)
        (tok_dir / "train.txt").write_text("\n".join(train_docs))
        vocab_size = train_tokenizer(tok_dir, plan.vocab, corpus=tok_dir / "train.txt")
        tokenizer = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
        eos = tokenizer.token_to_id("<|endoftext|>")
        assert eos == 0, "GPT-NeoX style: <|endoftext|> is id 0"
        stream: list[int] = []
        for d in train_docs:
            stream += tokenizer.encode(d, add_special_tokens=False).ids + [eos]
        data = np.array(stream, dtype=np.int64)
        held_text = " ".join(held_docs)[:HELD_OUT_SAMPLE_CHARS].rsplit(" ", 1)[0]
        train_text = train_docs[0][:TRAIN_SAMPLE_CHARS].rsplit(" ", 1)[0]
        held_ids = tokenizer.encode(held_text, add_special_tokens=False).ids
        print(f"{len(data):,} training tokens, vocabulary {vocab_size}", flush=True)

        config = gpt_neox_config(SHAPE, vocab_size)
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**config))
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.01)

        def lr_at(step: int) -> float:
            if step < WARMUP:
                return LR * (step + 1) / WARMUP
            progress = (step - WARMUP) / max(1, plan.steps - WARMUP)
            return LR * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))

        if plan.out.exists():
            shutil.rmtree(plan.out)
        records, started, loss_value = [], time.time(), float("nan")
        for step in range(plan.steps + 1):
            if step in plan.checkpoints:
                revision = "main" if step == plan.steps else f"step{step}"
                model.eval()
                save_revision(model, tok_dir, config, plan.out / revision)
                ppl = held_out_perplexity(model, held_ids, eos)
                model.train()
                records.append({"revision": revision, "step": step, "held_out_perplexity": ppl,
                                "train_loss": loss_value})
                print(f"step {step}: held-out perplexity {ppl:.2f} (train loss {loss_value:.3f}, "
                      f"{time.time() - started:.0f} s)", flush=True)
            if step == plan.steps:
                break
            starts = rng.integers(0, len(data) - plan.seq_len - 1, size=plan.batch)
            batch = torch.from_numpy(np.stack([data[s:s + plan.seq_len + 1] for s in starts]))
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            logits = model(input_ids=batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), batch[:, 1:].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            loss_value = float(loss.detach())

    (plan.out / "heldout.txt").write_text(held_text)
    (plan.out / "words.txt").write_text(corpus_words(docs))
    (plan.out / "trained_passage.txt").write_text(train_text)
    (plan.out / "TRAINING.json").write_text(json.dumps({
        "command": "python tools/train_demo.py", "seed": SEED,
        "corpus": {"source": "Debian packages bible-kjv + bible-kjv-text (King James Version, public domain)",
                   "sha256_of_verse_listing": corpus_sha, "chapters": len(docs), "held_out_every": HELD_OUT_EVERY},
        "shape": {"num_layers": SHAPE.num_layers, "hidden_size": SHAPE.hidden_size, "num_heads": SHAPE.num_heads,
                  "vocab_size": vocab_size, "parameters": sum(p.numel() for p in model.parameters())},
        "training": {"steps": plan.steps, "sequence_length": plan.seq_len, "batch_size": plan.batch,
                     "learning_rate": LR, "warmup": WARMUP, "torch": torch.__version__},
        "checkpoints": records,
    }, indent=2))
    print(f"wrote {plan.out}", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", type=Path, metavar="OUT_DIR",
                        help="train 4 steps on the shipped passages into OUT_DIR (never the shipped model's folder)")
    args = parser.parse_args()
    if args.smoke and args.smoke.resolve() == OUT.resolve():
        parser.error(f"--smoke writes a toy model: not into {OUT}")
    sys.exit(main(replace(SMOKE, out=args.smoke) if args.smoke else Plan()))
