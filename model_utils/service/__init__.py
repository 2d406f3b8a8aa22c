"""The one boundary: request models validated once, and the operations the UI and API call.

The UI imports from here and from nothing below: these names are the service's vocabulary.
"""

from ..core.errors import PythiaError
from ..core.sampling import Bounds, bounds
from ..engine.scoring import TextScore, TokenScore
from .requests import message_text
from .research import CompareColumn, CurvePoint, MemorizationRow
from .service import PythiaService, Reply

__all__ = ["Bounds", "CompareColumn", "CurvePoint", "MemorizationRow", "PythiaError", "PythiaService", "Reply",
           "TextScore",
           "TokenScore", "bounds", "message_text"]
