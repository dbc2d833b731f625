//! The Kubernetes API reads of one review (the SecretProviderClasses of its CSI volumes, the
//! ServiceAccount of an IRSA pod), made on the runtime, outside the review slots
//! ([`super::server`]), so that a read the API server is slow to answer costs its own review
//! only.
//!
//! A review is decided by pure code on a blocking thread ([`super::review`]), which asks for
//! objects through the [`ClassSource`]s of its [`Defaults`] where it needs them. In the server
//! those sources answer from the review's [`Reads`]: an object read before is returned (parsed
//! there, in the review's slot), one not read yet is recorded and answered
//! [`KubeError::Deferred`]. The server then drops that decision and its slot, reads what was
//! recorded ([`Reads::read`], all at once), and decides again. A pod with CSI volumes is
//! decided twice (every class it names is recorded in the first round:
//! [`super::csi::classes`] goes on past a deferred class), an IRSA pod of such a class three
//! times; each decision takes milliseconds.
//!
//! Invariants:
//! * A decision made while something was deferred is never sent: the server sends one only
//!   when [`Reads::take_missing`] is empty after it.
//! * Every key handed to [`Reads::read`] gets an answer (the object, or why not), so a round
//!   never asks again for what an earlier one read, and rounds end (at most one per object a
//!   pod can name: 16 classes and a ServiceAccount); the review's deadline bounds them all.
//! * Reads are bounded: at most [`LOOKUPS_AT_ONCE`] GETs are in flight (connections to the API
//!   server), each waits at most until the `until` it is given; the bytes of answers being
//!   read and of answers kept until their review is answered come out of [`LOOKUP_BYTES`]
//!   (reserved once the headers say how many, so a server that never answers holds none);
//!   and an answer is parsed only if its estimated heap ([`Shape::heap`]) is at most
//!   [`MAX_OBJECT_HEAP`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::defaults::{ClassSource, Defaults, ImageQuery, ImageSource};
use super::shape::Shape;
use crate::net::kube::{self, Fetched, KubeError, Object};
use crate::net::registry::{Process, Registry};

/// Every review is answered within this of its request's arrival, whatever it waits for (room
/// for its body, the body, a review slot, the Kubernetes API, room for its answer): the API
/// server waits for the webhook for its timeoutSeconds (5 in manifests/), and an answer it no
/// longer waits for is wasted. A review not decided by then is refused, naming this deadline.
pub const REVIEW_DEADLINE: Duration = Duration::from_secs(4);
/// Reads of the Kubernetes API for a review end this long before its deadline, leaving the
/// time to decide with their answers.
pub const DECIDE_TIME: Duration = Duration::from_millis(500);

/// GETs to the Kubernetes API in flight at once, for all reviews together. Each is a
/// connection (a file descriptor, its socket and TLS buffers); an API server that answers
/// none holds them until each read's time is up, and only reviews that need a read wait for
/// one to be free.
pub const LOOKUPS_AT_ONCE: usize = 16;
/// Bytes of API answers being read or kept until their review is answered. A
/// SecretProviderClass or ServiceAccount is a few KiB; an answer can be [`kube::MAX_BODY`].
pub const LOOKUP_BYTES: usize = 2 * 1024 * 1024;
/// The most heap one object may take once parsed. A SecretProviderClass of a few KiB takes
/// tens of KiB; a class carried into the pod is at most 256 KiB of annotation text anyway.
/// Parsed JSON can be ~90 times its text, so without this a 1 MiB answer of tiny values
/// would take ~90 MiB.
pub const MAX_OBJECT_HEAP: usize = 1024 * 1024;
/// A GET with less time left than this is not sent: it would hardly be answered, and the
/// refusal is clearer saying it waited for one of the reads in flight.
const MIN_READ_TIME: Duration = Duration::from_millis(100);
// A read never waits for more bytes than the budget has.
const _: () = assert!(kube::MAX_BODY <= LOOKUP_BYTES);

