"""Stand-in for Microsoft Entra ID (the workload identity token exchange), Azure Key Vault's data
plane and the Azure Instance Metadata Service, for tests/azure.rs. It runs inside a network and
mount namespace of its own (tests/common/azure.rs makes it), where the real host names resolve to
127.0.0.1 and 169.254.169.254 is a local address:

* TLS on 127.0.0.1:443 for every host name, routed by the Host header: the clouds' authorities
  (login.microsoftonline.com, login.chinacloudapi.cn, login.microsoftonline.us, and a custom
  cloud's login.stack.example) and vaults (NAME.vault.azure.net, .vault.azure.cn,
  .vault.usgovcloudapi.net, .vault.stack.example); evil.example.com only records what reaches it.
* plain HTTP on 169.254.169.254:80: IMDS's token endpoint.
* an admin socket (a Unix socket, one JSON request and one JSON answer per line) where the tests
  create tenants, apps with federated credentials, vaults, access policies, objects and
  misbehaviour, and read what was asked.

Like the services: Entra verifies the client assertion (RS256 signature against the issuer's key,
exp/nbf, and a federated credential of the client with the same issuer, subject and audience) and
answers with AADSTS errors; Key Vault answers 401 with its challenge without a token, checks the
token's audience, tenant and expiry, the access policy (403), and answers 404s, versions with
nextLink paging, 429 with Retry-After, with its JSON shapes and error texts. Checked against
Azure's own Python SDKs by tests/azure/sdk_check.py.

Usage: standin.py CERT KEY ADMIN_SOCKET [RELAY_SOCKET]
"""

import base64
import datetime
import hashlib
import json
import os
import secrets
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

AUDIENCE = "api://AzureADTokenExchange"
CLOUDS = {
    # authority host -> (key vault resource, vault DNS suffix)
    "login.microsoftonline.com": ("https://vault.azure.net", "vault.azure.net"),
    "login.chinacloudapi.cn": ("https://vault.azure.cn", "vault.azure.cn"),
    "login.microsoftonline.us": ("https://vault.usgovcloudapi.net", "vault.usgovcloudapi.net"),
    "login.stack.example": ("https://vault.stack.example", "vault.stack.example"),
}
EVIL = "evil.example.com"
LOCK = threading.Lock()
STATE = {
    "issuers": {},  # issuer -> public key PEM
    "tenants": set(),
    "apps": {},  # client_id -> {"tenant", "federated": [{"issuer","subject","audience"}]}
    "tokens": {},  # access token -> {"client_id","tenant","resource","exp"}
    "token_lifetime": 3599,
    "vm_identities": {"system": None, "user": []},
    "vaults": {},  # host -> vault
    "requests": [],  # {"host","method","path","auth","status"}
    "misbehave": [],  # {"host","path","action",...}
    "exchanges": {},  # client_id -> count
}


def now():
    return int(time.time())


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_version():
    return secrets.token_hex(16)


# ---------------------------------------------------------------- Entra ID


def aadsts(status, error, code, text):
    trace = secrets.token_hex(16)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {trace} Timestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": trace,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return status, {}, body


