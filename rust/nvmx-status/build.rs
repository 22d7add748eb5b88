// SPDX-License-Identifier: GPL-2.0
//! include/uapi/linux/nvmx.h as Rust, by the same script (and bindgen) as the module's: the
//! ABI has one definition. bindgen: $NVMX_BINDGEN, else the one `make setup` installs in
//! ~/.cache/nvmx/bin, else `bindgen` on PATH.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/bindgen-uapi.sh");
    let header = root.join("include/uapi/linux/nvmx.h");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-env-changed=NVMX_BINDGEN");
    let bindgen = std::env::var_os("NVMX_BINDGEN").map(PathBuf::from).unwrap_or_else(|| {
        let cached = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nvmx/bin/bindgen"));
        cached.filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("bindgen"))
    });
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("nvmx_uapi.rs");
    let status = Command::new("sh")
        .arg(&script)
        .arg("nvmx")
        .arg(&bindgen)
        .arg(&out)
        .arg("-I/usr/include")
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        status.success(),
        "bindgen ({}) failed on {}: run `make setup`, or set NVMX_BINDGEN",
        bindgen.display(),
        header.display()
    );
}
