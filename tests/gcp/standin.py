#!/usr/bin/env python3
"""Stand-ins for Google Secret Manager and Parameter Manager (global and regional endpoints), STS,
iamCredentials and the GKE metadata server, for secretdrop's GCP tests (tests/gcp.rs). No emulator matches the real
API (regional endpoints, dataCrc32c, authentication, IAM); this one checks what the real
services check, in their shapes, and tests/gcp/validate.py drives it with Google's own Python
libraries to show that it does.

Run inside the test's network namespace (tests/common/gcp.rs): TLS on 443 for every Google host
name (the hosts file maps them to 127.0.0.1; the certificate is signed by a CA written to
DIR/ca.pem), plain HTTP on 80 for the metadata server (169.254.169.254 and
metadata.google.internal) and on the extra port given, for GCE_METADATA_HOST.

  standin.py DIR ADMIN_SOCKET [METADATA_PORT]

Administration (create secrets, grant IAM, mint Kubernetes service-account tokens, count
requests, misbehave) is one JSON object per line on the Unix socket ADMIN_SOCKET, answered
with one JSON line. Prints "ready" when everything listens.

What is checked, like the real services:
- Secret Manager: the bearer token (unknown: 401 UNAUTHENTICATED; expired: 401 with reason
  ACCESS_TOKEN_EXPIRED), roles/secretmanager.secretAccessor of the token's principal on the
  secret or the project (else 403, also for a secret that does not exist), the endpoint (a
  regional secret only at its own secretmanager.LOCATION.rep.googleapis.com), versions by
  number, alias or latest, DISABLED / DESTROYED states; answers name the project by number and
  carry dataCrc32c.
- Parameter Manager: the same token and endpoint checks, roles/parametermanager.parameterAccessor
  on the parameter or the project, versions by id; `render` resolves
  `__REF__(//secretmanager.googleapis.com/...)` references to the secret versions' bytes.
- STS: the form (grant_type, requested_token_type, subject_token_type), the audience naming a
  configured pool provider (invalid_target), the JWT's RS256 signature against the cluster's
  key, its iss, exp and aud (invalid_grant); the principal is
  principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/subject/SUB.
- iamCredentials generateAccessToken: the bearer (401), roles/iam.workloadIdentityUser of the
  principal on the service account (403), scope and lifetime.
- Metadata server: Metadata-Flavor: Google required, X-Forwarded-For refused (403); answers
  carry Metadata-Flavor: Google; 404 when the node has no identity for the pod.
"""

import base64
import datetime
import http.server
import ipaddress
import json
import os
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import secrets as rnd

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

