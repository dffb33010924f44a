//! STATUS (CNI 1.1): can this node take a new pod now?

use podnet_core::cni::{CniError, Env, NetConf};

use crate::ipam;

pub fn status(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<(), CniError> {
    ipam::status(conf, env, stdin)
}
