//! `start --attach`: the container's output from its log as it is written (nothing written
//! between the start and the attach is lost), our stdin to its monitor with `-i`, then its
//! exit status.

use std::io::{Read, Write};
use std::time::Duration;

use berth_engine::logs::{LogFollower, Stream};
use berth_engine::Engine;

/// Follow container `id`'s log from `offset` until it stops; its exit status.
pub fn attach_and_wait(engine: &Engine, id: &str, offset: u64, interactive: bool) -> anyhow::Result<i32> {
    let row = engine.find(id)?;
    if interactive {
        let mut conn = berth_engine::monitor::connect_attach(&engine.attach_dir(&row))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = conn.shutdown(std::net::Shutdown::Write);
        });
    }
    let (path, driver) = engine.log_file(&row)?;
    let mut follower = LogFollower::new(driver, &path, offset);
    let print = |f: &mut LogFollower| {
        for e in f.poll() {
            let _ = match e.stream {
                Stream::Stdout => std::io::stdout().lock().write_all(e.text.as_bytes()),
                Stream::Stderr => std::io::stderr().lock().write_all(e.text.as_bytes()),
            };
        }
    };
    loop {
        let r = engine.find(&row.id)?;
        print(&mut follower);
        if !matches!(r.state.as_str(), "running" | "paused" | "restarting") {
            print(&mut follower);
            return Ok(r.exit_code.unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The size of a container's log now: where an attach starts.
pub fn log_offset(engine: &Engine, key: &str) -> anyhow::Result<u64> {
    let row = engine.find(key)?;
    let (path, _) = engine.log_file(&row)?;
    Ok(LogFollower::current_size(&path))
}
