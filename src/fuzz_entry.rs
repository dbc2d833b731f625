//! The bodies of the fuzz targets, shared by the cargo-fuzz harness in `fuzz/` and the smoke test
//! `tests/fuzz_smoke.rs`, so both check the same properties.
//!
//! Each function takes arbitrary bytes and panics only when a property of an input boundary does
//! not hold:
//! - [`config`]: a config file of any of the three kinds;
//! - [`admission`]: an AdmissionReview body as the webhook server receives it;
//! - [`vault_response`]: a 2xx body from Vault, as the fetch step, the renderer, the scheduler
//!   and the login reader consume it.
//!
//! The properties: nothing panics; specs that parse hold the invariants [`crate::config`]
//! promises; an injection patch applies and injecting the patched pod again changes nothing; and
//! error text (what ends up in logs and in `kubectl` messages) never holds a secret value. For
//! the last one, inputs carry [`MARKER`] where secrets sit (a pod's env values, a Vault answer's
//! values, `secretArgs`, the pod's other annotations), and the check runs only when the marker
//! occurs nowhere else, so a fuzzer that moves it into a key or a name does not cause a false
//! alarm.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::config::annotations::{self, PREFIX};
use crate::config::{self, Output, Read, Spec, VaultEnv};
use crate::provider::vault::auth;
use crate::provider::vault::client::Response;
use crate::provider::vault::render;
use crate::provider::vault::schedule::{self, Lifetime, Next};
use crate::webhook::mutate::{Decision, Defaults};
use crate::webhook::patch;
use crate::webhook::review::{self, Outcome};

/// Stands for a secret value in generated inputs; it must never show in an error.
pub const MARKER: &str = "S3CR3T-MARKER";

/// Values of the sidecar's `random_unit()` worth trying: both ends of [0, 1) and the middle.
const UNITS: [f64; 3] = [0.0, 0.5, 1.0 - f64::EPSILON];

/// The poll interval the sidecar uses when none is configured (its `DEFAULT_POLL`).
const POLL: Duration = Duration::from_secs(300);

fn assert_no_marker(what: &str, e: &(impl fmt::Display + fmt::Debug)) {
    let (shown, debug) = (e.to_string(), format!("{e:?}"));
    assert!(
        !shown.contains(MARKER) && !debug.contains(MARKER),
        "{what} shows a secret value: {shown} / {debug}"
    );
}

fn assert_debug_redacted(what: &str, v: &impl fmt::Debug) {
    let debug = format!("{v:?}");
    assert!(
        !debug.contains(MARKER),
        "{what}'s Debug shows a secret value: {debug}"
    );
}

// ---------------------------------------------------------------------------------------------
// Config sources

/// A config file: SecretProviderClass, native Config or downward-API annotations.
pub fn config(data: &[u8]) {
    // `config::load` reads files with `read_to_string`: non-UTF-8 never reaches `parse`.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = VaultEnv::default();
    let file = Path::new("fuzz.yaml");
    let result = config::parse(file, text, &env);
    match &result {
        Ok(spec) => check_spec(spec, !text.contains(MARKER)),
        Err(e) if marker_only_in_foreign_annotations(text) => assert_no_marker("config error", e),
        Err(_) => {}
    }
    if text.contains(MARKER) {
        return;
    }
    // A pod has many annotations that are not ours, some holding whole manifests with secrets
    // (last-applied-configuration): one more must change nothing, and never show in an error.
    if annotations::looks_like_annotations(text) && !text.ends_with('\r') {
        let mut with = text.to_string();
        if !with.is_empty() && !with.ends_with('\n') {
            with.push('\n');
        }
        with.push_str(&format!("example.com/secret=\"{MARKER}\"\n"));
        let again = config::parse(file, &with, &env);
        assert_eq!(
            again, result,
            "a foreign annotation changed the outcome of {with:?}"
        );
    }
    // Request bodies (`secretArgs`) may carry secrets: errors name the field, not the value.
    if let Some(with) = with_secret_args(text) {
        match config::parse(file, &with, &env) {
            Ok(spec) => check_spec(&spec, true),
            Err(e) => assert_no_marker("config error", &e),
        }
    }
}

