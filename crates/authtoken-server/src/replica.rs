//! A replica's watch on its PostgreSQL store: it reloads the users when
//! the store's version counter moves (an `add-user` on any machine),
//! sweeps expired records, and says when the database goes away and comes
//! back. The run step of `serve` starts it; storage knows nothing of it.

use std::sync::Arc;
use std::time::Duration;

use crate::authority::Authority;
use crate::pgstore::PgStore;

/// How often a replica looks at the store's version counter (and so how
/// soon it notices the database is away, or back).
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How often expired single-use records and old failures are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// A replica's watch on its PostgreSQL store: reloads the users when the
/// version counter moves (an add-user on any machine), sweeps expired
/// records, and says when the database goes away and comes back.
pub async fn follow(authority: Arc<Authority>, pg: Arc<PgStore>, mut version: i64) {
    let mut was_up = true;
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let now = match pg.version().await {
            Ok(now) => now,
            Err(down) => {
                if was_up {
                    eprintln!("authtoken-server: {down}: answering 503 until it is back");
                }
                was_up = false;
                continue;
            }
        };
        if !was_up {
            eprintln!("authtoken-server: store {} reachable again", pg.shown);
            was_up = true;
        }
        if now != version {
            match pg.load().await {
                Ok((store, loaded_at)) => {
                    let count = store.users.len();
                    authority.replace_store(store);
                    version = loaded_at;
                    eprintln!(
                        "authtoken-server: store {} changed: {count} users",
                        pg.shown
                    );
                }
                Err(e) => eprintln!(
                    "authtoken-server: store changed but does not load, keeping the one in force: {e}"
                ),
            }
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = tokio::time::Instant::now();
            let _ = pg.sweep(authtoken_core::clock::unix_millis()).await;
        }
    }
}
