//! `cargo xtask vm-assets`: Debian kernels unpacked into a cache directory, their vmlinux
//! extracted from the bzImage, and an initramfs (static busybox, the virtio/9p/overlay modules
//! in dependency order, `init.sh`) per kernel. Nothing is ever installed into /boot.
//!
//! Cache: `$PROCMAN_VM_CACHE`, else `$XDG_CACHE_HOME/procman-vm`, else `~/.cache/procman-vm`
//! (outside the work tree, so fresh clones on the same machine reuse it). One directory per
//! kernel release (`6.1.0-56-amd64/`) holding `vmlinuz`, `vmlinux`, `config`,
//! `initramfs.cpio` and a `stamp` naming the package and the recipe that built them.
use super::{cpio::Cpio, elf};
use anyhow::{anyhow, bail, Context, Result};
use std::{
    collections::{HashMap, HashSet},
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// Kernel series the harness knows, oldest first. 6.1 is required; newer ones are used
/// when the archive has them.
pub const SERIES: &[&str] = &["6.1", "6.12"];

/// Modules the guest needs for its root (9p over virtio-pci), the scratch disk (virtio-blk)
/// and the overlay. Their dependencies are added from each module's `depends=` field.
const ROOT_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "9pnet_virtio", "9p", "overlay"];

const INIT: &str = include_str!("init.sh");
const BUSYBOX: &str = "/bin/busybox";
/// Host tools the assets step uses besides deps::VM: decompressors for the bzImage payload
/// and the modules.
const TOOLS: &[&str] = &["xz-utils", "zstd", "gzip"];

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub series: String,
    /// Kernel release (`uname -r`), e.g. `6.1.0-56-amd64`.
    pub release: String,
    pub package: String,
    pub dir: PathBuf,
}

impl Kernel {
    /// The image to boot: the uncompressed ELF vmlinux when it could be extracted (saves
    /// ~5 s of decompression under TCG), else the bzImage.
    pub fn image(&self) -> PathBuf {
        let v = self.dir.join("vmlinux");
        if v.exists() {
            v
        } else {
            self.dir.join("vmlinuz")
        }
    }
    pub fn initramfs(&self) -> PathBuf {
        self.dir.join("initramfs.cpio")
    }
}

pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PROCMAN_VM_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("procman-vm");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/procman-vm")
}

/// Which series `sel` (`6.1`, `6.12`, `all`) names.
pub fn select(sel: &str) -> Result<Vec<&'static str>> {
    match sel {
        "all" => Ok(SERIES.to_vec()),
        s => SERIES
            .iter()
            .find(|k| **k == s)
            .map(|k| vec![*k])
            .ok_or_else(|| {
                anyhow!(
                    "unknown kernel {s:?}: use one of {} or all",
                    SERIES.join(", ")
                )
            }),
    }
}

/// A stable hash of everything that shapes an initramfs, so a changed init or module list
/// rebuilds the assets.
fn recipe() -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in INIT
        .bytes()
        .chain(ROOT_MODULES.join(",").bytes())
        .chain(b"v1".iter().copied())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn apt_candidates(series: &str) -> Result<Vec<String>> {
    let re = format!("^linux-image-{}\\.", series.replace('.', "\\."));
    let out = Command::new("apt-cache")
        .args(["search", "--names-only", &re])
        .output()
        .context("running apt-cache search (is this a Debian host?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            // linux-image-<release>-unsigned, release = 6.1.0-56-amd64 | 6.12.107+deb12-amd64
            n.strip_prefix("linux-image-")
                .and_then(|r| r.strip_suffix("-unsigned"))
                .is_some_and(|r| {
                    r.ends_with("-amd64") && !r.contains("-rt-") && !r.contains("-cloud-")
                })
        })
        .map(str::to_string)
        .collect();
    names.sort_by_key(|n| numbers(n));
    Ok(names)
}

