//! NetworkPolicy (`networking.k8s.io/v1`), decided purely: the API's shape
//! and its validation and defaults (`api`), label selectors (`selector`),
//! the model: which connections the cluster's policies allow (`model`),
//! its compilation into one node's flat ruleset (`compile`), the records
//! a store keeps of it (`source`), truth tables (`matrix`), and what passes between podnetd and
//! the plugin on a node (`node`). The model is the truth the enforcement
//! is checked against; it knows nothing of nftables.

pub mod api;
pub mod compile;
pub mod matrix;
pub mod model;
pub mod node;
pub mod random;
pub mod selector;
pub mod source;

pub use api::{NetworkPolicy, Policy, PolicyError, Protocol};
pub use model::{Cluster, Connection, Endpoint, NamedPort, Pod};
pub use selector::{LabelSelector, Labels};

#[cfg(test)]
mod tests;
