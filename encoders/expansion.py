"""doc2query document expansion with a causal LM (DeeperImpact's expansion step).

The LM is loaded with ``AutoModelForCausalLM.from_pretrained`` (a local
directory or a hub id at a revision; ``gguf_file`` for GGUF weights, which
needs the ``gguf`` package). For each document it samples ``num_queries``
queries from the prompt; :func:`~lsr.encoders.text.append_new_terms` then
appends their unique new words to the document.

Generation is seeded per document (the config's ``seed`` mixed with a CRC-32
of the text) inside a forked RNG, so the queries of a document do not depend
on which documents were encoded before it (an interrupted and resumed encode
gives the same expansions) and the caller's global RNG state is untouched.
"""

from __future__ import annotations

import zlib

from .checkpoints import Checkpoint
from .config import ExpansionConfig, RuntimeConfig
from .errors import ModelLoadError
from .heads import cached


class Doc2Query:
    """Generate queries for documents with a causal LM."""

    def __init__(self, cfg: ExpansionConfig, runtime: RuntimeConfig) -> None:
        from .sides import resolve_device

        self.cfg = cfg
        self.device, self.dtype = resolve_device(runtime)
        self.ckpt = Checkpoint(cfg.model, cfg.revision, what="doc2query model")
        key = ("causal-lm", self.ckpt.spec, cfg.revision, cfg.gguf_file, cfg.tokenizer, str(self.device),
               str(self.dtype))
        self.tokenizer, self.model = cached(key, self._load)

    def _load(self):
        import importlib.util

        from transformers import AutoModelForCausalLM, AutoTokenizer

        kw = dict(self.ckpt.hub_kwargs)
        if self.cfg.gguf_file:
            if importlib.util.find_spec("gguf") is None:
                raise ModelLoadError("loading GGUF weights needs the 'gguf' package (pip install gguf)")
            kw["gguf_file"] = self.cfg.gguf_file
        tok_src = self.cfg.tokenizer or self.ckpt.spec
        tok_kw = kw if self.cfg.tokenizer is None else {}
        tok = self.ckpt.guard("tokenizer", lambda: AutoTokenizer.from_pretrained(tok_src, **tok_kw))
        model = self.ckpt.guard("causal LM", lambda: AutoModelForCausalLM.from_pretrained(
            self.ckpt.spec, dtype=self.dtype, **kw))
        model.eval().to(self.device)
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return tok, model

    def _prompt(self, text: str) -> str:
        ids = self.tokenizer(text, add_special_tokens=False, truncation=True,
                             max_length=self.cfg.max_input_tokens)["input_ids"]
        doc = self.tokenizer.decode(ids, skip_special_tokens=True)
        prompt = self.cfg.prompt.replace("{document}", doc)
        if self.cfg.chat_template:
            prompt = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                        tokenize=False, add_generation_prompt=True)
        return prompt

    def seed_for(self, text: str) -> int:
        """The sampling seed of one document."""
        return (self.cfg.seed * 1_000_003 + zlib.crc32(text.encode("utf-8"))) & 0x7FFFFFFF

    def generate(self, text: str) -> list[str]:
        """``num_queries`` generated queries for one document (stripped, empty ones dropped)."""
        import torch

        prompt = self._prompt(text)
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=not self.cfg.chat_template)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        gen = {"max_new_tokens": self.cfg.max_new_tokens, "num_return_sequences": self.cfg.num_queries,
               "do_sample": self.cfg.do_sample, "pad_token_id": self.tokenizer.pad_token_id}
        if self.cfg.do_sample:
            gen.update(top_k=self.cfg.top_k, top_p=self.cfg.top_p, temperature=self.cfg.temperature)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(self.seed_for(text))
            out = self.model.generate(**enc, **gen)
        new = out[:, enc["input_ids"].shape[1]:]
        queries = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [" ".join(q.split()) for q in queries if q.strip()]


__all__ = ["Doc2Query"]
