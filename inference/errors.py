"""The inference layer's own errors (it imports nothing of Corral's; callers translate these)."""


class InferenceError(Exception):
    """A model could not be loaded, or a request cannot be served (e.g. it overflows the window)."""


class ContextOverflowError(InferenceError):
    """The prompt plus the requested new tokens do not fit the model's context window."""
