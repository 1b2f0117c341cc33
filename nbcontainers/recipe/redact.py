"""Credentials out of URLs: the one redaction every text a snapshot or export writes (lock,
Dockerfile, environment.json, labels, messages) passes through.

A URL loses its user-info (user name and password before the host's ``@``; pip then finds the
credential in netrc, keyring or pip.conf, as it should) and the values of query or fragment
parameters that sign or authorise a request (presigned S3, GCS, Azure SAS and CloudFront URLs,
``token=``, ``access_token=``, ``api_key=``...) become ``REDACTED``. Everything else stays byte
for byte, so an ordinary URL comes out unchanged and redacting twice changes nothing more.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["REDACTED", "has_credentials", "is_secret_param", "redact", "redact_url"]

REDACTED = "REDACTED"

# A URL in running text: a scheme, "://", then up to whitespace, a quote or a bracket.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# Parameter names that carry a signature, a credential or a session token.
_SECRET_PARAM = re.compile(
    r"""(?ix)^(?:
        x-amz-(?:signature|credential|security-token)
      | x-goog-(?:signature|credential)
      | x-ms-.* | googleaccessid | signature | sig | policy | key-pair-id
      | .*token.* | .*secret.* | .*passw(?:or)?d.* | pwd | .*api[-_]?key.* | key | auth
      | authorization | .*credential.*
    )$""",
)
# An Azure SAS's other fields say which account granted what, until when: redacted beside its
# `sig`, and only there (a plain `?sp=2` elsewhere is no SAS).
_SAS_FIELD = re.compile(r"(?i)^(?:se|sp|sv|st|sr|spr|srt|ss|sip|si|skoid|sktid|skt|ske|sks|skv)$")


def is_secret_param(name: str) -> bool:
    """Whether a query or fragment parameter of this name signs or authorises a request."""
    return bool(_SECRET_PARAM.match(unquote(name)))


def _redact_params(params: str) -> str:
    """``a=1&sig=x`` -> ``a=1&sig=REDACTED``, every other byte kept."""
    split = [pair.partition("=") for pair in params.split("&")]
    sas = any(unquote(name).lower() == "sig" for name, _, _ in split)
    pairs = []
    for name, eq, value in split:
        if eq and value and (is_secret_param(name) or (sas and _SAS_FIELD.match(unquote(name)))):
            value = REDACTED
        pairs.append(name + eq + value)
    return "&".join(pairs)


def redact_url(url: str) -> str:
    """``url`` without user-info and with signing or credential parameters redacted.

    The login name of an ssh URL (``git@``) stays: ssh authenticates with a key, and the name
    is how the host finds it. Its password, if any, goes.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The authority ends at the first "/", "?" or "#"; its user-info at its last "@", so an
    # unencoded "@" inside a password cannot leave the password's tail behind.
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if at:
        login = userinfo.partition(":")[0]
        keep_login = scheme.lower().endswith("ssh") and login
        authority = f"{login}@{host}" if keep_login else host
    path, q, after = tail.partition("?")
    if q:
        query, h, fragment = after.partition("#")
        tail = path + "?" + _redact_params(query) + (h + _redact_params(fragment) if h else "")
    else:
        path, h, fragment = tail.partition("#")
        tail = path + (h + _redact_params(fragment) if h else "")
    return f"{scheme}://{authority}{tail}"


def redact(text: str) -> str:
    """``text`` with every URL in it redacted (see :func:`redact_url`); the rest unchanged."""
    if "://" not in text:
        return text  # the common case, and most of a lock or a Dockerfile
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def has_credentials(text: str) -> bool:
    """Whether ``text`` holds a URL with user-info or a signing/credential parameter."""
    return redact(text) != text