/// True when the marker occurs in `text`, and only in values of annotations that are not ours.
fn marker_only_in_foreign_annotations(text: &str) -> bool {
    text.contains(MARKER)
        && annotations::looks_like_annotations(text)
        && text.lines().all(|line| {
            !line.contains(MARKER)
                || line
                    .split_once('=')
                    .is_some_and(|(k, _)| !k.contains(MARKER) && !k.starts_with(PREFIX))
        })
}

/// The same YAML config with `secretArgs: {password: MARKER}` added to every object that has no
/// `secretArgs`; `None` when `text` is not YAML with an object list.
fn with_secret_args(text: &str) -> Option<String> {
    use serde_yaml::Value as Y;
    fn add(objects: &mut Y) -> Option<()> {
        for entry in objects.as_sequence_mut()? {
            if let Some(m) = entry.as_mapping_mut() {
                if !m.contains_key("secretArgs") {
                    let mut args = serde_yaml::Mapping::new();
                    args.insert("password".into(), MARKER.into());
                    m.insert("secretArgs".into(), Y::Mapping(args));
                }
            }
        }
        Some(())
    }
    let mut doc: Y = serde_yaml::from_str(text).ok()?;
    match doc.get("kind")?.as_str()? {
        "Config" => add(doc.get_mut("objects")?)?,
        "SecretProviderClass" => {
            let slot = doc
                .get_mut("spec")?
                .get_mut("parameters")?
                .get_mut("objects")?;
            let mut objects: Y = serde_yaml::from_str(slot.as_str()?).ok()?;
            add(&mut objects)?;
            *slot = Y::String(serde_yaml::to_string(&objects).ok()?);
        }
        _ => return None,
    }
    serde_yaml::to_string(&doc).ok()
}

/// The invariants a [`crate::provider::gcp::spec::GcpSpec`] promises: valid, unique file
/// names, none inside another; modes at most 0777; endpoints that are Google's.
fn check_gcp_spec(spec: &crate::provider::gcp::spec::GcpSpec) {
    let mut names = HashSet::new();
    for s in &spec.secrets {
        if let Err(m) = crate::config::names::validate_name(&s.file) {
            panic!("file name {:?} passed but is invalid: {m}", s.file);
        }
        assert!(names.insert(s.file.as_str()), "{:?} twice", s.file);
        assert!(s.mode <= 0o777, "mode {:o}", s.mode);
        let url = reqwest::Url::parse(&s.resource.access_url()).expect("a URL");
        assert_eq!(url.host_str(), Some(s.resource.host().as_str()));
        assert!(s.resource.host().ends_with(".googleapis.com"));
    }
    for n in &names {
        let mut prefix = *n;
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            assert!(!names.contains(parent), "{n:?} inside the file {parent:?}");
            prefix = parent;
        }
    }
}

/// The invariants of an Azure spec (docs/azure.md): a vault name Key Vault accepts, objects
/// whose files are valid, distinct and never one under another, modes at most 0777.
fn check_azure_spec(spec: &crate::provider::azure::spec::AzureSpec) {
    let n = &spec.vault_name;
    assert!((3..=24).contains(&n.len()), "vault name {n:?}");
    assert!(!spec.objects.is_empty(), "a spec without objects");
    let files: Vec<String> = crate::provider::azure::files(spec)
        .into_iter()
        .map(|f| {
            assert!(f.mode <= 0o777, "mode {:o}", f.mode);
            f.name
        })
        .collect();
    let mut seen = HashSet::new();
    for f in &files {
        if let Err(m) = crate::config::names::validate_name(f) {
            panic!("file name {f:?} passed but is invalid: {m}");
        }
        assert!(!f.contains(".."), "{f:?}");
        assert!(seen.insert(f.as_str()), "{f:?} twice");
    }
    for f in &files {
        let mut p = f.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            assert!(!seen.contains(parent), "{f:?} is under a file");
            p = parent;
        }
    }
}

