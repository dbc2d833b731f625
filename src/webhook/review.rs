//! `admission.k8s.io/v1` AdmissionReview in, AdmissionReview out: the pure part of the webhook
//! server. Anything but a pod CREATE is allowed unchanged; an unparseable review is an error the
//! server answers with 400.
//!
//! Invariant: a review is parsed into a `Value` only when its estimated parsed size
//! ([`Shape::heap`]) is at most [`MAX_HEAP`]; a larger one is read by a streaming pass that
//! keeps only the request's kind, operation, uid, names, first owner and the opt-in label and
//! annotation. Such a pod is allowed unchanged when it is not ours, exactly as the full path
//! would decide, and rejected with a message when it is, so the memory one review needs stays
//! bounded whatever its text.

use std::fmt;
use std::marker::PhantomData;

use base64::Engine;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};

use super::mutate::{self, Decision, Defaults};
use super::patch;
use super::shape::Shape;
use crate::config::names::PREFIX;

/// The most heap a review may take once parsed. Pods people write are far below (a 70 KB pod
/// of 300 containers estimates 3 MiB). Injecting copies the pod and adds a volume mount to
/// each container, so one review needs up to about three times this (8 000 containers of one
/// name each: 7.6 MiB estimated, 22 MiB at the peak).
pub const MAX_HEAP: usize = 8 * 1024 * 1024;
/// Reviews estimated above this are large: the server parses one of them at a time.
pub const LARGE_HEAP: usize = 1024 * 1024;

/// What happened to one review, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Injected(&'static str),
    Skipped(&'static str),
    Rejected,
}

impl Outcome {
    /// The word the log and the metrics use.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Injected(_) => "injected",
            Outcome::Skipped(_) => "skipped",
            Outcome::Rejected => "rejected",
        }
    }
}

/// A review answered, ready to send.
#[derive(Debug)]
pub struct Answered {
    /// The AdmissionReview answer, serialised.
    pub body: Vec<u8>,
    pub outcome: Outcome,
    /// The request's uid, which the answer echoes.
    pub uid: String,
    /// For the log: the pod's namespace and (generate)name, when the review has them.
    pub namespace: String,
    pub pod: String,
    /// `Kind/name` of the pod's controller (else its first owner), or empty.
    pub owner: String,
    /// The injection mode, why the pod was skipped, or the rejection message.
    pub detail: String,
}

/// Answers the review `text` whose [`Shape`] was taken while it arrived; `Err` when it is not
/// an AdmissionReview. An answer longer than `max_answer` bytes becomes a rejection.
pub fn answer_text(
    text: &[u8],
    shape: &Shape,
    defaults: &Defaults,
    max_answer: usize,
) -> Result<Answered, String> {
    if shape.heap() > MAX_HEAP {
        return answer_oversized(text, shape.heap());
    }
    let review: Value =
        serde_json::from_slice(text).map_err(|e| format!("the body is not JSON: {e}"))?;
    let (answer, mut outcome) = answer(&review, defaults)?;
    let name = |pointer: &str| {
        let text = review.pointer(pointer).and_then(Value::as_str);
        text.unwrap_or("").to_string()
    };
    let uid = name("/request/uid");
    let pod = Some(name("/request/object/metadata/generateName"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| name("/request/object/metadata/name"));
    let namespace = name("/request/namespace");
    let owner = owner_of(review.pointer("/request/object/metadata/ownerReferences"));
    // The pod is no longer needed: free it before the answer is copied into bytes.
    drop(review);
    let detail = detail_of(&outcome, &answer);
    let mut body = serialise(&answer)?;
    drop(answer);
    if body.len() > max_answer {
        let message = format!(
            "the patch for this pod would take {} MiB, more than the {} MiB this webhook sends",
            mib(body.len()),
            mib(max_answer)
        );
        body = serialise(&envelope(rejected(&uid, &message)))?;
        outcome = Outcome::Rejected;
        return Ok(Answered {
            body,
            outcome,
            uid,
            namespace,
            pod,
            owner,
            detail: message,
        });
    }
    Ok(Answered {
        body,
        outcome,
        uid,
        namespace,
        pod,
        owner,
        detail,
    })
}

impl Answered {
    /// The same review refused with `message` instead: for a review the server could not
    /// decide in time, of which it knows the uid and names from an earlier decision.
    pub fn refused(&self, message: &str) -> Result<Answered, String> {
        Ok(Answered {
            body: serialise(&envelope(rejected(&self.uid, message)))?,
            outcome: Outcome::Rejected,
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            owner: self.owner.clone(),
            detail: message.to_string(),
        })
    }
}

/// The mode, the reason for skipping, or the rejection message (without our prefix).
fn detail_of(outcome: &Outcome, answer: &Value) -> String {
    match outcome {
        Outcome::Injected(mode) => (*mode).to_string(),
        Outcome::Skipped(why) => (*why).to_string(),
        Outcome::Rejected => {
            let m = answer
                .pointer("/response/status/message")
                .and_then(Value::as_str);
            let m = m.unwrap_or("");
            m.strip_prefix("secretdrop: ").unwrap_or(m).to_string()
        }
    }
}

/// `Kind/name` of the owner with `controller: true`, else of the first owner.
fn owner_of(refs: Option<&Value>) -> String {
    let refs = refs
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let chosen = refs
        .iter()
        .find(|r| r["controller"] == true)
        .or_else(|| refs.first());
    chosen
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
            owner_text(&text("kind"), &text("name"))
        })
        .unwrap_or_default()
}

