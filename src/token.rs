//! `myha token`: credentials for `access:`, made where they are used.
use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use ring::rand::SecureRandom;

use crate::TokenAction;

pub(crate) fn run(action: &TokenAction) -> anyhow::Result<ExitCode> {
    match action {
        TokenAction::New { out } => {
            let token = new_token()?;
            let hash = myha_config::TokenHash::of(&token).to_hex();
            match out {
                Some(path) => {
                    write_private(path, &token)?;
                    println!("token_sha256: {hash}");
                    eprintln!("myha: token written to {} (mode 0600)", path.display());
                }
                None => {
                    println!("token: {token}");
                    println!("token_sha256: {hash}");
                }
            }
        }
        TokenAction::Hash => {
            let mut text = String::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut text)
                .context("reading the token from standard input")?;
            let token = text.trim_end_matches(['\n', '\r']);
            if token.is_empty() {
                bail!("no token on standard input");
            }
            println!(
                "token_sha256: {}",
                myha_config::TokenHash::of(token).to_hex()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// 256 random bits, hexadecimal.
fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates `path` (never overwriting) readable by its owner only.
fn write_private(path: &std::path::Path, token: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
