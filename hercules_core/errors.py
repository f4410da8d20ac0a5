"""Error types. Every error a user can cause says what was wrong and what to do."""


class HerculesError(Exception):
    """Base class for all errors raised by hercules_core.

    An error about one parameter names it with ``param`` (a ``HerculesConfig`` field, a model kind
    such as ``text_embedder``, a data option such as ``text_column``) and writes ``{param}`` in the
    message where its name goes, ``{setting}`` where the parameter set to ``value`` goes. ``str()``
    says them in the core's words (``reduce_method='none'``); a front door calls :meth:`render` to
    say them in its own (``--reduce none``, a form label).
    """

    def __init__(self, message: str = "", *, param: str | None = None, value: object = None):
        self.template, self.param, self.value = message, param, value
        super().__init__(self.render())

    def render(self, name=None, setting=None) -> str:
        """The message with ``name(param)`` and ``setting(param, value)`` filled in."""
        if self.param is None:
            return self.template
        name = name or (lambda p: p)
        setting = setting or (lambda p, v: f"{p}={v!r}")
        return self.template.replace("{setting}", setting(self.param, self.value)).replace("{param}", name(self.param))


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
