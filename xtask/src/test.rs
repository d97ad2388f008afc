//! `cargo xtask test` (to be written).
use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct TestArgs {}

pub fn run(_a: TestArgs) -> Result<()> {
    bail!("not implemented yet")
}