def verify_assertion(assertion):
    """(claims, None) or (None, error answer)."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return None, aadsts(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except Exception:
        return None, aadsts(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
    issuer = claims.get("iss", "")
    key_pem = STATE["issuers"].get(issuer)
    if key_pem is None:
        return None, aadsts(400, "invalid_request", 700211,
                            f"No matching federated identity record found for presented assertion issuer '{issuer}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.")
    if header.get("alg") != "RS256":
        return None, aadsts(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
    key = serialization.load_pem_public_key(key_pem.encode())
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return None, aadsts(401, "invalid_client", 700027,
                            "The certificate with identifier used to sign the client assertion is not registered on application. ")
    t = now()
    if not (claims.get("nbf", 0) - 300 <= t < claims.get("exp", 0) + 300):
        return None, aadsts(400, "invalid_client", 700024, "Client assertion is not within its valid time range.")
    return claims, None


def token_endpoint(host, path, form):
    tenant = path.split("/")[1]
    if host not in CLOUDS:
        return 404, {}, {"error": "not_found"}
    if tenant not in STATE["tenants"]:
        return aadsts(400, "invalid_request", 90002,
                      f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
    if form.get("grant_type") != "client_credentials":
        return aadsts(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
    if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
        return aadsts(401, "invalid_client", 7000218,
                      "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
    client_id = form.get("client_id", "")
    app = STATE["apps"].get(client_id)
    if app is None or app["tenant"] != tenant:
        return aadsts(400, "unauthorized_client", 700016,
                      f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.")
    scope = form.get("scope", "")
    resource = CLOUDS[host][0]
    if scope.rstrip("/") not in (resource + "/.default", resource + "//.default"):
        return aadsts(400, "invalid_resource", 500011,
                      f"The resource principal named {scope.rsplit('/', 1)[0]} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.")
    claims, error = verify_assertion(form.get("client_assertion", ""))
    if error:
        return error
    aud = claims.get("aud", [])
    aud = [aud] if isinstance(aud, str) else aud
    matches = [f for f in app["federated"] if f["issuer"] == claims.get("iss")]
    if not matches:
        return aadsts(400, "invalid_request", 700211,
                      f"No matching federated identity record found for presented assertion issuer '{claims.get('iss')}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.")
    matches = [f for f in matches if f["subject"] == claims.get("sub")]
    if not matches:
        return aadsts(400, "invalid_request", 700213,
                      f"No matching federated identity record found for presented assertion subject '{claims.get('sub')}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.")
    matches = [f for f in matches if f["audience"] in aud]
    if not matches:
        return aadsts(400, "invalid_request", 700212,
                      f"No matching federated identity record found for presented assertion audience '{','.join(aud)}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.")
    return issue(client_id, tenant, resource, {})


def issue(client_id, tenant, resource, extra):
    lifetime = STATE["apps"].get(client_id, {}).get("token_lifetime") or STATE["token_lifetime"]
    header = b64url(json.dumps({"typ": "JWT", "alg": "RS256"}).encode())
    payload = b64url(json.dumps({"aud": resource, "iss": f"https://sts.windows.net/{tenant}/",
                                 "appid": client_id, "tid": tenant, "exp": now() + lifetime}).encode())
    token = f"{header}.{payload}.{b64url(secrets.token_bytes(32))}"
    STATE["tokens"][token] = {"client_id": client_id, "tenant": tenant, "resource": resource,
                              "exp": now() + lifetime}
    STATE["exchanges"][client_id] = STATE["exchanges"].get(client_id, 0) + 1
    body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
    body.update(extra)
    return 200, {}, body


def login(host, method, path, query, form):
    tenant = path.split("/")[1] if path.count("/") >= 2 else ""
    if method == "GET" and path.endswith("/v2.0/.well-known/openid-configuration"):
        base = f"https://{host}/{tenant}"
        return 200, {}, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "issuer": f"{base}/v2.0",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
        }
    if method == "GET" and path == "/common/discovery/instance":
        return 200, {}, {
            "tenant_discovery_endpoint": f"https://{host}/{tenant or 'common'}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
    if method == "POST" and path.endswith("/oauth2/v2.0/token"):
        return token_endpoint(host, path, form)
    return 404, {}, {"error": "invalid_request", "error_description": "AADSTS900561: The endpoint only accepts POST requests."}


# ---------------------------------------------------------------- IMDS


def imds(method, path, query, headers):
    if path != "/metadata/identity/oauth2/token":
        return 404, {}, {"error": "not_found"}
    if headers.get("metadata", "").lower() != "true":
        return 400, {}, {"error": "invalid_request", "error_description": "Required metadata header not specified"}
    resource = query.get("resource", "")
    ids = STATE["vm_identities"]
    client_id = query.get("client_id")
    if client_id:
        if client_id not in ids["user"] and client_id != ids["system"]:
            return 400, {}, {"error": "invalid_request", "error_description": "Identity not found"}
    elif ids["system"] is not None:
        client_id = ids["system"]
    elif len(ids["user"]) == 1:
        client_id = ids["user"][0]
    elif len(ids["user"]) > 1:
        return 400, {}, {"error": "invalid_request", "error_description": "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"}
    else:
        return 400, {}, {"error": "invalid_request", "error_description": "Identity not found"}
    app = STATE["apps"].get(client_id)
    if app is None:
        return 400, {}, {"error": "invalid_request", "error_description": "Identity not found"}
    status, h, body = issue(client_id, app["tenant"], resource.rstrip("/"), {})
    lifetime = body["expires_in"]
    return status, h, {
        "access_token": body["access_token"], "client_id": client_id,
        "expires_in": str(lifetime), "expires_on": str(now() + lifetime),
        "ext_expires_in": str(lifetime), "not_before": str(now()),
        "resource": resource, "token_type": "Bearer",
    }


# ---------------------------------------------------------------- Key Vault

NOT_FOUND = {
    "secrets": ("SecretNotFound", "A secret with (name/id) {} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
    "keys": ("KeyNotFound", "A key with (name/id) {} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
    "certificates": ("CertificateNotFound", "A certificate with (name/id) {} was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
}
SINGULAR = {"secrets": "secret", "keys": "key", "certificates": "certificate"}


def kv_error(status, code, message, inner=None, headers=None):
    error = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return status, headers or {}, {"error": error}


def attributes(v):
    a = {"enabled": v["enabled"], "created": v["created"], "updated": v["updated"],
         "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}
    return a


def object_url(vault, collection, name, version):
    return f"https://{vault['host']}/{collection}/{name}/{version}"


def bundle(vault, collection, name, v):
    base = object_url(vault, collection, name, v["id"])
    if collection == "secrets":
        b = {"value": v["value"], "id": base, "attributes": attributes(v), "tags": {}}
        if v.get("contentType"):
            b["contentType"] = v["contentType"]
        if v.get("cert"):
            b["kid"] = object_url(vault, "keys", name, v["id"])
            b["managed"] = True
        return b
    if collection == "keys":
        key = dict(v["jwk"])
        key["kid"] = base
        b = {"key": key, "attributes": attributes(v), "tags": {}}
        if v.get("cert"):
            b["managed"] = True
        return b
    return {"id": base, "kid": object_url(vault, "keys", name, v["id"]),
            "sid": object_url(vault, "secrets", name, v["id"]), "x5t": v["x5t"], "cer": v["cer"],
            "attributes": attributes(v), "tags": {},
            "policy": {"id": f"https://{vault['host']}/certificates/{name}/policy",
                       "key_props": {"exportable": True, "kty": v.get("kty", "RSA"), "reuse_key": False},
                       "secret_props": {"contentType": v.get("secretContentType", "application/x-pkcs12")},
                       "x509_props": {"subject": "CN=test", "validity_months": 12},
                       "issuer": {"name": "Self"}, "attributes": {"enabled": True}}}


def list_item(vault, collection, name, v):
    item = {"id" if collection != "keys" else "kid": object_url(vault, collection, name, v["id"]),
            "attributes": attributes(v), "tags": {}}
    if collection == "secrets" and v.get("contentType"):
        item["contentType"] = v["contentType"]
    if collection == "certificates":
        item["x5t"] = v["x5t"]
    if v.get("cert") and collection != "certificates":
        item["managed"] = True
    return item


def keyvault(host, method, path, query, headers, body):
    vault = STATE["vaults"].get(host)
    if vault is None:
        return 404, {}, {"error": {"code": "VaultNotFound", "message": "no such vault"}}
    if "api-version" not in query:
        return kv_error(400, "BadParameter", "The request URI contains an invalid or missing api-version parameter.")
    challenge = {"WWW-Authenticate": f'Bearer authorization="https://login.windows.net/{vault["tenant"]}", resource="{vault["resource"]}"'}
    auth = headers.get("authorization", "")
    if not auth.startswith("Bearer "):
        return kv_error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", headers=challenge)
    token = STATE["tokens"].get(auth[len("Bearer "):])
    if token is None:
        return kv_error(401, "Unauthorized", "AKV10032: Invalid issuer. The token is not one Entra ID issued.", headers=challenge)
    if token["exp"] <= now():
        return kv_error(401, "Unauthorized", "AKV10022: Invalid audience or expired token: the token has expired.", headers=challenge)
    if token["resource"] != vault["resource"]:
        return kv_error(401, "Unauthorized", f"AKV10022: Invalid audience. Expected {vault['resource']}, found: {token['resource']}.", headers=challenge)
    if token["tenant"] != vault["tenant"]:
        return kv_error(401, "Unauthorized", f"AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{vault['tenant']}/, found https://sts.windows.net/{token['tenant']}/.", headers=challenge)
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2 or parts[0] not in ("secrets", "keys", "certificates"):
        return kv_error(400, "BadParameter", "The request URI is not a Key Vault operation.")
    collection, name = parts[0], parts[1]
    permission = ("list" if parts[2:3] == ["versions"] else
                  "set" if method == "PUT" else "get")
    allowed = vault["policies"].get(token["client_id"], [])
    if f"{collection}/{permission}" not in allowed:
        return kv_error(403, "Forbidden",
                        f"The user, group or application 'appid={token['client_id']};oid={hashlib.md5(token['client_id'].encode()).hexdigest()};iss=https://sts.windows.net/{token['tenant']}/' does not have {collection} {permission} permission on key vault '{vault['name']};location=eastus'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
                        "AccessDenied")
    store = vault[collection]
    if method == "PUT" and collection == "secrets" and len(parts) == 2:
        doc = json.loads(body or b"{}")
        v = add_version(vault, "secrets", name, {"value": doc.get("value", ""), "contentType": doc.get("contentType")})
        return 200, {}, bundle(vault, "secrets", name, v)
    if method != "GET":
        return kv_error(405, "MethodNotAllowed", "not supported here")
    versions = store.get(name)
    if parts[2:3] == ["versions"]:
        if versions is None:
            return 200, {}, {"value": [], "nextLink": None}
        size = int(query.get("maxresults", "25"))
        size = min(size, vault.get("page_size", 25))
        ordered = sorted(versions, key=lambda v: v["id"])
        start = int(query.get("$skiptoken", "0"))
        page = ordered[start:start + size]
        nxt = None
        if start + size < len(ordered):
            q = urllib.parse.urlencode({"api-version": query["api-version"], "$skiptoken": str(start + size), "maxresults": str(size)})
            nxt = f"https://{host}:443/{collection}/{name}/versions?{q}"
        return 200, {}, {"value": [list_item(vault, collection, name, v) for v in page], "nextLink": nxt}
    if versions is None or not versions:
        code, text = NOT_FOUND[collection]
        return kv_error(404, code, text.format(name))
    version = parts[2] if len(parts) > 2 else ""
    if version:
        found = [v for v in versions if v["id"] == version]
        if not found:
            code, text = NOT_FOUND[collection]
            return kv_error(404, code, text.format(f"{name}/{version}"))
        v = found[0]
    else:
        v = versions[-1]
    if not v["enabled"]:
        return kv_error(403, "Forbidden", f"Operation get is not allowed on a disabled {SINGULAR[collection]}.",
                        f"{SINGULAR[collection].capitalize()}Disabled")
    return 200, {}, bundle(vault, collection, name, v)


def add_version(vault, collection, name, fields, version=None, created=None):
    t = created if created is not None else now()
    v = {"id": version or new_version(), "enabled": True, "created": t, "updated": t}
    v.update(fields)
    vault[collection].setdefault(name, []).append(v)
    return v


# ---------------------------------------------------------------- certificates


def jwk_of(public_key):
    if isinstance(public_key, rsa.RSAPublicKey):
        n = public_key.public_numbers()
        size = (n.n.bit_length() + 7) // 8
        return {"kty": "RSA", "key_ops": ["sign", "verify", "encrypt", "decrypt", "wrapKey", "unwrapKey"],
                "n": b64url(n.n.to_bytes(size, "big")), "e": b64url(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big"))}
    n = public_key.public_numbers()
    crv = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48), "secp521r1": ("P-521", 66)}[public_key.curve.name]
    return {"kty": "EC", "key_ops": ["sign", "verify"], "crv": crv[0],
            "x": b64url(n.x.to_bytes(crv[1], "big")), "y": b64url(n.y.to_bytes(crv[1], "big"))}


def import_certificate(vault, name, key_pem, cert_pems, content_type, created=None):
    """A certificate version as Key Vault keeps it: the certificate (leaf), its key (JWK) and its
    secret (PEM text, or a base64 PFX made with the empty password, 3DES and a SHA-1 MAC)."""
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    leaf = x509.load_pem_x509_certificate(cert_pems[0].encode())
    der = leaf.public_bytes(serialization.Encoding.DER)
    if content_type == "application/x-pem-file":
        pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
        value = pkcs8 + "".join(cert_pems)
    else:
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "key.pem"), "w").write(key_pem)
            open(os.path.join(d, "cert.pem"), "w").write(cert_pems[0])
            args = ["openssl", "pkcs12", "-export", "-passout", "pass:", "-keypbe", "PBE-SHA1-3DES",
                    "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1", "-iter", "2000",
                    "-inkey", os.path.join(d, "key.pem"), "-in", os.path.join(d, "cert.pem"),
                    "-out", os.path.join(d, "out.pfx")]
            if len(cert_pems) > 1:
                open(os.path.join(d, "chain.pem"), "w").write("".join(cert_pems[1:]))
                args += ["-certfile", os.path.join(d, "chain.pem")]
            subprocess.run(args, check=True, capture_output=True)
            value = base64.b64encode(open(os.path.join(d, "out.pfx"), "rb").read()).decode()
    version = new_version()
    x5t = b64url(hashlib.sha1(der).digest())
    kty = "RSA" if isinstance(key, rsa.RSAPrivateKey) else "EC"
    add_version(vault, "certificates", name, {"cer": base64.b64encode(der).decode(), "x5t": x5t, "cert": True,
                                              "kty": kty, "secretContentType": content_type}, version, created)
    add_version(vault, "keys", name, {"jwk": jwk_of(key.public_key()), "cert": True}, version, created)
    add_version(vault, "secrets", name, {"value": value, "contentType": content_type, "cert": True}, version, created)
    return version


# ---------------------------------------------------------------- admin


def admin(cmd):
    op = cmd["op"]
    if op == "issuer":
        STATE["issuers"][cmd["issuer"]] = cmd["public_key"]
    elif op == "app":
        STATE["tenants"].add(cmd["tenant"])
        STATE["apps"][cmd["client_id"]] = {"tenant": cmd["tenant"], "federated": cmd.get("federated", []),
                                           "token_lifetime": cmd.get("token_lifetime")}
    elif op == "vm_identities":
        STATE["vm_identities"] = {"system": cmd.get("system"), "user": cmd.get("user", [])}
    elif op == "vault":
        STATE["tenants"].add(cmd["tenant"])
        resource, suffix = CLOUDS[cmd.get("authority", "login.microsoftonline.com")]
        host = f"{cmd['name']}.{suffix}"
        STATE["vaults"][host] = {"name": cmd["name"], "host": host, "tenant": cmd["tenant"], "resource": resource,
                                 "policies": cmd.get("policies", {}), "page_size": cmd.get("page_size", 25),
                                 "secrets": {}, "keys": {}, "certificates": {}}
        return {"host": host}
    elif op == "policy":
        STATE["vaults"][cmd["host"]]["policies"][cmd["client_id"]] = cmd["permissions"]
    elif op == "secret":
        # "cert": the secret of a certificate (its answer has a kid), with whatever value.
        v = add_version(STATE["vaults"][cmd["host"]], "secrets", cmd["name"],
                        {"value": cmd["value"], "contentType": cmd.get("contentType"),
                         "cert": cmd.get("cert", False)}, created=cmd.get("created"))
        return {"version": v["id"]}
    elif op == "key":
        key = serialization.load_pem_private_key(cmd["private_key"].encode(), None)
        v = add_version(STATE["vaults"][cmd["host"]], "keys", cmd["name"], {"jwk": jwk_of(key.public_key())},
                        created=cmd.get("created"))
        return {"version": v["id"]}
    elif op == "certificate":
        version = import_certificate(STATE["vaults"][cmd["host"]], cmd["name"], cmd["private_key"],
                                     cmd["certificates"], cmd.get("contentType", "application/x-pkcs12"),
                                     cmd.get("created"))
        return {"version": version}
    elif op == "enable":
        for v in STATE["vaults"][cmd["host"]][cmd["collection"]][cmd["name"]]:
            if v["id"] == cmd["version"]:
                v["enabled"] = cmd["enabled"]
    elif op == "delete":
        STATE["vaults"][cmd["host"]][cmd["collection"]].pop(cmd["name"], None)
    elif op == "revoke":
        # Every access token of a client stops working (Key Vault answers 401).
        for t in [t for t, v in STATE["tokens"].items() if v["client_id"] == cmd["client_id"]]:
            del STATE["tokens"][t]
    elif op == "misbehave":
        STATE["misbehave"].append(cmd["rule"])
    elif op == "behave":
        STATE["misbehave"] = []
    elif op == "requests":
        return {"requests": STATE["requests"]}
    elif op == "exchanges":
        return {"exchanges": STATE["exchanges"]}
    elif op == "ping":
        pass
    else:
        return {"error": f"unknown op {op}"}
    return {}


class Admin(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            try:
                with LOCK:
                    answer = admin(json.loads(line))
            except Exception as e:  # the test sees what went wrong
                answer = {"error": repr(e)}
            self.wfile.write((json.dumps(answer) + "\n").encode())


class AdminServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


# ---------------------------------------------------------------- HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.serve("GET")

    def do_POST(self):
        self.serve("POST")

    def do_PUT(self):
        self.serve("PUT")

    def serve(self, method):
        length = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(min(length, 1 << 20)) if length else b""
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        headers = {k.lower(): v for k, v in self.headers.items()}
        plain = not isinstance(self.connection, ssl.SSLSocket)
        with LOCK:
            record = {"host": "169.254.169.254" if plain else host, "method": method, "path": url.path,
                      "query": url.query, "auth": "authorization" in headers, "status": 0}
            STATE["requests"].append(record)
            rule = next((r for r in STATE["misbehave"]
                         if r.get("host", host) == host and url.path.startswith(r.get("path", "/"))), None)
            if rule is None:
                if plain:
                    status, extra, doc = imds(method, url.path, query, headers)
                elif host == EVIL:
                    status, extra, doc = 404, {}, {"error": {"code": "NotFound", "message": "nothing here"}}
                elif host in CLOUDS:
                    form = dict(urllib.parse.parse_qsl(body.decode(errors="replace"))) if method == "POST" else {}
                    status, extra, doc = login(host, method, url.path, query, form)
                else:
                    status, extra, doc = keyvault(host, method, url.path, query, headers, body)
                record["status"] = status
        if rule is not None:
            record["status"] = -1
            return self.misbehave(rule)
        self.answer(status, extra, json.dumps(doc).encode())

    def answer(self, status, extra, data):
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def misbehave(self, rule):
        action = rule["action"]
        if action == "redirect":
            self.send_response(307)
            self.send_header("Location", rule["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif action == "throttle":
            self.answer(429, {"Retry-After": str(rule.get("retry_after", 1))},
                        json.dumps({"error": {"code": "Throttled", "message": "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"}}).encode())
            rule["count"] = rule.get("count", 1) - 1
            if rule["count"] <= 0:
                with LOCK:
                    STATE["misbehave"].remove(rule)
        elif action == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(rule.get("chunks", 1024)):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        elif action == "slow":
            data = b'{"value": "' + b"s" * 100 + b'"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for b in data:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                pass
        elif action == "nextlink":
            doc = {"value": [], "nextLink": rule["to"]}
            self.answer(200, {}, json.dumps(doc).encode())
        elif action == "json":
            self.answer(rule.get("status", 200), {}, json.dumps(rule["body"]).encode())
        self.close_connection = True


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def relay(path):
    """Connections on the Unix socket `path` go on to 127.0.0.1:443 here: how a process outside
    this network namespace (tests/common/azure.rs relays a loopback address of the host to this
    socket) reaches the TLS server, end to end."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)

    def serve():
        while True:
            conn, _ = server.accept()
            try:
                up = socket.create_connection(("127.0.0.1", 443))
            except OSError:
                conn.close()
                continue
            threading.Thread(target=pump, args=(conn, up), daemon=True).start()
            threading.Thread(target=pump, args=(up, conn), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


def main():
    cert, key, sock = sys.argv[1:4]
    # Bound before "ready": the tests connect as soon as they read it.
    tls = ThreadingHTTPServer(("127.0.0.1", 443), Handler)
    tls.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    # The handshake happens in each connection's thread, not in the accepting one.
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True, do_handshake_on_connect=False)
    imds_server = ThreadingHTTPServer(("169.254.169.254", 80), Handler)
    imds_server.daemon_threads = True
    if os.path.exists(sock):
        os.unlink(sock)
    admin_server = AdminServer(sock, Admin)
    threading.Thread(target=tls.serve_forever, daemon=True).start()
    threading.Thread(target=imds_server.serve_forever, daemon=True).start()
    if len(sys.argv) > 4:
        relay(sys.argv[4])
    print("ready", flush=True)
    admin_server.serve_forever()


if __name__ == "__main__":
    main()