PROJECT_ID = "secretdrop-test"
PROJECT_NUMBER = "123456789012"
LOCATIONS = ["us-central1", "europe-west1", "us-east1"]
HOSTS = (
    ["secretmanager.googleapis.com", "sts.googleapis.com", "iamcredentials.googleapis.com",
     "cloudresourcemanager.googleapis.com", "oauth2.googleapis.com", "attacker.example"]
    + [f"secretmanager.{l}.rep.googleapis.com" for l in LOCATIONS]
    + ["parametermanager.googleapis.com"]
    + [f"parametermanager.{l}.rep.googleapis.com" for l in LOCATIONS]
)
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
ISSUER = "https://kubernetes.default.svc.cluster.local"


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class State:
    def __init__(self):
        self.lock = threading.Lock()
        # (location or None, secret id) -> {"versions": [...], "aliases": {}, "accessors": set()}
        self.secrets = {}
        self.project_accessors = set()
        # (location, parameter id) -> {"versions": {id: {"data", "disabled"}}, "accessors": set()}
        self.parameters = {}
        self.project_parameter_accessors = set()
        self.tokens = {}  # access token -> (principal, expires at)
        self.lifetime = 3599
        # audience -> {"pool", "provider", "allowed": [...]}
        self.providers = {}
        self.sa_users = {}  # service account email -> set of principals
        self.metadata_identity = None  # "serviceAccount:EMAIL" or None
        self.counts = {}
        self.misbehave = {}  # target -> {"mode", ...}
        self.attacker_saw = []  # Authorization headers that reached attacker.example
        self.cluster_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def issue(self, principal, lifetime=None):
        token = "ya29." + rnd.token_urlsafe(48)
        life = self.lifetime if lifetime is None else lifetime
        with self.lock:
            self.tokens[token] = (principal, time.time() + life)
        return token, life

    def mint(self, sub, aud, expires_in=3600, issuer=ISSUER):
        header = {"alg": "RS256", "typ": "JWT", "kid": "cluster"}
        now = int(time.time())
        claims = {"iss": issuer, "sub": sub, "aud": aud, "iat": now, "nbf": now,
                  "exp": now + expires_in}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode()))
        sig = self.cluster_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)

    def verify_jwt(self, token):
        """The claims, or an error text like STS's."""
        try:
            h, c, s = token.split(".")
            header = json.loads(unb64url(h))
            claims = json.loads(unb64url(c))
            sig = unb64url(s)
        except Exception:
            return None, "Unable to parse the ID Token."
        if header.get("alg") != "RS256":
            return None, "The ID Token's algorithm is not supported."
        try:
            self.cluster_key.public_key().verify(sig, (h + "." + c).encode(),
                                                 padding.PKCS1v15(), hashes.SHA256())
        except Exception:
            return None, "Invalid ID Token signature."
        return claims, None


STATE = State()


