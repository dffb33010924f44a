//! Benchmarks: commands that measure and print, never timed tests.

pub mod cni;
pub mod control_plane;
pub mod datapath;
pub mod etcd;
pub mod kube;
pub mod policy;
pub mod sim;
pub mod stats;