/// The webhook's way to the Kubernetes API, with the budgets every review's reads share.
#[derive(Clone)]
pub struct Api {
    client: kube::Client,
    in_flight: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    /// Image registries, for the entrypoints of containers wrapped for synced Secrets
    /// ([`super::synced`]); none when the client could not be set up (a bad SSL_CERT_FILE).
    registry: Option<Registry>,
}

/// All registry reads of one review end within this (and by the review's own deadline): the
/// API server waits for the webhook for its timeoutSeconds (5 in manifests/), and the
/// Kubernetes API reads of the same review come first.
pub const REGISTRY_TIME: Duration = Duration::from_secs(2);

impl Api {
    pub fn new(client: kube::Client) -> Api {
        let extra = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
        let registry = match Registry::new(extra.as_deref()) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "no image registry client: containers without a command that read synced Secrets are refused");
                None
            }
        };
        Api {
            client,
            in_flight: Arc::new(Semaphore::new(LOOKUPS_AT_ONCE)),
            bytes: Arc::new(Semaphore::new(LOOKUP_BYTES)),
            registry,
        }
    }

    /// The registry client, for its counters.
    pub fn registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }
}

/// One object a review asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub object: Object,
    pub namespace: String,
    pub name: String,
}

impl Key {
    /// How long a read of this object may take: the API server waits for the webhook for
    /// its timeoutSeconds, and a pod needs its classes first, then its ServiceAccount.
    fn time(&self) -> Duration {
        match self.object {
            Object::SecretProviderClass => super::csi::LOOKUP_BUDGET,
            Object::ServiceAccount | Object::Secret => crate::provider::pod::LOOKUP_TIME,
        }
    }
}

#[derive(Default)]
struct Table {
    read: Vec<(Key, Result<Fetched, KubeError>)>,
    missing: Vec<Key>,
    images: Vec<(ImageQuery, Result<Process, String>)>,
    missing_images: Vec<ImageQuery>,
}

/// What one review has read and still needs; clones share it.
#[derive(Clone, Default)]
pub struct Reads(Arc<Mutex<Table>>);

impl Reads {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while holding it; a poisoned table is still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `base` with class and ServiceAccount sources that answer from these reads.
    pub fn defaults(&self, base: &Defaults) -> Defaults {
        let source = |object: Object| {
            let reads = self.clone();
            ClassSource::new(move |namespace, name, _within| reads.answer(object, namespace, name))
        };
        let reads = self.clone();
        Defaults {
            classes: source(Object::SecretProviderClass),
            service_accounts: source(Object::ServiceAccount),
            secrets: source(Object::Secret),
            images: ImageSource::new(move |q| reads.image(q)),
            ..base.clone()
        }
    }

    /// The image's process if it was read, why not if that failed; else it is recorded.
    fn image(&self, query: &ImageQuery) -> Result<Process, Option<String>> {
        let mut table = self.table();
        match table.images.iter().find(|(q, _)| q == query) {
            Some((_, answer)) => answer.clone().map_err(Some),
            None => {
                if !table.missing_images.contains(query) {
                    table.missing_images.push(query.clone());
                }
                Err(None)
            }
        }
    }

    /// The images the last decision asked for and were not read, emptied.
    pub fn take_missing_images(&self) -> Vec<ImageQuery> {
        std::mem::take(&mut self.table().missing_images)
    }

