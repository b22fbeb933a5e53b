"""The inference layer's own errors (it imports nothing of Corral's; callers translate these)."""


class InferenceError(Exception):
    """A model could not be loaded, or a request cannot be served (e.g. it overflows the window)."""


class ContextOverflowError(InferenceError):
    """The prompt plus the requested new tokens do not fit the model's context window."""


class InvalidRequestError(InferenceError):
    """A request is malformed (bad messages, tools, schema or sampling values); ``param`` names the field."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class ModelNotFoundError(InferenceError):
    """A request named a model this process does not serve."""


class ConstraintError(InvalidRequestError):
    """A grammar, JSON schema or regex given with a request cannot be compiled."""
