"""One exception tree for taskgate.

    TaskgateError
    ├── ApiError                   refused requests; each carries its HTTP status
    │   ├── BadRequest             400  malformed JSON, unknown model or kind, unstorable input
    │   │                          (a body that breaks the request schema: 422 invalid_request)
    │   ├── Unauthorized           401  missing, unknown or revoked key
    │   ├── Forbidden              403  key lacks the role
    │   ├── NotFound               404  no such object in the caller's tenant
    │   ├── Conflict               409  idempotency key reused with another body
    │   ├── PayloadTooLarge        413
    │   ├── LimitExceeded          429  a key or tenant is over one of its limits: try again
    │   │                               after ``Retry-After``
    │   ├── InternalError          500  a fault of ours (logged with its traceback; the
    │   │                               answer names nothing of it)
    │   └── Unavailable            503  the store cannot be reached now: try again after
    │                                   ``Retry-After`` (the store raises it, from its driver's
    │                                   connection errors)
    └── ProviderError              raised at the provider boundary, decided on by policy.decide
        ├── RetryableError         worth another attempt (on another instance if one exists)
        │   ├── RateLimited        429; carries retry_after
        │   ├── Overloaded         5xx, 529
        │   ├── ProviderTimeout    the run timeout or the provider's own
        │   ├── ConnectionFailed   could not reach the backend
        │   └── BadResponse        a reply we could not understand
        └── PermanentError         the same input will fail again: fail at once
            ├── InvalidInput       4xx input errors
            ├── AuthFailed         401/403 from the provider (our config is wrong)
            └── ContentRefused     the model refused the content

Providers convert their library's errors into this tree with ``raise ... from exc``; nothing
above the provider boundary inspects HTTP codes or library exceptions.
"""

from __future__ import annotations

from typing import Any, TypeVar


class TaskgateError(Exception):
    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.code, "message": self.message}
        out.update({k: v for k, v in self.details.items() if v is not None})
        return out


class ApiError(TaskgateError):
    status_code = 400

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the answer, in every API."""
        return {}


class BadRequest(ApiError):
    code = "bad_request"
    status_code = 400


class Unauthorized(ApiError):
    code = "unauthorized"
    status_code = 401


class Forbidden(ApiError):
    code = "forbidden"
    status_code = 403


class NotFound(ApiError):
    code = "not_found"
    status_code = 404


class Conflict(ApiError):
    code = "conflict"
    status_code = 409


class PayloadTooLarge(ApiError):
    code = "payload_too_large"
    status_code = 413


class LimitExceeded(ApiError):
    """A key or tenant is over one of its limits (``limit``: requests_per_minute,
    tokens_per_day or cost_per_month); ``retry_after``: whole seconds until it allows
    another request."""

    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, limit: str, retry_after: int) -> None:
        super().__init__(message, limit=limit, retry_after=retry_after)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class InternalError(ApiError):
    code = "internal_error"
    status_code = 500


class Unavailable(ApiError):
    code = "unavailable"
    status_code = 503
    retry_after = 2  # seconds: a restarting database is usually back within a few

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ProviderError(TaskgateError):
    code = "provider_error"
    retryable = False
    # Raised by Provider.poll: True when the backend's job itself ended in this error, False
    # when only the poll request failed (then the job is polled again). See job_ended().
    job_ended = False

    def __init__(
        self,
        message: str,
        *,
        provider_code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider_code=provider_code, status=status)
        self.retry_after = retry_after  # seconds the backend asked us to wait

    def as_dict(self) -> dict[str, Any]:
        out = super().as_dict()
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


class RetryableError(ProviderError):
    code = "retryable"
    retryable = True


class RateLimited(RetryableError):
    code = "rate_limited"


class Overloaded(RetryableError):
    code = "overloaded"


class ProviderTimeout(RetryableError):
    code = "timeout"


class ConnectionFailed(RetryableError):
    code = "connection_failed"


class BadResponse(RetryableError):
    code = "bad_response"


class PermanentError(ProviderError):
    code = "permanent"


class InvalidInput(PermanentError):
    code = "invalid_input"


class AuthFailed(PermanentError):
    code = "auth_failed"


class ContentRefused(PermanentError):
    code = "content_refused"


E = TypeVar("E", bound=ProviderError)


def job_ended(error: E) -> E:
    """Mark an error a provider's ``poll`` raises as the end of the backend's job, so the
    scheduler decides on it at once instead of polling a job that will not change."""
    error.job_ended = True
    return error


def from_http_status(
    status: int, message: str, *, provider_code: str | None = None, retry_after: float | None = None
) -> ProviderError:
    """Classify a provider's HTTP error reply: the one place that knows what codes mean."""
    cls: type[ProviderError]
    if status == 429:
        cls = RateLimited
    elif status in (401, 403):
        cls = AuthFailed
    elif status == 408 or status == 504:
        cls = ProviderTimeout
    elif status >= 500:
        cls = Overloaded
    else:
        cls = InvalidInput
    return cls(message, provider_code=provider_code, status=status, retry_after=retry_after)
