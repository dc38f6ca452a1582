//! `ferry cert dev`: a local CA (made once, reused) and a certificate for
//! localhost and the given names, with how to trust the CA.

use std::path::Path;
use std::process::ExitCode;

use super::{CliError, out};
use crate::tls::dev::{self, DevCerts};

/// Creates (or reuses) the CA in `dir` and issues the leaf.
pub(super) fn dev(dir: &Path, names: &[String], force: bool) -> Result<ExitCode, CliError> {
    if force {
        let paths = DevCerts::in_dir(dir);
        for p in [&paths.ca_cert, &paths.ca_key] {
            let _ = std::fs::remove_file(p);
        }
    }
    let certs = dev::ensure(dir, names, true)?;
    let ca = certs.ca_cert.display();
    let mut all: Vec<String> = dev::LOCAL_NAMES.iter().map(|s| s.to_string()).collect();
    all.extend(names.iter().cloned());
    out(&format!(
        "{status} {ca}\ncertificate for {names}:\n  {cert}\n  {key} (private key, mode 0600)\n\n\
         Use them in proxy.toml:\n  [[certificate]]\n  cert = \"{cert}\"\n  key = \"{key}\"\n\n\
         Trust the CA once per machine (then browsers show no warning):\n  \
         Debian/Ubuntu:      sudo cp {ca} /usr/local/share/ca-certificates/ferry-dev.crt && sudo update-ca-certificates\n  \
         Chromium/Firefox:   certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n ferry-dev -i {ca}\n  \
         (Firefox profile):  certutil -d sql:$HOME/.mozilla/firefox/<profile> -A -t C,, -n ferry-dev -i {ca}\n  \
         macOS:              sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {ca}\n  \
         curl:               curl --cacert {ca} https://localhost:8443/\n",
        status = if certs.created_ca {
            "created the local CA"
        } else {
            "reusing the local CA (pass --force to replace it)"
        },
        names = all.join(", "),
        cert = certs.cert.display(),
        key = certs.key.display(),
    ));
    Ok(ExitCode::SUCCESS)
}
