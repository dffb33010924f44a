//! Cluster networking, decided purely: the cluster config (net-conf),
//! carving node subnets out of the cluster CIDRs, node leases, and the
//! routes (through nexthop objects) and masquerade the agent wants in its
//! node.

pub mod backend;
pub mod carve;
pub mod desired;
pub mod lease;
pub mod netconf;
pub mod nexthops;
