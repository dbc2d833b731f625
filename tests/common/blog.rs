//! The "blog post": the CSI walkthrough scenario described in docs/architecture.md (a KV v2
//! secret, policy `mycsipolicy`, role `mycsirole`, SecretProviderClass `mycsispc`). Its Vault
//! commands and SecretProviderClass, shared by its test and the demo.

use super::Bao;
use super::Server;

/// The post's setup, with `vault` spelled `bao`: the secret, the policy, and the role at
/// `auth_mount` (a `jwt` mount binds the same identity through the token's claims).
pub fn vault_setup(bao: &Bao, auth_mount: &str) {
    bao.cli(&[
        "kv",
        "put",
        "secret/app",
        "username=admin",
        "password=p4ssw0rd",
    ]);
    bao.cli_stdin(&["policy", "write", "mycsipolicy", "-"], POLICY);
    let role = format!("auth/{auth_mount}/role/mycsirole");
    let mut args = vec!["write", role.as_str()];
    if auth_mount == "jwt" {
        args.extend([
            "role_type=jwt",
            "user_claim=sub",
            "bound_audiences=https://kubernetes.default.svc.cluster.local",
            "bound_subject=system:serviceaccount:default:mycsiserviceaccount",
        ]);
    } else {
        args.extend([
            "bound_service_account_names=mycsiserviceaccount",
            "bound_service_account_namespaces=default",
        ]);
    }
    args.extend(["policies=mycsipolicy", "ttl=20m"]);
    bao.cli(&args);
}

pub const POLICY: &str = "path \"secret/data/app\" { capabilities = [\"read\"] }\n";

/// The post's SecretProviderClass; only the port of `vaultAddress` differs, and
/// `extra_parameters` (e.g. `"\n    vaultAuthMountPath: jwt"`) follow it.
pub fn spc(bao: &Bao, extra_parameters: &str) -> String {
    format!(
        r#"apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: mycsispc
spec:
  provider: vault
  parameters:
    roleName: mycsirole
    vaultAddress: {addr}{extra_parameters}
    objects: |
      - objectName: "myUsername"
        secretPath: "secret/data/app"
        secretKey: "username"
      - objectName: "myPassword"
        secretPath: "secret/data/app"
        secretKey: "password"
"#,
        addr = bao.addr()
    )
}

/// The post's Deployment, which mounts the SecretProviderClass through the Secrets Store CSI
/// driver. With secretdrop's webhook converting CSI volumes, it applies unchanged.
pub const DEPLOYMENT: &str = r#"kind: Deployment
apiVersion: apps/v1
metadata:
  name: mywebapp
  labels:
    app: demo
spec:
  replicas: 1
  selector:
    matchLabels:
      app: demo
  template:
    metadata:
      labels:
        app: demo
    spec:
      serviceAccountName: mycsiserviceaccount
      containers:
      - name: app
        image: jweissig/app:0.0.1
        volumeMounts:
        - name: secrets-store-inline
          mountPath: "/mnt/csi"
          readOnly: true
      volumes:
        - name: secrets-store-inline
          csi:
            driver: secrets-store.csi.k8s.io
            readOnly: true
            volumeAttributes:
              secretProviderClass: "mycsispc"
"#;