/// The invariants `config` promises for every [`Spec`], then the spec put to use: scheduled with
/// its poll interval and rendered against an answer whose values are all secret. `secret_check`
/// is false when the config itself holds the marker where a render error or the payload's
/// `Debug` may quote it (a key's or a file's name).
fn check_spec(whole: &Spec, secret_check: bool) {
    let spec = match &whole.provider {
        crate::provider::ProviderSpec::Aws(aws) => return check_aws_spec(aws, secret_check),
        crate::provider::ProviderSpec::Gcp(gcp) => return check_gcp_spec(gcp),
        crate::provider::ProviderSpec::Azure(azure) => return check_azure_spec(azure),
        crate::provider::ProviderSpec::Vault(v) => v,
    };
    let addr = &spec.vault.address;
    assert!(
        (addr.starts_with("http://") || addr.starts_with("https://")) && !addr.ends_with('/'),
        "address {addr:?}"
    );
    assert!(!spec.objects.is_empty(), "a spec without objects");
    let mut names = HashSet::new();
    for o in &spec.objects {
        if let Err(m) = crate::config::names::validate_name(&o.name) {
            panic!("object name {:?} passed but is invalid: {m}", o.name);
        }
        assert!(names.insert(o.name.as_str()), "{:?} twice", o.name);
        assert!(o.read < spec.reads.len(), "{:?} points past reads", o.name);
        assert!(o.mode <= 0o777, "mode {:o}", o.mode);
        match &o.output {
            Output::Template(t) => assert!(render::check_template(t).is_ok(), "template {t:?}"),
            Output::Key { key, .. } => assert!(!key.is_empty(), "empty secretKey"),
            Output::Format {
                keys: Some(keys), ..
            } => assert!(!keys.is_empty(), "empty keys"),
            _ => {}
        }
    }
    for o in &spec.objects {
        let mut p = o.name.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            assert!(!names.contains(parent), "{:?} is under a file", o.name);
            p = parent;
        }
    }
    let mut used = vec![false; spec.reads.len()];
    for o in &spec.objects {
        used[o.read] = true;
    }
    let mut distinct = HashSet::new();
    for (r, used) in spec.reads.iter().zip(used) {
        assert!(distinct.insert(r), "read {r:?} twice");
        assert!(used, "unused {r:?}");
        check_read(r);
    }
    if let Some(poll) = whole.sidecar.poll_interval {
        assert!(poll >= Duration::from_secs(1), "poll interval {poll:?}");
        for r in UNITS {
            schedule::after_fetch(&Lifetime::Static, poll, r);
        }
    }
    let answers = [&secret_answer().0];
    for o in &spec.objects {
        // Objects one at a time, so an early missing key does not hide the later ones.
        let one = config::VaultSpec {
            reads: vec![spec.reads[o.read].clone()],
            objects: vec![config::ObjectSpec {
                read: 0,
                ..o.clone()
            }],
            vault: spec.vault.clone(),
            auth: spec.auth.clone(),
        };
        match render::render(&one, &answers) {
            Ok(payload) if secret_check => assert_debug_redacted("payload", &payload),
            Err(e) if secret_check => assert_no_marker("render error", &e),
            _ => {}
        }
    }
}

