#!/usr/bin/env python3
"""Drives tests/gcp/standin.py with Google's own Python libraries (google-auth for
external_account and compute credentials, google-cloud-secret-manager over REST), so the
stand-in is known to answer as Google does (google-cloud-parametermanager too). Run by tests/gcp_standin.rs inside the stand-in's
network namespace, with REQUESTS_CA_BUNDLE naming its CA.

  validate.py CONFIG_JSON

CONFIG_JSON holds the names the test created: {"external": credentials file, "bad_external":
a file whose token STS refuses, "global": version name, "regional": version name,
"location": L, "denied": a version the identities may not read, "missing": a secret that
does not exist, "disabled": a disabled version, "parameter", "parameter_regional",
"parameter_denied": parameter versions}. Prints one JSON object: what each call gave.
"""

import json
import os
import sys

import google.auth
import google.auth.compute_engine
import google.auth.exceptions
import google.auth.transport.requests
from google.api_core import exceptions as api_exceptions
from google.cloud import parametermanager_v1, secretmanager

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def client(creds, location=None):
    options = None
    if location:
        options = {"api_endpoint": f"secretmanager.{location}.rep.googleapis.com"}
    return secretmanager.SecretManagerServiceClient(credentials=creds, transport="rest",
                                                    client_options=options)


def read(creds, name, location=None):
    try:
        r = client(creds, location).access_secret_version(name=name,
                                                          retry=None, timeout=10)
        return {"name": r.name, "data": r.payload.data.decode("latin-1"),
                "crc": r.payload.data_crc32c}
    except api_exceptions.GoogleAPICallError as e:
        return {"error": type(e).__name__, "code": e.code, "message": e.message}


def render(creds, name, location=None):
    options = None
    if location:
        options = {"api_endpoint": f"parametermanager.{location}.rep.googleapis.com"}
    c = parametermanager_v1.ParameterManagerClient(credentials=creds, transport="rest",
                                                   client_options=options)
    try:
        r = c.render_parameter_version(name=name, retry=None, timeout=10)
        return {"name": r.parameter_version, "rendered": r.rendered_payload.decode("latin-1")}
    except api_exceptions.GoogleAPICallError as e:
        return {"error": type(e).__name__, "code": e.code, "message": e.message}


def main():
    cfg = json.loads(sys.argv[1])
    out = {}
    request = google.auth.transport.requests.Request()

    # Workload Identity Federation: the external_account file, as google.auth.default() finds it.
    os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = cfg["external"]
    creds, _ = google.auth.default(scopes=SCOPES)
    out["external_type"] = type(creds).__module__ + "." + type(creds).__name__
    out["external_global"] = read(creds, cfg["global"])
    out["external_regional"] = read(creds, cfg["regional"], cfg["location"])
    out["external_regional_at_global"] = read(creds, cfg["regional"])
    out["external_denied"] = read(creds, cfg["denied"])
    out["external_disabled"] = read(creds, cfg["disabled"])
    out["external_token_prefix"] = (creds.token or "")[:5]
    out["external_parameter"] = render(creds, cfg["parameter"])
    out["external_parameter_regional"] = render(creds, cfg["parameter_regional"], cfg["location"])
    out["external_parameter_denied"] = render(creds, cfg["parameter_denied"])

    # An STS refusal reaches the library as a RefreshError carrying the OAuth error.
    try:
        bad, _ = google.auth.load_credentials_from_file(cfg["bad_external"], scopes=SCOPES)
        bad.refresh(request)
        out["bad_external"] = "refreshed"
    except google.auth.exceptions.GoogleAuthError as e:
        out["bad_external"] = type(e).__name__ + ": " + str(e)

    # The metadata server, as google.auth.default() finds it without the variable.
    del os.environ["GOOGLE_APPLICATION_CREDENTIALS"]
    creds, project = google.auth.default(scopes=SCOPES)
    out["compute_type"] = type(creds).__module__ + "." + type(creds).__name__
    out["compute_project"] = project
    out["compute_global"] = read(creds, cfg["global"])
    out["compute_missing"] = read(creds, cfg["missing"])
    out["compute_email"] = creds.service_account_email if hasattr(creds, "service_account_email") else None
    creds.refresh(request)
    out["compute_email_after_refresh"] = creds.service_account_email
    print(json.dumps(out))


if __name__ == "__main__":
    main()
