//! `provider: aws` in the webhook (docs/webhook.md, "AWS"): annotation pods with
//! `secretdrop.dev/provider: aws` and converted CSI volumes whose class says `provider: aws`.
//! The injected container gets AWS credentials the way the AWS provider does:
//!
//! - IRSA: a projected token with audience `sts.amazonaws.com` where EKS puts it,
//!   `AWS_WEB_IDENTITY_TOKEN_FILE`, and `AWS_ROLE_ARN` from the pod's ServiceAccount annotation
//!   `eks.amazonaws.com/role-arn`, read through the Kubernetes API at admission;
//! - EKS Pod Identity (`usePodIdentity`): a token with audience `pods.eks.amazonaws.com`,
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI` (the agent) and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
//!
//! Invariants: the AWS volumes of a pod agree on one identity (IRSA, or Pod Identity with one
//! address type), else the pod is rejected; a role ARN is checked against the ARN grammar
//! before it goes into the pod; an AWS-only container has no Vault token and no Vault address,
//! and every container keeps `SECRETDROP_ADMITTED`, so a later annotation edit has nothing to
//! send to a Vault the pod was not admitted to.

use std::time::Duration;

use serde_json::{json, Value};

use crate::net::kube::KubeError;
use crate::provider::aws::credentials::{POD_IDENTITY_IPV4, POD_IDENTITY_IPV6};
use crate::provider::aws::params::{AddressType, AwsSpec};

use super::defaults::{Defaults, TOKEN_VOLUME};

pub const IRSA_AUDIENCE: &str = "sts.amazonaws.com";
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";
/// Where EKS mounts the IRSA token (its pod identity webhook's path).
pub const IRSA_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
pub const IRSA_FILE: &str = "token";
/// Where EKS mounts the Pod Identity token (`crate::provider::aws::credentials::POD_IDENTITY_TOKEN_FILE`).
pub const POD_IDENTITY_DIR: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
pub const POD_IDENTITY_FILE: &str = "eks-pod-identity-token";
/// The projected volume of the AWS token when the pod has Vault volumes too (whose token keeps
/// the shared token volume).
pub const AWS_TOKEN_VOLUME: &str = "secretdrop-aws-token";
/// The ServiceAccount annotation naming the IRSA role, as EKS and the AWS provider read it.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The ServiceAccount GET gets this long (class GETs have their own 3 s, and all of a review's
/// reads end 3.5 s after it arrived; the API server waits 5 s for the webhook).
pub const LOOKUP_TIME: Duration = Duration::from_millis(1500);
/// IAM's limit on a role ARN.
const MAX_ARN: usize = 2048;

/// How an AWS volume gets its credentials, as its class or annotations say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsUse {
    pub pod_identity: bool,
    pub ipv6: bool,
}

impl AwsUse {
    pub fn of(spec: &AwsSpec) -> AwsUse {
        AwsUse {
            pod_identity: spec.use_pod_identity,
            ipv6: spec.preferred_address_type == AddressType::Ipv6,
        }
    }
}

/// The credentials the injected container is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Irsa { role_arn: String },
    PodIdentity { ipv6: bool },
}

/// The pod's identity for `using`: Pod Identity needs nothing; IRSA reads the pod's
/// ServiceAccount for its role. `Err` is the rejection message.
pub fn identity(
    pod: &Value,
    namespace: &str,
    defaults: &Defaults,
    using: AwsUse,
) -> Result<Identity, String> {
    if using.pod_identity {
        return Ok(Identity::PodIdentity { ipv6: using.ipv6 });
    }
    let sa = pod
        .pointer("/spec/serviceAccountName")
        .or_else(|| pod.pointer("/spec/serviceAccount"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let namespace = Some(namespace)
        .filter(|n| !n.is_empty())
        .or_else(|| pod.pointer("/metadata/namespace").and_then(Value::as_str))
        .unwrap_or("default");
    let Some(lookup) = defaults.service_accounts.lookup() else {
        return Err(format!(
            "provider aws with IRSA: cannot read ServiceAccount {namespace}/{sa} for its \
             {ROLE_ANNOTATION} annotation: this webhook has no Kubernetes API access (run it in \
             a cluster or give it --kubeconfig), or use EKS Pod Identity (usePodIdentity)"
        ));
    };
    let found = match lookup(namespace, sa, LOOKUP_TIME) {
        Ok(found) => found,
        Err(KubeError::NotFound) => {
            return Err(format!(
                "provider aws with IRSA: ServiceAccount {sa:?} not found in namespace \
                 {namespace:?}; IRSA takes the role from its {ROLE_ANNOTATION} annotation"
            ))
        }
        Err(e) => {
            return Err(format!(
                "provider aws with IRSA: cannot read ServiceAccount {namespace}/{sa}: {e}"
            ))
        }
    };
    let arn = found
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ROLE_ANNOTATION))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            format!(
                "provider aws with IRSA: ServiceAccount {namespace}/{sa} has no {ROLE_ANNOTATION} \
                 annotation: annotate it with the IAM role to assume (e.g. \
                 arn:aws:iam::111122223333:role/app), or use EKS Pod Identity (usePodIdentity)"
            )
        })?;
    let role_arn = check_role_arn(arn).map_err(|m| {
        format!("provider aws with IRSA: ServiceAccount {namespace}/{sa}: {ROLE_ANNOTATION}: {m}")
    })?;
    Ok(Identity::Irsa { role_arn })
}

/// An IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, with IAM's characters.
pub fn check_role_arn(arn: &str) -> Result<String, String> {
    let shown: String = arn.chars().take(80).collect();
    let bad = || {
        format!(
            "{shown:?} is not an IAM role ARN: expected arn:aws:iam::<12-digit account>:role/<name> \
             (letters, digits and +=,.@_-/)"
        )
    };
    if arn.len() > MAX_ARN {
        return Err(format!(
            "{shown:?}...: longer than IAM's {MAX_ARN} characters"
        ));
    }
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let partition_ok = !partition.is_empty()
        && partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
        && partition.starts_with("aws");
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let name = resource.strip_prefix("role/").unwrap_or("");
    let name_ok = !name.is_empty()
        && !name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
    if partition_ok && account_ok && name_ok {
        Ok(arn.to_string())
    } else {
        Err(bad())
    }
}

/// A config error about a missing region, as the webhook says it: its fallback is
/// `--aws-region`, not the environment the message names for the sidecar.
pub fn region_hint(message: String) -> String {
    message.replace(
        "neither AWS_REGION nor AWS_DEFAULT_REGION is set",
        "this webhook has no --aws-region",
    )
}

/// The projected token source of `id`, in place of secretdrop's Vault token.
pub fn token_source(id: &Identity) -> Value {
    let (path, audience) = match id {
        Identity::Irsa { .. } => (IRSA_FILE, IRSA_AUDIENCE),
        Identity::PodIdentity { .. } => (POD_IDENTITY_FILE, POD_IDENTITY_AUDIENCE),
    };
    // EKS projects both with a one-day life; kubelet renews at 80%.
    json!({"serviceAccountToken": {"path": path, "expirationSeconds": 86400, "audience": audience}})
}

/// The injected container with AWS credentials: the token at EKS's path and the AWS SDK
/// variables. An AWS-only pod gets them instead of Vault's (the token volume moved to EKS's
/// path, no Vault address, no CA, no `--token-path`); a pod with Vault volumes too keeps all of
/// Vault's and gets the AWS token in its own volume ([`AWS_TOKEN_VOLUME`]). What the pod was
/// admitted to (`SECRETDROP_ADMITTED`) is kept either way.
pub fn dress(c: &mut Value, id: &Identity, region: Option<&str>, with_vault: bool) {
    let dir = match id {
        Identity::Irsa { .. } => IRSA_DIR,
        Identity::PodIdentity { .. } => POD_IDENTITY_DIR,
    };
    if let Some(mounts) = c["volumeMounts"].as_array_mut() {
        if with_vault {
            mounts.push(json!({"name": AWS_TOKEN_VOLUME, "mountPath": dir, "readOnly": true}));
        } else {
            // A Vault CA (--ca-configmap) means nothing to AWS.
            mounts.retain(|m| m["name"] != super::settings::CA_VOLUME);
            for m in mounts.iter_mut().filter(|m| m["name"] == TOKEN_VOLUME) {
                m["mountPath"] = json!(dir);
            }
        }
    }
    if !with_vault {
        if let Some(args) = c["args"].as_array_mut() {
            if let Some(i) = args.iter().position(|a| a == "--token-path") {
                args.drain(i..(i + 2).min(args.len()));
            }
        }
    }
    let mut env: Vec<Value> = match id {
        Identity::Irsa { role_arn } => vec![
            json!({"name": "AWS_ROLE_ARN", "value": role_arn}),
            json!({"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": format!("{IRSA_DIR}/{IRSA_FILE}")}),
        ],
        Identity::PodIdentity { ipv6 } => vec![
            json!({"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                   "value": if *ipv6 { POD_IDENTITY_IPV6 } else { POD_IDENTITY_IPV4 }}),
            json!({"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                   "value": format!("{POD_IDENTITY_DIR}/{POD_IDENTITY_FILE}")}),
        ],
    };
    if let Some(r) = region {
        env.push(json!({"name": "AWS_REGION", "value": r}));
    }
    let kept: Vec<Value> = c["env"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|v| with_vault || v["name"] == "SECRETDROP_ADMITTED")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    // Vault's variables first when kept, as before; the pin last for an AWS-only pod.
    c["env"] = Value::Array(match with_vault {
        true => kept.into_iter().chain(env).collect(),
        false => env.into_iter().chain(kept).collect(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_follow_the_grammar() {
        for ok in [
            "arn:aws:iam::111122223333:role/app",
            "arn:aws-cn:iam::111122223333:role/team/app",
            "arn:aws-us-gov:iam::111122223333:role/a+b=c,d.e@f_g-h",
        ] {
            assert_eq!(check_role_arn(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "app",
            "arn:aws:iam::1111:role/app",
            "arn:aws:iam::111122223333:user/app",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:sts::111122223333:role/app",
            "arn:aws:iam:us-east-1:111122223333:role/app",
            "arn:aws:iam::111122223333:role/app\nAWS_ROLE_ARN=x",
            "arn:aws:iam::111122223333:role/a b",
            "arn:evil:iam::111122223333:role/app",
            "arn:aws:iam::111122223333:role/app//x",
        ] {
            let m = check_role_arn(bad).unwrap_err();
            assert!(m.contains("not an IAM role ARN"), "{bad:?}: {m}");
        }
        let long = format!("arn:aws:iam::111122223333:role/{}", "a".repeat(3000));
        assert!(check_role_arn(&long).unwrap_err().contains("longer than"));
    }

    use super::super::defaults::ClassSource;
    use super::super::mutate::{mutate_in, Decision, CONTAINER};

    const OBJECTS: &str = "- {objectName: prod/db, objectType: secretsmanager}\n";

    fn defaults(sa: Result<Value, KubeError>) -> Defaults {
        Defaults {
            service_accounts: ClassSource::new(move |ns, name, _| {
                assert_eq!((ns, name), ("team", "app"));
                sa.clone()
            }),
            ..Defaults::default()
        }
    }

    fn pod(extra: Value) -> Value {
        let mut a = json!({"secretdrop.dev/inject": "true", "secretdrop.dev/provider": "aws",
            "secretdrop.dev/region": "eu-west-1", "secretdrop.dev/objects": OBJECTS});
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        json!({"metadata": {"annotations": a}, "spec": {"serviceAccountName": "app",
            "containers": [{"name": "app", "image": "nginx"}]}})
    }

    fn sa(annotations: Value) -> Result<Value, KubeError> {
        Ok(json!({"metadata": {"name": "app", "annotations": annotations}}))
    }

    fn injected(d: &Defaults, p: &Value) -> Value {
        match mutate_in(p, "team", d, &[]) {
            Decision::Inject { pod, .. } => pod,
            other => panic!("{other:?}"),
        }
    }

    fn ours(pod: &Value) -> Value {
        crate::webhook::named(&pod["spec"]["initContainers"], CONTAINER).clone()
    }

    #[test]
    fn irsa_gets_the_role_of_the_service_account_and_an_sts_token() {
        let arn = "arn:aws:iam::111122223333:role/app";
        let out = injected(
            &defaults(sa(json!({ROLE_ANNOTATION: arn}))),
            &pod(json!({})),
        );
        let c = ours(&out);
        assert_eq!(
            c["env"],
            json!([{"name": "AWS_ROLE_ARN", "value": arn},
                   {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": format!("{IRSA_DIR}/token")},
                   {"name": "SECRETDROP_ADMITTED", "value": "aws"}])
        );
        assert!(c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == TOKEN_VOLUME && m["mountPath"] == IRSA_DIR));
        assert!(!c["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--token-path"));
        let token = crate::webhook::named(&out["spec"]["volumes"], TOKEN_VOLUME);
        assert_eq!(
            token["projected"]["sources"],
            json!([{"serviceAccountToken": {"path": "token", "expirationSeconds": 86400, "audience": IRSA_AUDIENCE}}])
        );
    }

    #[test]
    fn pod_identity_needs_no_service_account() {
        let d = defaults(Err(KubeError::Failed("must not be called".into())));
        let out = injected(&d, &pod(json!({"secretdrop.dev/use-pod-identity": "true"})));
        let env = &ours(&out)["env"];
        assert_eq!(env[0]["value"], POD_IDENTITY_IPV4);
        assert_eq!(
            env[1]["value"],
            format!("{POD_IDENTITY_DIR}/{POD_IDENTITY_FILE}")
        );
        let out = injected(
            &d,
            &pod(
                json!({"secretdrop.dev/use-pod-identity": "true", "secretdrop.dev/preferred-address-type": "ipv6"}),
            ),
        );
        assert_eq!(ours(&out)["env"][0]["value"], POD_IDENTITY_IPV6);
    }

    #[test]
    fn refusals_say_why() {
        let arn = json!({ROLE_ANNOTATION: "arn:aws:iam::111122223333:role/app"});
        let cases: Vec<(Defaults, Value, &str)> = vec![
            (
                defaults(Err(KubeError::NotFound)),
                json!({}),
                "ServiceAccount \"app\" not found in namespace \"team\"",
            ),
            (
                defaults(sa(json!({}))),
                json!({}),
                "has no eks.amazonaws.com/role-arn annotation",
            ),
            (
                defaults(sa(
                    json!({ROLE_ANNOTATION: "arn:aws:iam::1:role/x\nEVIL=1"}),
                )),
                json!({}),
                "is not an IAM role ARN",
            ),
            (Defaults::default(), json!({}), "no Kubernetes API access"),
            (
                defaults(sa(arn.clone())),
                json!({"secretdrop.dev/role": "r"}),
                "secretdrop.dev/role: only applies to Vault",
            ),
            (
                defaults(sa(arn.clone())),
                json!({"secretdrop.dev/vault-address": "http://v:8200"}),
                "secretdrop.dev/vault-address: only applies to Vault",
            ),
            (
                defaults(sa(arn.clone())),
                json!({"secretdrop.dev/region": "evil.example.com/x"}),
                "secretdrop.dev/region: \"evil.example.com/x\" is not an AWS region",
            ),
            (
                defaults(sa(arn.clone())),
                json!({"secretdrop.dev/provider": "gcp"}),
                "secretdrop.dev/provider: \"gcp\" is not a provider",
            ),
            (
                defaults(sa(arn.clone())),
                json!({"secretdrop.dev/objects": "- {objectName: x}\n"}),
                "secretdrop.dev/objects[0]",
            ),
        ];
        for (d, extra, want) in cases {
            match mutate_in(&pod(extra), "team", &d, &[]) {
                Decision::Reject(m) => assert!(m.contains(want), "{want}: {m}"),
                other => panic!("{want}: {other:?}"),
            }
        }
        // AWS parameters on a Vault pod are refused too.
        let p = json!({"metadata": {"annotations": {"secretdrop.dev/inject": "true",
            "secretdrop.dev/role": "r", "secretdrop.dev/vault-address": "http://v:8200",
            "secretdrop.dev/objects": "- {objectName: a, secretPath: secret/data/a, secretKey: k}\n",
            "secretdrop.dev/region": "eu-west-1"}}, "spec": {"containers": [{"name": "app"}]}});
        match mutate_in(&p, "team", &Defaults::default(), &[]) {
            Decision::Reject(m) => assert!(
                m.contains("secretdrop.dev/region: only applies with secretdrop.dev/provider: aws"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aws_volumes_that_get_credentials_differently_are_refused() {
        let arn = json!({ROLE_ANNOTATION: "arn:aws:iam::111122223333:role/app"});
        let csi = super::super::csi::CsiVolume {
            name: "pod-identity".into(),
            class: "{}".into(),
            audience: None,
            address: String::new(),
            aws: Some(AwsUse {
                pod_identity: true,
                ipv6: false,
            }),
        };
        match mutate_in(&pod(json!({})), "team", &defaults(sa(arn)), &[csi]) {
            Decision::Reject(m) => assert!(
                m.contains("get AWS credentials differently")
                    && m.contains("volume \"pod-identity\""),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_fuzz_seeds_reach_the_aws_injection() {
        use super::super::review::{answer, Outcome};
        let d = crate::fuzz_entry::admission_defaults();
        for (seed, mode) in [
            ("aws-annotations.json", "init"),
            ("aws-csi-pod-identity.json", "sidecar"),
        ] {
            let path = format!("{}/fuzz/seeds/admission/{seed}", env!("CARGO_MANIFEST_DIR"));
            let review: Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let (_, outcome) = answer(&review, &d).unwrap();
            assert_eq!(outcome, Outcome::Injected(mode), "{seed}");
        }
    }
}
