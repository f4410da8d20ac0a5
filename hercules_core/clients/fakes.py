"""Deterministic fakes for tests and benchmarks. They are honest about being fakes in their ids."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import deque
from typing import Any

import numpy as np

from ..descriptions import DESCRIPTION_ASK
from ..errors import LLMError

_WORD = re.compile(r"[A-Za-z0-9]+")
_USE_WORDS = re.compile(r'"([^"]+)"(?= and "|\.$)')  # the terms of 'using the words "a" and "b".'
_IDS_LINE = re.compile(r"^Generate the JSON output for the \d+ .*?ID\(s\): (.+)$", re.MULTILINE)


class FakeEmbedder:
    """A hashed bag-of-words embedder: texts sharing words get similar unit vectors."""

    def __init__(self, dim: int = 64, model_id: str = "fake-hash"):
        self.dim = dim
        self.model_id = f"{model_id}-{dim}"
        self.calls = 0
        self.texts_embedded = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in _WORD.findall(str(text).lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out[norms[:, 0] == 0, 0] = 1.0  # an empty text still gets a valid unit vector
        norms[norms == 0] = 1.0
        return out / norms


class FakeLLM:
    """A scripted LLM with a call history.

    Answers queued with ``queue(...)`` are returned first (a string, or an exception instance to
    raise). With an empty queue it answers every cluster ID named in the prompt's last line with a
    deterministic title built from the first words of that cluster's first sample, and a description
    naming the first two of the cluster's keywords (when the prompt shows some); a prompt asking for a
    description only (descriptions.description_prompt) gets such a description.
    """

    def __init__(self, model_id: str = "fake-llm"):
        self.model_id = model_id
        self.history: list[dict[str, Any]] = []
        self._queue: deque = deque()
        self._lock = threading.Lock()

    def queue(self, *answers: Any) -> "FakeLLM":
        self._queue.extend(answers)
        return self

    @property
    def calls(self) -> int:
        return len(self.history)

    def complete(self, prompt: str, *, schema: dict[str, Any] | None = None) -> str:
        with self._lock:
            self.history.append({"prompt": prompt, "schema": schema})
            scripted = self._queue.popleft() if self._queue else None
        if isinstance(scripted, BaseException):
            raise scripted
        if scripted is not None:
            return scripted
        if is_description_request(prompt, schema):
            terms = _USE_WORDS.findall(prompt.rsplit("\n", 1)[-1]) or _keywords(prompt)[:2]
            desc = f"Fake description about {' and '.join(terms) or 'these examples'}."
            return json.dumps(desc if schema.get("type") == "string" else {"description": desc})
        return json.dumps(self.default_answer(prompt))

    @staticmethod
    def default_answer(prompt: str) -> dict[str, dict[str, str]]:
        matches = _IDS_LINE.findall(prompt)
        if not matches:
            raise LLMError("FakeLLM: the prompt has no 'Generate the JSON output for ... ID(s): ...' line")
        listed = matches[-1]  # the real ids line is the last one; sample text cannot start a line
        try:  # the ids are a JSON list; older prompts listed them comma-separated
            ids = json.loads(listed)
        except ValueError:
            ids = None
        if isinstance(ids, list):
            ids = [str(s) for s in ids]
        else:
            ids = [s.strip().strip('"') for s in listed.split(",") if s.strip()]
        answer = {}
        for cid in ids:
            block = _block_for(prompt, cid)
            words = _WORD.findall(block)[:4]
            title = " ".join(words) if words else cid
            if _has_children(prompt, cid):  # a parent's closest sample is often its child's: say "etc."
                title = title[:50] + " etc."
            about = " and ".join(_keywords(_block(prompt, cid))[:2])
            answer[cid] = {"title": f"Fake {title}"[:60],
                           "description": f"Fake summary of {cid}: {' '.join(words)}" + (f"; about {about}." if about
                                                                                        else ".")}
        return answer


def is_description_request(prompt: str, schema: dict[str, Any] | None) -> bool:
    """A prompt of descriptions.description_prompt: its schema asks for a description and nothing else."""
    if not schema or ("pattern" in schema and DESCRIPTION_ASK not in prompt):  # a grounded title's pattern
        return False
    return schema.get("type") == "string" or set(schema.get("properties") or {}) == {"description"}


def _keywords(text: str) -> list[str]:
    """The terms of the first "Keywords: a, b" line of ``text``."""
    m = re.search(r"^Keywords: (.+)$", text, re.MULTILINE)
    return [k.strip() for k in m.group(1).split(",") if k.strip()] if m else []


def _block(prompt: str, cid: str) -> str:
    start = prompt.find(f"ID: {cid} ")
    if start < 0:
        return ""
    end = prompt.find("--- End", start)
    return prompt[start:end if end > 0 else None]


def _has_children(prompt: str, cid: str) -> bool:
    return "- Child ID " in _block(prompt, cid)


def _block_for(prompt: str, cid: str) -> str:
    """The first sample line of the prompt block of ``cid`` (empty if none)."""
    for line in _block(prompt, cid).splitlines():
        if line.startswith("- (Orig. ID:"):
            return line.split(")", 1)[-1]
    return ""