/// The newest `-amd64-unsigned` package of `series` the apt lists know (after one
/// `apt-get update` when they know none).
fn resolve(series: &str, updated: &mut bool) -> Result<Option<String>> {
    let mut c = apt_candidates(series)?;
    if c.is_empty() && !*updated {
        eprintln!("vm-assets: apt knows no linux-image-{series}.* package; running apt-get update");
        *updated = true;
        let st = Command::new("apt-get")
            .args(["update", "-q"])
            .status()
            .context("running apt-get update")?;
        if !st.success() {
            eprintln!("vm-assets: warning: apt-get update failed ({st})");
        }
        c = apt_candidates(series)?;
    }
    Ok(c.pop())
}

fn release_of(package: &str) -> &str {
    package
        .trim_start_matches("linux-image-")
        .trim_end_matches("-unsigned")
}

fn read_stamp(dir: &Path) -> Option<HashMap<String, String>> {
    let text = fs::read_to_string(dir.join("stamp")).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// A complete cached kernel of `series`, newest first (offline fallback).
fn cached(cache: &Path, series: &str) -> Option<Kernel> {
    let mut found: Vec<Kernel> = fs::read_dir(cache)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let st = read_stamp(&e.path())?;
            if st.get("series")? != series || st.get("recipe")? != &recipe() {
                return None;
            }
            Some(Kernel {
                series: series.to_string(),
                release: st.get("release")?.clone(),
                package: st.get("package")?.clone(),
                dir: e.path(),
            })
        })
        .collect();
    found.sort_by_key(|k| numbers(&k.release));
    found.pop()
}

/// Makes sure the assets of every kernel in `series` exist; returns the kernels, skipping
/// (with a note) optional series the archive does not have.
pub fn ensure(series: &[&str], quiet_when_cached: bool) -> Result<Vec<Kernel>> {
    crate::deps::ensure(crate::deps::VM)?;
    crate::deps::ensure(TOOLS)?;
    if !Path::new(BUSYBOX).exists() {
        bail!("{BUSYBOX} is missing: install busybox-static (apt-get install busybox-static)");
    }
    let cache = cache_dir();
    fs::create_dir_all(&cache)
        .with_context(|| format!("creating the VM cache {}", cache.display()))?;
    let mut updated = false;
    let mut kernels = Vec::new();
    for &s in series {
        let pkg = match resolve(s, &mut updated)? {
            Some(p) => p,
            None => {
                if let Some(k) = cached(&cache, s) {
                    eprintln!(
                        "vm-assets: {s}: apt has no package now; using the cached {}",
                        k.release
                    );
                    kernels.push(k);
                    continue;
                }
                if s == SERIES[0] || series.len() == 1 {
                    bail!(
                        "no linux-image-{s}.*-amd64-unsigned package in the apt lists; \
                         check `apt-cache search linux-image-{s}` after `apt-get update`"
                    );
                }
                eprintln!("vm-assets: {s}: the Debian archive has no such kernel; skipping it");
                continue;
            }
        };
        let release = release_of(&pkg).to_string();
        let dir = cache.join(&release);
        let k = Kernel {
            series: s.to_string(),
            release: release.clone(),
            package: pkg.clone(),
            dir,
        };
        let fresh = read_stamp(&k.dir).is_some_and(|st| {
            st.get("package") == Some(&pkg) && st.get("recipe") == Some(&recipe())
        }) && k.initramfs().exists()
            && k.dir.join("vmlinuz").exists();
        if fresh {
            if !quiet_when_cached {
                eprintln!("vm-assets: {s}: {release} is cached in {}", k.dir.display());
            }
        } else {
            match build(&cache, &k) {
                Ok(()) => {}
                // A download failure with an older complete kernel of the series cached:
                // use that one rather than failing offline.
                Err(e) => match cached(&cache, s) {
                    Some(old) => {
                        eprintln!("vm-assets: {s}: {e:#}; using the cached {}", old.release);
                        kernels.push(old);
                        continue;
                    }
                    None => return Err(e),
                },
            }
        }
        kernels.push(k);
    }
    Ok(kernels)
}

fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

/// Downloads, unpacks and prepares one kernel.
fn build(cache: &Path, k: &Kernel) -> Result<()> {
    let t0 = std::time::Instant::now();
    eprintln!("vm-assets: {}: fetching {}", k.series, k.package);
    let debs = cache.join("debs");
    let _ = fs::remove_dir_all(&debs);
    fs::create_dir_all(&debs)?;
    run(Command::new("apt-get")
        .args([
            "download",
            "-q",
            "-o",
            "APT::Sandbox::User=root",
            &k.package,
        ])
        .current_dir(&debs))
    .with_context(|| format!("downloading {}", k.package))?;
    let deb = fs::read_dir(&debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| anyhow!("apt-get download left no .deb in {}", debs.display()))?;
    let unpack = cache.join(format!(".unpack-{}", k.release));
    let _ = fs::remove_dir_all(&unpack);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpack))?;

    let _ = fs::remove_dir_all(&k.dir);
    fs::create_dir_all(&k.dir)?;
    let boot = unpack.join("boot");
    fs::copy(
        boot.join(format!("vmlinuz-{}", k.release)),
        k.dir.join("vmlinuz"),
    )
    .with_context(|| format!("{} has no boot/vmlinuz-{}", k.package, k.release))?;
    fs::copy(
        boot.join(format!("config-{}", k.release)),
        k.dir.join("config"),
    )?;

    let bz = fs::read(k.dir.join("vmlinuz"))?;
    match extract_vmlinux(&bz) {
        Ok(elf) => fs::write(k.dir.join("vmlinux"), elf)?,
        Err(e) => eprintln!(
            "vm-assets: {}: cannot extract vmlinux ({e:#}); booting the bzImage",
            k.series
        ),
    }

    let moddir = unpack.join("lib/modules").join(&k.release);
    let modules = collect_modules(&moddir)?;
    eprintln!(
        "vm-assets: {}: modules in load order: {}",
        k.series,
        modules
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut c = Cpio::new();
    for d in [
        "bin", "dev", "proc", "sys", "modules", "lower", "rw", "newroot", "tmp",
    ] {
        c.dir(d);
    }
    c.chardev("dev/console", 0o600, 5, 1);
    c.chardev("dev/null", 0o666, 1, 3);
    c.file("bin/busybox", 0o755, &fs::read(BUSYBOX)?);
    c.symlink("bin/sh", "busybox");
    c.file("init", 0o755, INIT.as_bytes());
    c.file("config", 0o644, &fs::read(k.dir.join("config"))?);
    let order: Vec<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
    c.file(
        "modules.order",
        0o644,
        format!("{}\n", order.join("\n")).as_bytes(),
    );
    for (name, data) in &modules {
        c.file(&format!("modules/{name}.ko"), 0o644, data);
    }
    let mut f = fs::File::create(k.initramfs())?;
    c.finish(&mut f)?;
    f.flush()?;

    fs::remove_dir_all(&unpack)?;
    fs::remove_dir_all(&debs)?;
    fs::write(
        k.dir.join("stamp"),
        format!(
            "series={}\nrelease={}\npackage={}\nrecipe={}\n",
            k.series,
            k.release,
            k.package,
            recipe()
        ),
    )?;
    eprintln!(
        "vm-assets: {}: {} ready in {} ({:.1} s)",
        k.series,
        k.release,
        k.dir.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Pipes `input` through a decompressor; returns its stdout and whether it exited 0.
fn pipe_through(tool: &str, args: &[&str], input: &[u8]) -> Result<(Vec<u8>, bool)> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "running {tool} (install it: apt-get install {})",
                TOOLS.join(" ")
            )
        })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input); // the tool may stop reading early; judged by its output
    });
    let out = child.wait_with_output()?;
    let _ = writer.join();
    Ok((out.stdout, out.status.success()))
}

