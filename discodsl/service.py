"""What the master and DDFS clients share: :class:`Service` (the master's URL,
``DISCO_PROXY``, one transport) and the URLs they fetch.

:func:`disco_url_to_http` turns ``disco://`` and ``dir://`` URLs into the
``http://`` URLs nodes serve them at. URL parsing, and routing a URL through
``DISCO_PROXY`` (``proxy_url``: result files are read by the worker's readers), are
:mod:`discodsl.worker.urls`'s.

It knows no endpoint: :class:`~discodsl.client.Master` and
:class:`~discodsl.ddfs.DDFS` do; requests go through :mod:`discodsl.http`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import requests

from discodsl.errors import ClientError
from discodsl.http import RetryCallback, Transport
from discodsl.worker import urls

if TYPE_CHECKING:
    from discodsl.settings import DiscoSettings

__all__ = ["Service", "disco_url_to_http"]


# --------------------------------------------------------------------------
# URL helpers
# --------------------------------------------------------------------------


def disco_url_to_http(url: str, disco_port: int) -> str:
    """``disco://HOST/PATH`` or ``dir://HOST/PATH`` -> ``http://HOST:PORT/PATH``.

    ``http(s)://`` URLs are returned unchanged; ``raw://``, ``tag://`` and
    local files are not fetched over HTTP and are a :class:`ClientError`.
    """
    scheme, rest = urls.split(url)
    if not scheme:
        raise ClientError(f"{url!r} is not a URL: expected disco://HOST/PATH or http://...")
    if scheme in ("http", "https"):
        return url
    if scheme not in ("disco", "dir"):
        raise ClientError(
            f"{url!r} is not fetched over HTTP ({scheme}://): "
            "give tag://NAME as a job input or to `discodsl ddfs cat`, which expand it into "
            "its blobs; read raw:// and file:// directly"
        )
    netloc, path = urls.split_host(rest)
    if not netloc:
        raise ClientError(f"{url!r} has no host: expected {scheme}://HOST/PATH")
    if ":" not in netloc:
        netloc = f"{netloc}:{disco_port}"
    return f"http://{netloc}/{path}"


def _proxy_hint(master_url: str, proxy: str) -> str:
    """The hint for an unreachable master reached through DISCO_PROXY ("" without one)."""
    base = urls.proxy_url(master_url, proxy, to_master=True)
    if base == master_url:
        return ""
    return f"is DISCO_PROXY right? try `curl {base}/disco/version`"


# --------------------------------------------------------------------------
# What Master and DDFS share
# --------------------------------------------------------------------------

_S = TypeVar("_S", bound="Service")


class Service:
    """What the master and DDFS clients share: the master's URL and one transport.

    ``session``, if given, carries every request (its owner closes it);
    otherwise each request has a connection of its own, so there is nothing
    to close: :meth:`close` and ``with`` are there for symmetry.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30,
        retries: int = 5,
        session: requests.Session | None = None,
        proxy: str = "",
        backoff: float = 0.5,
        on_retry: RetryCallback | None = None,
    ):
        self.url = url.rstrip("/")
        self.proxy = proxy
        self._http = Transport(
            urls.proxy_url(self.url, proxy, to_master=True),
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            session=session,
            on_retry=on_retry,
            hint=_proxy_hint(self.url, proxy),
        )

    @property
    def timeout(self) -> float:
        """Seconds one attempt of a request may stall (DISCODSL_HTTP_TIMEOUT)."""
        return self._http.timeout

    @staticmethod
    def transport_options(settings: DiscoSettings) -> dict[str, Any]:
        """What of ``settings`` every client's transport takes: timeout, retries, proxy."""
        return {
            "timeout": settings.DISCODSL_HTTP_TIMEOUT,
            "retries": settings.DISCODSL_RETRIES,
            "proxy": settings.DISCO_PROXY,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to do: each request closed its connection when it was answered."""
