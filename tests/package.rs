//! The Debian package: what scripts/package.sh puts in it (binary, hardened
//! unit, conffile, man page, completions, dependencies, lintian) and its
//! lifecycle through scripts/package-lifecycle.sh in a throwaway root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const NEW: &str = env!("CARGO_PKG_VERSION");
const OLD: &str = "0.0.1~test";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Why these tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    if !nix_root() {
        return Some("not root".into());
    }
    ["dpkg-deb", "dpkg-shlibdeps", "strip", "unshare", "nft"]
        .into_iter()
        .find(|t| !have(t))
        .map(|t| format!("{t} is missing (bash .ci/install-deps)"))
}

fn nix_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// The two packages (an older version, then this one), built once from the
/// test build of the binary.
fn debs() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static DEBS: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    DEBS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let build = |version: &str| {
            let out = Command::new(repo().join("scripts/package.sh"))
                .args(["--bin", env!("CARGO_BIN_EXE_shield"), "--version", version])
                .arg("--out")
                .arg(dir.path())
                .env("SHIELD_DEB_COMPRESSION", "gzip")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "package.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let deb = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
            assert!(deb.is_file(), "{}", deb.display());
            deb
        };
        let old = build(OLD);
        let new = build(NEW);
        (dir, old, new)
    })
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn package_holds_binary_unit_conffile_docs_and_only_linked_dependencies() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let (_, _, deb) = debs();
    let field = |f: &str| run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(f));
    assert_eq!(field("Package").trim(), "shield");
    assert_eq!(field("Version").trim(), NEW);
    // Depends is what dpkg-shlibdeps found the binary linking: libc and libgcc, nothing else.
    let depends = field("Depends");
    for dep in depends.trim().split(", ") {
        let name = dep.split_whitespace().next().unwrap();
        assert!(
            ["libc6", "libgcc-s1"].contains(&name),
            "unexpected dependency {dep} in {depends}"
        );
    }
    assert!(depends.contains("libc6"), "{depends}");
    assert_eq!(field("Recommends").trim(), "nftables");

    let contents = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    for path in [
        "./usr/bin/shield",
        "./lib/systemd/system/shield.service",
        "./etc/shield/shield.toml",
        "./usr/share/man/man8/shield.8.gz",
        "./usr/share/bash-completion/completions/shield",
        "./usr/share/zsh/vendor-completions/_shield",
        "./usr/share/fish/vendor_completions.d/shield.fish",
        "./usr/share/doc/shield/copyright",
        "./usr/share/doc/shield/examples/shield.toml",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} not in the package:\n{contents}"
        );
    }
    let x = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(x.path()));
    let conffiles = std::fs::read_to_string(x.path().join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/shield/shield.toml");
    for script in ["postinst", "prerm", "postrm"] {
        assert!(x.path().join(script).is_file(), "no {script}");
    }

    // The unit as installed, hardened.
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(x.path()));
    let unit_path = x.path().join("lib/systemd/system/shield.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for line in [
        "ExecStart=/usr/bin/shield run",
        "ProtectSystem=strict",
        "StateDirectory=shield",
        "StateDirectoryMode=0700",
        "NoNewPrivileges=true",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_DAC_READ_SEARCH CAP_NET_BIND_SERVICE",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
    }
    // The installed binary accepts the installed default config.
    let out = run(Command::new(x.path().join("usr/bin/shield"))
        .arg("check")
        .arg("--config")
        .arg(x.path().join("etc/shield/shield.toml")));
    assert!(out.contains("ok"), "{out}");

    // systemd's own exposure score for the unit (lower is better; 10 = none).
    let sa = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit_path)
        .output();
    match sa {
        Ok(o) if o.status.success() || !o.stdout.is_empty() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let score: f64 = text
                .lines()
                .find_map(|l| l.split("exposure level for shield.service: ").nth(1))
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no score in:\n{text}"));
            assert!(score <= 3.0, "exposure {score} (was 2.6):\n{text}");
        }
        _ => eprintln!("systemd-analyze security --offline unavailable: score not checked"),
    }

    // lintian: no error or warning (the informational tags are explained in docs/packaging.md).
    if have("lintian") {
        let out = Command::new("lintian").arg(deb).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let bad: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
            .collect();
        assert!(bad.is_empty(), "lintian:\n{text}");
    } else {
        eprintln!("lintian not installed: tags not checked");
    }
}

#[test]
fn package_lifecycle_install_upgrade_remove_purge() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let (_, old, new) = debs();
    let mut cmd = Command::new(repo().join("scripts/package-lifecycle.sh"));
    cmd.arg(old).arg(new);
    // A prepared debootstrap root (copied: the lifecycle changes it), else host binaries.
    let scratch = tempfile::tempdir().unwrap();
    match std::env::var_os("SHIELD_DEBOOTSTRAP_ROOT") {
        Some(prepared) => {
            let root = scratch.path().join("root");
            run(Command::new("cp").arg("-a").arg(&prepared).arg(&root));
            cmd.arg("--debootstrap").arg(root);
        }
        None => {
            cmd.arg("--host-root");
        }
    }
    let out = run(&mut cmd);
    eprintln!("{out}");
    for step in [
        format!("install {OLD}: ok"),
        format!("upgrade {OLD} -> {NEW}: ok"),
        "remove: ok".into(),
        "purge: ok".into(),
        "lifecycle: ok".into(),
    ] {
        assert!(out.contains(&step), "{step} not in:\n{out}");
    }
}
