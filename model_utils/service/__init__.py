"""The one boundary: request models declared and validated once, and the operations every surface calls.

The UI, the Gradio API and the OpenAI routes import from here and from nothing below: these names are
the service's vocabulary.
"""

from ..core.catalog import CONTEXT_LENGTH
from ..core.errors import InvalidParameter, ModelTooLarge, ModelUnavailable, PythiaError, ServerBusy, UnknownModel
from ..core.sampling import CONTROLS, Bounds, Control, FinishReason, SamplingParams, bounds, field_bounds
from ..engine.scoring import TextScore
from ..engine.tokens import ScoredToken, TokenText
from .benchmarks import BenchmarkRow, BenchmarkUpdate, UnitResult
from .choices import BatchUsage, ChoiceDelta
from .client_limits import ClientBusy
from .requests import (
    MAX_CHOICES,
    MAX_PROMPTS,
        BatchChatRequest,
    BatchCompletionRequest,
    BenchmarkRequest,
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
from .service import Capacity, PythiaService, Reply, check_token_ids

__all__ = ["CONTEXT_LENGTH", "CONTROLS", "MAX_CHOICES", "MAX_PROMPTS", "BatchChatRequest", "BatchCompletionRequest",
           "BatchUsage", "BenchmarkRequest", "BenchmarkRow", "BenchmarkUpdate", "Bounds", "Capacity", "ChatRequest",
           "Control", "ChoiceDelta", "ClientBusy", "CompareColumn", "CompareRequest", "CompletionRequest",
           "CurvePoint", "FinishReason", "InvalidParameter", "MemorizationRequest", "MemorizationRow", "ModelTooLarge",
           "ModelUnavailable", "PythiaError", "PythiaService", "Reply", "Request", "SamplingParams",
           "ScoreAcrossRequest", "ScoreRequest", "ServerBusy", "TargetRequest", "TextScore", "TokenText",
           "ScoredToken", "UnitResult", "UnknownModel", "bounds", "check_token_ids", "field_bounds", "message_text"]
