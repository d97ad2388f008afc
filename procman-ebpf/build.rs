//! Compiles the kernel side (C, CO-RE) into BPF objects in OUT_DIR, one per feature so that a
//! kernel lacking one still loads the others: `procman.bpf.c` (event capture),
//! `sched.bpf.c` (the optional scheduling tracer), `sampler.bpf.c` (the task iterator).
//!
//! Why C and not aya-ebpf: Rust BPF needs nightly + rust-src + bpf-linker, which these machines
//! cannot install (see DESIGN.md). The compiler is clang-19, then clang-16, then plain clang;
//! `PROCMAN_CLANG` overrides the choice.
use std::{env, path::PathBuf, process::Command};

const CANDIDATES: &[&str] = &["clang-19", "clang-16", "clang"];

fn find_clang() -> Option<String> {
    if let Ok(c) = env::var("PROCMAN_CLANG") {
        return Some(c);
    }
    CANDIDATES
        .iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|c| c.to_string())
}

fn strip_tool(clang: &str) -> Option<String> {
    // clang-19 -> llvm-strip-19, clang -> llvm-strip
    let suffix = clang
        .rsplit_once('-')
        .map(|(_, v)| v)
        .filter(|v| v.chars().all(|c| c.is_ascii_digit()));
    let mut tools = Vec::new();
    if let Some(v) = suffix {
        tools.push(format!("llvm-strip-{v}"));
    }
    tools.push("llvm-strip".to_string());
    tools.into_iter().find(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The objects: (source in src/, object name in OUT_DIR).
const OBJECTS: &[(&str, &str)] = &[
    ("procman.bpf.c", "procman.bpf.o"),
    ("sched.bpf.c", "sched.bpf.o"),
    ("sampler.bpf.c", "sampler.bpf.o"),
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let include = manifest.join("../procman-common/include");
    for f in ["src/vmlinux.h", "../procman-common/include/procman_event.h"] {
        println!("cargo:rerun-if-changed={}", manifest.join(f).display());
    }
    for (src, _) in OBJECTS {
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join("src").join(src).display()
        );
    }
    println!("cargo:rerun-if-env-changed=PROCMAN_CLANG");

    let Some(clang) = find_clang() else {
        panic!(
            "\n\nprocman-ebpf: no clang found (tried {}). The kernel side is C compiled with clang.\n\
             Install it with:  apt-get install clang-19 libbpf-dev\n\
             (or run `cargo xtask test`, which installs the build dependencies), or set PROCMAN_CLANG.\n",
            CANDIDATES.join(", ")
        );
    };
    if !PathBuf::from("/usr/include/bpf/bpf_helpers.h").exists() {
        panic!(
            "\n\nprocman-ebpf: /usr/include/bpf/bpf_helpers.h is missing.\n\
             Install it with:  apt-get install libbpf-dev\n"
        );
    }
    let strip = strip_tool(&clang);
    if strip.is_none() {
        println!("cargo:warning=procman-ebpf: llvm-strip not found; embedding unstripped objects");
    }
    for (src, obj) in OBJECTS {
        compile(
            &clang,
            strip.as_deref(),
            &manifest,
            &include,
            &manifest.join("src").join(src),
            &out_dir.join(obj),
        );
    }
}

fn compile(
    clang: &str,
    strip: Option<&str>,
    manifest: &std::path::Path,
    include: &std::path::Path,
    src: &std::path::Path,
    out: &std::path::Path,
) {
    let status = Command::new(clang)
        .args([
            "-g",
            "-O2",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-mcpu=v3",
            "-Wall",
            "-Werror",
        ])
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(manifest.join("src"))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("procman-ebpf: running {clang}: {e}"));
    if !status.success() {
        panic!(
            "procman-ebpf: {clang} failed to compile {} ({status})",
            src.display()
        );
    }
    // Drop DWARF (660 KB -> ~45 KB); BTF and BTF.ext stay, which CO-RE needs.
    if let Some(strip) = strip {
        let ok = Command::new(strip)
            .arg("-g")
            .arg(out)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!(
                "cargo:warning=procman-ebpf: {strip} -g failed on {}; embedding it unstripped",
                out.display()
            );
        }
    }
}
