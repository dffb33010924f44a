//! The pure core of podnet.
//!
//! Everything here is a function of its inputs: CNI types and version
//! negotiation, config parsing and validation, the IPAM allocator's
//! decisions, and the names the plugin derives. No file, socket or syscall
//! is touched, so all of it is tested without root.

pub mod cluster;
pub mod cni;
pub mod guard;
pub mod ipam;
pub mod names;
pub mod policy;
pub mod subnet_file;
