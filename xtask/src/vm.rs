//! The cgroup v2 test VM (to be written): assets, vm-test, vm-run.
use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct AssetsArgs {}

#[derive(Args)]
pub struct VmTestArgs {
    /// Kernel(s) to boot: 6.1, 6.12 or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// Test name filter passed to every test binary.
    #[arg(last = true)]
    pub filter: Vec<String>,
}

#[derive(Args)]
pub struct VmRunArgs {
    #[arg(last = true)]
    pub cmd: Vec<String>,
}

pub fn assets(_a: AssetsArgs) -> Result<()> {
    bail!("vm-assets is not implemented yet")
}
pub fn test(_a: VmTestArgs) -> Result<()> {
    bail!("vm-test is not implemented yet")
}
pub fn run(_a: VmRunArgs) -> Result<()> {
    bail!("vm-run is not implemented yet")
}

/// `vm-test --kernel all` (what `cargo xtask test` runs).
pub fn test_all() -> Result<()> {
    test(VmTestArgs {
        kernel: "all".into(),
        filter: Vec::new(),
    })
}
