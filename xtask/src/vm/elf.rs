//! Just enough ELF64 parsing for the VM assets: a module's `.modinfo` section (for its
//! `depends=` field) and a sanity check that an extracted vmlinux is a whole ELF file.
use anyhow::{bail, Result};

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

struct Shdrs {
    off: usize,
    entsize: usize,
    num: usize,
    strndx: usize,
}

fn headers(b: &[u8]) -> Result<Shdrs> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        bail!("not a little-endian ELF64 file");
    }
    let off = u64_at(b, 0x28).unwrap_or(0) as usize;
    let entsize = u16_at(b, 0x3a).unwrap_or(0) as usize;
    let num = u16_at(b, 0x3c).unwrap_or(0) as usize;
    let strndx = u16_at(b, 0x3e).unwrap_or(0) as usize;
    if entsize < 64
        || off
            .checked_add(entsize * num)
            .is_none_or(|end| end > b.len())
    {
        bail!(
            "ELF section header table lies outside the file ({} bytes): truncated?",
            b.len()
        );
    }
    Ok(Shdrs {
        off,
        entsize,
        num,
        strndx,
    })
}

/// Checks that `b` is a complete ELF64 file: every section's contents lie inside it.
pub fn check_complete(b: &[u8]) -> Result<()> {
    let h = headers(b)?;
    for i in 0..h.num {
        let s = h.off + i * h.entsize;
        let ty = u32_at(b, s + 4).unwrap_or(0);
        let off = u64_at(b, s + 0x18).unwrap_or(0) as usize;
        let size = u64_at(b, s + 0x20).unwrap_or(0) as usize;
        // SHT_NOBITS (8) occupies no file space.
        if ty != 8 && off.saturating_add(size) > b.len() {
            bail!(
                "ELF section {i} ends at {} past the file end {}",
                off + size,
                b.len()
            );
        }
    }
    Ok(())
}

/// The contents of the section called `want`.
fn section<'a>(b: &'a [u8], want: &str) -> Result<Option<&'a [u8]>> {
    let h = headers(b)?;
    let sh =
        |i: usize, field: usize| u64_at(b, h.off + i * h.entsize + field).unwrap_or(0) as usize;
    let stroff = sh(h.strndx, 0x18);
    for i in 0..h.num {
        let name_off = u32_at(b, h.off + i * h.entsize).unwrap_or(0) as usize;
        let name = b.get(stroff + name_off..).unwrap_or(&[]);
        let end = name.iter().position(|&c| c == 0).unwrap_or(0);
        if &name[..end] == want.as_bytes() {
            let (off, size) = (sh(i, 0x18), sh(i, 0x20));
            return Ok(b.get(off..off + size));
        }
    }
    Ok(None)
}

/// The module names in a kernel module's `depends=` modinfo field (empty when it has none).
pub fn module_depends(ko: &[u8]) -> Result<Vec<String>> {
    let Some(info) = section(ko, ".modinfo")? else {
        bail!("no .modinfo section: not a kernel module");
    };
    for field in info.split(|&c| c == 0) {
        if let Some(v) = field.strip_prefix(b"depends=") {
            return Ok(String::from_utf8_lossy(v)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect());
        }
    }
    Ok(Vec::new())
}