fn decompress(data: &[u8]) -> Result<Vec<u8>> {
    let (tool, args): (&str, &[&str]) = match data {
        [0x1f, 0x8b, ..] => ("gzip", &["-dc"]),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => ("xz", &["-dc", "--single-stream"]),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => ("zstd", &["-dcq"]),
        [0x5d, 0, 0, ..] => ("xz", &["-dc", "--format=lzma"]),
        _ => bail!(
            "unknown compression (magic {:02x?})",
            &data[..data.len().min(6)]
        ),
    };
    let (out, ok) = pipe_through(tool, args, data)?;
    if !ok && out.is_empty() {
        bail!("{tool} could not decompress the data");
    }
    Ok(out)
}

/// The uncompressed ELF vmlinux inside a bzImage: the boot protocol header (>= 2.08) gives
/// the payload's offset and length; the kernel build appends the 4-byte uncompressed size.
pub fn extract_vmlinux(bz: &[u8]) -> Result<Vec<u8>> {
    if bz.get(0x202..0x206) != Some(b"HdrS") {
        bail!("not a bzImage (no HdrS boot header)");
    }
    let version = u16::from_le_bytes([bz[0x206], bz[0x207]]);
    if version < 0x208 {
        bail!("boot protocol {version:#x} predates payload_offset (2.08)");
    }
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let rd = |o: usize| u32::from_le_bytes(bz[o..o + 4].try_into().unwrap()) as usize;
    let start = (setup_sects + 1) * 512 + rd(0x248);
    let len = rd(0x24c);
    let payload = bz.get(start..start + len).ok_or_else(|| {
        anyhow!(
            "payload {start}+{len} lies outside the {}-byte bzImage",
            bz.len()
        )
    })?;
    let body = &payload[..payload.len().saturating_sub(4)];
    let out = decompress(body)?;
    elf::check_complete(&out).context("the decompressed payload is not a complete ELF vmlinux")?;
    Ok(out)
}

/// The modules `ROOT_MODULES` need, dependencies first, with their (decompressed) bytes.
/// Built-in ones (listed in modules.builtin) are skipped.
fn collect_modules(moddir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let builtin: HashSet<String> = fs::read_to_string(moddir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            Path::new(l)
                .file_name()?
                .to_str()?
                .split('.')
                .next()
                .map(|s| s.replace('-', "_"))
        })
        .collect();
    let mut index: HashMap<String, PathBuf> = HashMap::new();
    let mut stack = vec![moddir.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)
            .with_context(|| format!("reading {}", d.display()))?
            .flatten()
        {
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                if let Some((stem, _)) = name.split_once(".ko") {
                    index.insert(stem.replace('-', "_"), p.clone());
                }
            }
        }
    }
    fn visit(
        name: &str,
        index: &HashMap<String, PathBuf>,
        builtin: &HashSet<String>,
        seen: &mut HashSet<String>,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        if !seen.insert(name.to_string()) || builtin.contains(name) {
            return Ok(());
        }
        let path = index.get(name).ok_or_else(|| {
            anyhow!("module {name} is neither built in nor shipped by this kernel package")
        })?;
        let raw = fs::read(path)?;
        let data = if path.extension().is_some_and(|e| e == "ko") {
            raw
        } else {
            decompress(&raw)?
        };
        for dep in
            elf::module_depends(&data).with_context(|| format!("reading {}", path.display()))?
        {
            visit(&dep, index, builtin, seen, out)?;
        }
        out.push((name.to_string(), data));
        Ok(())
    }
    let (mut seen, mut out) = (HashSet::new(), Vec::new());
    for m in ROOT_MODULES {
        visit(m, &index, &builtin, &mut seen, &mut out)?;
    }
    Ok(out)
}