/// The invariants of a `provider: aws` spec, then a render against values that are all secret
/// (valid JSON for objects with jmesPath entries): files valid, unique, never under one another,
/// modes ≤ 0777; errors and the payload's `Debug` never show a value.
fn check_aws_spec(aws: &crate::provider::aws::params::AwsSpec, secret_check: bool) {
    use crate::provider::aws::fetch::{AwsSnapshot, Fetched};
    assert!(!aws.region.is_empty(), "no region");
    assert!(!aws.objects.is_empty(), "a spec without objects");
    assert_ne!(aws.failover_region.as_ref(), Some(&aws.region));
    let files: Vec<(&str, u32)> = aws
        .objects
        .iter()
        .flat_map(|o| {
            std::iter::once((o.file.as_str(), o.mode))
                .chain(o.jmes.iter().map(|j| (j.file.as_str(), j.mode)))
        })
        .collect();
    let mut names = HashSet::new();
    for (name, mode) in &files {
        if let Err(m) = crate::config::names::validate_name(name) {
            panic!("file name {name:?} passed but is invalid: {m}");
        }
        assert!(names.insert(*name), "{name:?} twice");
        assert!(*mode <= 0o777, "mode {mode:o}");
    }
    for (name, _) in &files {
        let mut p = *name;
        while let Some((parent, _)) = p.rsplit_once('/') {
            assert!(!names.contains(parent), "{name:?} is under a file");
            p = parent;
        }
    }
    for o in &aws.objects {
        if o.failover.is_some() {
            assert!(
                aws.failover_region.is_some(),
                "failoverObject without failoverRegion"
            );
        }
    }
    let values = aws
        .objects
        .iter()
        .map(|o| Fetched {
            value: crate::secret::SecretBytes::new(
                serde_json::json!({"username": MARKER, "password": MARKER, "n": 1})
                    .to_string()
                    .into_bytes(),
            ),
            version: format!("v-{}", o.file.len()),
            region: aws.region.clone(),
        })
        .collect();
    match crate::provider::aws::render::render(aws, &AwsSnapshot { values }) {
        Ok(payload) if secret_check => assert_debug_redacted("payload", &payload),
        Err(e) if secret_check => assert_no_marker("render error", &e),
        _ => {}
    }
}

fn check_read(r: &Read) {
    assert!(
        ["GET", "POST", "PUT", "PATCH"].contains(&r.method.as_str()),
        "method {:?}",
        r.method
    );
    let route = r.path.split_once('?').map_or(r.path.as_str(), |(p, _)| p);
    assert!(
        !route.trim_matches('/').is_empty()
            && !route.split('/').any(|s| s == "..")
            && !r
                .path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '#'),
        "path {:?}",
        r.path
    );
    if let Some(body) = &r.body {
        assert!(
            matches!(serde_json::from_str(body), Ok(Value::Object(_))),
            "body {body:?}"
        );
    }
}

/// A KV v2 answer whose every value is secret; keys that configs commonly name.
fn secret_answer() -> &'static Response {
    static ANSWER: OnceLock<Response> = OnceLock::new();
    ANSWER.get_or_init(|| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(MARKER);
        let hex: String = MARKER.bytes().map(|b| format!("{b:02x}")).collect();
        Response(
            serde_json::json!({
                "request_id": "r", "lease_id": "", "lease_duration": 0, "renewable": false,
                "data": {
                    "data": {
                        "username": MARKER, "password": MARKER, "port": MARKER, "cert": b64,
                        "key": hex, "nested": {"token": MARKER, "list": [MARKER, 1]},
                        "certificate": MARKER, "private_key": MARKER,
                    },
                    "metadata": {"version": 3, "custom_metadata": {"owner": MARKER}},
                },
                "warnings": null,
            }),
            None,
        )
    })
}

// ---------------------------------------------------------------------------------------------
// AdmissionReview

/// The webhook's settings in the fuzz targets: a default Vault address, so that pods need not
/// name one, and a token audience, so that path of the injection runs too.
pub fn admission_defaults() -> Defaults {
    Defaults {
        vault_address: Some("http://vault.vault:8200".into()),
        token_audience: Some("vault".into()),
        // Every class exists but `missing`; each has an audience, so CSI volumes convert with
        // their own projected tokens.
        classes: crate::webhook::defaults::ClassSource::new(|_, name, _| match name {
            "missing" => Err(crate::net::kube::KubeError::NotFound),
            // provider: aws classes, IRSA or Pod Identity by name.
            n if n.starts_with("aws") => Ok(
                serde_json::json!({"spec": {"provider": "aws", "parameters": {
                    "region": "us-west-2", "usePodIdentity": (n == "aws-pi").to_string(),
                    "objects": "- {objectName: prod/db, objectType: secretsmanager, jmesPath: [{path: a.b, objectAlias: ab}]}\n"
                }}}),
            ),
            _ => Ok(
                serde_json::json!({"spec": {"provider": "vault", "parameters": {
                    "roleName": "r", "audience": name,
                    "objects": "- {objectName: myPassword, secretPath: secret/data/app, secretKey: password}\n"
                }}}),
            ),
        }),
        // Every ServiceAccount has an IRSA role but `ghost` (missing) and `norole`.
        service_accounts: crate::webhook::defaults::ClassSource::new(|_, name, _| match name {
            "ghost" => Err(crate::net::kube::KubeError::NotFound),
            "norole" => Ok(serde_json::json!({"metadata": {"name": name}})),
            _ => Ok(
                serde_json::json!({"metadata": {"name": name, "annotations": {
                "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/app"}}}),
            ),
        }),
        aws_region: Some("eu-west-1".into()),
        ..Defaults::default()
    }
}