fn owner_text(kind: &str, name: &str) -> String {
    if kind.is_empty() && name.is_empty() {
        String::new()
    } else {
        format!("{kind}/{name}")
    }
}

/// Bytes in MiB, rounded up: messages never claim a limit was not exceeded.
fn mib(bytes: usize) -> usize {
    bytes.div_ceil(1024 * 1024)
}

/// Answers a review; `Err` when the body is not an AdmissionReview.
pub fn answer(review: &Value, defaults: &Defaults) -> Result<(Value, Outcome), String> {
    let request = review
        .get("request")
        .ok_or("no request in the AdmissionReview")?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .ok_or("no request.uid")?;
    let is_pod_create = is_pod_create(
        request.pointer("/kind/kind").and_then(Value::as_str),
        request.get("operation").and_then(Value::as_str),
    );
    let pod = request.get("object").filter(|_| is_pod_create);
    let namespace = request
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (response, outcome) = match pod.map(|p| decide(p, namespace, defaults)) {
        None => (allowed(uid), Outcome::Skipped("not a pod create")),
        Some(Decision::Skip(why)) => (allowed(uid), Outcome::Skipped(why)),
        Some(Decision::Reject(message)) => (rejected(uid, &message), Outcome::Rejected),
        Some(Decision::Inject {
            pod: injected,
            mode,
        }) => {
            let ops = patch::diff_json(pod.unwrap_or(&Value::Null), &injected)?;
            let warnings = warnings_of(&injected);
            drop(injected);
            let encoded = base64::engine::general_purpose::STANDARD.encode(&ops);
            drop(ops);
            let mut response = json!({"uid": uid, "allowed": true, "patchType": "JSONPatch"});
            if !warnings.is_empty() {
                response["warnings"] = json!(warnings);
            }
            // Moved in, not copied: the patch of a big pod is big.
            response["patch"] = Value::String(encoded);
            (response, Outcome::Injected(mode.name()))
        }
    };
    Ok((envelope(response), outcome))
}

