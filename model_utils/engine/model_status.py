"""What the model picker and status line know about one (model, revision), from any engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelStatus:
    """What the model picker shows for one model."""

    name: str
    revision: str
    parameters: int
    estimated_bytes: int  # what the memory guard reserves: weights + a full-context KV cache per decoding row
    cached: bool
    loaded: bool
    fits: bool
    random_weights: bool = False
    local: bool = False  # an operator's directory (converted, never downloaded)
    description: str = ""  # what the model is, when the catalog says (the demo model)
    weights_bytes: int = 0  # the loaded model (weights and runtime), without any conversation
    conversations: int = 0  # full-context (2048-token) conversations that fit beside the weights
    served_by: str = ""  # what decodes it, in words: e.g. "CPU int8", or "remote vLLM engine"
    engine: str = "ctranslate2"  # "ctranslate2" (this machine) or "vllm" (an operator's remote server)
    remote_problem: str | None = None  # why the remote engine is not answering, in a visitor's words

    @property
    def remote(self) -> bool:
        return self.engine == "vllm"
