//! The Debian package, installed with `dpkg -i` inside the test VM (whose root is a
//! throwaway overlay of the host's Debian userland): its files land where the unit and the
//! docs say, the config is a conffile, the unit verifies, the installed binaries run, and
//! removal keeps the config while purge removes it. `cargo xtask test` builds the package
//! (`cargo xtask package`) before it boots the VM.
use procman_tests::require_vm;
use std::{path::PathBuf, process::Command};

fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[track_caller]
fn ok(cmd: &str) -> String {
    let (ok, out) = sh(cmd);
    assert!(ok, "{cmd}:\n{out}");
    out
}

/// The newest package `cargo xtask package` built.
fn package() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask package` first", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop()
        .unwrap_or_else(|| panic!("no .deb in {}; run `cargo xtask package`", dir.display()))
}

#[test]
#[ignore = "needs the cgroup v2 test VM (cargo xtask vm-test): installs a package as root"]
fn the_deb_installs_verifies_and_purges() {
    require_vm();
    let deb = package();
    let info = ok(&format!("dpkg-deb --info {}", deb.display()));
    assert!(info.contains("Package: procman"), "{info}");
    // man-db's trigger rebuilds the whole manual index on every install and removal: minutes
    // under TCG, and nothing this test checks (the VM's root is a throwaway overlay)
    let _ = std::fs::remove_file("/var/lib/man-db/auto-update");
    let t0 = std::time::Instant::now();
    ok(&format!("dpkg -i {}", deb.display()));
    println!("dpkg -i took {:.1}s", t0.elapsed().as_secs_f64());
    let files = ok("dpkg -L procman");
    for f in [
        "/usr/sbin/procman-agent",
        "/usr/bin/procman",
        "/etc/procman/procman.toml",
        "/usr/share/man/man1/procman.1.gz",
        "/usr/share/man/man8/procman-agent.8.gz",
        "/usr/share/bash-completion/completions/procman",
        "/usr/share/zsh/vendor-completions/_procman",
        "/usr/share/fish/vendor_completions.d/procman.fish",
        "/usr/share/doc/procman/examples/procman.toml",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "{f} not in the package:\n{files}"
        );
    }
    let unit = files
        .lines()
        .find(|l| l.ends_with("/systemd/system/procman-agent.service"))
        .unwrap_or_else(|| panic!("no unit in the package:\n{files}"))
        .to_string();
    let conffiles = ok("dpkg-query -W -f='${Conffiles}' procman");
    assert!(
        conffiles.contains("/etc/procman/procman.toml"),
        "{conffiles}"
    );
    let (_, verify) = sh(&format!("systemd-analyze verify --man=no {unit}"));
    assert!(
        !verify.contains("procman-agent.service:"),
        "systemd-analyze verify {unit}:\n{verify}"
    );
    // enabled at install (not started): the wants link exists
    assert!(
        PathBuf::from("/etc/systemd/system/multi-user.target.wants/procman-agent.service").exists(),
        "the unit is not enabled"
    );
    assert!(
        ok("/usr/sbin/procman-agent --config /etc/procman/procman.toml --check-config")
            .contains("configuration OK")
    );
    assert!(ok("/usr/bin/procman --version").contains("procman"));
    // the installed agent, with the installed config, answers the installed CLI on the
    // default socket (no systemd in the VM: started by hand, as the unit's ExecStart says)
    let mut agent = Command::new("/usr/sbin/procman-agent")
        .args(["--config", "/etc/procman/procman.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = procman_tests::wait_until(
        "the installed agent to answer procman status",
        std::time::Duration::from_secs(60),
        || match sh("/usr/bin/procman status") {
            (true, out) => Ok(out),
            (false, out) => Err(out),
        },
    );
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(status.contains("event source:"), "{status}");
    assert!(ok("zcat /usr/share/man/man1/procman.1.gz").contains(".TH procman 1"));
    assert!(std::fs::metadata("/var/log/procman").is_ok_and(|m| m.is_dir()));

    ok("dpkg -r procman");
    assert!(!PathBuf::from("/usr/sbin/procman-agent").exists());
    assert!(
        PathBuf::from("/etc/procman/procman.toml").exists(),
        "removal keeps the config"
    );
    ok("dpkg -P procman");
    assert!(
        !PathBuf::from("/etc/procman/procman.toml").exists(),
        "purge removes it"
    );
}
