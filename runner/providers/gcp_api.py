"""The edge of the Google APIs: their exceptions become typed RunnerErrors (gcp_build.classify)."""

from __future__ import annotations

from runner.errors import AuthError, RunnerError
from runner.providers.gcp_build import CREDENTIALS_FIX, classify, pick, region_of


def translate(e: Exception, what: str, zone: str = "", region: str = "") -> Exception:
    """A google-api-core / google-auth exception -> a RunnerError; anything else is returned as it is."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as gauth
    from requests import RequestException

    if isinstance(e, gexc.GoogleAPICallError):
        errs = [(str(x.get("reason", "")), str(x.get("message", ""))) for x in e.errors or () if isinstance(x, dict)]
        code, message = pick(errs) if errs else (e.reason or "", "")
        return classify(code, message or e.message, what, int(e.code or 0), zone, region)
    if isinstance(e, gauth.DefaultCredentialsError):
        return AuthError(f"{what}: no Google credentials (Application Default Credentials) found; {CREDENTIALS_FIX}")
    if isinstance(e, gauth.RefreshError):
        return AuthError(f"{what}: the Google credentials were refused ({e}); {CREDENTIALS_FIX}")
    if isinstance(e, (gauth.TransportError, RequestException)):
        return RunnerError(f"{what}: cannot reach the Google API ({e}); check the network (and RUNNER_GCP_ENDPOINT if set), then `runner doctor --cloud gcp`")
    return e


def call(what: str, fn, at: str = "", **kw):
    """fn(**kw) with its Google errors translated at the edge; `at` is the zone the call is about."""
    try:
        return fn(**kw)
    except Exception as e:
        err = translate(e, what, at, region_of(at))
        if err is e:
            raise
        raise err from None