/// An AdmissionReview body as the webhook server receives it; or, when the first byte is one of
/// the control characters in [`GRAFTS`] (never the start of JSON), a JSON value grafted into an
/// opted-in pod create at that slot.
pub fn admission(data: &[u8]) {
    let review = match data.split_first() {
        Some((&slot, value)) if (1..=GRAFTS.len()).contains(&usize::from(slot)) => {
            let Ok(value) = serde_json::from_slice::<Value>(value) else {
                return;
            };
            graft(usize::from(slot) - 1, value)
        }
        _ => match serde_json::from_slice::<Value>(data) {
            Ok(review) => review,
            Err(_) => return,
        },
    };
    let secret_check = marker_only_in_env_values(&review);
    // Both paths: /mutate, and /convert-vault-agent (Vault Agent Injector pods).
    for vault_agent in [false, true] {
        let defaults = Defaults {
            vault_agent,
            ..admission_defaults()
        };
        admission_at(&review, &defaults, secret_check);
    }
}

fn admission_at(review: &Value, defaults: &Defaults, secret_check: bool) {
    let (out, outcome) = match review::answer(review, defaults) {
        Ok(answer) => answer,
        Err(e) => {
            if secret_check {
                assert_no_marker("review error", &e);
            }
            return;
        }
    };
    let response = &out["response"];
    let request = &review["request"];
    assert_eq!(response["uid"], request["uid"], "the uid is not echoed");
    let allowed = response["allowed"].as_bool();
    match outcome {
        Outcome::Rejected => {
            assert_eq!(allowed, Some(false));
            if secret_check {
                assert_no_marker("rejection", &response["status"]["message"]);
            }
            assert!(response.get("patch").is_none());
        }
        Outcome::Skipped(_) => {
            assert_eq!(allowed, Some(true));
            assert!(response.get("patch").is_none());
        }
        Outcome::Injected(_) => {
            assert_eq!(allowed, Some(true));
            assert_eq!(response["patchType"], "JSONPatch");
            check_injection(review, response, defaults);
        }
    }
}

/// Where a grafted value goes. Byte mutations of a whole review rarely keep the JSON valid and
/// the opt-in intact while changing a field's type; grafting one value reaches those cases.
const GRAFTS: [&str; 8] = [
    "/request/object/spec",
    "/request/object/spec/containers",
    "/request/object/spec/initContainers",
    "/request/object/spec/volumes",
    "/request/object/spec/containers/0/env",
    "/request/object/metadata/annotations",
    "/request/object",
    "/request",
];

fn graft(slot: usize, value: Value) -> Value {
    let mut review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE",
            "object": {
                "metadata": {"name": "web", "annotations": {
                    "secretdrop.dev/inject": "true", "secretdrop.dev/role": "app",
                    "secretdrop.dev/objects": "- {objectName: password, secretPath: secret/data/app, secretKey: password}",
                }},
                "spec": {
                    "initContainers": [{"name": "istio-init", "image": "istio/proxyv2"},
                                       {"name": "migrate", "image": "app"}],
                    "containers": [{"name": "app", "image": "app",
                                    "env": [{"name": "DB_PASSWORD", "value": MARKER}]}],
                },
            },
        },
    });
    let pointer = GRAFTS[slot];
    // Annotations are merged, so that the opt-in stays unless the graft overrides it.
    if let (Some(Value::Object(annotations)), Value::Object(extra)) =
        (review.pointer_mut(pointer), &value)
    {
        if pointer.ends_with("/annotations") {
            annotations.extend(extra.clone());
            return review;
        }
    }
    if let Some(target) = review.pointer_mut(pointer) {
        *target = value;
    }
    review
}

