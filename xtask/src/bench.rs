//! `cargo xtask bench` (to be written).
use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {}

pub fn run(_a: BenchArgs) -> Result<()> {
    bail!("not implemented yet")
}
