"""The one boundary: request models declared and validated once, and the operations every surface calls.

The UI, the Gradio API and the OpenAI routes import from here and from nothing below: these names are
the service's vocabulary.
"""

from ..core.errors import PythiaError, ServerBusy
from ..core.sampling import Bounds, FinishReason, SamplingParams, bounds, field_bounds
from ..engine.scoring import TextScore, TokenScore
from .requests import (
    ChatRequest,
    CompareRequest,
    CompletionRequest,
    MemorizationRequest,
    Request,
    ScoreAcrossRequest,
    ScoreRequest,
    TargetRequest,
    message_text,
)
from .research import CompareColumn, CurvePoint, MemorizationRow
from .service import PythiaService, Reply

__all__ = ["Bounds", "ChatRequest", "CompareColumn", "CompareRequest", "CompletionRequest", "CurvePoint",
           "FinishReason", "MemorizationRequest", "MemorizationRow", "PythiaError", "PythiaService", "Reply",
           "Request", "SamplingParams", "ScoreAcrossRequest", "ScoreRequest", "ServerBusy", "TargetRequest",
           "TextScore", "TokenScore", "bounds", "field_bounds", "message_text"]