    /// Reads `queries` from their registries at once, all by `until` and within
    /// [`REGISTRY_TIME`]; every query gets an answer.
    pub async fn read_images(&self, api: &Api, queries: Vec<ImageQuery>, until: Instant) {
        let until = until.min(Instant::now() + REGISTRY_TIME);
        let mut reading = tokio::task::JoinSet::new();
        for q in queries.iter().cloned() {
            let registry = api.registry.clone();
            reading.spawn(async move {
                let answer = match registry {
                    Some(r) => {
                        r.process(&q.image, &q.platform, &q.credentials, until)
                            .await
                    }
                    None => Err("this webhook has no image registry client (see its log)".into()),
                };
                (q, answer)
            });
        }
        while let Some(done) = reading.join_next().await {
            if let Ok(done) = done {
                self.table().images.push(done);
            }
        }
        let mut table = self.table();
        for q in queries {
            if !table.images.iter().any(|(k, _)| *k == q) {
                table
                    .images
                    .push((q, Err("the registry read failed without an answer".into())));
            }
        }
    }

    /// The object if it was read, why not if that failed; else it is recorded as missing.
    fn answer(&self, object: Object, namespace: &str, name: &str) -> Result<Value, KubeError> {
        let mut table = self.table();
        let found = table
            .read
            .iter()
            .find(|(k, _)| k.object == object && k.namespace == namespace && k.name == name);
        match found {
            Some((_, Ok(fetched))) => parse(&fetched.body),
            Some((_, Err(e))) => Err(e.clone()),
            None => {
                let key = Key {
                    object,
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                };
                if !table.missing.contains(&key) {
                    table.missing.push(key);
                }
                Err(KubeError::Deferred)
            }
        }
    }

    /// What the last decision asked for and was not read, emptied.
    pub fn take_missing(&self) -> Vec<Key> {
        std::mem::take(&mut self.table().missing)
    }

    /// Reads `keys` at once, each within its own time and all by `until`; every key gets an
    /// answer, the object or why not.
    pub async fn read(&self, api: &Api, keys: Vec<Key>, until: Instant) {
        let mut reading = tokio::task::JoinSet::new();
        for key in keys.iter().cloned() {
            let api = api.clone();
            let until = until.min(Instant::now() + key.time());
            reading.spawn(async move {
                let answer = read_one(&api, &key, until).await;
                (key, answer)
            });
        }
        while let Some(done) = reading.join_next().await {
            if let Ok(done) = done {
                self.table().read.push(done);
            }
        }
        // A read that ended without an answer (it cannot, short of a panic) is one too.
        let mut table = self.table();
        for key in keys {
            if !table.read.iter().any(|(k, _)| *k == key) {
                let why = KubeError::Failed("the read failed without an answer".into());
                table.read.push((key, Err(why)));
            }
        }
    }
}

async fn read_one(api: &Api, key: &Key, until: Instant) -> Result<Fetched, KubeError> {
    if until <= Instant::now() {
        return Err(KubeError::Failed(format!(
            "not sent: the review had used up the time it may spend reading the Kubernetes API \
             ({} of its {})",
            crate::logging::Dur(REVIEW_DEADLINE - DECIDE_TIME),
            crate::logging::Dur(REVIEW_DEADLINE)
        )));
    }
    let sending = tokio::time::timeout_at(until, api.in_flight.clone().acquire_owned()).await;
    let within = until.saturating_duration_since(Instant::now());
    let (Ok(Ok(_sending)), false) = (sending, within < MIN_READ_TIME) else {
        return Err(KubeError::Failed(format!(
            "not sent: all {LOOKUPS_AT_ONCE} reads of the Kubernetes API this webhook makes at \
             once stayed in flight for as long as this one could wait ({}, or what was left of \
             the review's {}); the API server is slow or does not answer",
            crate::logging::Dur(key.time()),
            crate::logging::Dur(REVIEW_DEADLINE)
        )));
    };
    api.client
        .get(key.object, &key.namespace, &key.name, within, &api.bytes)
        .await
}

