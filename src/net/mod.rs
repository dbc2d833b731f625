//! Network edges shared by every provider and the webhook.
pub mod cloud;
pub mod http;
pub mod kube;
pub mod registry;
pub mod serve;
