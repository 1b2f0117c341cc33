"""Property tests of the one redaction every snapshot output passes through: no generated
credential survives it, wherever in a line of text its URL stands, and ordinary URLs and text
come out unchanged."""

from __future__ import annotations

import string

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from nbcontainers.recipe.redact import REDACTED, has_credentials, is_secret_param, redact

# What a URL carries unencoded (RFC 3986 unreserved) plus percent-escapes of the rest.
_UNRESERVED = string.ascii_letters + string.digits + "-._~"
secrets = st.text(_UNRESERVED, min_size=12, max_size=40).map(lambda s: "Zq" + s)
escaped_secrets = st.builds(
    lambda a, b: f"Zq{a}%2F%40%3A{b}",
    st.text(_UNRESERVED, min_size=6, max_size=20),
    st.text(_UNRESERVED, min_size=6, max_size=20),
)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,6}){1,2}(:[1-9][0-9]{1,4})?", fullmatch=True)
paths = st.from_regex(r"(/[a-z0-9._-]{1,12}){0,4}/?", fullmatch=True)
web = st.sampled_from(["https", "http", "git+https", "hg+http", "s3", "gs", "ftp"])
ssh = st.sampled_from(["ssh", "git+ssh"])
plain_names = st.sampled_from(
    [
        "page",
        "format",
        "v",
        "ref",
        "egg",
        "subdirectory",
        "X-Amz-Date",
        "X-Amz-Expires",
        "Expires",
        "alt",
        "generation",
        "response-content-type",
        "sha256",
        "q",
        "sp",  # an Azure SAS field, but alone (no sig) it is an ordinary parameter
        "se",
    ]
)
plain_values = st.text(_UNRESERVED, min_size=0, max_size=12)
secret_names = st.sampled_from(
    [
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "x-amz-signature",
        "X-Goog-Signature",
        "X-Goog-Credential",
        "GoogleAccessId",
        "Signature",
        "sig",
        "token",
        "access_token",
        "id_token",
        "api_key",
        "apikey",
        "client_secret",
        "password",
        "Policy",
        "Key-Pair-Id",
        "AUTH",
        "X%2DAmz%2DSignature",
    ]
)
# Where a URL stands in a history line, a lock line or a log line.
contexts = st.sampled_from(
    [
        "{}",
        "%pip install --index-url {} pkg",
        "!pip install '{}'",
        '"url": "{}"',
        "pkg @ {} \\\n    --hash=sha256:00ff",
        "--extra-index-url={}",
        "see <{}>.",
    ]
)


def _query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in pairs)


@st.composite
def leaky_urls(draw: st.DrawFn) -> tuple[str, str]:
    """(a URL holding a secret somewhere a credential goes, that secret)."""
    secret = draw(st.one_of(secrets, escaped_secrets))
    host, path = draw(hosts), draw(paths)
    plain = draw(st.lists(st.tuples(plain_names, plain_values), max_size=3))
    where = draw(st.sampled_from(["user", "password", "user-only", "query", "fragment", "sas"]))
    scheme = draw(ssh if where == "password" and draw(st.booleans()) else web)
    user = draw(st.sampled_from(["user", "__token__", "oauth2", "x"]))
    if where == "user-only":
        url = f"{scheme}://{secret}@{host}{path}"
    elif where in ("user", "password"):
        userinfo = f"{secret}:{user}" if where == "user" else f"{user}:{secret}"
        url = f"{scheme}://{userinfo}@{host}{path}"
    elif where == "sas":
        # The secret in a field that only scopes a SAS: still redacted beside its signature.
        field = draw(st.sampled_from(["se", "sp", "sv", "st", "skoid", "sktid", "SE"]))
        pairs = [(field, secret), ("sig", draw(plain_values) + "x")]
        url = f"https://{host}{path}?{_query(draw(st.permutations(pairs)))}"
    else:
        pairs = [*plain]
        pairs.insert(draw(st.integers(0, len(pairs))), (draw(secret_names), secret))
        url = f"{scheme}://{host}{path}"
        url += f"?{_query(pairs)}" if where == "query" else f"#{_query(pairs)}"
    if plain and where in ("user", "password", "user-only"):
        url = url.split("#")[0] + f"?{_query(plain)}" + (url[len(url.split("#")[0]) :])
    return url, secret


@given(leaky_urls(), contexts)
@settings(max_examples=400)
@example(("https://user:Zqs3cr3tT0ken@pypi.corp.example/simple", "Zqs3cr3tT0ken"), "{}")
@example(("https://Zqghp_0123456789abcdef@github.com/o/r.git@v1", "Zqghp_0123456789abcdef"), "{}")
def test_no_generated_credential_survives(leak: tuple[str, str], context: str) -> None:
    url, secret = leak
    text = context.format(url)
    assume(secret not in context)
    out = redact(text)
    assert secret not in out
    assert has_credentials(text) and not has_credentials(out)
    assert redact(out) == out  # idempotent: redacting twice changes nothing more


@st.composite
def ordinary_urls(draw: st.DrawFn) -> str:
    scheme, path = draw(st.one_of(web, ssh)), draw(paths)
    if path.strip("/") and draw(st.booleans()):
        path += "@" + draw(st.text("0123456789abcdef", min_size=7, max_size=40))  # VCS revision
    # ssh logs in with a key: its login name (git@) is no credential and stays.
    login = "git@" if scheme.endswith("ssh") and draw(st.booleans()) else ""
    url = f"{scheme}://{login}{draw(hosts)}{path}"
    pairs = draw(st.lists(st.tuples(plain_names, plain_values), max_size=4))
    if pairs:
        url += "?" + _query(pairs)
    if draw(st.booleans()):
        url += "#sha256=" + draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    return url


@given(ordinary_urls(), contexts)
@settings(max_examples=300)
@example("https://pypi.org/simple/numpy/?format=json", "{}")
@example("git+ssh://git@github.com/org/repo.git@abc123#egg=repo", "{}")
@example("https://download.pytorch.org/whl/cpu", "{}")
def test_ordinary_urls_are_unchanged(url: str, context: str) -> None:
    text = context.format(url)
    assert redact(text) == text
    assert not has_credentials(text)


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_any_text_is_redacted_without_error_and_idempotently(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
    # Only URLs change: text with no "://" comes out as it went in.
    if "://" not in text:
        assert once == text


def test_the_parameters_that_sign_or_authorise() -> None:
    for name in ("X-Amz-Signature", "sig", "Signature", "token", "access_token", "api_key"):
        assert is_secret_param(name)
    for name in ("X-Amz-Date", "X-Amz-Expires", "Expires", "page", "egg", "sha256", "format"):
        assert not is_secret_param(name)
    assert redact("s3://b/k?X-Amz-Signature=abc&x=1") == f"s3://b/k?X-Amz-Signature={REDACTED}&x=1"
    sas = "https://a.blob.core.windows.net/c/w.whl?sv=2022-11-02&se=2026-01-01&sp=r&sig=abc"
    assert redact(sas) == f"https://a.blob.core.windows.net/c/w.whl?sv={REDACTED}&se={REDACTED}" + (
        f"&sp={REDACTED}&sig={REDACTED}"
    )
    assert redact("https://example.org/page?sp=2&se=x") == "https://example.org/page?sp=2&se=x"
