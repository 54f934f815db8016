//! Writes a generated log and its ground truth:
//! `cargo run --release -p shield-detect --example gen_log -- sshd|nginx LINES ATTACKERS SEED OUT [TRUTH_OUT]`.

use std::io::BufWriter;

use shield_detect::r#gen;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 5 {
        return Err("usage: gen_log sshd|nginx LINES ATTACKERS SEED OUT [TRUTH_OUT]".into());
    }
    let (lines, attackers, seed) = (a[1].parse()?, a[2].parse()?, a[3].parse()?);
    let w = BufWriter::new(std::fs::File::create(&a[4])?);
    let truth = match a[0].as_str() {
        "sshd" => r#gen::write_sshd(w, lines, attackers, seed)?,
        "nginx" => r#gen::write_nginx(w, lines, attackers, seed)?,
        other => return Err(format!("unknown format `{other}`: use sshd or nginx").into()),
    };
    if let Some(t) = a.get(5) {
        std::fs::write(
            t,
            truth.iter().map(|ip| format!("{ip}\n")).collect::<String>(),
        )?;
    }
    Ok(())
}