/// The patch turns the pod into what `mutate` made of it, and reviewing the patched pod again
/// yields no patch (the API server may call a webhook twice: `reinvocationPolicy`).
fn check_injection(review: &Value, response: &Value, defaults: &Defaults) {
    let encoded = response["patch"].as_str().expect("patch is a string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("patch is base64");
    let ops: Vec<Value> = serde_json::from_slice(&bytes).expect("patch is a JSON list");
    let pod = &review["request"]["object"];
    let patched = match patch::apply(pod, &ops) {
        Ok(p) => p,
        Err(e) => panic!("the patch does not apply to its pod: {e}"),
    };
    let namespace = review["request"]["namespace"].as_str().unwrap_or("");
    match review::decide(pod, namespace, defaults) {
        Decision::Inject { pod: injected, .. } => {
            assert!(
                patched == injected,
                "the patch does not give the injected pod"
            )
        }
        other => panic!("answer injected, mutate says {other:?}"),
    }
    let mut again = review.clone();
    again["request"]["object"] = patched;
    let (out, outcome) = review::answer(&again, defaults).expect("the patched review answers");
    assert_eq!(
        outcome,
        Outcome::Skipped("already injected"),
        "injecting twice: {out}"
    );
    assert!(out["response"].get("patch").is_none());
}

/// True when the marker occurs in the review, and only in containers' env values.
fn marker_only_in_env_values(review: &Value) -> bool {
    if !review.to_string().contains(MARKER) {
        return false;
    }
    let mut scrubbed = review.clone();
    for list in ["containers", "initContainers"] {
        let containers = scrubbed
            .pointer_mut(&format!("/request/object/spec/{list}"))
            .and_then(Value::as_array_mut);
        for c in containers.into_iter().flatten() {
            let env = c.get_mut("env").and_then(Value::as_array_mut);
            for e in env.into_iter().flatten() {
                if let Some(v) = e.get_mut("value").filter(|v| v.is_string()) {
                    *v = Value::Null;
                }
            }
        }
    }
    !scrubbed.to_string().contains(MARKER)
}

// ---------------------------------------------------------------------------------------------
// Vault answers

/// One object of each kind of output, all from one read, each rendered alone.
fn response_specs() -> &'static [config::VaultSpec] {
    static SPECS: OnceLock<Vec<config::VaultSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let text = r#"apiVersion: secretdrop.dev/v1alpha1
kind: Config
vault:
  address: http://127.0.0.1:8200
auth:
  method: token
  tokenFile: /token
objects:
  - {objectName: password, secretPath: secret/data/app, secretKey: password}
  - {objectName: cert.der, secretPath: secret/data/app, secretKey: cert, encoding: base64}
  - {objectName: key.bin, secretPath: secret/data/app, secretKey: key, encoding: hex}
  - {objectName: app.env, secretPath: secret/data/app, format: dotenv}
  - {objectName: app.json, secretPath: secret/data/app, format: json, keys: [username, password]}
  - {objectName: app.yaml, secretPath: secret/data/app, format: yaml}
  - {objectName: app.properties, secretPath: secret/data/app, format: properties}
  - objectName: dsn
    secretPath: secret/data/app
    template: "postgres://{{ data.username }}:{{ data.password }}@db:{{ data.port | int }}/app?v={{ metadata.version }}\n"
  - objectName: all.env
    secretPath: secret/data/app
    template: "{% for k, v in data|items %}{{ k | upper }}={{ v }}\n{% endfor %}{{ response.lease_id }}"
  - {objectName: response.json, secretPath: secret/data/app}
"#;
        let spec = match config::parse(Path::new("fuzz.yaml"), text, &VaultEnv::default()) {
            Ok(s) => s,
            Err(e) => panic!("the fixed spec of the vault_response target: {e}"),
        };
        let Some(spec) = spec.vault().cloned() else {
            panic!("the fixed spec of the vault_response target is not a Vault one")
        };
        let mut specs = vec![spec.clone()];
        specs.extend(spec.objects.iter().map(|o| config::VaultSpec {
            objects: vec![o.clone()],
            ..spec.clone()
        }));
        specs
    })
}

