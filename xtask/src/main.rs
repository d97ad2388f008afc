//! procman's build-and-load driver.
//!
//! - `cargo xtask run`: build everything and start the agent (as root) with the example config.
//! - `cargo xtask test`: install missing build/test packages, build, run the host tests, then
//!   the in-VM tests on every kernel (`vm-test --kernel all`).
//! - `cargo xtask vm-assets | vm-test | vm-run`: the cgroup v2 test VM (see `vm.rs`).
//! - `cargo xtask package`: the Debian package (cargo-deb), see `package.rs`.
//! - `cargo xtask bench <events|...>`: benchmarks that print tables.
//! - `cargo xtask openapi`: regenerate `docs/openapi.json` from the code and validate it.
mod bench;
mod deps;
mod openapi;
mod package;
mod run;
mod test;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "procman's build, test, VM and benchmark driver"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build everything and start procman-agent with the bundled example config (needs root).
    Run(run::RunArgs),
    /// Install what is missing, build, run host tests, then the in-VM tests on every kernel.
    Test(test::TestArgs),
    /// Download and unpack the Debian kernels and build the test VM's initramfs (cached).
    VmAssets(vm::AssetsArgs),
    /// Run the in-VM test binaries inside a cgroup v2 VM (one per kernel).
    VmTest(vm::VmTestArgs),
    /// Boot the test VM and run a command in it (for humans).
    VmRun(vm::VmRunArgs),
    /// Build the Debian package (cargo-deb): target/debian/procman_*.deb.
    Package(package::PackageArgs),
    /// Run a benchmark and print its table.
    Bench(bench::BenchArgs),
    /// Regenerate docs/openapi.json from the code (the agent's handlers and wire types) and
    /// validate it.
    Openapi,
    /// Inside the test VM only: the guest half of `bench placement`.
    #[command(hide = true)]
    BenchGuest(bench::placement_vm::GuestArgs),
    /// `bench sampler --threads-per-proc K`'s load: a process holding K idle threads.
    #[command(hide = true)]
    BenchThreads { threads: usize },
}

fn main() {
    let cli = Cli::parse();
    let r: Result<()> = match cli.cmd {
        Cmd::Run(a) => run::run(a),
        Cmd::Test(a) => test::run(a),
        Cmd::VmAssets(a) => vm::assets(a),
        Cmd::VmTest(a) => vm::test(a),
        Cmd::VmRun(a) => vm::run(a),
        Cmd::Package(a) => package::package(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Openapi => openapi::run(),
        Cmd::BenchGuest(a) => bench::placement_vm::guest(a),
        Cmd::BenchThreads { threads } => bench::tasks::holder(threads),
    };
    if let Err(e) = r {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
