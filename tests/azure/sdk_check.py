"""Drives the Azure stand-in (standin.py) with Azure's own Python SDKs (azure-identity,
azure-keyvault-secrets, -keys, -certificates; pinned in scripts/tools.sh), the check that it
behaves as the services do: the SDKs learn the tenant and scope from Key Vault's 401
challenge, verify that the challenge's resource fits the vault's host, exchange the projected
token at Entra ID with WorkloadIdentityCredential, then read secrets, keys, certificates and
version lists (following nextLink), write a secret version, and see Key Vault's errors.

Run by tests/azure.rs inside the stand-in's network namespace: one JSON document on stdin, the
results as JSON on stdout.
"""

import json
import sys

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import WorkloadIdentityCredential
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient


def error_of(call):
    try:
        call()
    except ResourceNotFoundError as e:
        return {"status": e.status_code, "code": e.error.code if e.error else None}
    except HttpResponseError as e:
        return {"status": e.status_code, "code": e.error.code if e.error else None,
                "message": e.error.message if e.error else str(e)}
    except Exception as e:  # ClientAuthenticationError and kin: the AADSTS text
        return {"status": None, "code": type(e).__name__, "message": str(e)}
    return None


def main():
    cfg = json.load(sys.stdin)
    out = {}
    cred = WorkloadIdentityCredential(tenant_id=cfg["tenant"], client_id=cfg["client_id"],
                                      token_file_path=cfg["token_file"])
    secrets = SecretClient(cfg["vault_url"], cred)
    out["secret"] = secrets.get_secret(cfg["secret"]).value
    out["versions"] = sorted(p.version for p in secrets.list_properties_of_secret_versions(cfg["secret"]))
    written = secrets.set_secret(cfg["secret"], "written-by-the-sdk")
    out["written_version"] = written.properties.version
    out["after_write"] = secrets.get_secret(cfg["secret"]).value
    out["missing"] = error_of(lambda: secrets.get_secret(cfg["missing"]))
    keys = KeyClient(cfg["vault_url"], cred)
    key = keys.get_key(cfg["key"])
    out["key"] = {"kty": getattr(key.key.kty, "value", key.key.kty), "n": key.key.n.hex(), "version": key.properties.version}
    certs = CertificateClient(cfg["vault_url"], cred)
    cert = certs.get_certificate(cfg["cert"])
    out["cert"] = {"cer": bytes(cert.cer).hex(), "version": cert.properties.version,
                   "secret_id": cert.secret_id}
    out["cert_secret_content_type"] = secrets.get_secret(cfg["cert"]).properties.content_type
    # An identity the vault's access policy does not name: Key Vault's 403.
    other = WorkloadIdentityCredential(tenant_id=cfg["tenant"], client_id=cfg["denied_client_id"],
                                       token_file_path=cfg["denied_token_file"])
    out["forbidden"] = error_of(lambda: SecretClient(cfg["vault_url"], other).get_secret(cfg["secret"]))
    # A token file for another service account: Entra's AADSTS700213.
    wrong = WorkloadIdentityCredential(tenant_id=cfg["tenant"], client_id=cfg["client_id"],
                                       token_file_path=cfg["wrong_token_file"])
    out["wrong_subject"] = error_of(lambda: wrong.get_token("https://vault.azure.net/.default"))
    # A custom cloud: its own authority (no instance discovery) and vault suffix.
    stack = cfg["stack"]
    stack_cred = WorkloadIdentityCredential(tenant_id=stack["tenant"], client_id=stack["client_id"],
                                            token_file_path=stack["token_file"],
                                            authority=stack["authority"],
                                            disable_instance_discovery=True)
    out["stack_secret"] = SecretClient(stack["vault_url"], stack_cred).get_secret(stack["secret"]).value
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
