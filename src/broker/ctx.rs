//! What every request handler is given and returns: the session's [`Ctx`] and its
//! [`Outcome`], with the timing constants all handlers share.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::identity::Identity;
use super::registry::{Broker, Refused};
use super::topic::SessionId;
use crate::exit::Exit;
use crate::proto::ToClient;

/// How often an idle session checks that its client is still there. sshd sends the broker
/// no signal when a client disconnects, so only looking tells; this bounds how long a
/// departed subscriber lingers: under 2 s with a 1 s check.
pub const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long the final status frame may take to write before the broker gives up on a
/// client that does not read.
pub const FINAL_FRAME_DEADLINE: Duration = Duration::from_secs(1);

/// Shortest interval between a waiting publisher's stall checks, so a tiny stall timeout
/// (tests) does not turn the wait into a busy loop.
const MIN_STALL_CHECK: Duration = Duration::from_millis(10);

/// How a session ended: the exit code and the line `pipe-shell` prints.
pub type Outcome = (Exit, Option<String>);

pub fn fail(exit: Exit, msg: impl Into<String>) -> Outcome {
    (exit, Some(msg.into()))
}

pub const OK: Outcome = (Exit::Ok, None);
pub const SHUTTING_DOWN: &str = "broker shutting down";

/// A cap refused the session, a topic or a grant entry (exit 6).
pub fn refused(r: Refused) -> Outcome {
    fail(Exit::Limit, r.to_string())
}

/// Everything a request handler needs about its session.
pub struct Ctx {
    pub broker: Arc<Broker>,
    pub id: SessionId,
    pub who: Identity,
    /// Status frames to the client; the session's writer task sends them in order.
    pub(super) ctl: mpsc::Sender<ToClient>,
    /// Cancelled when the client goes away or the broker stops hard.
    pub cancel: CancellationToken,
}

impl Ctx {
    pub fn status(&self, line: String) {
        let _ = self.ctl.try_send(ToClient::Status { line });
    }

    /// How often a waiting publisher looks for stalled subscribers.
    pub fn stall_check(&self) -> Duration {
        (self.broker.limits().stall_timeout / 4).clamp(MIN_STALL_CHECK, IDLE_CHECK)
    }
}
