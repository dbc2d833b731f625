"""moto server for secretdrop's AWS tests, with SigV4 signatures and IAM policies enforced.

Usage: python3 server.py PORT TRUSTED_TOKENS_DIR

Prints one JSON line with the admin's access key once ready, then serves until killed.
Three things differ from `moto_server`:
* enforcement starts after the first three requests, which this script spends itself on an
  admin user (create_user, put_user_policy, create_access_key); tests use that key;
* sts:AssumeRoleWithWebIdentity is exempt from the signature check (AWS does not sign it
  either; moto would answer 500 for the missing Authorization header);
* that action checks the identity token as an identity provider would: it is accepted only if
  a file in TRUSTED_TOKENS_DIR holds exactly that token (tests register their pods' tokens),
  and, when the token is a JWT (a projected service-account token), only if its `aud` holds
  sts.amazonaws.com, the client ID of the cluster's IAM OIDC provider, as STS requires.
"""
import base64
import json
import os
import sys
import time

os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bootstrap")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bootstrap")

import boto3  # noqa: E402
from moto.sts.exceptions import STSClientError  # noqa: E402
from moto.core.authorization import ActionAuthenticatorMixin  # noqa: E402
from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: E402
from moto.sts.responses import TokenResponse  # noqa: E402

port = int(sys.argv[1])
trusted_dir = sys.argv[2]

original_auth = ActionAuthenticatorMixin._authenticate_and_authorize_action


def auth(self, iam_request_cls, resource="*"):
    if self._get_action() == "AssumeRoleWithWebIdentity":
        return
    return original_auth(self, iam_request_cls, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_action = auth

original_web_identity = TokenResponse.assume_role_with_web_identity


def trusted(token):
    for name in os.listdir(trusted_dir):
        with open(os.path.join(trusted_dir, name), encoding="utf-8") as f:
            if f.read().strip() == token:
                return True
    return False


def audiences(token):
    """The `aud` of a JWT, or None when the token is not one (the tests' opaque tokens)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict):
        return None
    aud = claims.get("aud", [])
    return [aud] if isinstance(aud, str) else aud


def web_identity(self):
    token = (self._get_param("WebIdentityToken") or "").strip()
    if not trusted(token):
        raise STSClientError("InvalidIdentityToken", "the web identity token is not trusted")
    aud = audiences(token)
    if aud is not None and "sts.amazonaws.com" not in aud:
        raise STSClientError("InvalidIdentityToken", "Incorrect token audience")
    return original_web_identity(self)


TokenResponse.assume_role_with_web_identity = web_identity

server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()

endpoint = f"http://127.0.0.1:{port}"
iam = boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint)
iam.create_user(UserName="admin")
iam.put_user_policy(
    UserName="admin",
    PolicyName="everything",
    PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    ),
)
key = iam.create_access_key(UserName="admin")["AccessKey"]
print(json.dumps({"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}), flush=True)
while True:
    time.sleep(3600)