/// An answer's JSON, if it is small enough once parsed.
fn parse(body: &[u8]) -> Result<Value, KubeError> {
    let heap = Shape::of(body).heap();
    if heap > MAX_OBJECT_HEAP {
        return Err(KubeError::Failed(format!(
            "the Kubernetes API's answer ({} bytes) would take about {} KiB once parsed, more \
             than the {} KiB this webhook allows for one object",
            body.len(),
            heap.div_ceil(1024),
            MAX_OBJECT_HEAP / 1024
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| KubeError::Failed(format!("HTTP 200 with a body that is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fetched(body: &[u8]) -> Fetched {
        Fetched::for_tests(body.to_vec())
    }

    #[test]
    fn what_was_not_read_is_recorded_once_and_deferred() {
        let reads = Reads::default();
        let d = reads.defaults(&Defaults::default());
        let classes = d.classes.lookup().unwrap();
        for _ in 0..2 {
            assert_eq!(
                classes("default", "c", Duration::ZERO),
                Err(KubeError::Deferred)
            );
        }
        let sa = d.service_accounts.lookup().unwrap();
        assert_eq!(sa("default", "c", Duration::ZERO), Err(KubeError::Deferred));
        let missing = reads.take_missing();
        assert_eq!(
            missing.iter().map(|k| k.object).collect::<Vec<_>>(),
            [Object::SecretProviderClass, Object::ServiceAccount]
        );
        assert!(reads.take_missing().is_empty());

        // Once read, answered from the table: the object, or why not.
        {
            let mut t = reads.table();
            t.read
                .push((missing[0].clone(), Ok(fetched(br#"{"spec": {"a": 1}}"#))));
            t.read.push((missing[1].clone(), Err(KubeError::NotFound)));
        }
        assert_eq!(
            classes("default", "c", Duration::ZERO),
            Ok(json!({"spec": {"a": 1}}))
        );
        assert_eq!(sa("default", "c", Duration::ZERO), Err(KubeError::NotFound));
        assert!(reads.take_missing().is_empty());
        assert_eq!(
            classes("other", "c", Duration::ZERO),
            Err(KubeError::Deferred),
            "another namespace is another object"
        );
    }

    #[test]
    fn a_deferred_class_does_not_stop_the_others_being_asked_for() {
        let reads = Reads::default();
        let d = reads.defaults(&Defaults {
            vault_address: Some("http://vault:8200".into()),
            ..Defaults::default()
        });
        let vol = |name: &str, class: &str| json!({"name": name, "csi": {"driver": super::super::csi::DRIVER, "volumeAttributes": {"secretProviderClass": class}}});
        let pod = json!({"spec": {"volumes": [vol("a", "one"), vol("b", "two"), vol("c", "one")]}});
        assert!(super::super::csi::classes(&pod, "ns", &d).is_err());
        let names: Vec<String> = reads.take_missing().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["one", "two"]);
    }

    #[test]
    fn an_answer_too_large_once_parsed_is_refused_unparsed() {
        // 600 KB of one-member objects: some 50 MiB as a `Value`.
        let body = format!("[{}]", vec![r#"{"a":0}"#; 75_000].join(","));
        assert!(body.len() < kube::MAX_BODY);
        let m = parse(body.as_bytes()).unwrap_err().to_string();
        assert!(m.contains("once parsed") && m.contains("1024 KiB"), "{m}");
        let m = parse(b"<html>").unwrap_err().to_string();
        assert!(m.contains("not JSON"), "{m}");
    }

    #[tokio::test]
    async fn every_key_gets_an_answer_even_past_the_time() {
        let reads = Reads::default();
        let api = Api::new(kube::Client::for_tests("https://127.0.0.1:1"));
        let key = |name: &str| Key {
            object: Object::SecretProviderClass,
            namespace: "default".into(),
            name: name.into(),
        };
        // The time is up: nothing is sent, and the answer says so.
        reads
            .read(&api, vec![key("a"), key("b")], Instant::now())
            .await;
        let t = reads.table();
        assert_eq!(t.read.len(), 2);
        for (_, answer) in &t.read {
            let m = answer.as_ref().unwrap_err().to_string();
            assert!(m.contains("not sent"), "{m}");
        }
    }
}
