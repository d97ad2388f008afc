//! The netlink proc connector fallback (to be written).
use super::{SourceInfo, SourceMsg, SourceOptions};
use tokio::sync::mpsc;

pub fn start(_opts: &SourceOptions, _tx: mpsc::Sender<SourceMsg>) -> anyhow::Result<SourceInfo> {
    anyhow::bail!("the netlink proc connector source is not implemented yet")
}
