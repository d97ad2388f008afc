//! `procman`: the command-line client of procman-agent. It talks to the agent's API only
//! (`client`), so it links neither BPF nor cgroup code.
mod cli;
mod client;

use clap::Parser;

fn main() {
    // Like every Unix filter: a closed stdout (`procman ps | head -1`) ends the process
    // quietly instead of a "Broken pipe" panic. Rust ignores SIGPIPE by default.
    // SAFETY: restoring the default disposition of one signal, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    cli::output::init_color(cli.color);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("procman: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(cli::run(cli)) {
        let prefix = cli::output::paint_err("procman:", cli::output::Paint::Bad);
        eprintln!("{prefix} {e:#}");
        std::process::exit(client::exit_code(&e));
    }
}
