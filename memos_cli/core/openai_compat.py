"""Talking to OpenAI-compatible servers: one client factory, one error translation.

OpenAI itself, Ollama, LM Studio, vLLM and llama.cpp's server all speak the same
protocol. This module imports ``openai`` only when called, and turns its exceptions
into ``ModelError`` (exit code 6) with one line a person can act on.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from memos_cli.core.errors import ModelError


class ContextTooLong(ModelError):
    """The prompt did not fit the model's context window (callers trim and retry)."""


def make_client(base_url: str | None, api_key: str | None, timeout: float) -> Any:
    import openai

    return openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed",
                         timeout=timeout, max_retries=2)


@contextmanager
def translated_errors(what: str, model: str, base_url: str | None,
                      timeout: float) -> Iterator[None]:
    """Run a request; re-raise whatever went wrong as one clear ``ModelError``."""
    import openai

    try:
        yield
    except openai.AuthenticationError:
        raise ModelError(f"the {what} server rejected the API key") from None
    except openai.NotFoundError:
        raise ModelError(f"the {what} server does not know the model {model!r} "
                         "(see 'memos models')") from None
    except openai.RateLimitError:
        raise ModelError(f"the {what} server is rate-limiting us (retried); try later") from None
    except openai.APITimeoutError:
        raise ModelError(f"the {what} server did not answer within {timeout:g}s") from None
    except openai.APIConnectionError:
        raise ModelError(f"cannot reach the {what} server at {base_url or 'api.openai.com'}") from None
    except openai.BadRequestError as exc:
        if _is_context_error(exc):
            raise ContextTooLong(f"the prompt is too long for {model!r}") from None
        raise ModelError(f"the {what} server refused the request: {_message(exc)}") from None
    except openai.APIStatusError as exc:
        raise ModelError(f"the {what} server failed (HTTP {exc.status_code})") from None
    except openai.APIError as exc:  # e.g. a reply that is not valid JSON
        raise ModelError(f"the {what} server sent a reply memos cannot read: {_message(exc)}") from None


def _is_context_error(exc: Any) -> bool:
    text = f"{getattr(exc, 'code', '')} {_message(exc)}".lower()
    return "context_length" in text or "context length" in text or "too long" in text


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:200]
    return str(getattr(exc, "message", exc))[:200]
