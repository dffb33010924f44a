//! DEL: remove the veth and release the addresses. Idempotent, and it
//! succeeds without a netns or a prevResult: the runtime may call it twice,
//! the second time with an empty CNI_NETNS.

use podnet_core::cni::{CniError, Env, NetConf};

use super::{attachment, store};
use crate::{bridge, masq};

pub fn del(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    bridge::detach(env)?;
    masq::remove(conf, env)?;
    let who = attachment(env);
    let freed = store(conf)?.transact(|state| Ok(state.release(&who)))?;
    tracing::info!(?freed, "released");
    Ok(())
}