/// A 2xx body from Vault: read answers, login answers, renewals.
pub fn vault_response(data: &[u8]) {
    // What `vault::Client::call` makes of a 2xx body.
    let value = if data.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(data) {
            Ok(v) => v,
            Err(e) => {
                assert_no_marker("JSON error", &e);
                return;
            }
        }
    };
    let secret_check = marker_only_in_values(&value);
    let response = Response(value, None);
    assert_debug_redacted("Response", &response);

    for spec in response_specs() {
        match render::render(spec, &[&response.0]) {
            Ok(payload) => assert_debug_redacted("Payload", &payload),
            Err(e) if secret_check => assert_no_marker("render error", &e),
            Err(_) => {}
        }
    }

    check_schedule(&response.0);

    if let Some(token) = auth::token_from_login(&response) {
        assert_debug_redacted("VaultToken", &token);
        for r in UNITS {
            let next = schedule::renew_after(token.ttl, r);
            assert!(
                next <= token.ttl,
                "renewing after {next:?} of {:?}",
                token.ttl
            );
        }
    }
}

/// Lifetimes and next steps from durations Vault sent, which can be anything a u64 holds.
fn check_schedule(v: &Value) {
    for now in [0, 1_700_000_000, u64::MAX] {
        let lifetime = schedule::lifetime_of(v, now);
        let valid = lifetime.valid_for();
        for r in UNITS {
            match (schedule::after_fetch(&lifetime, POLL, r), valid) {
                (Next::Renew(d) | Next::Refetch(d), Some(valid)) => {
                    assert!(d <= valid, "{lifetime:?}: next step after {d:?}")
                }
                (Next::Rotate, _) => panic!("{lifetime:?}: rotate right after a fetch"),
                _ => {}
            }
        }
    }
    // Renewals of a token (`auth.lease_duration`), a lease (`lease_duration`) and a lookup
    // (`data.ttl`), read the way `fetch` reads them.
    let secs = |v: Option<&Value>| Duration::from_secs(v.and_then(Value::as_u64).unwrap_or(0));
    let renewals = [
        (
            v.pointer("/auth/lease_duration"),
            v.pointer("/auth/renewable"),
        ),
        (v.get("lease_duration"), v.get("renewable")),
        (v.pointer("/data/ttl"), v.pointer("/data/renewable")),
    ];
    for (duration, renewable) in renewals {
        let got = secs(duration);
        let renewable = renewable.and_then(Value::as_bool).unwrap_or(false);
        for asked in [
            Duration::ZERO,
            Duration::from_secs(3600),
            got,
            Duration::MAX,
        ] {
            for r in UNITS {
                if let Next::Renew(d) | Next::Refetch(d) =
                    schedule::after_renewal(asked, got, renewable, r)
                {
                    assert!(d <= got, "renewing after {d:?} of {got:?}");
                }
            }
        }
    }
}

/// True when the marker occurs in the value, and in no object key.
fn marker_only_in_values(v: &Value) -> bool {
    fn walk(v: &Value, found: &mut bool) -> bool {
        match v {
            Value::String(s) => {
                *found |= s.contains(MARKER);
                true
            }
            Value::Array(a) => a.iter().all(|x| walk(x, found)),
            Value::Object(m) => m.iter().all(|(k, x)| !k.contains(MARKER) && walk(x, found)),
            _ => true,
        }
    }
    let mut found = false;
    walk(v, &mut found) && found
}
