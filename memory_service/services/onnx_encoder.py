"""ONNX Runtime inference for mean-pooled BERT-style sentence-transformers models.

On this service's 2-core CPUs ONNX Runtime embeds 1.5-2x faster than eager PyTorch with the
same vectors (cosine > 0.9999), and a single-threaded session keeps query latency steady
when other processes load the cores (PyTorch's OpenMP pool spins badly under contention).
The model is exported once from the loaded sentence-transformers model and cached on disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

FloatMatrix = npt.NDArray[np.float32]
SMALL_BATCH = 4


class OnnxEncoder:
    def __init__(self, onnx_path: Path, tokenizer: Any, max_length: int, threads: int) -> None:
        import onnxruntime as ort

        self._tokenizer = tokenizer
        self._max_length = max_length
        # Queries run on a 1-thread session so concurrent requests spread over the cores;
        # batches get `threads`.
        self._query_session = self._session(ort, onnx_path, 1)
        self._batch_session = self._session(ort, onnx_path, threads)
        self._inputs = {i.name for i in self._query_session.get_inputs()}

    @staticmethod
    def _session(ort: Any, path: Path, threads: int) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @classmethod
    def from_sentence_transformer(
        cls, model: Any, model_id: str, cache_dir: Path, threads: int
    ) -> OnnxEncoder | None:
        """None when the model is not Transformer + mean Pooling (+ Normalize)."""
        modules = list(model)
        kinds = [type(m).__name__ for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
            log.warning("ONNX backend supports Transformer+Pooling models, not %s", kinds)
            return None
        if getattr(modules[1], "pooling_mode", None) != "mean":
            log.warning("ONNX backend supports mean pooling only; using PyTorch")
            return None
        digest = hashlib.sha256(model_id.encode()).hexdigest()[:16]
        path = cache_dir / f"{digest}.onnx"
        if not path.exists():
            cls._export(modules[0].auto_model, model.tokenizer, path)
        return cls(path, model.tokenizer, int(model.max_seq_length), max(threads, 1))

    @staticmethod
    def _export(auto_model: Any, tokenizer: Any, path: Path) -> None:
        import torch

        names = list(tokenizer.model_input_names)

        class LastHiddenState(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = auto_model

            def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                out = self.inner(**dict(zip(names, tensors, strict=True)))
                hidden: torch.Tensor = out.last_hidden_state
                return hidden

        sample = tokenizer(["a b", "c"], padding=True, return_tensors="pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        dynamic = {n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
        os.close(fd)
        auto_model.eval()
        with torch.no_grad():
            torch.onnx.export(
                LastHiddenState(),
                tuple(sample[n] for n in names),
                tmp,
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=dynamic,
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)  # atomic: a crash mid-export never leaves a half file
        log.info("exported ONNX model to %s", path)

    def encode(self, texts: list[str], batch_size: int) -> FloatMatrix:
        session = self._query_session if len(texts) <= SMALL_BATCH else self._batch_session
        # Sorting by length keeps padding (wasted compute) small inside each batch.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        chunks: list[FloatMatrix] = []
        for start in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[start : start + batch_size]]
            chunks.append(self._encode_batch(session, batch))
        out = np.concatenate(chunks)
        result = np.empty_like(out)
        result[order] = out
        return result

    def _encode_batch(self, session: Any, batch: list[str]) -> FloatMatrix:
        enc = self._tokenizer(
            batch, padding=True, truncation=True, max_length=self._max_length, return_tensors="np"
        )
        feeds = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in self._inputs}
        hidden = session.run(None, feeds)[0]
        mask = np.asarray(enc["attention_mask"], dtype=np.float32)[..., None]
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)
