"""Citations: find what an answer cites (``[n]`` or ``path:lines``) and check it against the sources."""

from corral.agents.citations.verify import (
    CITED,
    READ,
    UNSUPPORTED,
    Citation,
    QuoteCheck,
    Verification,
    verify_answer,
)

__all__ = ["CITED", "READ", "UNSUPPORTED", "Citation", "QuoteCheck", "Verification", "verify_answer"]
