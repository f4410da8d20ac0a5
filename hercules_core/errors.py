"""Error types. Every error a user can cause says what was wrong and what to do."""


class HerculesError(Exception):
    """Base class for all errors raised by hercules_core."""


class InputError(HerculesError, ValueError):
    """The input data cannot be used (bad format, NaN, duplicate ids, ...)."""


class ConfigError(HerculesError, ValueError):
    """A configuration value is invalid."""


class ModelFileError(HerculesError, ValueError):
    """A saved model file cannot be read (corrupt, wrong schema version, ...)."""


class LLMError(HerculesError):
    """An LLM call failed. ``retryable`` tells the summariser whether to back off and retry."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class LLMFatalError(LLMError):
    """Bad key, unknown model, bad request: retrying cannot help; fail fast with the message."""

    retryable = False


class EndpointFatalError(LLMFatalError):
    """Every request to this endpoint would fail alike (bad key, unknown model, exhausted quota):
    stop the run at once rather than item by item."""


class EmbeddingError(HerculesError):
    """An embedding model failed or is not available."""


class Cancelled(HerculesError):
    """The run was cancelled by the caller."""