/// What the webhook rewrote that the pod's author should know (`kubectl` prints these):
/// the synced Secrets it serves ([`super::synced::NOTES_ANNOTATION`]), and the Vault Agent
/// Injector annotations of a converted pod that secretdrop ignores.
fn warnings_of(injected: &Value) -> Vec<String> {
    let annotations = injected.pointer("/metadata/annotations");
    let notes = annotations
        .and_then(|a| a.get(super::synced::NOTES_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut warnings: Vec<String> = notes
        .lines()
        .filter(|l| !l.is_empty())
        .take(32)
        .map(|l| format!("secretdrop: {l}"))
        .collect();
    let converted = annotations
        .and_then(|a| a.get(format!("{}vault-agent", crate::config::names::PREFIX)))
        .and_then(Value::as_str);
    if let (Some(prefix), Some(Value::Object(all))) = (converted, annotations) {
        let ignored: Vec<String> =
            crate::provider::vault::agent::ignored(all.keys().map(String::as_str), prefix)
                .into_iter()
                .map(str::to_string)
                .collect();
        if !ignored.is_empty() {
            warnings.push(format!(
                "secretdrop: ignored, they tune the Vault Agent's own container and the \
                 injected secretdrop has its own settings (docs/migrate-from-vault-agent.md): {}",
                crate::error::first_few(&ignored, 20)
            ));
        }
    }
    warnings
}

/// What the webhook does with a pod created in `namespace`: on `/convert-vault-agent` the
/// Vault Agent Injector's conversion, else injection with CSI volumes and synced Secrets.
pub fn decide(pod: &Value, namespace: &str, defaults: &Defaults) -> Decision {
    if defaults.vault_agent {
        return mutate::convert_agent(pod, namespace, defaults);
    }
    match super::csi::classes(pod, namespace, defaults) {
        Ok(csi) => match super::synced::plan(pod, namespace, defaults, &csi) {
            Ok(synced) => mutate::mutate_synced(pod, namespace, defaults, &csi, synced),
            Err(message) => Decision::Reject(message),
        },
        Err(message) => Decision::Reject(message),
    }
}

fn is_pod_create(kind: Option<&str>, operation: Option<&str>) -> bool {
    kind == Some("Pod") && operation == Some("CREATE")
}

fn allowed(uid: &str) -> Value {
    json!({"uid": uid, "allowed": true})
}

fn rejected(uid: &str, message: &str) -> Value {
    json!({"uid": uid, "allowed": false, "status": {
        "code": 400, "reason": "BadRequest",
        "message": format!("secretdrop: {message}")
    }})
}

fn envelope(response: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

fn serialise(answer: &Value) -> Result<Vec<u8>, String> {
    serde_json::to_vec(answer).map_err(|e| format!("cannot serialise the answer: {e}"))
}

/// The streaming path for reviews too large to parse (see the module documentation).
fn answer_oversized(text: &[u8], heap: usize) -> Result<Answered, String> {
    let light: Light =
        serde_json::from_slice(text).map_err(|e| format!("the body is not JSON: {e}"))?;
    let request = light.request.0.ok_or("no request in the AdmissionReview")?;
    let uid = request.uid.0.ok_or("no request.uid")?;
    let kind = request.kind.0.and_then(|k| k.kind.0);
    let is_pod_create = is_pod_create(kind.as_deref(), request.operation.0.as_deref());
    let meta = request
        .object
        .0
        .filter(|_| is_pod_create)
        .map(|o| o.metadata.0);
    let opt_in = meta.as_ref().map(|m| {
        let m = m.as_ref();
        mutate::opted_in(
            m.and_then(|m| m.annotations.0.as_deref()),
            m.and_then(|m| m.labels.0.as_deref()),
        )
    });
    let (response, outcome, detail) = match opt_in {
        None => (
            allowed(&uid),
            Outcome::Skipped("not a pod create"),
            "not a pod create".to_string(),
        ),
        Some(Ok(false)) => (
            allowed(&uid),
            Outcome::Skipped("not opted in"),
            "not opted in".to_string(),
        ),
        Some(Err(message)) => (rejected(&uid, &message), Outcome::Rejected, message),
        Some(Ok(true)) => {
            let message = format!(
                "the pod is too large to inject: parsing it would take about {} MiB of memory, more than the {} MiB this webhook allows",
                mib(heap),
                mib(MAX_HEAP)
            );
            (rejected(&uid, &message), Outcome::Rejected, message)
        }
    };
    let meta = meta.flatten();
    let pod = meta
        .as_ref()
        .and_then(|m| m.generate_name.0.clone().or(m.name.0.clone()))
        .unwrap_or_default();
    let owner = meta
        .as_ref()
        .and_then(|m| m.owner_references.0.clone())
        .unwrap_or_default();
    Ok(Answered {
        body: serialise(&envelope(response))?,
        outcome,
        uid,
        namespace: request.namespace.0.unwrap_or_default(),
        pod,
        owner,
        detail,
    })
}

/// The parts of a review the streaming path keeps; everything else is skipped unread.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Light {
    request: Lenient<LightRequest>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LightRequest {
    uid: Text,
    kind: Lenient<LightKind>,
    operation: Text,
    namespace: Text,
    object: Lenient<LightObject>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LightKind {
    kind: Text,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LightObject {
    metadata: Lenient<LightMeta>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct LightMeta {
    name: Text,
    generate_name: Text,
    annotations: InjectAnnotation,
    labels: InjectAnnotation,
    owner_references: FirstOwner,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LightOwner {
    kind: Text,
    name: Text,
}

/// The `visit_*` methods of a visitor that reads every scalar but strings as `$none`.
macro_rules! scalars_are {
    ($none:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
}

/// An object deserialised as `T`; any other JSON value is skipped and read as `None`, as
/// `Value::get` on a non-object finds nothing.
#[derive(Default)]
struct Lenient<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|()| Lenient(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            scalars_are!(Lenient(None));
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON string; any other value is skipped and read as `None`, like `Value::as_str`.
#[derive(Default)]
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(s.to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|()| Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|()| Text(None))
            }
            scalars_are!(Text(None));
        }
        d.deserialize_any(V)
    }
}

/// Of a pod's annotations or labels, only the value of `secretdrop.dev/inject` (the last one,
/// as a `Value` map keeps it), when it is a string.
#[derive(Default)]
struct InjectAnnotation(Option<String>);

impl<'de> Deserialize<'de> for InjectAnnotation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InjectAnnotation;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let wanted = format!("{PREFIX}inject");
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == wanted {
                        found = map.next_value::<Text>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(InjectAnnotation(found))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|()| InjectAnnotation(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(InjectAnnotation(None))
            }
            scalars_are!(InjectAnnotation(None));
        }
        d.deserialize_any(V)
    }
}

/// Of `ownerReferences`, `Kind/name` of the first entry (pods have one owner); the rest is
/// skipped unread.
#[derive(Default)]
struct FirstOwner(Option<String>);

impl<'de> Deserialize<'de> for FirstOwner {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FirstOwner;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<Lenient<LightOwner>>()?;
                skip_seq(seq)?;
                let owner = first.and_then(|o| o.0).map(|o| {
                    owner_text(&o.kind.0.unwrap_or_default(), &o.name.0.unwrap_or_default())
                });
                Ok(FirstOwner(owner.filter(|o| !o.is_empty())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|()| FirstOwner(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(FirstOwner(None))
            }
            scalars_are!(FirstOwner(None));
        }
        d.deserialize_any(V)
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(operation: &str, annotations: Value) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": operation,
                "object": {"metadata": {"name": "p", "annotations": annotations},
                           "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
            }
        })
    }

    #[test]
    fn injects_with_a_base64_json_patch_and_echoes_the_uid() {
        let d = Defaults {
            vault_address: Some("http://vault:8200".into()),
            ..Defaults::default()
        };
        let annotations = json!({"secretdrop.dev/inject": "true", "secretdrop.dev/role": "r",
            "secretdrop.dev/objects": "- {objectName: a, secretPath: secret/data/x, secretKey: k}"});
        let r = review("CREATE", annotations.clone());
        let (out, outcome) = answer(&r, &d).unwrap();
        assert_eq!(outcome, Outcome::Injected("sidecar"));
        assert_eq!(
            out["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        let patch = base64::engine::general_purpose::STANDARD
            .decode(out["response"]["patch"].as_str().unwrap())
            .unwrap();
        let ops: Vec<Value> = serde_json::from_slice(&patch).unwrap();
        let pod = &r["request"]["object"];
        let patched = patch::apply(pod, &ops).unwrap();
        assert_eq!(patched["spec"]["initContainers"][0]["name"], "secretdrop");
        // UPDATE is not ours to mutate.
        let (out, outcome) = answer(&review("UPDATE", annotations), &d).unwrap();
        assert_eq!(
            (out["response"]["allowed"].as_bool(), outcome),
            (Some(true), Outcome::Skipped("not a pod create"))
        );
        assert!(answer(&json!({"kind": "nope"}), &d).is_err());
    }

    #[test]
    fn rejections_carry_the_message_to_kubectl() {
        let d = Defaults::default();
        let r = review("CREATE", json!({"secretdrop.dev/inject": "true"}));
        let (out, outcome) = answer(&r, &d).unwrap();
        assert_eq!(outcome, Outcome::Rejected);
        assert_eq!(out["response"]["allowed"], false);
        let message = out["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("secretdrop: ") && message.contains("secretdrop.dev/role"),
            "{message}"
        );
    }

    /// A review whose pod carries `filler` one-member objects: tens of MiB once parsed.
    fn oversized(operation: &str, metadata: Value) -> (Vec<u8>, Shape) {
        let filler = vec![json!({"a": 0}); 20_000];
        let r = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "operation": operation, "namespace": "team",
                        "object": {"metadata": metadata, "spec": {"containers": [{"name": "app", "env": filler}]}}}
        });
        let text = serde_json::to_vec(&r).unwrap();
        let shape = Shape::of(&text);
        assert!(shape.heap() > MAX_HEAP);
        (text, shape)
    }

    fn decided(text: &[u8], shape: &Shape) -> (Value, Outcome) {
        let a = answer_text(text, shape, &Defaults::default(), usize::MAX).unwrap();
        (serde_json::from_slice(&a.body).unwrap(), a.outcome)
    }

    #[test]
    fn a_review_too_large_to_parse_is_decided_from_its_opt_in_alone() {
        let ours = json!({"name": "p", "annotations": {"secretdrop.dev/inject": "true", "x": [1, {"y": 2}]}});
        let (text, shape) = oversized("CREATE", ours.clone());
        let (out, outcome) = decided(&text, &shape);
        assert_eq!(outcome, Outcome::Rejected);
        assert_eq!(out["response"]["uid"], "u-1");
        assert_eq!(out["response"]["allowed"], false);
        let message = out["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("too large to inject"), "{message}");
        let a = answer_text(&text, &shape, &Defaults::default(), usize::MAX).unwrap();
        assert_eq!((a.namespace.as_str(), a.pod.as_str()), ("team", "p"));

        // Not ours, or not a create: allowed unchanged, as the full path would.
        let (text, shape) = oversized("UPDATE", ours);
        assert_eq!(
            decided(&text, &shape).1,
            Outcome::Skipped("not a pod create")
        );
        for metadata in [
            json!({"annotations": {"secretdrop.dev/inject": "false"}}),
            json!({"annotations": {"secretdrop.dev/inject": {"nested": ["true"]}}}),
            json!({"annotations": ["secretdrop.dev/inject"]}),
            json!({"annotations": null}),
            json!(5),
        ] {
            let (text, shape) = oversized("CREATE", metadata.clone());
            let (out, outcome) = decided(&text, &shape);
            assert_eq!(outcome, Outcome::Skipped("not opted in"), "{metadata}");
            assert_eq!(out["response"]["allowed"], true);
            assert!(out["response"].get("patch").is_none());
        }

        // Not an AdmissionReview at all.
        let junk = vec![b'['; MAX_HEAP];
        assert!(answer_text(&junk, &Shape::of(&junk), &Defaults::default(), usize::MAX).is_err());
        let no_uid = serde_json::to_vec(
            &json!({"request": {"kind": {"kind": "Pod"}, "x": vec![json!({"a": 0}); 20_000]}}),
        )
        .unwrap();
        let err = answer_text(
            &no_uid,
            &Shape::of(&no_uid),
            &Defaults::default(),
            usize::MAX,
        );
        assert_eq!(err.unwrap_err(), "no request.uid");
    }

    #[test]
    fn a_review_too_large_to_parse_reads_the_label_and_the_owner_too() {
        let owners = json!([{"kind": "ReplicaSet", "name": "web-1", "controller": true}, {"kind": "X", "name": "y"}]);
        let meta = |labels: Value| json!({"generateName": "web-1-", "labels": labels, "ownerReferences": owners});
        let (text, shape) = oversized("CREATE", meta(json!({"secretdrop.dev/inject": "True"})));
        let a = answer_text(&text, &shape, &Defaults::default(), usize::MAX).unwrap();
        assert_eq!(a.outcome, Outcome::Rejected);
        assert!(a.detail.contains("too large to inject"), "{}", a.detail);
        assert_eq!(
            (a.pod.as_str(), a.owner.as_str()),
            ("web-1-", "ReplicaSet/web-1")
        );
        let (text, shape) = oversized("CREATE", meta(json!({"secretdrop.dev/inject": "yes"})));
        let a = answer_text(&text, &shape, &Defaults::default(), usize::MAX).unwrap();
        assert_eq!(a.outcome, Outcome::Rejected);
        assert!(a.detail.contains("inject (label)"), "{}", a.detail);
        let (text, shape) = oversized("CREATE", meta(json!({"secretdrop.dev/inject": "0"})));
        let a = answer_text(&text, &shape, &Defaults::default(), usize::MAX).unwrap();
        assert_eq!(a.outcome, Outcome::Skipped("not opted in"));
        // The full path names the controller among several owners.
        assert_eq!(
            owner_of(Some(
                &json!([{"kind": "A", "name": "a"}, {"kind": "B", "name": "b", "controller": true}])
            )),
            "B/b"
        );
        assert_eq!(owner_of(Some(&json!("junk"))), "");
    }

    #[test]
    fn an_answer_longer_than_allowed_becomes_a_rejection() {
        let d = Defaults {
            vault_address: Some("http://vault:8200".into()),
            ..Defaults::default()
        };
        let annotations = json!({"secretdrop.dev/inject": "true", "secretdrop.dev/role": "r",
            "secretdrop.dev/objects": "- {objectName: a, secretPath: secret/data/x, secretKey: k}"});
        let text = serde_json::to_vec(&review("CREATE", annotations)).unwrap();
        let shape = Shape::of(&text);
        let full = answer_text(&text, &shape, &d, usize::MAX).unwrap();
        assert_eq!(full.outcome, Outcome::Injected("sidecar"));
        let cut = answer_text(&text, &shape, &d, full.body.len() - 1).unwrap();
        assert_eq!(cut.outcome, Outcome::Rejected);
        let out: Value = serde_json::from_slice(&cut.body).unwrap();
        assert_eq!(
            out["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        let message = out["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("the patch for this pod would take"),
            "{message}"
        );
    }
}
