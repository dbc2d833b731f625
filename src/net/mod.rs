//! Network edges shared by every provider and the webhook.
pub mod http;
pub mod kube;
pub mod serve;