def google_error(code, status, message, reason=None):
    e = {"code": code, "message": message, "status": status}
    if reason:
        e["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                         "domain": "googleapis.com"}]
    return code, {"error": e}


REF = re.compile(rb"__REF__\(//secretmanager\.googleapis\.com/projects/([^/]+)/"
                 rb"(?:locations/([^/]+)/)?secrets/([^/]+)/versions/([^/)]+)\)")


def resolve_refs(data):
    """A parameter's payload with each secret reference replaced by the version's bytes (the
    parameter's own identity reads them; this stand-in lets it read every secret), or the first
    reference that names nothing."""
    missing = []

    def one(m):
        location = m.group(2).decode() if m.group(2) else None
        s = STATE.secrets.get((location, m.group(3).decode()))
        version = m.group(4).decode()
        n = None
        if s and s["versions"]:
            n = len(s["versions"]) if version == "latest" else int(version) if version.isdigit() else None
        if n is None or not 0 < n <= len(s["versions"]):
            missing.append(m.group(0)[len("__REF__("):-1].decode())
            return b""
        return s["versions"][n - 1]["data"]

    with STATE.lock:
        out = REF.sub(one, data)
    return out, (missing[0] if missing else None)


def project_number(p):
    return PROJECT_NUMBER if p in (PROJECT_ID, PROJECT_NUMBER) else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ESF"
    sys_version = ""

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.headers.get("Host", "-") if hasattr(self, "headers") else "-",
                                      fmt % args))

    # --- plumbing

    def host(self):
        return (self.headers.get("Host") or "").split(":")[0].lower()

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, code, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def bearer(self):
        """(principal, None) or (None, (code, body)) as Google answers a bad token."""
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return None, google_error(401, "UNAUTHENTICATED",
                                      "Request is missing required authentication credential. "
                                      "Expected OAuth 2 access token, login cookie or other valid "
                                      "authentication credential.", "CREDENTIALS_MISSING")
        with STATE.lock:
            held = STATE.tokens.get(auth[7:])
        if held is None:
            return None, google_error(401, "UNAUTHENTICATED",
                                      "Request had invalid authentication credentials. Expected "
                                      "OAuth 2 access token, login cookie or other valid "
                                      "authentication credential.", "ACCESS_TOKEN_TYPE_UNSUPPORTED")
        principal, expires = held
        if expires <= time.time():
            return None, google_error(401, "UNAUTHENTICATED",
                                      "Request had invalid authentication credentials. Expected "
                                      "OAuth 2 access token, login cookie or other valid "
                                      "authentication credential.", "ACCESS_TOKEN_EXPIRED")
        return principal, None

    def misbehaving(self, target):
        """Applies a configured misbehaviour; True when the answer was sent."""
        with STATE.lock:
            m = STATE.misbehave.get(target)
            if m and m.get("times") is not None:
                m["times"] -= 1
                if m["times"] < 0:
                    del STATE.misbehave[target]
                    m = None
        if not m:
            return False
        mode = m["mode"]
        if mode == "status":
            code = m.get("status", 503)
            status = {503: "UNAVAILABLE", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                      401: "UNAUTHENTICATED"}.get(code, "UNKNOWN")
            reason = "ACCESS_TOKEN_EXPIRED" if code == 401 else None
            self.reply(*google_error(code, status, m.get("message", "The service is currently "
                                                              "unavailable."), reason))
        elif mode == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            if m.get("length"):
                self.send_header("Content-Length", str(m["length"]))
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(m.get("chunks", 160)):
                    self.wfile.write(chunk)
            except OSError:
                pass
            self.close_connection = True
        elif mode == "slow":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(m.get("seconds", 120)):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                pass
            self.close_connection = True
        elif mode == "redirect":
            self.send_response(m.get("status", 302))
            self.send_header("Location", m["location"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            return False
        return True

    # --- dispatch

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def dispatch(self, method):
        host = self.host()
        if self.server.plain:
            return self.metadata(method)
        path = urllib.parse.urlsplit(self.path).path
        if host == "attacker.example":
            STATE.count("attacker")
            with STATE.lock:
                STATE.attacker_saw.append(self.headers.get("Authorization") or "")
            return self.reply(200, {"stolen": True})
        if host == "sts.googleapis.com" and method == "POST" and path == "/v1/token":
            return self.sts()
        if host == "iamcredentials.googleapis.com" and method == "POST":
            return self.generate_access_token(path)
        if host == "cloudresourcemanager.googleapis.com":
            STATE.count("resourcemanager")
            return self.reply(*google_error(403, "PERMISSION_DENIED", "The caller does not have "
                                            "permission"))
        if host.startswith("secretmanager.") and method == "GET" and path.endswith(":access"):
            return self.access(host, path)
        if host.startswith("parametermanager.") and method == "GET" and path.endswith(":render"):
            return self.render(host, path)
        self.reply(*google_error(404, "NOT_FOUND", f"The requested URL {path} was not found on "
                                 "this server."))

    # --- Secret Manager

    def access(self, host, path):
        STATE.count("access")
        STATE.count("access:" + host)
        if self.misbehaving("access"):
            return
        principal, err = self.bearer()
        if err:
            return self.reply(*err)
        parts = path[len("/v1/"):-len(":access")].split("/")
        if len(parts) == 6 and parts[0] == "projects" and parts[2] == "secrets" and parts[4] == "versions":
            project, location, secret, version = parts[1], None, parts[3], parts[5]
        elif (len(parts) == 8 and parts[0] == "projects" and parts[2] == "locations"
              and parts[4] == "secrets" and parts[6] == "versions"):
            project, location, secret, version = parts[1], parts[3], parts[5], parts[7]
        else:
            return self.reply(*google_error(400, "INVALID_ARGUMENT", "Invalid resource field value "
                                            "in the request."))
        served = None if host == "secretmanager.googleapis.com" else host.split(".")[1]
        if served != location:
            return self.reply(*google_error(400, "INVALID_ARGUMENT",
                                            f"Location {location or 'global'} is not supported for "
                                            "this endpoint."))
        number = project_number(project)
        permission = self.reply_denied
        if number is None:
            return permission()
        key = (location, secret)
        with STATE.lock:
            s = STATE.secrets.get(key)
            allowed = principal in STATE.project_accessors or (s is not None and principal in s["accessors"])
        if not allowed:
            return permission()
        base = f"projects/{number}/" + (f"locations/{location}/" if location else "") + f"secrets/{secret}"
        if s is None or not s["versions"]:
            return self.reply(*google_error(404, "NOT_FOUND",
                                            f"Secret [{base}] not found or has no versions."))
        with STATE.lock:
            if version == "latest":
                n = len(s["versions"])
            elif version.isdigit():
                n = int(version)
            else:
                n = s["aliases"].get(version)
            v = s["versions"][n - 1] if n and 0 < n <= len(s["versions"]) else None
        if v is None:
            return self.reply(*google_error(404, "NOT_FOUND",
                                            f"Secret Version [{base}/versions/{version}] not found."))
        if v["state"] != "ENABLED":
            return self.reply(*google_error(400, "FAILED_PRECONDITION",
                                            f"Secret Version [{base}/versions/{n}] is in "
                                            f"{v['state']} state."))
        data = v["data"]
        crc = crc32c(data)
        if STATE.misbehave.get("crc", {}).get("mode") == "bad":
            crc ^= 1
        payload = {"dataCrc32c": str(crc)}
        if data:
            payload["data"] = base64.b64encode(data).decode()
        self.reply(200, {"name": f"{base}/versions/{n}", "payload": payload})

    # --- Parameter Manager

    def render(self, host, path):
        STATE.count("render")
        principal, err = self.bearer()
        if err:
            return self.reply(*err)
        parts = path[len("/v1/"):-len(":render")].split("/")
        if not (len(parts) == 8 and parts[0] == "projects" and parts[2] == "locations"
                and parts[4] == "parameters" and parts[6] == "versions"):
            return self.reply(*google_error(400, "INVALID_ARGUMENT", "Invalid resource field value "
                                            "in the request."))
        project, location, parameter, version = parts[1], parts[3], parts[5], parts[7]
        served = "global" if host == "parametermanager.googleapis.com" else host.split(".")[1]
        if served != location:
            return self.reply(*google_error(400, "INVALID_ARGUMENT",
                                            f"Location {location} is not supported for this "
                                            "endpoint."))
        number = project_number(project)
        with STATE.lock:
            p = STATE.parameters.get((location, parameter))
            allowed = number is not None and (
                principal in STATE.project_parameter_accessors
                or (p is not None and principal in p["accessors"]))
        if not allowed:
            return self.reply(*google_error(403, "PERMISSION_DENIED",
                                            "Permission 'parametermanager.parameterVersions.render' "
                                            "denied on resource (or it may not exist).",
                                            "IAM_PERMISSION_DENIED"))
        base = f"projects/{number}/locations/{location}/parameters/{parameter}"
        v = p["versions"].get(version) if p else None
        if v is None:
            return self.reply(*google_error(404, "NOT_FOUND",
                                            f"Parameter Version [{base}/versions/{version}] not "
                                            "found."))
        if v["disabled"]:
            return self.reply(*google_error(400, "FAILED_PRECONDITION",
                                            f"Parameter Version [{base}/versions/{version}] is "
                                            "disabled."))
        rendered, missing = resolve_refs(v["data"])
        if missing:
            return self.reply(*google_error(400, "FAILED_PRECONDITION",
                                            f"Secret reference [{missing}] could not be rendered."))
        self.reply(200, {"parameterVersion": f"{base}/versions/{version}",
                         "payload": {"data": base64.b64encode(v["data"]).decode()},
                         "renderedPayload": base64.b64encode(rendered).decode()})

    def reply_denied(self):
        self.reply(*google_error(403, "PERMISSION_DENIED",
                                 "Permission 'secretmanager.versions.access' denied on resource "
                                 "(or it may not exist).", "IAM_PERMISSION_DENIED"))

    # --- STS

    def sts(self):
        STATE.count("sts")
        if self.misbehaving("sts"):
            return
        form = urllib.parse.parse_qs(self.body().decode(errors="replace"), keep_blank_values=True)
        f = {k: v[0] for k, v in form.items()}

        def oauth(error, description):
            self.reply(400, {"error": error, "error_description": description})

        if f.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            return oauth("unsupported_grant_type", "Unsupported grant type.")
        if f.get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token":
            return oauth("invalid_request", "Invalid requested_token_type.")
        if f.get("subject_token_type") not in ("urn:ietf:params:oauth:token-type:jwt",
                                               "urn:ietf:params:oauth:token-type:id_token"):
            return oauth("invalid_request", "Invalid subject_token_type.")
        audience = f.get("audience", "")
        if not audience.startswith("//iam.googleapis.com/projects/"):
            return oauth("invalid_request", "Invalid value for \"audience\". This value should be "
                         "the full resource name of the Identity Provider.")
        with STATE.lock:
            provider = STATE.providers.get(audience)
        if provider is None:
            return oauth("invalid_target", "The target service indicated by the \"audience\" "
                         "parameters is invalid. This might either be because the pool or provider "
                         "is disabled or deleted or because it doesn't exist.")
        claims, err = STATE.verify_jwt(f.get("subject_token", ""))
        if err:
            return oauth("invalid_grant", err)
        if claims.get("iss") != provider["issuer"]:
            return oauth("invalid_grant", "The issuer in ID Token %s does not match the expected "
                         "ones." % claims.get("iss"))
        if claims.get("exp", 0) <= time.time():
            return oauth("invalid_grant", "ID Token issued at %s is stale to sign-in." %
                         claims.get("iat"))
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not any(a in provider["allowed"] for a in auds):
            return oauth("invalid_grant", "The audience in ID Token %s does not match the expected "
                         "audience %s." % (auds, provider["allowed"][0]))
        if f.get("scope") and not set(f["scope"].split()) & {CLOUD_PLATFORM,
                                                             "https://www.googleapis.com/auth/iam"}:
            return oauth("invalid_scope", "Invalid scope.")
        principal = ("principal://iam.googleapis.com/projects/%s/locations/global/"
                     "workloadIdentityPools/%s/subject/%s" % (PROJECT_NUMBER, provider["pool"],
                                                              claims["sub"]))
        token, life = STATE.issue(principal)
        self.reply(200, {"access_token": token,
                         "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                         "token_type": "Bearer", "expires_in": life})

    # --- iamCredentials

    def generate_access_token(self, path):
        STATE.count("iam")
        if self.misbehaving("iam"):
            return
        prefix, suffix = "/v1/projects/-/serviceAccounts/", ":generateAccessToken"
        if not (path.startswith(prefix) and path.endswith(suffix)):
            return self.reply(*google_error(404, "NOT_FOUND", "Not found."))
        email = urllib.parse.unquote(path[len(prefix):-len(suffix)])
        principal, err = self.bearer()
        if err:
            return self.reply(*err)
        try:
            req = json.loads(self.body() or b"{}")
        except ValueError:
            return self.reply(*google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload."))
        with STATE.lock:
            users = STATE.sa_users.get(email)
        if users is None or principal not in users:
            return self.reply(*google_error(403, "PERMISSION_DENIED",
                                            "Permission 'iam.serviceAccounts.getAccessToken' denied "
                                            "on resource (or it may not exist).",
                                            "IAM_PERMISSION_DENIED"))
        scope = req.get("scope") or []
        if CLOUD_PLATFORM not in scope:
            return self.reply(*google_error(400, "INVALID_ARGUMENT", "Scope required."))
        lifetime = req.get("lifetime", "3600s")
        try:
            secs = int(lifetime.rstrip("s"))
        except (ValueError, AttributeError):
            return self.reply(*google_error(400, "INVALID_ARGUMENT", "Invalid lifetime."))
        if not 1 <= secs <= 3600:
            return self.reply(*google_error(400, "INVALID_ARGUMENT", "The lifetime is out of "
                                            "range."))
        with STATE.lock:
            life = min(secs, STATE.lifetime)
        token, _ = STATE.issue("serviceAccount:" + email, life)
        expire = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=life)
        self.reply(200, {"accessToken": token, "expireTime": expire.strftime("%Y-%m-%dT%H:%M:%SZ")})

    # --- metadata server

    def metadata(self, method):
        path = urllib.parse.urlsplit(self.path).path
        flavor = [("Metadata-Flavor", "Google")]
        if self.headers.get("Metadata-Flavor") != "Google" or self.headers.get("X-Forwarded-For"):
            data = b"Missing required header: Metadata-Flavor\n"
            self.send_response(403)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        STATE.count("metadata:" + path)
        with STATE.lock:
            identity = STATE.metadata_identity
        email = identity.split(":", 1)[1] if identity else ""
        accounts = "/computeMetadata/v1/instance/service-accounts/"
        if email and path.startswith(accounts + email):
            # An account is also named by its email.
            path = accounts + "default" + path[len(accounts + email):]
        if path == "/computeMetadata/v1/instance/service-accounts/default/token":
            STATE.count("metadata_token")
            if self.misbehaving("metadata"):
                return

        def text(code, value):
            data = value.encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/text")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Metadata-Flavor", "Google")
            self.end_headers()
            self.wfile.write(data)

        if path in ("/", "/computeMetadata/v1/", "/computeMetadata/v1"):
            return text(200, "computeMetadata/\n")
        if path == "/computeMetadata/v1/project/project-id":
            return text(200, PROJECT_ID)
        if path == "/computeMetadata/v1/project/numeric-project-id":
            return text(200, PROJECT_NUMBER)
        sa = "/computeMetadata/v1/instance/service-accounts/default"
        if identity is None and path.startswith(sa):
            return text(404, "Not Found\n")
        if path == sa + "/token":
            token, life = STATE.issue(identity)
            return self.reply(200, {"access_token": token, "expires_in": life,
                                    "token_type": "Bearer"}, flavor)
        if path == sa + "/email":
            return text(200, email)
        if path in (sa, sa + "/"):
            return self.reply(200, {"aliases": ["default"], "email": email,
                                    "scopes": [CLOUD_PLATFORM]}, flavor)
        if path == sa + "/scopes":
            return text(200, CLOUD_PLATFORM + "\n")
        text(404, "Not Found\n")


# --- administration


def admin(cmd):
    op = cmd.get("op")
    with STATE.lock:
        if op == "add_version":
            key = (cmd.get("location"), cmd["secret"])
            s = STATE.secrets.setdefault(key, {"versions": [], "aliases": {}, "accessors": set()})
            s["versions"].append({"data": base64.b64decode(cmd["data"]), "state": "ENABLED"})
            n = len(s["versions"])
            if cmd.get("alias"):
                s["aliases"][cmd["alias"]] = n
            return {"version": n}
        if op == "add_parameter_version":
            p = STATE.parameters.setdefault((cmd["location"], cmd["parameter"]),
                                            {"versions": {}, "accessors": set()})
            p["versions"][cmd["version"]] = {"data": base64.b64decode(cmd["data"]),
                                             "disabled": False}
            return {}
        if op == "grant_parameter":
            p = STATE.parameters.setdefault((cmd["location"], cmd["parameter"]),
                                            {"versions": {}, "accessors": set()})
            p["accessors"].add(cmd["member"])
            return {}
        if op == "grant_project_parameters":
            STATE.project_parameter_accessors.add(cmd["member"])
            return {}
        if op == "delete_secret":
            STATE.secrets.pop((cmd.get("location"), cmd["secret"]), None)
            return {}
        if op == "revoke_secret":
            s = STATE.secrets.get((cmd.get("location"), cmd["secret"]))
            if s:
                s["accessors"].discard(cmd["member"])
            return {}
        if op == "set_state":
            s = STATE.secrets[(cmd.get("location"), cmd["secret"])]
            s["versions"][cmd["version"] - 1]["state"] = cmd["state"]
            return {}
        if op == "grant_secret":
            s = STATE.secrets.setdefault((cmd.get("location"), cmd["secret"]),
                                         {"versions": [], "aliases": {}, "accessors": set()})
            s["accessors"].add(cmd["member"])
            return {}
        if op == "grant_project":
            STATE.project_accessors.add(cmd["member"])
            return {}
        if op == "provider":
            aud = ("//iam.googleapis.com/projects/%s/locations/global/workloadIdentityPools/%s/"
                   "providers/%s" % (PROJECT_NUMBER, cmd["pool"], cmd["provider"]))
            default = "https:" + aud
            STATE.providers[aud] = {"pool": cmd["pool"], "provider": cmd["provider"],
                                    "issuer": cmd.get("issuer", ISSUER),
                                    "allowed": cmd.get("allowed") or [default]}
            return {"audience": aud, "default_allowed": default}
        if op == "workload_identity_user":
            STATE.sa_users.setdefault(cmd["service_account"], set()).add(cmd["member"])
            return {}
        if op == "metadata_identity":
            STATE.metadata_identity = cmd.get("identity")
            return {}
        if op == "lifetime":
            STATE.lifetime = cmd["seconds"]
            return {}
        if op == "counts":
            return dict(STATE.counts)
        if op == "misbehave":
            if cmd.get("mode") is None:
                STATE.misbehave.pop(cmd["target"], None)
            else:
                STATE.misbehave[cmd["target"]] = {k: v for k, v in cmd.items() if k not in ("op", "target")}
            return {}
        if op == "tokens":
            return {"tokens": list(STATE.tokens)}
        if op == "attacker_saw":
            return {"authorizations": list(STATE.attacker_saw)}
        if op == "expire_tokens":
            STATE.tokens = {t: (p, 0) for t, (p, _) in STATE.tokens.items()}
            return {}
    if op == "mint":
        return {"token": STATE.mint(cmd["sub"], cmd["aud"], cmd.get("expires_in", 3600),
                                    cmd.get("issuer", ISSUER))}
    return {"error": "unknown op %r" % op}


class AdminHandler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            try:
                out = admin(json.loads(line))
            except Exception as e:  # the test sees it
                out = {"error": repr(e)}
            self.wfile.write(json.dumps(out).encode() + b"\n")
            self.wfile.flush()


class AdminServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def tls_material(directory):
    """A CA (DIR/ca.pem) and a certificate for every host name, signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secretdrop test Google CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTS[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(os.path.join(directory, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    crt, pem = os.path.join(directory, "server.crt"), os.path.join(directory, "server.key")
    with open(crt, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(pem, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return crt, pem


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    directory = sys.argv[1]
    crt, key = tls_material(directory)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    # STANDIN_BIND: one loopback address in the test process's own network namespace (the
    # contract suite's store), with no metadata server; else every address of its own one.
    bind = os.environ.get("STANDIN_BIND", "0.0.0.0")
    tls = Server((bind, 443), Handler)
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    tls.plain = False
    serve(tls)
    ports = [] if bind != "0.0.0.0" else [80] + [int(p) for p in sys.argv[3:]]
    for port in ports:
        plain = Server(("0.0.0.0", port), Handler)
        plain.plain = True
        serve(plain)
    sock = sys.argv[2]
    if os.path.exists(sock):
        os.unlink(sock)
    serve(AdminServer(sock, AdminHandler))
    print("ready", flush=True)
    # Killed by the test harness (tied to its process).
    threading.Event().wait()


if __name__ == "__main__":
    main()
