//! `cargo xtask run` (to be written).
use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct RunArgs {}

pub fn run(_a: RunArgs) -> Result<()> {
    bail!("not implemented yet")
}
