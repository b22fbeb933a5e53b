"""The OpenAI-compatible HTTP server over ``TextEngine`` backends (``corral inference serve``)."""

from corral.inference.server.app import create_inference_app

__all__ = ["create_inference_app"]
