//! The real binary, for what only a process shows: its log lines and signals.

use std::net::SocketAddr;

use super::within;

/// `ferry run` as a child process, with its stderr lines readable.
pub struct FerryProcess {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// The TLS listener's bound address, read from the `ready` log line.
    pub addr: SocketAddr,
}

impl FerryProcess {
    /// Starts `ferry run -c config` and waits for its `ready ... url=https://` line.
    pub async fn start(config: &std::path::Path) -> FerryProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["run", "-c", config.to_str().unwrap()])
            .env("FERRY_LOG", "info")
            .env_remove("FERRY_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ferry binary starts");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = FerryProcess {
            child,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let ready = process
            .line(|l| l.contains(" ready ") && l.contains("url=https://"))
            .await;
        process.addr = ready
            .split("url=https://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .expect("an address in the ready line");
        process
    }

    /// The next log line for which `pred` holds (earlier ones are skipped).
    pub async fn line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let line = within(self.lines.recv())
                .await
                .expect("ferry's stderr closed");
            if pred(&line) {
                return line;
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (what `docker stop` sends).
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits for the process to exit.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        let mut child = std::mem::replace(
            &mut self.child,
            std::process::Command::new("true").spawn().unwrap(),
        );
        within(tokio::task::spawn_blocking(move || child.wait().unwrap()))
            .await
            .unwrap()
    }
}

impl Drop for FerryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
